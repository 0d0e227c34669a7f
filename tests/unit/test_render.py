"""MIDI -> audio on real chorales: duration, loudness, pitch content; both engines; bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import symusic

from musgen.data import render
from musgen.data.audio_io import rms_dbfs
from musgen.data.render import (
    TAIL_SECONDS,
    find_soundfont,
    plays_pitch,
    render_midi,
    resolve_engine,
    symusic_synthesizer_fault,
)
from musgen.errors import MusgenError

RATE = 16000
HAS_FLUIDSYNTH = shutil.which("fluidsynth") is not None
SOUNDFONT = find_soundfont()
SYMUSIC_FAULT = symusic_synthesizer_fault(SOUNDFONT) if SOUNDFONT else "no soundfont"
ENGINES = [
    "synth",
    pytest.param("fluidsynth", marks=pytest.mark.skipif(not HAS_FLUIDSYNTH, reason="no fluidsynth")),
    pytest.param("symusic", marks=pytest.mark.skipif(bool(SYMUSIC_FAULT), reason=str(SYMUSIC_FAULT))),
]


@pytest.fixture(scope="module")
def chorale(bach_midi_dir) -> Path:
    return sorted(bach_midi_dir.glob("*.mid"))[0]


def _notes(midi: Path) -> np.ndarray:
    """(start, end, pitch) in seconds of every note."""
    score = symusic.Score(str(midi)).to("second")
    arrays = [t.notes.numpy() for t in score.tracks]
    return np.concatenate(
        [np.stack([a["time"], a["time"] + a["duration"], a["pitch"]], axis=1) for a in arrays]
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_render_lasts_the_piece_is_audible_and_plays_its_pitches(chorale, engine):
    notes = _notes(chorale)
    end = float(notes[:, 1].max())
    wave = render_midi(chorale, RATE, engine=engine)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert end <= len(wave) / RATE <= end + 1.5
    assert rms_dbfs(wave) > -40 and np.abs(wave).max() <= 1.0

    # the loudest 100 ms frame: its strongest frequency is a partial of a note sounding then
    hop = RATE // 10
    frames = wave[: len(wave) // hop * hop].reshape(-1, hop)
    k = int(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)).argmax())
    spectrum = np.abs(np.fft.rfft(frames[k] * np.hanning(hop), n=8 * hop))
    peak_hz = float(np.fft.rfftfreq(8 * hop, 1 / RATE)[spectrum.argmax()])
    t0, t1 = k * 0.1, (k + 1) * 0.1
    sounding = notes[(notes[:, 0] < t1) & (notes[:, 1] > t0), 2]
    partials = 440.0 * 2 ** ((sounding[:, None] - 69) / 12) * np.arange(1, 7)[None, :]
    assert np.abs(12 * np.log2(peak_hz / partials)).min() < 0.5, (peak_hz, sounding)  # half a semitone


@pytest.mark.parametrize("engine", ENGINES)
def test_program_override_and_max_seconds(chorale, engine):
    base = render_midi(chorale, RATE, engine=engine, max_seconds=4)
    assert len(base) == 4 * RATE
    organ = render_midi(chorale, RATE, engine=engine, max_seconds=4, program=19)
    assert len(organ) == len(base) and np.abs(organ - base).max() > 0.05
    np.testing.assert_array_equal(
        render_midi(chorale, RATE, engine=engine, max_seconds=4), base
    )  # reproducible


def test_synth_plays_drums_and_fails_clearly_on_junk(tmp_path):
    pm = pretty_midi.PrettyMIDI()
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes += [
        pretty_midi.Note(velocity=100, pitch=36 + i % 3, start=0.25 * i, end=0.25 * i + 0.1) for i in range(8)
    ]
    pm.instruments.append(drums)
    pm.write(str(tmp_path / "drums.mid"))
    wave = render_midi(tmp_path / "drums.mid", RATE, engine="synth")
    assert len(wave) == pytest.approx((1.85 + TAIL_SECONDS) * RATE, abs=2) and rms_dbfs(wave) > -60

    (tmp_path / "junk.mid").write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(MusgenError) as err:
        render_midi(tmp_path / "junk.mid", RATE, engine="synth")
    assert err.value.reason.startswith("unreadable MIDI")
    with pytest.raises(MusgenError, match="does not exist"):
        render_midi(tmp_path / "missing.mid", RATE, engine="synth")


def test_soundfont_and_engine_choice(tmp_path, monkeypatch):
    with pytest.raises(MusgenError, match="is not a file"):
        find_soundfont(tmp_path / "none.sf2")
    fake = tmp_path / "mine.sf2"
    fake.write_bytes(b"RIFF")
    assert find_soundfont(fake) == fake.resolve()
    monkeypatch.setenv("MUSGEN_SOUNDFONT", str(fake))
    assert find_soundfont() == fake.resolve()
    monkeypatch.delenv("MUSGEN_SOUNDFONT")
    assert find_soundfont() is not None  # pretty_midi ships TimGM6mb.sf2 at the least
    assert resolve_engine("synth") == ("synth", None)
    with pytest.raises(MusgenError, match="unknown render engine"):
        resolve_engine("timidity")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MusgenError, match="fluidsynth program is not installed"):
        resolve_engine("fluidsynth")


def test_auto_takes_fluidsynth_then_symusic_then_the_builtin_synth(monkeypatch):
    """The engine order of --engine auto, each step taken when the ones before it cannot run."""
    sf2 = find_soundfont()
    assert sf2 is not None
    monkeypatch.setattr(render, "symusic_synthesizer_fault", lambda sf2: None)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert resolve_engine("auto") == ("fluidsynth", sf2)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert resolve_engine("auto") == ("symusic", sf2)
    monkeypatch.setattr(render, "symusic_synthesizer_fault", lambda sf2: "symusic is broken here")
    assert resolve_engine("auto") == ("synth", None)
    with pytest.raises(MusgenError, match="symusic is broken here; render with --engine"):
        resolve_engine("symusic")
    monkeypatch.setattr(render, "find_soundfont", lambda explicit=None: None)
    with pytest.raises(MusgenError, match="no soundfont found"):
        resolve_engine("symusic")


@pytest.mark.skipif(bool(SYMUSIC_FAULT), reason=str(SYMUSIC_FAULT))
def test_symusic_renders_a_chorale_as_long_as_the_other_engines(chorale, monkeypatch):
    """Without the fluidsynth program, auto renders with symusic's synthesizer and the soundfont on
    disk (nothing downloaded): real sound, not silence, of the length every engine gives."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert resolve_engine("auto")[0] == "symusic"
    wave = render_midi(chorale, RATE)
    end = float(_notes(chorale)[:, 1].max())
    assert len(wave) == int(np.ceil((end + TAIL_SECONDS) * RATE))
    assert len(wave) == len(render_midi(chorale, RATE, engine="synth"))
    assert rms_dbfs(wave) > -25 and np.abs(wave).max() <= 1.0
    # it is not the built-in synthesizer under another name
    assert np.abs(wave - render_midi(chorale, RATE, engine="synth")).max() > 0.05


def test_the_symusic_probe_hears_a_wrong_pitch(tmp_path):
    """symusic_synthesizer_fault refuses a synthesizer that plays out of tune (symusic 0.5.9 with GM
    soundfonts); its pitch check passes a right note and fails a wrong one."""
    score = symusic.Score(480)
    track = symusic.Track("a4", 0, False)
    track.notes.append(symusic.Note(0, 960, 69, 100))
    score.tracks.append(track)
    score.dump_midi(str(tmp_path / "a4.mid"))
    wave = render_midi(tmp_path / "a4.mid", RATE, engine="synth")
    assert plays_pitch(wave, RATE, 69) and plays_pitch(wave, RATE, 57)  # A3: A4 is its 2nd harmonic
    assert not plays_pitch(wave, RATE, 71) and not plays_pitch(wave, RATE, 62)
    assert not plays_pitch(np.zeros(RATE, np.float32), RATE, 69)
