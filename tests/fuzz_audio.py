"""A seeded generator of hostile audio files for the ``musgen data build --audio-dir`` fuzz test.

Good files come from ``soundfile`` at odd rates, channel counts and sample formats; broken ones are
written from raw bytes (RIFF/WAVE headers that lie about rates, channels or sizes; float data holding
NaN and infinities; random bytes under audio names). ``fuzz_audio_folder(root, n, seed)`` fills a
folder and returns what it wrote. Kinds are grouped as in ``fuzz_midi``: ``VALID`` must be used,
``INVALID`` must be skipped with a reason, ``EITHER`` must only not crash or hang.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from fuzz_midi import Entry

SECONDS = 1.3  # above the default min_seconds (1 s) at every rate


def _tone(rng: random.Random, rate: int, seconds: float = SECONDS, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    waves = [0.3 * np.sin(2 * np.pi * rng.uniform(110, 880) * t) for _ in range(channels)]
    return np.stack(waves, axis=1).astype(np.float32) if channels > 1 else waves[0].astype(np.float32)


def _sf_bytes(data: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, data, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_header(rate: int, channels: int, bits: int, data_bytes: int, fmt_tag: int = 1) -> bytes:
    """A canonical 44-byte RIFF/WAVE header (PCM by default, 3 = IEEE float)."""
    block = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH",
        fmt_tag,
        channels & 0xFFFF,
        rate & 0xFFFFFFFF,
        (rate * block) & 0xFFFFFFFF,
        block & 0xFFFF,
        bits,
    )
    return (
        b"RIFF"
        + struct.pack("<I", (36 + data_bytes) & 0xFFFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes & 0xFFFFFFFF)
    )


# ----------------------------------------------------------------------------- valid


def _valid_16k(rng: random.Random) -> bytes:
    return _sf_bytes(_tone(rng, 16000), 16000)


def _valid_odd_rate(rng: random.Random) -> bytes:
    rate = rng.choice([8000, 11025, 22050, 44100, 48000, 96000, 7919])
    return _sf_bytes(_tone(rng, rate), rate)


def _valid_stereo(rng: random.Random) -> bytes:
    return _sf_bytes(_tone(rng, 44100, channels=2), 44100)


def _valid_many_channels(rng: random.Random) -> bytes:
    return _sf_bytes(_tone(rng, 16000, channels=rng.choice([3, 6, 8])), 16000)


def _valid_formats(rng: random.Random) -> bytes:
    fmt, subtype = rng.choice(
        [
            ("WAV", "PCM_U8"),
            ("WAV", "PCM_24"),
            ("WAV", "PCM_32"),
            ("WAV", "FLOAT"),
            ("WAV", "ULAW"),
            ("FLAC", "PCM_16"),
            ("AIFF", "PCM_16"),
            ("OGG", "VORBIS"),
        ]
    )
    return _sf_bytes(_tone(rng, 22050), 22050, fmt=fmt, subtype=subtype)


def _valid_over_full_scale(rng: random.Random) -> bytes:
    """Float samples far above 1.0: clipped, not refused."""
    return _sf_bytes(_tone(rng, 16000) * 40.0, 16000, subtype="FLOAT")


# ----------------------------------------------------------------------------- invalid


def _empty(rng: random.Random) -> bytes:  # noqa: ARG001
    return b""


def _random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(1, 6000))


def _midi_named_wav(rng: random.Random) -> bytes:
    from fuzz_midi import valid_piece

    return valid_piece(rng)


def _silence(rng: random.Random) -> bytes:
    return _sf_bytes(np.zeros(int(SECONDS * 16000), np.float32) + rng.choice([0.0, 1e-6]), 16000)


def _nan(rng: random.Random) -> bytes:
    wave = _tone(rng, 16000)
    wave[rng.randrange(len(wave))] = rng.choice([np.nan, np.inf, -np.inf])
    return _sf_bytes(wave, 16000, subtype=rng.choice(["FLOAT", "DOUBLE"]))


def _all_nan(rng: random.Random) -> bytes:  # noqa: ARG001
    return _sf_bytes(np.full(int(SECONDS * 16000), np.nan, np.float32), 16000, subtype="FLOAT")


def _too_short(rng: random.Random) -> bytes:
    return _sf_bytes(_tone(rng, 16000, seconds=rng.uniform(0.0005, 0.5)), 16000)


def _header_only(rng: random.Random) -> bytes:
    return wav_header(16000, 1, 16, rng.choice([0, 1000, 2**31]))


def _absurd_rate(rng: random.Random) -> bytes:
    rate = rng.choice([0, 1, 999, 400_000, 2**31 - 1])
    data = (_tone(rng, 16000) * 32767).astype("<i2").tobytes()
    return wav_header(rate, 1, 16, len(data)) + data


def _absurd_channels(rng: random.Random) -> bytes:
    channels = rng.choice([0, 65, 1000, 65535])
    data = rng.randbytes(4096)
    return wav_header(16000, channels, 16, len(data)) + data


def _bad_format_tag(rng: random.Random) -> bytes:
    data = rng.randbytes(4096)
    return (
        wav_header(16000, 1, rng.choice([0, 7, 13, 64]), len(data), fmt_tag=rng.choice([0, 0x55, 0xFFFF]))
        + data
    )


# ----------------------------------------------------------------------------- either


def _truncated(rng: random.Random) -> bytes:
    data = _sf_bytes(_tone(rng, 16000, seconds=2.5), 16000, fmt=rng.choice(["WAV", "FLAC"]))
    return data[: rng.randint(1, len(data) - 1)]


def _lying_size(rng: random.Random) -> bytes:
    """A header claiming up to 4 GB of samples over a little real data."""
    data = (_tone(rng, 16000) * 32767).astype("<i2").tobytes()
    return wav_header(16000, 1, 16, rng.choice([2**32 - 1, 2**31, len(data) * 1000])) + data


def _bit_flips(rng: random.Random) -> bytes:
    data = bytearray(_sf_bytes(_tone(rng, 16000), 16000, fmt=rng.choice(["WAV", "FLAC", "OGG"])))
    for _ in range(rng.randint(1, 30)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def _float_garbage(rng: random.Random) -> bytes:
    """IEEE-float WAV whose samples are random bit patterns (NaNs, infinities, denormals, 1e38)."""
    data = rng.randbytes(4 * int(SECONDS * 16000))
    return wav_header(16000, 1, 32, len(data), fmt_tag=3) + data


def _dc_offset(rng: random.Random) -> bytes:
    return _sf_bytes(np.full(int(SECONDS * 16000), rng.choice([0.5, -1.0, 1e-3]), np.float32), 16000)


Writer = Callable[[random.Random], bytes]
VALID: dict[str, Writer] = {
    "valid_16k": _valid_16k,
    "valid_odd_rate": _valid_odd_rate,
    "valid_stereo": _valid_stereo,
    "valid_many_channels": _valid_many_channels,
    "valid_formats": _valid_formats,
    "valid_over_full_scale": _valid_over_full_scale,
}
INVALID: dict[str, Writer] = {
    "empty": _empty,
    "random_bytes": _random_bytes,
    "midi_named_wav": _midi_named_wav,
    "silence": _silence,
    "nan": _nan,
    "all_nan": _all_nan,
    "too_short": _too_short,
    "header_only": _header_only,
    "absurd_rate": _absurd_rate,
    "absurd_channels": _absurd_channels,
    "bad_format_tag": _bad_format_tag,
}
EITHER: dict[str, Writer] = {
    "truncated": _truncated,
    "lying_size": _lying_size,
    "bit_flips": _bit_flips,
    "float_garbage": _float_garbage,
    "dc_offset": _dc_offset,
}
KINDS: dict[str, Writer] = {**VALID, **INVALID, **EITHER}


def _suffix(data: bytes) -> str:
    if data[:4] == b"fLaC":
        return ".flac"
    if data[:4] == b"OggS":
        return ".ogg"
    if data[:4] == b"FORM":
        return ".aiff"
    return ".wav"


def fuzz_audio_folder(root: Path, n: int, seed: int) -> list[Entry]:
    """Fill ``root`` with ``n`` fuzzed audio files (every kind once when ``n`` allows, then about a
    third valid), plus a folder named ``x.wav``, a FIFO and a non-UTF-8 name; returns them."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    kinds = list(KINDS)
    plan = kinds[:n] + [
        rng.choice(list(VALID)) if rng.random() < 0.33 else rng.choice(kinds) for _ in range(n - len(kinds))
    ]
    out = []
    for i, kind in enumerate(plan):
        data = KINDS[kind](random.Random(rng.getrandbits(64)))
        suffix = _suffix(data) if kind in VALID else rng.choice([".wav", ".wav", ".flac", ".mp3"])
        name = f"a{i:05d}_{kind}{suffix}"
        (root / name).write_bytes(data)
        out.append(Entry(name, kind))
    (root / "folder.wav").mkdir()
    out.append(Entry("folder.wav", "directory_named_wav"))
    os.mkfifo(root / "pipe.wav")
    out.append(Entry("pipe.wav", "fifo"))
    raw = os.fsencode(root) + b"/take_\xff\xfe.wav"
    with open(raw, "wb") as f:
        f.write(_valid_16k(rng))
    out.append(Entry(Path(os.fsdecode(raw)).relative_to(root).as_posix(), "non_utf8_name"))
    return out
