"""The stages every ``musgen data build`` goes through, whatever it makes of a file:

collect source files -> reuse a complete build (fingerprint) -> process every file (in parallel, see
``workpool``) -> split by piece -> write one array per split, its offsets and piece list, then
``manifest.json`` last (with every skipped file and its reason).

A ``Source`` supplies only what differs: how a file is processed, what a piece's output is (token
ids in ``build``, a decoded or rendered audio file in ``audio_build``) and what the manifest says of
it. The on-disk formats are described in those two modules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tqdm import tqdm

from musgen.atomic import write_bytes_atomic as atomic_write_bytes
from musgen.errors import MusgenError

from .corpus import corpus_midi_files

SPLITS = ("train", "valid", "test")

Result = tuple[Any, str | None]  # (piece output, None) or (None, reason the file is skipped)


class NoUsableDataError(MusgenError):
    """Raised when a build finds no file that can be tokenized."""


def split_of(rel_path: str, valid_fraction: float, test_fraction: float) -> str:
    """Deterministic split of a piece from a stable hash of its relative path."""
    # surrogateescape: a file name that is not UTF-8 hashes as its raw bytes instead of crashing the build
    digest = hashlib.sha256(Path(rel_path).as_posix().encode("utf-8", "surrogateescape")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


# ----------------------------------------------------------------------------- what a source supplies


@dataclass(frozen=True)
class SourceFile:
    rel: str  # the piece's name: its path relative to the source folder, POSIX style
    path: Path
    stat: os.stat_result
    stamp: str  # what of ``stat`` enters the fingerprint (``Source.stamp``)


@dataclass(frozen=True)
class Request:
    """Where a build reads from and writes to, as the caller gave it."""

    out: Path
    corpus: str | None  # a built-in corpus, or None for ``folder``
    folder: Path | None  # formatted as given in the "is not a directory" error
    folder_kind: str  # "midi" | "audio": the folder's option, ``--{folder_kind}-dir``
    scan: Callable[[Path], tuple[list[Path], list[dict]]]  # the folder's files and pre-skipped ones
    limit: int | None
    force: bool


@dataclass
class Job:
    """One build under way, as the stages after ``collect`` see it."""

    out: Path
    root: Path
    workers: int


class Source(ABC):
    """One kind of data set. Class attributes name its files; methods do what differs per kind."""

    log: logging.Logger  # the source module's logger: log lines keep its name
    format_version: int
    label: str  # "cached {label} reused"
    noun: str  # "no usable {noun} file in ..."
    stale_prefix: str  # temporary directories of a killed build, removed before a new one
    work_cache: str  # per-file results of an unfinished build: reused by a rerun, deleted when complete
    data_suffix: str  # {split}.{data_suffix} holds a split's pieces, concatenated
    extra_outputs: tuple[str, ...] = ()  # other files a complete build has
    manifest_lead: ClassVar[dict] = {}  # fields after "format_version"; a reused manifest must have them too

    def __init__(self, cfg: Any, source_extra: dict) -> None:
        self.cfg = cfg  # a config dataclass with workers, valid_fraction and test_fraction
        self.source_extra = source_extra  # added to the manifest's "source"

    def admit(self, rel: str, st: os.stat_result) -> str | None:
        """A reason to skip the file before processing it, or None."""
        return None

    @abstractmethod
    def stamp(self, st: os.stat_result) -> str:
        """What of a file's stat changes the fingerprint (size and mtime)."""

    def fingerprint_meta(self) -> dict:
        """Settings beyond config, source and limit that change the output."""
        return {}

    @abstractmethod
    def process(self, files: list[SourceFile], split: dict[str, str], job: Job) -> dict[str, Result]:
        """Every file's piece output or skip reason, keyed by ``rel``."""

    @abstractmethod
    def piece_length(self, piece: Any) -> int: ...

    @abstractmethod
    def write_split_data(self, path: Path, pieces: list[Any], offsets: np.ndarray, bar: tqdm | None) -> None:
        """One split's pieces concatenated into ``path`` (``offsets`` from ``piece_length``)."""

    @abstractmethod
    def split_size(self, total: int) -> dict:
        """The manifest's size of a split of ``total`` (tokens or samples), after its piece count."""

    @abstractmethod
    def split_summary(self, info: dict) -> str:
        """A split's ``pieces/size`` in the closing log line."""

    def assemble_bar(self, total_pieces: int) -> tqdm | None:
        return None

    def after_splits(self, outputs: dict[str, Any]) -> None:
        """Runs once the split arrays are written, before the manifest (``outputs``: the good pieces)."""
        return None

    @abstractmethod
    def manifest_fields(self) -> dict:
        """The manifest's fields after "fingerprint"."""

    def manifest_tail(self, outputs: dict[str, Any]) -> dict:
        """The manifest's fields after "skipped"."""
        return {}

    def summary_extra(self) -> str:
        """Added to the closing log line after the skipped count."""
        return ""


# ----------------------------------------------------------------------------- the stages


@dataclass
class Collected:
    root: Path
    source: dict  # the manifest's "source"
    files_found: int
    files: list[SourceFile]  # the files to process
    skipped: list[dict]  # {"path", "reason"} of the others


def build_data_set(source: Source, req: Request, t0: float) -> dict:
    """Build (or reuse) the data set of ``source`` in ``req.out`` and return its manifest."""
    out = Path(req.out)
    workers = source.cfg.workers or os.cpu_count() or 1
    collected = collect(source, req, workers)
    fp = fingerprint(source, req, collected)
    cached = reusable_manifest(source, out, fp, req.force)
    if cached is not None:
        return cached
    prepare_out(source, out, req.force)
    cfg = source.cfg
    split = {f.rel: split_of(f.rel, cfg.valid_fraction, cfg.test_fraction) for f in collected.files}
    results = source.process(collected.files, split, Job(out, collected.root, workers))
    skipped, per_split, outputs = sort_results(collected, split, results)
    if not outputs:
        raise no_usable_data(source, req, collected, skipped)
    splits_info = write_splits(source, out, per_split, outputs)
    source.after_splits(outputs)
    manifest = {
        "format_version": source.format_version,
        **source.manifest_lead,
        "source": collected.source,
        "config": asdict(cfg),
        "fingerprint": fp,
        **source.manifest_fields(),
        "files_found": collected.files_found,
        "splits": splits_info,
        "skipped": skipped,
        **source.manifest_tail(outputs),
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    write_json(out / "manifest.json", manifest)
    shutil.rmtree(out / source.work_cache, ignore_errors=True)  # complete: the split arrays hold it all
    source.log.info(
        "built %s: %s; %d skipped%s; %.1f s",
        out,
        ", ".join(f"{s} {source.split_summary(v)}" for s, v in splits_info.items()),
        len(skipped),
        source.summary_extra(),
        manifest["build_seconds"],
    )
    return manifest


def collect(source: Source, req: Request, workers: int) -> Collected:
    """The source files, and those skipped before any processing (unreadable, refused by ``admit``)."""
    if req.corpus is not None:
        root, paths, pre_skipped = corpus_midi_files(req.corpus, workers=workers, limit=req.limit)
        where = {"corpus": req.corpus}
    else:
        assert req.folder is not None, "a build has a corpus or a folder"
        if not Path(req.folder).is_dir():
            raise MusgenError(f"--{req.folder_kind}-dir {req.folder} is not a directory")
        root = Path(req.folder).resolve()
        paths, pre_skipped = req.scan(root)
        if req.limit is not None:
            paths = paths[: req.limit]
        where = {f"{req.folder_kind}_dir": str(root)}
    skipped = list(pre_skipped)
    files: list[SourceFile] = []
    for p in paths:
        rel = p.relative_to(root).as_posix()
        try:
            st = p.stat()
        except OSError as e:
            skipped.append({"path": rel, "reason": f"cannot stat: {e.strerror}"})
            continue
        reason = source.admit(rel, st)
        if reason is not None:
            skipped.append({"path": rel, "reason": reason})
        else:
            files.append(SourceFile(rel, p, st, source.stamp(st)))
    source_info = {**where, **source.source_extra}
    return Collected(root, source_info, len(paths) + len(pre_skipped), files, skipped)


def fingerprint(source: Source, req: Request, collected: Collected) -> str:
    """A hash of everything that shapes the output: settings, source, and every file's name and stamp."""
    cfg = {k: v for k, v in asdict(source.cfg).items() if k != "workers"}  # parallelism changes nothing
    meta = {
        "format": source.format_version,
        "config": cfg,
        "source": collected.source,
        "limit": req.limit,
        **source.fingerprint_meta(),
    }
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for f in collected.files:
        h.update(f"{f.rel}\0{f.stamp}\n".encode("utf-8", "surrogateescape"))
    for s in collected.skipped:
        h.update(f"skip\0{s['path']}\0{s['reason']}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def reusable_manifest(source: Source, out: Path, fp: str, force: bool) -> dict | None:
    """The manifest of a complete build in ``out`` with the same fingerprint, unless ``force``."""
    manifest_path = out / "manifest.json"
    if force or not manifest_path.is_file() or not outputs_complete(source, out):
        return None
    try:
        old = json.loads(manifest_path.read_text())
    except ValueError:
        old = {}
    expected = {"fingerprint": fp, "format_version": source.format_version, **source.manifest_lead}
    if any(old.get(k) != v for k, v in expected.items()):
        return None
    source.log.info("cached %s reused: %s (%s)", source.label, out, fp[:12])
    return old


def outputs_complete(source: Source, out: Path) -> bool:
    names = [*source.extra_outputs] + [
        f"{s}.{k}" for s in SPLITS for k in (source.data_suffix, "offsets.npy", "pieces.json")
    ]
    return all((out / n).is_file() for n in names)


def prepare_out(source: Source, out: Path, force: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # an interrupted rebuild must not look complete
    for stale in out.glob(f"{source.stale_prefix}*"):  # the temporary directory of a killed build
        shutil.rmtree(stale, ignore_errors=True)
    if force:
        shutil.rmtree(out / source.work_cache, ignore_errors=True)


def sort_results(
    collected: Collected, split: dict[str, str], results: dict[str, Result]
) -> tuple[list[dict], dict[str, list[str]], dict[str, Any]]:
    """All skipped files sorted by path, every split's pieces in file order, and the good outputs."""
    skipped = list(collected.skipped)
    per_split: dict[str, list[str]] = {s: [] for s in SPLITS}
    outputs: dict[str, Any] = {}
    for f in collected.files:
        piece, reason = results[f.rel]
        if reason is not None:
            skipped.append({"path": f.rel, "reason": reason})
        else:
            per_split[split[f.rel]].append(f.rel)
            outputs[f.rel] = piece
    skipped.sort(key=lambda d: d["path"])
    return skipped, per_split, outputs


def no_usable_data(source: Source, req: Request, collected: Collected, skipped: list[dict]) -> MusgenError:
    reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
    where = f"corpus {req.corpus!r}" if req.corpus else str(collected.root)
    return NoUsableDataError(
        f"no usable {source.noun} file in {where}: {collected.files_found} found, {len(skipped)} skipped"
        + (f" (e.g. {reasons})" if reasons else "")
    )


def write_splits(source: Source, out: Path, per_split: dict[str, list[str]], outputs: dict[str, Any]) -> dict:
    """Every split's data array, offsets and piece list; returns the manifest's ``splits``."""
    info = {}
    bar = source.assemble_bar(sum(len(v) for v in per_split.values()))
    for s in SPLITS:
        rels = per_split[s]
        pieces = [outputs[r] for r in rels]
        offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(np.array([source.piece_length(p) for p in pieces], dtype=np.int64), out=offsets[1:])
        source.write_split_data(out / f"{s}.{source.data_suffix}", pieces, offsets, bar)
        atomic_write_bytes(out / f"{s}.offsets.npy", partial(_save_array, array=offsets))
        write_json(out / f"{s}.pieces.json", rels)
        info[s] = {"pieces": len(rels), **source.split_size(int(offsets[-1]))}
    if bar is not None:
        bar.close()
    return info


def _save_array(f: Any, array: np.ndarray) -> None:
    np.save(f, array)
