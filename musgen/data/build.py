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
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import miditok
import numpy as np
from miditok.constants import CURRENT_MIDITOK_VERSION
from tqdm import tqdm

from musgen.config import validate_config
from musgen.errors import ConfigError

from .corpus import scan_midi_dir
from .pipeline import (
    SPLITS,
    Job,
    NoUsableDataError,
    Request,
    Result,
    Source,
    SourceFile,
    atomic_write_bytes,
    build_data_set,
    split_of,
)
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

# SPLITS, split_of and NoUsableDataError live in ``pipeline`` now; they keep being importable from here
__all__ = ["SPLITS", "TOKEN_CACHE", "DataConfig", "NoUsableDataError", "build", "split_of"]

FORMAT_VERSION = 1
TOKEN_CACHE = ".token-cache"  # per-file results of an unfinished build (see the module docstring)


@dataclass
class DataConfig:
    tokenizer: str = "remi"
    use_programs: bool = False
    num_velocities: int = 32
    # YAML-friendly form of miditok's beat_res: "lo_hi" beats -> samples per beat
    beat_res: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_BEAT_RES))
    pitch_range: list[int] = field(default_factory=lambda: [21, 109])
    tokenizer_params: dict = field(default_factory=dict)  # extra miditok TokenizerConfig kwargs
    # Named tracks kept apart, bar by bar (musgen.data.track_layout; [] = all tracks in one stream),
    # e.g. [soprano, alto, tenor, bass]: what infilling and regenerating one voice need.
    tracks: list[str] = field(default_factory=list)
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
            pitch_range=(self.pitch_range[0], self.pitch_range[1]),
            extra=self.tokenizer_params,
            tracks=self.tracks,
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
        names = [str(n).lower() for n in self.tracks]
        if len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
            raise ConfigError(f"tracks must be distinct names (letters, digits, _), got {self.tracks}")
        if self.tracks and self.bpe_vocab_size:
            raise ConfigError("the tracks layout cannot be BPE-encoded: leave bpe_vocab_size at 0")


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
    results = run_files(
        _tokenize_file, jobs, workers=workers, timeout=float(cfg.max_seconds_per_file), desc=desc
    )
    return {
        rel: (*(value if value is not None else (None, None)), reason)
        for rel, (value, reason) in results.items()
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


class _TokenSource(Source):
    """MIDI files -> token ids (the pieces), BPE-encoded when ``bpe_vocab_size > 0``."""

    log = log
    format_version = FORMAT_VERSION
    label = "build"
    noun = "MIDI"
    stale_prefix = ".musgen-build-"
    work_cache = TOKEN_CACHE
    data_suffix = "tokens.npy"
    extra_outputs = ("tokenizer.json",)

    def __init__(self, cfg: DataConfig) -> None:
        super().__init__(cfg, {})
        self.tokenizer: miditok.MusicTokenizer | None = None  # the trained one, once processed
        self.bpe = cfg.bpe_vocab_size > 0

    def admit(self, rel: str, st: os.stat_result) -> str | None:
        size_mb = st.st_size / 2**20
        if size_mb > self.cfg.max_file_mb:
            return f"file too large ({size_mb:.1f} MB > max_file_mb={self.cfg.max_file_mb:g})"
        return None

    def stamp(self, st: os.stat_result) -> str:
        return f"{st.st_size}\0{st.st_mtime_ns}"

    def fingerprint_meta(self) -> dict:
        return {"miditok": CURRENT_MIDITOK_VERSION}

    def process(self, files: list[SourceFile], split: dict[str, str], job: Job) -> dict[str, Result]:
        cfg = self.cfg
        tokenizer = cfg.make_tokenizer()
        if self.bpe and cfg.bpe_vocab_size <= len(tokenizer):
            raise ConfigError(
                f"bpe_vocab_size={cfg.bpe_vocab_size} must exceed the base vocabulary ({len(tokenizer)})"
            )
        token_cache = job.out / TOKEN_CACHE
        with tempfile.TemporaryDirectory(prefix=self.stale_prefix, dir=job.out) as tmpdir:
            tok_path = Path(tmpdir) / "tokenizer.json"
            tokenizer.save(tok_path)
            items = [(f.rel, str(f.path), self.bpe and split[f.rel] == "train") for f in files]
            log.info(
                "tokenizing %d files with %d processes (%s)",
                len(items),
                job.workers,
                type(tokenizer).__name__,
            )
            results = _run_tokenization(items, tok_path, cfg, job.workers, "tokenize", token_cache)
            if self.bpe:
                self._train_bpe(tokenizer, tok_path, items, results, job.root)
                good = [(r, p, False) for r, p, _ in items if results[r][2] is None]
                results.update(_run_tokenization(good, tok_path, cfg, job.workers, "BPE encode", token_cache))
            os.replace(tok_path, job.out / "tokenizer.json")
        self.tokenizer = tokenizer
        return {rel: (ids, reason) for rel, (ids, _, reason) in results.items()}

    def _train_bpe(
        self, tokenizer: miditok.MusicTokenizer, tok_path: Path, items: list, results: dict, root: Path
    ) -> None:
        """Learns BPE on the train split's bars (then saved to ``tok_path`` for the workers)."""
        train_bytes = [results[r][1] for r, _, w in items if w and results[r][2] is None]
        if not train_bytes:
            raise NoUsableDataError(f"no usable training file to learn BPE from in {root}")
        log.info("training BPE (vocab %d) on %d train pieces", self.cfg.bpe_vocab_size, len(train_bytes))
        tokenizer.train(vocab_size=self.cfg.bpe_vocab_size, model="BPE", iterator=_BytesIterator(train_bytes))
        tokenizer.save(tok_path)

    def piece_length(self, piece: np.ndarray) -> int:
        return len(piece)

    def write_split_data(
        self, path: Path, pieces: list[np.ndarray], offsets: np.ndarray, bar: tqdm | None
    ) -> None:
        tokens = np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)
        atomic_write_bytes(path, lambda f: np.save(f, tokens))

    def split_size(self, total: int) -> dict:
        return {"tokens": total}

    def split_summary(self, info: dict) -> str:
        return f"{info['pieces']} pieces/{info['tokens']} tokens"

    def manifest_fields(self) -> dict:
        assert self.tokenizer is not None, "called after process()"
        return {
            "tokenizer": type(self.tokenizer).__name__,
            "vocab_size": len(self.tokenizer),
            "base_vocab_size": len(self.tokenizer.vocab),
            "bpe": self.bpe,
            **({"tracks": [str(n).lower() for n in self.cfg.tracks]} if self.cfg.tracks else {}),
        }

    def summary_extra(self) -> str:
        assert self.tokenizer is not None, "called after process()"
        return f"; vocab {len(self.tokenizer)}"


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
    request = Request(Path(out), corpus, midi_dir, "midi", scan_midi_dir, limit, force)
    return build_data_set(_TokenSource(cfg), request, t0)
