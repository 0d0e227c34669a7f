"""Audio files in and out: mono float32 in [-1, 1] at a requested rate, with clear refusals.

Every failure to use a file is an ``AudioReadError`` whose ``reason`` is one line for a build
manifest ("not an audio file ...", "silent ...", "contains NaN or infinite samples" ...).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from musgen.errors import MusgenError, first_line

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3")
MIN_RATE, MAX_RATE = 1000, 384_000
MAX_CHANNELS = 64
SILENCE_PEAK = 1e-4  # -80 dBFS: nothing a listener (or a model) can use


class AudioReadError(MusgenError):
    """An audio file that cannot be used; ``reason`` is one line for the build manifest."""

    def about(self, what: str) -> MusgenError:
        """The same error naming the file for a user: ``--prime x.wav: not an audio file (...)``."""
        return MusgenError(f"{what}: {self.reason}")

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_rate(sample_rate: int, what: str = "sample rate") -> int:
    rate = int(sample_rate)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise MusgenError(f"{what} {sample_rate} Hz is outside {MIN_RATE}..{MAX_RATE} Hz")
    return rate


def read_audio(path: Path | str, sample_rate: int, *, max_seconds: float = 0.0) -> np.ndarray:
    """Read any file libsndfile reads as float32 mono in [-1, 1] at ``sample_rate``.

    Channels are averaged; ``max_seconds`` > 0 reads only the beginning (cheap on long files).
    """
    target = check_rate(sample_rate, "target sample rate")
    path = Path(path)
    name = os.fsencode(path)  # bytes: soundfile cannot encode a str file name that is not UTF-8
    try:
        if path.stat().st_size == 0:
            raise AudioReadError("empty file")
        info = sf.info(name)
    except AudioReadError:
        raise
    except OSError as e:
        raise AudioReadError(f"cannot read: {e.strerror or e}") from None
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError on junk
        raise AudioReadError(f"not an audio file ({_soundfile_reason(e)})") from None
    if not MIN_RATE <= info.samplerate <= MAX_RATE:
        raise AudioReadError(f"absurd sample rate {info.samplerate} Hz (outside {MIN_RATE}..{MAX_RATE})")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise AudioReadError(f"{info.channels} channels (at most {MAX_CHANNELS})")
    frames = int(max_seconds * info.samplerate) if max_seconds > 0 else -1
    try:
        data, rate = sf.read(name, frames=frames, dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioReadError(f"cannot decode audio ({_soundfile_reason(e)})") from None
    if data.shape[0] == 0:
        raise AudioReadError("no audio frames")
    if not np.isfinite(data).all():
        raise AudioReadError("contains NaN or infinite samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    peak = float(np.abs(mono).max())
    if peak < SILENCE_PEAK:
        raise AudioReadError(f"silent (peak {_dbfs(peak):.0f} dBFS < {_dbfs(SILENCE_PEAK):.0f} dBFS)")
    if rate != target:
        mono = soxr.resample(mono, rate, target)
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)


def write_audio(path: Path | str, wave: np.ndarray, sample_rate: int) -> Path:
    """Write mono (or (frames, channels)) audio; the format follows the suffix (WAV 16-bit if none).

    Written to a temporary name first, so a crash never leaves a truncated file under ``path``.
    """
    path = Path(path)
    fmt, subtype = audio_format(path)
    data = np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0)  # PCM would wrap around, not clip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        sf.write(str(tmp), data, check_rate(sample_rate), format=fmt, subtype=subtype)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def audio_format(path: Path | str) -> tuple[str, str | None]:
    """(soundfile format, subtype) that ``write_audio`` uses for a file name; an error for an unknown suffix."""
    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = {"": "WAV", "aif": "AIFF", "oga": "OGG"}.get(suffix, suffix.upper())
    if fmt not in sf.available_formats():
        raise MusgenError(f"cannot write audio as .{suffix}: use .wav, .flac or .ogg")
    return fmt, ("PCM_16" if fmt in ("WAV", "AIFF", "FLAC") else None)


def rms_dbfs(wave: np.ndarray) -> float:
    """RMS level in dB relative to a full-scale square wave (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if len(wave) else 0.0
    return _dbfs(rms)


def normalize_loudness(wave: np.ndarray, target_dbfs: float = -20.0, peak: float = 0.99) -> np.ndarray:
    """Scale to ``target_dbfs`` RMS, or less where that would push a sample above ``peak``.

    A pure gain (no limiter, no clipping), so the waveform's shape is kept exactly.
    """
    x = np.asarray(wave, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    if rms == 0.0:
        return x.copy()
    gain = min(10.0 ** (target_dbfs / 20.0) / rms, peak / float(np.abs(x).max()))
    return (x * np.float32(gain)).astype(np.float32, copy=False)


def _dbfs(amplitude: float) -> float:
    return 20.0 * np.log10(amplitude) if amplitude > 0 else float("-inf")


def _soundfile_reason(e: Exception) -> str:
    text = str(e).strip()
    if text.startswith("Error opening ") and "': " in text:  # libsndfile repeats the path (str or bytes)
        text = text.split("': ", 1)[1]
    return first_line(text) if text else type(e).__name__
