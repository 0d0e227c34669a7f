"""MIDI -> audio with a General MIDI soundfont, else a built-in synthesizer.

``--engine auto`` takes the first that can run: the FluidSynth program with a soundfont, else
RustySynth (a SoundFont synthesizer inside the ``midirenderer`` wheel, a dependency: no program to
install) with the same soundfont when a two-note probe shows that it works and plays in tune, else
the built-in additive synthesizer. The soundfont is one on disk ($MUSGEN_SOUNDFONT, a system one or
the TimGM6mb.sf2 that pretty_midi ships), never a download. Every engine gives float32 mono of the
same length for the same piece: the MIDI's last note-off plus ``TAIL_SECONDS`` of release, so audio
and MIDI stay aligned whichever engine ran.
"""

from __future__ import annotations

import io
import logging
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import soundfile
import soxr
import symusic

from musgen.errors import MusgenError, first_line

from .audio_io import SILENCE_PEAK, AudioReadError, check_rate, normalize_loudness, read_audio
from .tokenizers import load_score

log = logging.getLogger(__name__)

ENGINES = ("auto", "fluidsynth", "rustysynth", "synth")
TAIL_SECONDS = 1.0  # release after the last note-off
# Soundfont sample interpolation (FluidSynth's, RustySynth's) is not band-limited: at a 16 kHz output
# rate high harmonics alias back into the band. Render at >= 32 kHz and let soxr low-pass and resample.
FLUIDSYNTH_MIN_RATE = 32_000
SYSTEM_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/local/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
)
SOUNDFONT_DIRS = ("/usr/share/soundfonts", "/usr/share/sounds/sf2", "/usr/local/share/soundfonts")


class RenderError(MusgenError):
    """A MIDI file that cannot be rendered; ``reason`` is one line for the build manifest."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def find_soundfont(explicit: Path | str | None = None) -> Path | None:
    """The soundfont to render with: ``explicit``, else $MUSGEN_SOUNDFONT, else a system GM
    soundfont, else the small TimGM6mb.sf2 shipped inside pretty_midi; None if there is none."""
    for given, what in ((explicit, "soundfont"), (os.environ.get("MUSGEN_SOUNDFONT"), "MUSGEN_SOUNDFONT")):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise MusgenError(f"{what} {path} is not a file")
            return path.resolve()
    for name in SYSTEM_SOUNDFONTS:
        if Path(name).is_file():
            return Path(name)
    for folder in SOUNDFONT_DIRS:
        found = sorted(Path(folder).glob("*.sf2")) if Path(folder).is_dir() else []
        if found:
            return found[0]
    spec = find_spec("pretty_midi")  # without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / "TimGM6mb.sf2").is_file():
            return Path(folder) / "TimGM6mb.sf2"
    return None


def resolve_engine(engine: str = "auto", soundfont: Path | str | None = None) -> tuple[str, Path | None]:
    """(engine, soundfont) for a requested engine: ("fluidsynth", sf2), ("rustysynth", sf2) or
    ("synth", None); ``auto`` takes the first that can run. Logs the choice once per process;
    errors say what is missing."""
    name, sf2, why = _choose_engine(engine, soundfont)
    _say_once(f"rendering with {ENGINE_NAMES[name]}" + (f" and {sf2}" if sf2 else "") + why)
    return name, sf2


ENGINE_NAMES = {
    "fluidsynth": "fluidsynth",
    "rustysynth": "RustySynth (midirenderer)",
    "synth": "the built-in synthesizer",
}


def _choose_engine(engine: str, soundfont: Path | str | None) -> tuple[str, Path | None, str]:
    """(engine, soundfont, why auto passed over the engines before it)."""
    if engine not in ENGINES:
        raise MusgenError(f"unknown render engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "synth":
        return "synth", None, ""
    binary, sf2 = shutil.which("fluidsynth"), find_soundfont(soundfont)
    if engine == "fluidsynth":
        if binary is None:
            raise MusgenError(
                "the fluidsynth program is not installed (apt-get install fluidsynth); "
                "or render with --engine rustysynth or --engine synth"
            )
        return "fluidsynth", _require_soundfont(sf2), ""
    if engine == "rustysynth":
        sf2 = _require_soundfont(sf2)
        fault = rustysynth_fault(sf2)
        if fault:
            raise MusgenError(f"{fault}; render with --engine fluidsynth or --engine synth")
        return "rustysynth", sf2, ""
    if binary and sf2:
        return "fluidsynth", sf2, ""
    fault = rustysynth_fault(sf2) if sf2 else "no soundfont found"
    if not fault:
        return "rustysynth", sf2, " (no fluidsynth program)"
    return "synth", None, f" (no fluidsynth program; {fault})"


def _require_soundfont(sf2: Path | None) -> Path:
    if sf2 is None:
        raise MusgenError("no soundfont found: give --soundfont FILE.sf2 or set MUSGEN_SOUNDFONT")
    return sf2


@cache
def _say_once(message: str) -> None:
    """Logs which engine renders, once per process (a data build renders thousands of files)."""
    log.info(message)


@cache
def rustysynth_fault(soundfont: Path) -> str | None:
    """Why RustySynth cannot render with ``soundfont`` here, or None when it can: tried on two piano
    notes, whose pitch must come out right (a soundfont it cannot read, midirenderer not installed)."""
    if find_spec("midirenderer") is None:
        return "midirenderer (RustySynth) is not installed (pip install midirenderer)"
    rate = 16000
    for pitch in (60, 69):
        score = symusic.Score(480)
        track = symusic.Track("probe", 0, False)
        track.notes.append(symusic.Note(0, 960, pitch, 100))
        score.tracks.append(track)
        try:
            audio = _rustysynth(score.to("second"), rate, soundfont)
        except RenderError as e:
            return e.reason
        if not plays_pitch(audio, rate, pitch):
            return f"RustySynth plays {soundfont.name} out of tune"
    return None


def plays_pitch(wave: np.ndarray, rate: int, pitch: int) -> bool:
    """Whether the strongest frequency of ``wave``'s first 0.1-0.6 s is a harmonic (1-6) of
    ``pitch``, within half a semitone."""
    frame = wave[rate // 10 : rate // 10 + rate // 2].astype(np.float64)
    if len(frame) < rate // 4 or not np.isfinite(frame).all() or np.abs(frame).max() < SILENCE_PEAK:
        return False
    spectrum = np.abs(np.fft.rfft(frame * np.hanning(len(frame)), n=4 * len(frame)))
    peak = float(np.fft.rfftfreq(4 * len(frame), 1 / rate)[spectrum.argmax()])
    harmonics = 440.0 * 2.0 ** ((pitch - 69) / 12.0) * np.arange(1, 7)
    return peak > 0 and float(np.abs(12 * np.log2(peak / harmonics)).min()) < 0.5


def render_midi(
    midi_path: Path | str,
    sample_rate: int = 16000,
    *,
    soundfont: Path | str | None = None,
    engine: str = "auto",
    program: int | None = None,
    normalize: bool = True,
    max_seconds: float = 0.0,
) -> np.ndarray:
    """Render a MIDI file to float32 mono; ``program`` (0-127) replaces every non-drum instrument.

    The result lasts the last note-off plus ``TAIL_SECONDS`` (cut at ``max_seconds`` when > 0) and
    is normalised to -20 dBFS RMS when ``normalize``. A bad MIDI raises a ``MusgenError``.
    """
    rate = check_rate(sample_rate)
    if program is not None and not 0 <= int(program) <= 127:
        raise MusgenError(f"GM program must be in 0..127, got {program}")
    if not (math.isfinite(max_seconds) and max_seconds >= 0):
        raise MusgenError(f"--max-seconds must be >= 0 (0 = the whole piece), got {max_seconds}")
    name, sf2 = resolve_engine(engine, soundfont)
    midi_path = Path(midi_path)
    if not midi_path.is_file():
        raise MusgenError(f"MIDI file {midi_path} does not exist")
    score = load_score(midi_path)  # MidiReadError (a MusgenError with .reason) on junk
    changed = program is not None  # fluidsynth then plays the changed score, not the file
    if program is not None:
        for track in score.tracks:
            if not track.is_drum:
                track.program = int(program)
    seconds = score.to("second")
    end = _note_end(seconds)
    n = int(math.ceil((end + TAIL_SECONDS) * rate))
    if 0 < max_seconds < end:  # render only the notes that start in the part kept
        seconds = seconds.clip(0.0, float(max_seconds), clip_end=False)
        score, changed = seconds.to("tick"), True
    if max_seconds > 0:
        n = min(n, int(max_seconds * rate))
    if name == "fluidsynth":
        assert sf2 is not None  # resolve_engine pairs fluidsynth with a soundfont
        wave = _fluidsynth(score if changed else midi_path, rate, sf2, n / rate)
    elif name == "rustysynth":
        assert sf2 is not None  # resolve_engine pairs rustysynth with a soundfont
        wave = _rustysynth(seconds, rate, sf2)
    else:
        wave = synthesize(seconds, rate, n)
    wave = np.pad(wave[:n], (0, max(0, n - len(wave))))
    if float(np.abs(wave).max(initial=0.0)) < SILENCE_PEAK:
        raise RenderError(f"rendered audio is silent ({name})")
    return normalize_loudness(wave) if normalize else wave.astype(np.float32, copy=False)


def _note_end(score: symusic.Score) -> float:
    """The last note-off in seconds of a score in seconds."""
    ends = [t.notes.numpy() for t in score.tracks if len(t.notes)]
    return max((float((a["time"] + a["duration"]).max()) for a in ends), default=0.0)


def _fluidsynth(midi: Path | symusic.Score, rate: int, soundfont: Path, end: float) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="musgen-render-") as tmp:
        if isinstance(midi, symusic.Score):
            path = Path(tmp) / "in.mid"
            midi.dump_midi(str(path))
        else:
            path = midi
        out = Path(tmp) / "out.wav"
        # options before file names; reverb/chorus off (dry, comparable renders); float output never
        # clips; dynamic sample loading reads only the samples the piece uses from a large soundfont
        cmd = [
            "fluidsynth",
            "-ni",
            "-q",
            "-R",
            "0",
            "-C",
            "0",
            "-g",
            "0.5",
            "-o",
            "synth.dynamic-sample-loading=1",
            "-r",
            str(max(rate, FLUIDSYNTH_MIN_RATE)),
            "-O",
            "float",
            "-F",
            str(out),
            str(soundfont),
            str(path),
        ]
        timeout = 30.0 + end  # it renders ~100x faster than real time
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise RenderError(f"fluidsynth took longer than {timeout:.0f} s") from None
        if proc.returncode != 0 or not out.is_file():
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            raise RenderError(
                f"fluidsynth failed (exit {proc.returncode}): {lines[0][:200] if lines else 'no output'}"
            )
        try:
            return read_audio(out, rate)
        except AudioReadError as e:
            raise RenderError(f"fluidsynth output unusable: {e.reason}") from None


def _rustysynth(score: symusic.Score, rate: int, soundfont: Path) -> np.ndarray:
    """RustySynth's render of a score in seconds (mono), resampled from its 48 kHz like FluidSynth's.

    It plays the MIDI up to its last event, so an inaudible controller (CC 110, undefined in GM) at
    the last note-off plus ``TAIL_SECONDS`` lets the release ring out as the other engines' does."""
    import midirenderer  # a dependency; imported here so that rustysynth_fault can report it missing

    score = score.copy()
    track = next(t for t in score.tracks if len(t.notes))  # render_midi's score has notes
    track.controls.append(symusic.ControlChange(_note_end(score) + TAIL_SECONDS, 110, 0, ttype="second"))
    try:
        wav = midirenderer.render_wave_from(_soundfont_bytes(str(soundfont)), score.to("tick").dumps_midi())
        audio, synth_rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    except Exception as e:  # the binding raises ValueError/RuntimeError on what it cannot play
        raise RenderError(f"RustySynth failed: {first_line(e)}") from None
    mono = audio.mean(axis=1, dtype=np.float32)
    return soxr.resample(mono, synth_rate, rate) if synth_rate != rate else mono


@lru_cache(maxsize=1)
def _soundfont_bytes(soundfont: str) -> bytes:
    """The soundfont file, read once per process (midirenderer takes it as bytes on each render)."""
    return Path(soundfont).read_bytes()


# ----------------------------------------------------------------------------- built-in synthesizer


@dataclass(frozen=True)
class _Timbre:
    harmonics: tuple[float, ...]  # amplitude of partial k+1
    attack: float  # seconds
    decay: float  # time constant while held, seconds; 0 = sustained
    release: float  # seconds after note-off to about -60 dB


_DEFAULT_TIMBRE = _Timbre((1.0, 0.5, 0.3, 0.2), 0.01, 0.0, 0.15)
# by GM family (program // 8): a rough caricature of each, enough to make programs sound different
_TIMBRES = {
    0: _Timbre((1.0, 0.5, 0.3, 0.2, 0.12, 0.08), 0.005, 1.2, 0.15),  # piano
    1: _Timbre((1.0, 0.3, 0.1), 0.002, 0.5, 0.2),  # chromatic percussion
    2: _Timbre((1.0, 0.7, 0.5, 0.35, 0.25, 0.2, 0.15), 0.015, 0.0, 0.08),  # organ
    3: _Timbre((1.0, 0.6, 0.35, 0.2, 0.1), 0.003, 0.6, 0.1),  # guitar
    4: _Timbre((1.0, 0.5, 0.2), 0.005, 1.5, 0.1),  # bass
    5: _Timbre((1.0, 0.6, 0.45, 0.3, 0.2, 0.15, 0.1), 0.08, 0.0, 0.25),  # strings
    6: _Timbre((1.0, 0.5, 0.3, 0.15, 0.08), 0.1, 0.0, 0.3),  # ensemble, choir
    7: _Timbre((1.0, 0.8, 0.6, 0.45, 0.3, 0.2, 0.15), 0.04, 0.0, 0.12),  # brass
    8: _Timbre((1.0, 0.15, 0.6, 0.1, 0.35, 0.08, 0.2), 0.03, 0.0, 0.1),  # reed (odd partials)
    9: _Timbre((1.0, 0.25, 0.08), 0.04, 0.0, 0.1),  # pipe
}
_DRUM_SECONDS = 0.08


def synthesize(score: symusic.Score, sample_rate: int, n_samples: int) -> np.ndarray:
    """Additive synthesis of a score (in seconds) into ``n_samples`` of float32 mono.

    Each note is a few harmonics (sines by the Chebyshev recurrence: one sin and one cos per note)
    under an attack / decay / release envelope; velocity sets the amplitude. Drum notes are short
    decaying noise bursts, seeded by their position so that renders are reproducible. Four loud
    voices stay about within [-1, 1].
    """
    out = np.zeros(n_samples, dtype=np.float64)
    nyquist = 0.45 * sample_rate
    for track in score.tracks:
        if not len(track.notes):
            continue
        a = track.notes.numpy()
        timbre = _TIMBRES.get(int(track.program) // 8, _DEFAULT_TIMBRE)
        for time, dur, pitch, vel in zip(
            a["time"], a["duration"], a["pitch"].astype(np.int64), a["velocity"].astype(np.int64), strict=True
        ):
            start = int(round(float(time) * sample_rate))
            if start >= n_samples or vel <= 0:
                continue
            amp = 0.25 * (vel / 127.0) ** 1.6
            if track.is_drum:
                note = _drum(sample_rate, amp, (int(pitch), start))
            else:
                note = _tone(
                    440.0 * 2.0 ** ((pitch - 69) / 12.0), float(dur), amp, timbre, sample_rate, nyquist
                )
            stop = min(n_samples, start + len(note))
            out[start:stop] += note[: stop - start]
    return out.astype(np.float32)


def _tone(f0: float, dur: float, amp: float, timbre: _Timbre, sr: int, nyquist: float) -> np.ndarray:
    held = max(1, int(dur * sr))
    t = np.arange(held + int(timbre.release * sr)) / sr
    theta = 2.0 * np.pi * f0 * t
    # sin(k x) for k = 1.. by sin((k+1)x) = 2 cos(x) sin(kx) - sin((k-1)x)
    two_cos, prev, cur = 2.0 * np.cos(theta), np.zeros_like(theta), np.sin(theta)
    wave = np.zeros_like(theta)
    for k, h in enumerate(timbre.harmonics, start=1):
        if k * f0 >= nyquist:
            break
        wave += h * cur
        prev, cur = cur, two_cos * cur - prev
    env = np.minimum(1.0, t / timbre.attack)
    if timbre.decay > 0:
        env *= np.exp(-t / timbre.decay)
    env[held:] = env[held - 1] * np.exp(-6.9 * (t[held:] - t[held - 1]) / timbre.release)
    return amp * env * wave / sum(timbre.harmonics)


def _drum(sr: int, amp: float, key: tuple[int, int]) -> np.ndarray:
    t = np.arange(int(_DRUM_SECONDS * sr)) / sr
    noise = np.random.default_rng(key).standard_normal(len(t))
    return 0.3 * amp * noise * np.exp(-t / 0.015)
