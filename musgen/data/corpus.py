"""Built-in corpora (music21's bundled scores, converted to MIDI once) and user MIDI folders.

The cache layout is ``<cache>/corpus/<name>/<rel>.mid`` with ``rel`` like ``bwv1.6`` (bach),
``Agnus`` (palestrina) or ``essenFolksong/altdeu10/X123`` (folk: one ABC file holds many tunes,
split at ``X:`` lines). ``all`` is the union: its root is ``<cache>/corpus`` and its pieces are
``bach/...``, ``folk/...``, ``palestrina/...``, so it reuses the per-corpus conversions.

Every converted file opens with a MIDI marker ``musgen:corpus=<CONVERTER_VERSION>`` (files without
the current one are converted again) and, when the score starts with a pickup (anacrusis), a marker
``musgen:pickup=<quarter notes>``: music21 writes a pickup measure from time 0 under the full time
signature, so the MIDI file cannot show it otherwise. miditok ignores markers: the tokens are the same.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from musgen.atomic import write_text_atomic
from musgen.errors import first_line

from .workpool import mp_context

if TYPE_CHECKING:
    from music21 import midi, stream

log = logging.getLogger(__name__)

CORPORA = ("bach", "folk", "palestrina", "all")
FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs")
MIDI_SUFFIXES = (".mid", ".midi")
PIECE_TIMEOUT_S = 120  # a pathological score must not stall the whole conversion
_FAILED_FILE = "failed.json"
# Pieces music21 is known not to convert in time, skipped without trying (a fresh machine would wait
# PIECE_TIMEOUT_S on each): corpus -> {rel: reason}. Measured with music21 10.5.1 by converting the
# first 260 folk tunes one by one: only this one took over 1.7 s.
KNOWN_FAILURES = {
    "folk": {
        "airdsAirs/book1/X0102.mid": "skipped without trying: music21's ABC reader takes over "
        f"{PIECE_TIMEOUT_S} s on this tune (Yanky Doodle, 5 parts of repeats)",
    },
}
_X_LINE = re.compile(r"^X:", re.MULTILINE)


@dataclass(frozen=True)
class _Piece:
    rel: str  # output path relative to the corpus root, with .mid
    source: str  # file path of the music21 source
    abc_text: str | None = None  # one ABC tune's text, for folk pieces


def default_cache_dir() -> Path:
    return Path(os.environ.get("MUSGEN_CACHE") or Path.home() / ".cache" / "musgen")


def corpus_root(name: str, cache_dir: Path | None = None) -> Path:
    """Where the MIDI files of built-in corpus ``name`` are cached ("all" holds the others)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cache / "corpus" if name == "all" else cache / "corpus" / name


def _music21_corpus_root() -> Path:
    import music21

    return Path(music21.__file__).parent / "corpus"


def _composer_pieces(composer: str) -> list[_Piece]:
    from music21 import corpus

    pieces, seen = [], set()
    for src in sorted(Path(p) for p in corpus.getComposer(composer)):
        stem = src.stem
        if stem in seen:  # e.g. bwv277.krn next to bwv277.mxl
            stem = f"{stem}_{src.suffix.lstrip('.')}"
        seen.add(stem)
        pieces.append(_Piece(f"{stem}.mid", str(src)))
    return pieces


def split_abc_tunes(text: str) -> Iterator[tuple[str, str]]:
    """Yield (X number, tune text) for each ``X:`` tune; the file preamble is ignored."""
    starts = [m.start() for m in _X_LINE.finditer(text)]
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        tune = text[start:end]
        number = tune[2 : tune.find("\n") if "\n" in tune else len(tune)].strip() or str(i + 1)
        yield re.sub(r"[^\w.-]", "_", number), tune


def _folk_pieces() -> list[_Piece]:
    root = _music21_corpus_root()
    pieces = []
    for coll in FOLK_COLLECTIONS:
        for src in sorted((root / coll).rglob("*.abc")):
            text = src.read_text(encoding="utf-8", errors="replace")
            base = src.relative_to(root).with_suffix("").as_posix()
            seen: dict[str, int] = {}
            for number, tune in split_abc_tunes(text):
                seen[number] = seen.get(number, 0) + 1
                name = number if seen[number] == 1 else f"{number}_{seen[number]}"
                pieces.append(_Piece(f"{base}/X{name}.mid", str(src), tune))
    return pieces


def _list_pieces(name: str) -> list[_Piece]:
    if name == "bach":
        return _composer_pieces("bach")
    if name == "palestrina":
        return _composer_pieces("palestrina")
    if name == "folk":
        return _folk_pieces()
    if name == "all":
        return [
            _Piece(f"{sub}/{p.rel}", p.source, p.abc_text)
            for sub in ("bach", "folk", "palestrina")
            for p in _list_pieces(sub)
        ]
    raise ValueError(f"unknown corpus {name!r}; choose from {CORPORA}")


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):  # noqa: ARG001
    raise _Timeout


def _unshare_time_signatures(score: stream.Stream) -> None:
    """music21's ABC reader can put one TimeSignature object into several measures (pickups,
    repeats); its MIDI writer then refuses the score ("... is already found in this Stream"), which
    lost ~8% of the folk corpus. Give every measure its own copy."""
    import copy

    from music21 import meter

    seen: set[int] = set()
    for container in [score, *score.recurse(streamsOnly=True)]:
        for ts in list(container.getElementsByClass(meter.TimeSignature)):
            if id(ts) in seen:
                container.replace(ts, copy.deepcopy(ts))
            seen.add(id(ts))


PICKUP_MARK = "musgen:pickup="  # + a short measure's length in quarter notes, e.g. "musgen:pickup=1.5"


def short_measures(score: stream.Score | stream.Part) -> list[tuple[Fraction, Fraction]]:
    """(offset, length) in quarter notes of the measures shorter than their time signature's bar, at
    the offsets the MIDI writer gives them (repeats expanded); the last measure is left out.

    These are the pickup (anacrusis) a score starts with, and, where a section with a pickup is
    repeated, the short bar that ends it and the pickup again. music21 sets a pickup measure's
    duration to its contents (and the missing part as ``paddingLeft``), both for ABC (folk) and
    MusicXML (chorales). The first part with measures decides (the others share its bar lines)."""
    from music21 import meter, repeat, stream

    parts = list(score.parts) if isinstance(score, stream.Score) and score.parts else [score]
    part = next((p for p in parts if p.getElementsByClass(stream.Measure)), None)
    if part is None:
        return []
    if repeat.Expander(part).isExpandable():  # expanding copies the part: costly, so only if needed
        part = part.expandRepeats()
    measures = list(part.getElementsByClass(stream.Measure))
    ts = measures[0].timeSignature or measures[0].getContextByClass(meter.TimeSignature)
    found = []
    for measure in measures[:-1]:
        ts = measure.timeSignature or ts
        length = Fraction(measure.duration.quarterLength)
        if ts is not None and 0 < length < Fraction(ts.barDuration.quarterLength):
            found.append((Fraction(measure.offset), length))
    return found


def _pickup_marks(score: stream.Score | stream.Part, ticks_per_quarter: int) -> list[tuple[int, str]]:
    marks = []
    for offset, length in short_measures(score):
        as_float = float(length)
        text = str(as_float) if Fraction(as_float) == length else str(length)  # "1.5", "1/3"
        marks.append((round(offset * ticks_per_quarter), f"{PICKUP_MARK}{text}"))
    return marks


def _add_markers(mf: midi.MidiFile, marks: list[tuple[int, str]]) -> None:
    """Marker meta events (tick, text) into the first track, each before its other events at that
    tick; the delta times around them are split so that no other event moves."""
    from music21 import midi

    track = mf.tracks[0]
    pending = sorted(marks, key=lambda mark: mark[0])  # stable: same-tick marks keep their order
    events: list[midi.DeltaTime | midi.MidiEvent] = []
    now = 0  # the tick of the last event in ``events``
    for delta, event in zip(track.events[::2], track.events[1::2], strict=True):
        at = now + delta.time
        while pending and (pending[0][0] <= at or event.type == midi.MetaEvents.END_OF_TRACK):
            tick, text = pending.pop(0)
            marker = midi.MidiEvent(track, type=midi.MetaEvents.MARKER)  # type: ignore[arg-type]
            marker.data = text.encode("ascii")
            events += [midi.DeltaTime(track, time=max(tick, now) - now), marker]
            now = max(tick, now)
        delta.time = max(at, now) - now  # the end of track moves after a later marker
        events += [delta, event]
        now = max(at, now)
    track.events = events


def _is_current(path: Path) -> bool:
    """Whether ``path`` is a conversion by this converter (its first marker, within the head)."""
    try:
        with open(path, "rb") as handle:
            return CONVERTED_MARK.encode("ascii") in handle.read(_HEAD_BYTES)
    except OSError:
        return False


def _convert_one(piece: _Piece, out: Path) -> str | None:
    """Convert one score to MIDI at ``out`` atomically; return a failure reason or None."""
    from music21 import converter, midi, stream

    use_alarm = threading.current_thread() is threading.main_thread()
    if use_alarm:
        old = signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(PIECE_TIMEOUT_S)
    try:
        score: stream.Score | stream.Part | stream.Opus | None
        if piece.abc_text is not None:
            score = converter.parse(piece.abc_text, format="abc")
        else:
            score = converter.parse(piece.source, forceSource=True)
        if isinstance(score, stream.Opus):
            score = score.scores[0] if score.scores else None
        if score is None or not score.recurse().notes:
            out.unlink(missing_ok=True)
            return "no notes"
        _unshare_time_signatures(score)
        mf = midi.translate.streamToMidiFile(score)
        _add_markers(mf, [(0, CONVERTED_MARK), *_pickup_marks(score, mf.ticksPerQuarterNote)])
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        mf.open(str(tmp), "wb")
        try:
            mf.write()
        finally:
            mf.close()
        os.replace(tmp, out)
        return None
    except _Timeout:
        out.unlink(missing_ok=True)  # a stale conversion from an older converter must not be used
        return f"music21 conversion exceeded {PIECE_TIMEOUT_S} s"
    except Exception as e:  # music21 raises many types on odd scores
        out.unlink(missing_ok=True)
        return f"music21 could not convert: {type(e).__name__}: {first_line(str(e))}"
    finally:
        if use_alarm:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


def _convert_batch(args: tuple[list[_Piece], str]) -> list[tuple[str, str | None]]:
    batch, root = args
    return [(p.rel, _convert_one(p, Path(root) / p.rel)) for p in batch]


def _batches(pieces: list[_Piece], n_workers: int) -> list[list[_Piece]]:
    # Batch cheap ABC tunes (~0.03 s) to amortise IPC; scores from files go one per task.
    n_abc = sum(p.abc_text is not None for p in pieces)
    size = max(1, min(32, -(-n_abc // (4 * n_workers))))  # >= 4 tasks per worker to balance
    out, cur = [], []
    for p in pieces:
        if p.abc_text is None:
            out.append([p])
            continue
        cur.append(p)
        if len(cur) >= size:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


# Bumped when _convert_one converts more or differently: failures recorded by an older one are
# retried and files it wrote (without this version's marker) are converted again.
# 3: the musgen:corpus and musgen:pickup markers.
CONVERTER_VERSION = 3
CONVERTED_MARK = f"musgen:corpus={CONVERTER_VERSION}"
_HEAD_BYTES = 64  # MThd (14) + MTrk header (8) + the marker event (4 + text)


def _load_failed(root: Path) -> dict[str, str]:
    import music21

    try:
        data = json.loads((root / _FAILED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if data.get("music21") != music21.__version__ or data.get("converter") != CONVERTER_VERSION:
        return {}  # a new music21 or a fixed converter may convert what the old one could not
    return dict(data.get("failed", {}))


def _save_failed(root: Path, failed: dict[str, str]) -> None:
    import music21

    root.mkdir(parents=True, exist_ok=True)
    record = {"music21": music21.__version__, "converter": CONVERTER_VERSION, "failed": failed}
    write_text_atomic(root / _FAILED_FILE, json.dumps(record, indent=1, sort_keys=True))


def corpus_midi_files(
    name: str,
    cache_dir: Path | None = None,
    workers: int | None = None,
    limit: int | None = None,
) -> tuple[Path, list[Path], list[dict]]:
    """Convert a music21 corpus to MIDI once (in parallel) and return (root, midi paths, failures).

    Already converted files, and pieces recorded as failing with the same music21 version, are
    reused; pieces in ``KNOWN_FAILURES`` are reported as failed without trying. ``limit`` keeps the
    first N pieces in sorted order.
    """
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose from {CORPORA}")
    root = corpus_root(name, cache_dir)
    pieces = sorted(_list_pieces(name), key=lambda p: p.rel)
    if limit is not None:
        pieces = pieces[:limit]

    # Failures are remembered per corpus directory so that "all" shares them with the parts.
    def fail_root(rel: str) -> tuple[Path, str]:
        if name != "all":
            return root, rel
        sub, _, rest = rel.partition("/")
        return root / sub, rest

    known_failed: dict[Path, dict[str, str]] = {}

    def failed_map(froot: Path) -> dict[str, str]:
        if froot not in known_failed:
            known_failed[froot] = _load_failed(froot)
        return known_failed[froot]

    failures: list[dict] = []
    todo: list[_Piece] = []
    for p in pieces:
        froot, frel = fail_root(p.rel)
        known = KNOWN_FAILURES.get(froot.name, {}).get(frel)  # froot is <cache>/corpus/<its corpus>
        if known is not None:
            failures.append({"path": p.rel, "reason": known})
        elif _is_current(root / p.rel):
            continue
        elif frel in failed_map(froot):
            failures.append({"path": p.rel, "reason": failed_map(froot)[frel]})
        else:
            todo.append(p)

    if todo:
        n_workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
        log.info("converting %d %s pieces to MIDI with %d processes", len(todo), name, n_workers)
        tasks = [(b, str(root)) for b in _batches(todo, n_workers)]
        bar = tqdm(total=len(todo), desc=f"music21 -> MIDI ({name})", unit="piece")

        def record(res: list[tuple[str, str | None]]) -> None:
            """Counts a batch; its failures are saved at once, so that an interrupted run (a user
            giving up on a slow piece) does not try them again either."""
            bar.update(len(res))
            changed = set()
            for rel, reason in res:
                if reason:
                    froot, frel = fail_root(rel)
                    failed_map(froot)[frel] = reason
                    failures.append({"path": rel, "reason": reason})
                    changed.add(froot)
            for froot in changed:
                _save_failed(froot, known_failed[froot])

        if n_workers == 1:
            for res in map(_convert_batch, tasks):
                record(res)
        else:
            with mp_context().Pool(n_workers) as pool:
                for res in pool.imap_unordered(_convert_batch, tasks):
                    record(res)
        bar.close()

    files = [root / p.rel for p in pieces if (root / p.rel).is_file()]
    failures.sort(key=lambda d: d["path"])
    log.info(
        "corpus %s: %d pieces, %d MIDI files, %d failed (%d converted now)",
        name,
        len(pieces),
        len(files),
        len(failures),
        len(todo),
    )
    return root, files, failures


def scan_files(root: Path, suffixes: tuple[str, ...], kind: str) -> tuple[list[Path], list[dict]]:
    """List the files under ``root`` whose names end in ``suffixes``, recursively, without opening them.

    Returns sorted paths and ``{"path": relative path, "reason": str}`` for entries that look like
    such files but cannot be used (directories named ``x.mid``, broken links, unreadable files or
    directories). Symlinked directories are not followed, so link loops cannot recurse forever.
    ``kind`` names the files in reasons ("MIDI", "audio").
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"not a directory: {root}")
    files: list[Path] = []
    skipped: list[dict] = []

    def rel(p: str) -> str:
        return Path(os.path.relpath(p, root)).as_posix()

    def on_error(err: OSError) -> None:
        skipped.append(
            {"path": rel(err.filename or str(root)), "reason": f"unreadable directory: {err.strerror}"}
        )

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
        for d in dirnames:
            if d.lower().endswith(suffixes):
                skipped.append(
                    {"path": rel(os.path.join(dirpath, d)), "reason": f"is a directory, not {kind} file"}
                )
        for f in filenames:
            if not f.lower().endswith(suffixes):
                continue
            full = os.path.join(dirpath, f)
            if not os.path.isfile(full):  # stat follows file links: catches broken ones
                skipped.append({"path": rel(full), "reason": _not_a_file(full)})
            elif not os.access(full, os.R_OK):
                skipped.append({"path": rel(full), "reason": "permission denied"})
            else:
                files.append(Path(full))
    files.sort()
    skipped.sort(key=lambda d: d["path"])
    return files, skipped


def _not_a_file(path: str) -> str:
    """Why an entry named like a file cannot be read as one (never opened: a pipe would block)."""
    if os.path.islink(path) and not os.path.exists(path):
        return "broken or looping symbolic link"
    return "not a regular file (a pipe, socket or device)"


def scan_midi_dir(root: Path) -> tuple[list[Path], list[dict]]:
    """``scan_files`` for .mid/.midi files."""
    return scan_files(root, MIDI_SUFFIXES, "a MIDI")
