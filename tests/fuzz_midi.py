"""A seeded generator of hostile MIDI files (and hostile folder entries) for the fuzz tests.

Every file is written from raw bytes by ``smf`` so that any malformation can be produced: truncated
chunks, lying chunk lengths, zero or thousands of tracks, enormous delta times and tempos, notes of
zero length, note-offs without note-ons, data bytes above 127, odd divisions (0, SMPTE), meta events
that claim gigabytes. ``fuzz_folder(root, n, seed)`` fills a folder with ``n`` entries drawn from
``KINDS`` and returns what it wrote, so a failure names the seed and the kind that broke.

Kinds are grouped by what a build must do with them:

* ``VALID``: well-formed pieces (some with legal oddities); a build must tokenize every one.
* ``INVALID``: nothing usable inside; a build must skip every one with a reason.
* the rest may go either way (a sane reader may salvage them); they only must not crash or hang.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TPQ = 480


def vlq(n: int) -> bytes:
    """MIDI variable-length quantity (at most 4 bytes: n < 2**28)."""
    n = max(0, min(int(n), 0x0FFFFFFF))
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def chunk(tag: bytes, body: bytes, length: int | None = None) -> bytes:
    return tag + struct.pack(">I", len(body) if length is None else length) + body


def track(events: list[tuple[int, bytes]], end: bool = True) -> bytes:
    """An MTrk chunk from (delta ticks, event bytes); End of Track appended unless ``end`` is False."""
    body = b"".join(vlq(d) + e for d, e in events)
    if end:
        body += b"\x00\xff\x2f\x00"
    return chunk(b"MTrk", body)


def header(fmt: int, ntracks: int, division: int | bytes) -> bytes:
    div = division if isinstance(division, bytes) else struct.pack(">H", division & 0xFFFF)
    return chunk(b"MThd", struct.pack(">HH", fmt, ntracks & 0xFFFF) + div)


def smf(tracks: list[bytes], fmt: int = 1, division: int | bytes = TPQ, ntracks: int | None = None) -> bytes:
    return header(fmt, len(tracks) if ntracks is None else ntracks, division) + b"".join(tracks)


def tempo(us_per_quarter: int) -> bytes:
    return b"\xff\x51\x03" + struct.pack(">I", us_per_quarter & 0xFFFFFF)[1:]


def note_on(pitch: int, velocity: int, channel: int = 0) -> bytes:
    return bytes([0x90 | channel, pitch & 0xFF, velocity & 0xFF])


def note_off(pitch: int, channel: int = 0) -> bytes:
    return bytes([0x80 | channel, pitch & 0xFF, 64])


def conductor(us_per_quarter: int = 500_000) -> bytes:
    return track([(0, tempo(us_per_quarter)), (0, b"\xff\x58\x04\x04\x02\x18\x08")])


def melody_events(
    rng: random.Random, n: int, step: int = TPQ // 2, channel: int = 0
) -> list[tuple[int, bytes]]:
    """``n`` consecutive notes of ``step`` ticks in a singable range."""
    events: list[tuple[int, bytes]] = []
    for _ in range(n):
        pitch = rng.randint(55, 79)
        events += [(0, note_on(pitch, rng.randint(40, 110), channel)), (step, note_off(pitch, channel))]
    return events


def valid_piece(rng: random.Random, notes: int | None = None) -> bytes:
    """A plain, well-formed two-track piece (conductor + melody)."""
    return smf(
        [
            conductor(rng.choice([400_000, 500_000, 600_000])),
            track(melody_events(rng, notes or rng.randint(12, 40))),
        ]
    )


# ----------------------------------------------------------------------------- kinds: valid


def _valid(rng: random.Random) -> bytes:
    return valid_piece(rng)


def _valid_format0(rng: random.Random) -> bytes:
    return smf([track([(0, tempo(500_000)), *melody_events(rng, rng.randint(12, 30))])], fmt=0)


def _valid_running_status(rng: random.Random) -> bytes:
    """Note-ons with running status and velocity-0 note-offs: legal and common in the wild."""
    body: list[tuple[int, bytes]] = [(0, b"\x90" + bytes([60, 80]))]
    body.append((TPQ // 2, bytes([60, 0])))
    for _ in range(rng.randint(12, 30)):
        p = rng.randint(50, 80)
        body += [(0, bytes([p, 90])), (TPQ // 4, bytes([p, 0]))]
    return smf([conductor(), track(body)])


def _valid_with_odd_notes(rng: random.Random) -> bytes:
    """A good melody plus zero-length notes, note-offs without note-ons and a stray note-off first."""
    events = [(0, note_off(61)), (0, note_on(62, 80)), (0, note_off(62))]  # zero length
    events += melody_events(rng, rng.randint(12, 30))
    events += [(TPQ, note_off(70)), (0, note_off(71, channel=3))]  # never started
    return smf([conductor(), track(events)])


def _valid_many_channels(rng: random.Random) -> bytes:
    tracks = [conductor()] + [track(melody_events(rng, 10, channel=c)) for c in (0, 1, 2, 9)]
    return smf(tracks)


def _valid_extreme_pitches(rng: random.Random) -> bytes:
    """Pitches 0 and 127 (legal, outside the tokenizer's range) next to normal ones."""
    events = [(0, note_on(0, 1)), (TPQ, note_off(0)), (0, note_on(127, 127)), (TPQ, note_off(127))]
    return smf([conductor(), track(events + melody_events(rng, 12))])


def _valid_low_tpq(rng: random.Random) -> bytes:
    return smf([conductor(), track(melody_events(rng, 16, step=1))], division=2)


# ----------------------------------------------------------------------------- kinds: invalid


def _empty(rng: random.Random) -> bytes:  # noqa: ARG001
    return b""


def _random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(1, 4000))


def _random_after_mthd(rng: random.Random) -> bytes:
    return b"MThd" + rng.randbytes(rng.randint(0, 2000))


def _header_only(rng: random.Random) -> bytes:
    return header(1, rng.randint(0, 5), TPQ)


def _zero_tracks(rng: random.Random) -> bytes:  # noqa: ARG001
    return smf([], ntracks=0)


def _garbage_tracks(rng: random.Random) -> bytes:
    """A valid header, then MTrk chunks full of random bytes."""
    tracks = [chunk(b"MTrk", rng.randbytes(rng.randint(0, 500))) for _ in range(rng.randint(1, 6))]
    return smf(tracks)


def _no_notes(rng: random.Random) -> bytes:
    return smf(
        [conductor(), track([(TPQ, b"\xff\x01\x05hello"), (TPQ * rng.randint(1, 64), b"\xb0\x07\x64")])]
    )


def _only_note_offs(rng: random.Random) -> bytes:
    return smf([conductor(), track([(TPQ, note_off(rng.randint(0, 127))) for _ in range(50)])])


def _text_named_mid(rng: random.Random) -> bytes:
    return ("X:1\nT:not midi\nK:C\n" + "CDEF" * rng.randint(1, 50)).encode()


def _too_few_notes(rng: random.Random) -> bytes:
    return valid_piece(rng, notes=rng.randint(1, 3))


def _truncated_header(rng: random.Random) -> bytes:
    return valid_piece(rng)[: rng.randint(1, 13)]


# ----------------------------------------------------------------------------- kinds: either


def _truncated(rng: random.Random) -> bytes:
    data = valid_piece(rng)
    return data[: rng.randint(14, len(data) - 1)]


def _bit_flips(rng: random.Random) -> bytes:
    data = bytearray(valid_piece(rng))
    for _ in range(rng.randint(1, 20)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def _byte_splice(rng: random.Random) -> bytes:
    data = bytearray(valid_piece(rng))
    at = rng.randrange(14, len(data))
    data[at:at] = rng.randbytes(rng.randint(1, 64))
    return bytes(data)


def _thousands_of_tracks(rng: random.Random) -> bytes:
    n = rng.randint(1000, 3000)
    busy = rng.random() < 0.5  # every track with a note, or all but one empty
    tracks = [
        track(
            [(0, note_on(60 + i % 12, 80, i % 16)), (TPQ, note_off(60 + i % 12, i % 16))]
            if busy or i == 0
            else []
        )
        for i in range(n)
    ]
    return smf([conductor(), *tracks])


def _header_claims_many_tracks(rng: random.Random) -> bytes:
    return smf([conductor(), track(melody_events(rng, 12))], ntracks=65535)


def _enormous_delta(rng: random.Random) -> bytes:
    """Notes after the largest delta MIDI can encode (2**28 - 1 ticks), once or many times over."""
    events = melody_events(rng, 10)
    for _ in range(rng.choice([1, 2, 20])):
        events += [(0x0FFFFFFF, note_on(64, 80)), (TPQ, note_off(64))]
    return smf([conductor(), track(events)], division=rng.choice([1, 24, TPQ, 0x7FFF]))


def _enormous_note(rng: random.Random) -> bytes:
    events = melody_events(rng, 10) + [(0, note_on(60, 90)), (0x0FFFFFFF, note_off(60))]
    return smf([conductor(), track(events)], division=rng.choice([1, TPQ]))


def _extreme_tempo(rng: random.Random) -> bytes:
    us = rng.choice([0, 1, 2, 0xFFFFFF])
    return smf([conductor(us), track(melody_events(rng, 16))])


def _tempo_storm(rng: random.Random) -> bytes:
    """Thousands of tempo changes, some zero."""
    events = [(1, tempo(rng.choice([0, 1, 500_000, 0xFFFFFF]))) for _ in range(5000)]
    return smf([track(events), track(melody_events(rng, 16))])


def _data_bytes_out_of_range(rng: random.Random) -> bytes:
    """Note events whose pitch/velocity bytes have the high bit set (illegal: > 127)."""
    events = melody_events(rng, 12)
    for _ in range(10):
        events += [(0, bytes([0x90, rng.randint(128, 255), rng.randint(128, 255)])), (TPQ, note_off(60))]
    return smf([conductor(), track(events)])


def _division(rng: random.Random) -> bytes:
    """Division 0, 1 or SMPTE (negative frames per second)."""
    div = rng.choice([0, 1, b"\xe7\x28", b"\xe2\x50", b"\x80\x00"])
    return smf([conductor(), track(melody_events(rng, 16))], division=div)


def _lying_chunk_length(rng: random.Random) -> bytes:
    good = track(melody_events(rng, 16))
    claim = rng.choice([0, 3, len(good) * 10, 0xFFFFFFFF])
    return header(1, 1, TPQ) + b"MTrk" + struct.pack(">I", claim) + good[8:]


def _huge_meta(rng: random.Random) -> bytes:
    """A meta event and a sysex whose lengths claim up to 256 MB."""
    events = melody_events(rng, 12) + [
        (0, b"\xff\x01" + vlq(0x0FFFFFFF) + b"abc"),
        (0, b"\xf0" + vlq(0x0FFFFFF) + b"\x7e"),
    ]
    return smf([conductor(), track(events, end=False)])


def _no_end_of_track(rng: random.Random) -> bytes:
    return smf([conductor(), track(melody_events(rng, 16), end=False)])


def _unknown_chunks(rng: random.Random) -> bytes:
    alien = chunk(b"XFIH", rng.randbytes(rng.randint(0, 100)))
    return smf([alien, conductor(), alien, track(melody_events(rng, 16))])


def _format2(rng: random.Random) -> bytes:
    return smf([track(melody_events(rng, 12)), track(melody_events(rng, 12))], fmt=rng.choice([2, 3, 255]))


def _huge_chord(rng: random.Random) -> bytes:
    """All 128 pitches on all 16 channels at once, many times."""
    events: list[tuple[int, bytes]] = []
    for _ in range(rng.randint(1, 8)):
        events += [(0, note_on(p, 100, c)) for c in range(16) for p in range(128)]
        events += [
            (TPQ if i == 0 else 0, note_off(p, c))
            for i, (c, p) in enumerate((c, p) for c in range(16) for p in range(128))
        ]
    return smf([conductor(), track(events)])


def _overlapping_same_pitch(rng: random.Random) -> bytes:
    """The same pitch struck again and again before it is released (negative apparent lengths)."""
    events = [(0, note_on(60, 80)) for _ in range(50)] + [(TPQ, note_off(60)) for _ in range(60)]
    return smf([conductor(), track(events + melody_events(rng, 10))])


def _deep_random_events(rng: random.Random) -> bytes:
    """Random status bytes with random data: channel messages, system messages, metas."""
    events = []
    for _ in range(rng.randint(10, 400)):
        status = rng.choice([0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0]) | rng.randrange(16)
        size = 1 if status >> 4 in (0xC, 0xD) else 2
        events.append(
            (
                rng.choice([0, 1, TPQ, 0x0FFFFFFF]) if rng.random() < 0.05 else rng.randint(0, TPQ),
                bytes([status]) + bytes(rng.randrange(128) for _ in range(size)),
            )
        )
    return smf([conductor(), track(events)])


Writer = Callable[[random.Random], bytes]
VALID: dict[str, Writer] = {
    "valid": _valid,
    "valid_format0": _valid_format0,
    "valid_running_status": _valid_running_status,
    "valid_with_odd_notes": _valid_with_odd_notes,
    "valid_many_channels": _valid_many_channels,
    "valid_extreme_pitches": _valid_extreme_pitches,
    "valid_low_tpq": _valid_low_tpq,
}
INVALID: dict[str, Writer] = {
    "empty": _empty,
    "random_bytes": _random_bytes,
    "random_after_mthd": _random_after_mthd,
    "header_only": _header_only,
    "zero_tracks": _zero_tracks,
    "garbage_tracks": _garbage_tracks,
    "no_notes": _no_notes,
    "only_note_offs": _only_note_offs,
    "text_named_mid": _text_named_mid,
    "too_few_notes": _too_few_notes,
    "truncated_header": _truncated_header,
}
EITHER: dict[str, Writer] = {
    "truncated": _truncated,
    "bit_flips": _bit_flips,
    "byte_splice": _byte_splice,
    "thousands_of_tracks": _thousands_of_tracks,
    "header_claims_many_tracks": _header_claims_many_tracks,
    "enormous_delta": _enormous_delta,
    "enormous_note": _enormous_note,
    "extreme_tempo": _extreme_tempo,
    "tempo_storm": _tempo_storm,
    "data_bytes_out_of_range": _data_bytes_out_of_range,
    "division": _division,
    "lying_chunk_length": _lying_chunk_length,
    "huge_meta": _huge_meta,
    "no_end_of_track": _no_end_of_track,
    "unknown_chunks": _unknown_chunks,
    "format2": _format2,
    "huge_chord": _huge_chord,
    "overlapping_same_pitch": _overlapping_same_pitch,
    "deep_random_events": _deep_random_events,
}
KINDS: dict[str, Writer] = {**VALID, **INVALID, **EITHER}
# Folder entries that are not regular files: each must be listed as skipped (or, for the
# non-UTF-8 name, processed like any valid file).
ENTRY_KINDS = ("directory_named_mid", "symlink_loop", "broken_link", "fifo", "non_utf8_name", "unreadable")


@dataclass(frozen=True)
class Entry:
    rel: str  # path relative to the folder, as os.walk / the manifest spell it (surrogate-escaped)
    kind: str


def _write(path: Path | bytes, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def make_entry(root: Path, name: str, kind: str, rng: random.Random) -> Entry:
    """Write one entry of ``kind`` under ``root`` (a file ``name`` for file kinds)."""
    path = root / name
    if kind in KINDS:
        _write(path, KINDS[kind](rng))
    elif kind == "directory_named_mid":
        path.mkdir()
        _write(path / "inner.txt", b"a folder named like a MIDI file")
    elif kind == "symlink_loop":
        path.symlink_to(path.name)  # points at itself
    elif kind == "broken_link":
        path.symlink_to(f"missing_{name}")
    elif kind == "fifo":
        os.mkfifo(path)  # opening it for reading would block forever
    elif kind == "non_utf8_name":
        raw = os.fsencode(root) + b"/" + os.fsencode(Path(name).stem) + b"_\xff\xfe\xe9.mid"
        _write(raw, valid_piece(rng))
        return Entry(Path(os.fsdecode(raw)).relative_to(root).as_posix(), kind)
    elif kind == "unreadable":
        _write(path, valid_piece(rng))
        os.chmod(path, 0)
    else:
        raise ValueError(f"unknown fuzz kind {kind!r}")
    return Entry(name, kind)


def fuzz_folder(root: Path, n: int, seed: int, *, entries: bool = True) -> list[Entry]:
    """Fill ``root`` with ``n`` fuzzed entries (every kind at least once when ``n`` allows; about a
    quarter valid); returns them. Deterministic for a given (n, seed)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    kinds = list(KINDS) + (list(ENTRY_KINDS) if entries else [])
    plan = kinds[:n] + [
        rng.choice(list(VALID)) if rng.random() < 0.25 else rng.choice(kinds) for _ in range(n - len(kinds))
    ]
    out = []
    for i, kind in enumerate(plan):
        suffix = ".midi" if i % 7 == 3 else ".mid"
        out.append(make_entry(root, f"f{i:05d}_{kind}{suffix}", kind, random.Random(rng.getrandbits(64))))
    return out
