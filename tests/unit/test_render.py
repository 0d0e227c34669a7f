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
    rustysynth_fault,
)
from musgen.errors import MusgenError

RATE = 16000
HAS_FLUIDSYNTH = shutil.which("fluidsynth") is not None
SOUNDFONT = find_soundfont()
ENGINES = [
    "synth",
    "rustysynth",
    pytest.param("fluidsynth", marks=pytest.mark.skipif(not HAS_FLUIDSYNTH, reason="no fluidsynth")),
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


def test_auto_takes_fluidsynth_then_rustysynth_then_the_builtin_synth(monkeypatch):
    """The engine order of --engine auto, each step taken when the ones before it cannot run."""
    sf2 = find_soundfont()
    assert sf2 is not None
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert resolve_engine("auto") == ("fluidsynth", sf2)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert resolve_engine("auto") == ("rustysynth", sf2)  # the real probe passes: it is a dependency
    monkeypatch.setattr(render, "rustysynth_fault", lambda sf2: "rustysynth is broken here")
    assert resolve_engine("auto") == ("synth", None)
    with pytest.raises(MusgenError, match="rustysynth is broken here; render with --engine"):
        resolve_engine("rustysynth")
    monkeypatch.setattr(render, "find_soundfont", lambda explicit=None: None)
    with pytest.raises(MusgenError, match="no soundfont found"):
        resolve_engine("rustysynth")


@pytest.mark.parametrize("soundfont", ["found", "pretty_midi"])
def test_rustysynth_renders_a_chorale_as_long_as_the_other_engines(chorale, monkeypatch, soundfont):
    """Without the fluidsynth program, auto renders with RustySynth and the soundfont on disk
    (nothing downloaded), the system's or the one pretty_midi ships: real sound, not silence, of the
    length every engine gives."""
    if soundfont == "pretty_midi":
        monkeypatch.setenv("MUSGEN_SOUNDFONT", str(Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert resolve_engine("auto")[0] == "rustysynth"
    wave = render_midi(chorale, RATE)
    end = float(_notes(chorale)[:, 1].max())
    assert len(wave) == int(np.ceil((end + TAIL_SECONDS) * RATE))
    assert len(wave) == len(render_midi(chorale, RATE, engine="synth"))
    assert rms_dbfs(wave) > -25 and np.abs(wave).max() <= 1.0
    # it is not the built-in synthesizer under another name
    assert np.abs(wave - render_midi(chorale, RATE, engine="synth")).max() > 0.05


def test_the_rustysynth_probe_hears_a_wrong_pitch(tmp_path):
    """rustysynth_fault refuses a synthesizer that plays out of tune (as symusic 0.5.9's did with GM
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
    assert rustysynth_fault(SOUNDFONT) is None if SOUNDFONT else True
    (tmp_path / "junk.sf2").write_bytes(b"RIFF" + bytes(400))
    assert "RustySynth failed" in str(rustysynth_fault(tmp_path / "junk.sf2"))


def test_rustysynth_plays_drums_velocities_and_the_release(tmp_path):
    """Drums (channel 10) sound, a louder velocity plays louder, and the release after the last
    note-off rings out instead of being cut where the MIDI ends."""
    pm = pretty_midi.PrettyMIDI()
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes += [
        pretty_midi.Note(velocity=100, pitch=38, start=0.25 * i, end=0.25 * i + 0.1) for i in range(4)
    ]
    piano = pretty_midi.Instrument(program=0)
    piano.notes += [
        pretty_midi.Note(velocity=v, pitch=60, start=s, end=s + 0.5) for v, s in ((40, 1.0), (120, 2.0))
    ]
    pm.instruments += [drums, piano]
    pm.write(str(tmp_path / "mix.mid"))
    wave = render_midi(tmp_path / "mix.mid", RATE, engine="rustysynth", normalize=False)
    assert len(wave) == int(np.ceil((2.5 + TAIL_SECONDS) * RATE))

    def peak(t0: float, t1: float) -> float:
        return float(np.abs(wave[int(t0 * RATE) : int(t1 * RATE)]).max())

    assert peak(0.0, 0.9) > 0.01  # the drums
    assert peak(2.0, 2.5) > 2 * peak(1.0, 1.5)  # velocity 120 against 40
    assert peak(2.55, 2.7) > 1e-3  # the piano's release after the last note-off
