"""``musgen data build``: MIDI files -> train/valid/test split by piece -> token arrays on disk.

On-disk format of a data directory (``FORMAT_VERSION`` 1), read by ``musgen.data.dataset``:

* ``manifest.json``   counts, config, fingerprint, every skipped file with its reason.
                      Written last: its presence with a matching fingerprint means "complete".
* ``tokenizer.json``  miditok's own save (class name inside; BPE model inside when trained).
* ``{split}.tokens.npy``   1-D int32, all pieces of the split concatenated (no BOS/EOS;
                           BPE-encoded when ``bpe_vocab_size > 0``).
* ``{split}.offsets.npy``  int64 (n_pieces + 1,): piece k is ``tokens[offsets[k]:offsets[k+1]]``.
* ``{split}.pieces.json``  relative source paths, same order.

No base-token copy is stored for BPE: training-time transposition is disabled for BPE data (see
``tokenizers.pitch_shift_table``), so the BPE ids are all the model needs.

An interrupted build resumes: each worker stores every file's tokens in ``.token-cache/`` as soon as
it has them (keyed by the file's content and the tokenizer's), a rerun tokenizes only the files not
there yet, and a complete build deletes the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import miditok
import numpy as np
from miditok.constants import CURRENT_MIDITOK_VERSION

from musgen.config import validate_config
from musgen.errors import ConfigError, MusgenError

from .corpus import corpus_midi_files, scan_midi_dir
from .tokenizers import (
    DEFAULT_BEAT_RES,
    MidiReadError,
    count_notes,
    encode_score,
    load_score,
    load_tokenizer,
    make_tokenizer,
)
from .view_cache import read_cache, write_cache
from .workpool import run_files

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
TOKEN_CACHE = ".token-cache"  # per-file results of an unfinished build (see the module docstring)


class NoUsableDataError(MusgenError):
    """Raised when a build finds no file that can be tokenized."""


@dataclass
class DataConfig:
    tokenizer: str = "remi"
    use_programs: bool = False
    num_velocities: int = 32
    # YAML-friendly form of miditok's beat_res: "lo_hi" beats -> samples per beat
    beat_res: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_BEAT_RES))
    pitch_range: list[int] = field(default_factory=lambda: [21, 109])
    tokenizer_params: dict = field(default_factory=dict)  # extra miditok TokenizerConfig kwargs
    bpe_vocab_size: int = 0  # 0 = no BPE; > base vocab trains BPE on the train split
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    max_seconds_per_file: float = 30.0  # processing time limit per file (not music duration)
    min_notes: int = 8
    max_file_mb: float = 50
    workers: int = 0  # 0 = all cores

    def make_tokenizer(self) -> miditok.MusicTokenizer:
        return make_tokenizer(
            self.tokenizer,
            use_programs=self.use_programs,
            beat_res=self.beat_res,
            num_velocities=self.num_velocities,
            pitch_range=tuple(self.pitch_range),
            extra=self.tokenizer_params,
        )

    def validate(self) -> None:
        """A ``ConfigError`` for settings that would crash the build or empty the training split."""
        if not (
            0 <= self.valid_fraction < 1
            and 0 <= self.test_fraction < 1
            and self.valid_fraction + self.test_fraction < 1
        ):
            raise ConfigError("valid_fraction and test_fraction must be >= 0 and sum to less than 1")
        if (
            not (math.isfinite(self.max_seconds_per_file) and self.max_seconds_per_file > 0)
            or not self.max_file_mb > 0
        ):
            raise ConfigError("max_seconds_per_file and max_file_mb must be finite numbers > 0")
        if self.min_notes < 0 or self.workers < 0 or self.bpe_vocab_size < 0:
            raise ConfigError("min_notes, workers and bpe_vocab_size must be >= 0")


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


# ----------------------------------------------------------------------------- workers

_TOKENIZERS: dict[tuple, miditok.MusicTokenizer] = {}  # per process, keyed by the file's identity


def _tokenizer(path: str) -> miditok.MusicTokenizer:
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size)  # BPE training rewrites the file at the same path
    if key not in _TOKENIZERS:
        _TOKENIZERS.clear()
        _TOKENIZERS[key] = load_tokenizer(Path(path))
    return _TOKENIZERS[key]


def _cache_key(tokenizer_sha: str, path: str, min_notes: int, want_bar_bytes: bool) -> str:
    digest = hashlib.sha256(f"{tokenizer_sha}\0{min_notes}\0{int(want_bar_bytes)}\0".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read())
    return digest.hexdigest()[:32]


def _tokenize_file(job: tuple) -> tuple[np.ndarray, list[str]]:
    tokenizer_path, path, min_notes, want_bar_bytes, *cache = job
    key = None
    if cache:  # (cache_dir, sha256 of tokenizer.json): reuse what an interrupted build finished
        cache_dir, tokenizer_sha = cache
        key = _cache_key(tokenizer_sha, path, min_notes, want_bar_bytes)
        found = read_cache(Path(cache_dir) / f"{key}.npz", "ids", "bars")
        if found is not None:
            return found[0].astype(np.int32), [str(b) for b in found[1]]
    tok = _tokenizer(tokenizer_path)
    score = load_score(path)
    n = count_notes(score)
    if n < min_notes:
        raise MidiReadError(f"too few notes ({n} < min_notes={min_notes})")
    seq = encode_score(tok, score)
    bar_bytes: list[str] = []
    if want_bar_bytes:  # BPE training input, split per bar like miditok's own iterator
        raw = encode_score(tok, score, encode_ids=False)
        chunks = [s.ids for s in raw.split_per_bars()] if tok.config.encode_ids_split == "bar" else [raw.ids]
        bar_bytes = [tok._ids_to_bytes(c, as_one_str=True) for c in chunks if len(c) > 0]
    ids = np.asarray(seq.ids, dtype=np.int32)
    if key is not None:
        write_cache(Path(cache[0]) / f"{key}.npz", "tokens", ids=ids, bars=np.array(bar_bytes, dtype=str))
    return ids, bar_bytes


def _run_tokenization(
    items: list[tuple[str, str, bool]],
    tokenizer_path: Path,
    cfg: DataConfig,
    workers: int,
    desc: str,
    cache_dir: Path | None = None,
) -> dict[str, tuple]:
    """Tokenize all items (each bounded in time, see ``workpool``); returns
    rel -> (ids | None, bar_bytes | None, reason | None). With ``cache_dir``, results found there
    are reused and new ones stored."""
    cache: tuple = ()
    if cache_dir is not None:
        cache_dir.mkdir(exist_ok=True)
        cache = (str(cache_dir), hashlib.sha256(tokenizer_path.read_bytes()).hexdigest())
        done = sum(1 for _ in cache_dir.glob("*.npz"))
        if done:
            log.info("%d tokenized files left by an interrupted build in %s are reused", done, cache_dir)
    jobs = [(rel, (str(tokenizer_path), path, cfg.min_notes, want, *cache)) for rel, path, want in items]
    done = run_files(
        _tokenize_file, jobs, workers=workers, timeout=float(cfg.max_seconds_per_file), desc=desc
    )
    return {
        rel: (*(value if value is not None else (None, None)), reason)
        for rel, (value, reason) in done.items()
    }


class _BytesIterator:
    """Training data for ``tokenizer.train``: per-bar byte strings, with ``__len__``."""

    def __init__(self, pieces: list[list[str]]) -> None:
        self.pieces = pieces

    def __len__(self) -> int:
        return len(self.pieces)

    def __iter__(self):
        yield from self.pieces


# ----------------------------------------------------------------------------- build


def _atomic_write_bytes(path: Path, writer) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        writer(f)
    os.replace(tmp, path)


def _write_json(path: Path, obj) -> None:
    _atomic_write_bytes(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def _fingerprint(
    cfg: DataConfig, source: dict, files: list[tuple[str, Path]], pre_skipped: list[dict], limit
) -> str:
    h = hashlib.sha256()
    cfg_d = asdict(cfg)
    cfg_d.pop("workers")  # parallelism does not change the output
    meta = {
        "format": FORMAT_VERSION,
        "miditok": CURRENT_MIDITOK_VERSION,
        "config": cfg_d,
        "source": source,
        "limit": limit,
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    for rel, path in files:
        st = path.stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    for s in pre_skipped:
        h.update(f"skip\0{s['path']}\0{s['reason']}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _outputs_complete(out: Path) -> bool:
    names = ["tokenizer.json"] + [
        f"{s}.{k}" for s in SPLITS for k in ("tokens.npy", "offsets.npy", "pieces.json")
    ]
    return all((out / n).is_file() for n in names)


def build(
    out: Path,
    *,
    corpus: str | None = None,
    midi_dir: Path | None = None,
    config: DataConfig | None = None,
    force: bool = False,
    limit: int | None = None,
) -> dict:
    """Build (or reuse) a tokenized data set in ``out`` and return its manifest."""
    t0 = time.perf_counter()
    if (corpus is None) == (midi_dir is None):
        raise ValueError("give exactly one of corpus= or midi_dir=")
    cfg = config or DataConfig()
    validate_config(cfg)  # a config built in Python, not read by from_dict
    cfg.make_tokenizer()  # a bad tokenizer setting fails now, not after minutes of conversion
    if midi_dir is not None and not Path(midi_dir).is_dir():
        raise MusgenError(f"--midi-dir {midi_dir} is not a directory")
    out = Path(out)
    workers = cfg.workers or os.cpu_count() or 1

    # 1. collect
    if corpus is not None:
        root, paths, pre_skipped = corpus_midi_files(corpus, workers=workers, limit=limit)
        source = {"corpus": corpus}
    else:
        root = Path(midi_dir).resolve()
        paths, pre_skipped = scan_midi_dir(root)
        if limit is not None:
            paths = paths[:limit]
        source = {"midi_dir": str(root)}
    files_found = len(paths) + len(pre_skipped)
    skipped = list(pre_skipped)
    files: list[tuple[str, Path]] = []
    for p in paths:
        rel = p.relative_to(root).as_posix()
        try:
            size_mb = p.stat().st_size / 2**20
        except OSError as e:
            skipped.append({"path": rel, "reason": f"cannot stat: {e.strerror}"})
            continue
        if size_mb > cfg.max_file_mb:
            skipped.append(
                {
                    "path": rel,
                    "reason": f"file too large ({size_mb:.1f} MB > max_file_mb={cfg.max_file_mb:g})",
                }
            )
        else:
            files.append((rel, p))

    # 2. cached?
    fp = _fingerprint(cfg, source, files, skipped, limit)
    manifest_path = out / "manifest.json"
    if not force and manifest_path.is_file() and _outputs_complete(out):
        try:
            old = json.loads(manifest_path.read_text())
        except ValueError:
            old = {}
        if old.get("fingerprint") == fp and old.get("format_version") == FORMAT_VERSION:
            log.info("cached build reused: %s (%s)", out, fp[:12])
            return old
    out.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)  # an interrupted rebuild must not look complete
    for stale in out.glob(".musgen-build-*"):  # the temporary directory of a killed build
        shutil.rmtree(stale, ignore_errors=True)
    token_cache = out / TOKEN_CACHE
    if force:
        shutil.rmtree(token_cache, ignore_errors=True)

    # 3. split by piece, tokenize
    split = {rel: split_of(rel, cfg.valid_fraction, cfg.test_fraction) for rel, _ in files}
    tokenizer = cfg.make_tokenizer()
    bpe = cfg.bpe_vocab_size > 0
    if bpe and cfg.bpe_vocab_size <= len(tokenizer):
        raise ConfigError(
            f"bpe_vocab_size={cfg.bpe_vocab_size} must exceed the base vocabulary ({len(tokenizer)})"
        )
    with tempfile.TemporaryDirectory(prefix=".musgen-build-", dir=out) as tmpdir:
        tok_path = Path(tmpdir) / "tokenizer.json"
        tokenizer.save(tok_path)
        items = [(rel, str(p), bpe and split[rel] == "train") for rel, p in files]
        log.info("tokenizing %d files with %d processes (%s)", len(items), workers, type(tokenizer).__name__)
        results = _run_tokenization(items, tok_path, cfg, workers, "tokenize", token_cache)

        if bpe:
            train_bytes = [results[r][1] for r, _, w in items if w and results[r][2] is None]
            if not train_bytes:
                raise NoUsableDataError(f"no usable training file to learn BPE from in {root}")
            log.info("training BPE (vocab %d) on %d train pieces", cfg.bpe_vocab_size, len(train_bytes))
            tokenizer.train(vocab_size=cfg.bpe_vocab_size, model="BPE", iterator=_BytesIterator(train_bytes))
            tokenizer.save(tok_path)
            good = [(r, p, False) for r, p, _ in items if results[r][2] is None]
            results.update(_run_tokenization(good, tok_path, cfg, workers, "BPE encode", token_cache))
        os.replace(tok_path, out / "tokenizer.json")

    # 4. assemble splits
    per_split: dict[str, list[tuple[str, np.ndarray]]] = {s: [] for s in SPLITS}
    for rel, _ in files:
        ids, _, reason = results[rel]
        if reason is not None:
            skipped.append({"path": rel, "reason": reason})
        else:
            per_split[split[rel]].append((rel, ids))
    skipped.sort(key=lambda d: d["path"])
    n_good = sum(len(v) for v in per_split.values())
    if n_good == 0:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        where = f"corpus {corpus!r}" if corpus else str(root)
        raise NoUsableDataError(
            f"no usable MIDI file in {where}: {files_found} found, {len(skipped)} skipped"
            + (f" (e.g. {reasons})" if reasons else "")
        )

    splits_info = {}
    for s in SPLITS:
        pieces = per_split[s]
        lengths = np.array([len(ids) for _, ids in pieces], dtype=np.int64)
        offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = (
            np.concatenate([ids for _, ids in pieces]).astype(np.int32) if pieces else np.zeros(0, np.int32)
        )
        _atomic_write_bytes(out / f"{s}.tokens.npy", lambda f, a=tokens: np.save(f, a))
        _atomic_write_bytes(out / f"{s}.offsets.npy", lambda f, a=offsets: np.save(f, a))
        _write_json(out / f"{s}.pieces.json", [rel for rel, _ in pieces])
        splits_info[s] = {"pieces": len(pieces), "tokens": int(tokens.size)}

    manifest = {
        "format_version": FORMAT_VERSION,
        "source": source,
        "config": asdict(cfg),
        "fingerprint": fp,
        "tokenizer": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "base_vocab_size": len(tokenizer.vocab),
        "bpe": bpe,
        "files_found": files_found,
        "splits": splits_info,
        "skipped": skipped,
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    _write_json(manifest_path, manifest)
    shutil.rmtree(token_cache, ignore_errors=True)  # complete: the arrays hold it all
    log.info(
        "built %s: %s; %d skipped; vocab %d; %.1f s",
        out,
        ", ".join(f"{s} {v['pieces']} pieces/{v['tokens']} tokens" for s, v in splits_info.items()),
        len(skipped),
        len(tokenizer),
        manifest["build_seconds"],
    )
    return manifest
