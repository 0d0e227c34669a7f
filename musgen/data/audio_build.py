"""``musgen data build --audio-dir DIR`` / ``--corpus NAME --render``: audio files, or MIDI rendered
to audio, -> train/valid/test split by piece -> one int16 array per split on disk.

On-disk format of an audio data directory (``FORMAT_VERSION`` 1), read by ``musgen.data.audio_data``:

* ``manifest.json``        ``"kind": "audio"``, sample rate, counts, config, fingerprint, every
                           skipped file with its reason. Written last: its presence with a matching
                           fingerprint means "complete".
* ``{split}.audio.npy``    1-D int16 (float * 32767), all pieces of the split concatenated, mono.
* ``{split}.offsets.npy``  int64 (n_pieces + 1,): piece k is ``audio[offsets[k]:offsets[k+1]]``.
* ``{split}.pieces.json``  relative source paths (the MIDI's for renders), same order.
* ``render-cache/``        renders as FLAC, keyed by MIDI content and render settings, so a rebuild
                           with other split fractions (or after an interruption) renders nothing twice.
* ``.decode-cache/``       decoded audio files (``--audio-dir``) while a build runs: a build killed
                           half-way decodes only the rest when run again; deleted when complete.

A piece keeps the split its relative path hashes to (``pipeline.split_of``), so a chorale rendered to
audio lands in the same split as its tokens in a MIDI data set built from the same corpus.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import soundfile as sf
from tqdm import tqdm

from musgen.config import validate_config
from musgen.errors import ConfigError, MusgenError

from .audio_io import AUDIO_SUFFIXES, AudioReadError, check_rate, read_audio
from .corpus import scan_files, scan_midi_dir
from .pipeline import Job, Request, Result, Source, SourceFile, atomic_write_bytes, build_data_set
from .render import ENGINES, render_midi, resolve_engine
from .workpool import run_files

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
RENDER_VERSION = 1  # bump when rendering changes its output: cached renders are then redone
CACHE_DIR = "render-cache"
DECODE_CACHE = ".decode-cache"
# random_program: timbres that suit any (mostly polyphonic, tonal) piece
PROGRAMS = {
    0: "acoustic grand piano",
    19: "church organ",
    48: "string ensemble",
    52: "choir aahs",
    71: "clarinet",
    61: "brass section",
    24: "nylon guitar",
    73: "flute",
}


@dataclass
class AudioDataConfig:
    sample_rate: int = 16000
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    max_seconds_per_piece: float = 0.0  # 0 = whole piece; else keep only its first N seconds
    min_seconds: float = 1.0  # shorter pieces are skipped
    soundfont: str = ""  # renders: "" = find one (see render.find_soundfont)
    engine: str = "auto"  # renders: auto | fluidsynth | rustysynth | synth
    random_program: bool = False  # renders: one GM program per piece from PROGRAMS (hash of its path)
    workers: int = 0  # 0 = all cores
    max_seconds_per_file: float = 120.0  # processing time limit per file (not music duration)

    def validate(self) -> None:
        check_rate(self.sample_rate)
        if not (
            0 <= self.valid_fraction < 1
            and 0 <= self.test_fraction < 1
            and self.valid_fraction + self.test_fraction < 1
        ):
            raise ConfigError("valid_fraction and test_fraction must be >= 0 and sum to less than 1")
        if self.min_seconds < 0 or self.max_seconds_per_piece < 0:
            raise ConfigError("min_seconds and max_seconds_per_piece must be >= 0")
        if 0 < self.max_seconds_per_piece < self.min_seconds:
            raise ConfigError(
                f"max_seconds_per_piece={self.max_seconds_per_piece:g} < min_seconds="
                f"{self.min_seconds:g} would skip every piece"
            )
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.max_seconds_per_file <= 0:
            raise ConfigError("max_seconds_per_file must be > 0")


def program_for(rel: str) -> int:
    """The GM program a piece is rendered with under ``random_program`` (stable across builds)."""
    digest = hashlib.sha256(f"program\0{Path(rel).as_posix()}".encode("utf-8", "surrogateescape")).digest()
    programs = list(PROGRAMS)
    return programs[int.from_bytes(digest[:8], "big") % len(programs)]


# ----------------------------------------------------------------------------- per-file work (in workers)


@dataclass(frozen=True)
class _Task:
    source: str  # the audio or MIDI file
    dest: str  # where the piece goes, as 16-bit FLAC
    sample_rate: int
    max_seconds: float
    min_seconds: float
    engine: str = ""  # "" = decode an audio file; else render MIDI with this engine
    soundfont: str | None = None
    program: int | None = None


def _do_task(task: _Task) -> int:
    """Decode or render one file into ``task.dest``; returns its number of samples."""
    if task.engine:
        wave = render_midi(
            task.source,
            task.sample_rate,
            soundfont=task.soundfont,
            engine=task.engine,
            program=task.program,
            max_seconds=task.max_seconds,
        )
    else:
        wave = read_audio(task.source, task.sample_rate, max_seconds=task.max_seconds)
    seconds = len(wave) / task.sample_rate
    if seconds < task.min_seconds:
        raise AudioReadError(f"too short ({seconds:.2f} s < min_seconds={task.min_seconds:g})")
    _store_piece(Path(task.dest), wave, task.sample_rate)
    return len(wave)


def _store_piece(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    pcm = np.round(np.clip(wave, -1.0, 1.0) * 32767).astype(np.int16)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sf.write(str(tmp), pcm, sample_rate, format="FLAC", subtype="PCM_16")  # lossless for int16
    os.replace(tmp, path)


def _piece_frames(path: Path) -> int | None:
    try:
        return int(sf.info(str(path)).frames)
    except Exception:  # missing or damaged cache entry: redo it
        return None


# ----------------------------------------------------------------------------- collect


def scan_audio_dir(root: Path) -> tuple[list[Path], list[dict]]:
    """``scan_files`` for audio suffixes: other files are ignored, links to folders not followed."""
    return scan_files(root, AUDIO_SUFFIXES, "an audio")


def _fluidsynth_version() -> str:
    try:
        out = subprocess.run(["fluidsynth", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.splitlines()[0].strip() if out.strip() else "unknown"


def _stamp(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}"


def _file_stamp(path: Path) -> str:
    return _stamp(path.stat())


def _decode_key(rel: str, stamp: str, cfg: AudioDataConfig) -> str:
    """Cache key of a decoded file (within one output folder): the file and what shapes its audio."""
    blob = json.dumps(
        {
            "rel": rel,
            "stamp": stamp,
            "sample_rate": cfg.sample_rate,
            "max_seconds": cfg.max_seconds_per_piece,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _render_key(midi: Path, cfg: AudioDataConfig, program: int | None, render_meta: dict) -> str:
    """Cache key of a render: the MIDI's content (not its name or date) and everything that shapes the audio."""
    h = hashlib.sha256(midi.read_bytes())
    h.update(
        json.dumps(
            {
                **render_meta,
                "sample_rate": cfg.sample_rate,
                "program": program,
                "max_seconds": cfg.max_seconds_per_piece,
            },
            sort_keys=True,
        ).encode()
    )
    return h.hexdigest()[:32]


# ----------------------------------------------------------------------------- build

_Piece = tuple[Path, int]  # a piece's FLAC file (in a cache folder) and its number of samples


class _AudioSource(Source):
    """Audio files decoded, or MIDI files rendered, into 16-bit FLAC pieces (the pieces)."""

    log = log
    format_version = FORMAT_VERSION
    label = "audio build"
    stale_prefix = ".musgen-audio-"
    work_cache = DECODE_CACHE
    data_suffix = "audio.npy"
    manifest_lead: ClassVar[dict] = {"kind": "audio"}

    def __init__(self, cfg: AudioDataConfig, render: bool) -> None:
        super().__init__(cfg, {"render": True} if render else {})
        self.render = render
        self.noun = "MIDI" if render else "audio"
        self.renderer: str | None = None
        self.soundfont: Path | None = None
        if render:
            self.renderer, self.soundfont = resolve_engine(cfg.engine, cfg.soundfont or None)
        self.programs: dict[str, int] = {}  # rel -> GM program, under random_program
        self.folder = Path()  # where the pieces go: the render cache, or the decode cache

    def stamp(self, st: os.stat_result) -> str:
        return _stamp(st)

    @cached_property
    def render_meta(self) -> dict:
        """What shapes every render besides its own settings (also keys the render cache)."""
        if not self.render:
            return {}
        meta = {
            "renderer": self.renderer,
            "render_version": RENDER_VERSION,
            "soundfont": f"{self.soundfont}:{_file_stamp(self.soundfont)}" if self.soundfont else None,
            "fluidsynth": _fluidsynth_version() if self.renderer == "fluidsynth" else None,
        }
        if (
            self.renderer == "rustysynth"
        ):  # only then: the keys of the other engines' renders stay as they were
            meta["midirenderer"] = importlib.metadata.version("midirenderer")
        return meta

    def fingerprint_meta(self) -> dict:
        return self.render_meta

    def process(self, files: list[SourceFile], split: dict[str, str], job: Job) -> dict[str, Result]:
        """Every file into a piece file; pieces a previous build left in the caches are reused."""
        if self.render and self.cfg.random_program:
            self.programs = {f.rel: program_for(f.rel) for f in files}
        self.folder = job.out / (CACHE_DIR if self.render else DECODE_CACHE)
        self.folder.mkdir(exist_ok=True)
        results: dict[str, Result] = {}
        tasks: list[tuple[str, _Task]] = []
        reused = 0
        min_frames = int(np.ceil(self.cfg.min_seconds * self.cfg.sample_rate))
        for f in files:
            try:
                dest = self.folder / f"{self._piece_key(f)}.flac"
            except OSError as e:
                results[f.rel] = (None, f"cannot read: {e.strerror}")
                continue
            frames = _piece_frames(dest)
            if frames is not None and frames >= min_frames:
                results[f.rel] = ((dest, frames), None)
                reused += 1
            else:
                tasks.append((f.rel, self._task(f, dest)))
        if reused:
            what = "renders" if self.render else "decodings"
            log.info("%d of %d %s reused from %s", reused, len(files), what, self.folder)
        results.update(self._run(tasks, job.workers))
        return results

    def _piece_key(self, f: SourceFile) -> str:
        if self.render:
            return _render_key(f.path, self.cfg, self.programs.get(f.rel), self.render_meta)
        return _decode_key(f.rel, f.stamp, self.cfg)

    def _task(self, f: SourceFile, dest: Path) -> _Task:
        cfg = self.cfg
        return _Task(
            str(f.path),
            str(dest),
            cfg.sample_rate,
            cfg.max_seconds_per_piece,
            cfg.min_seconds,
            self.renderer or "",
            str(self.soundfont) if self.soundfont else None,
            self.programs.get(f.rel),
        )

    def _run(self, tasks: list[tuple[str, _Task]], workers: int) -> dict[str, Result]:
        verb = f"render ({self.renderer})" if self.render else "decode"
        if tasks:
            log.info("%s: %d files with %d processes", verb, len(tasks), workers)
        done = run_files(_do_task, tasks, workers=workers, timeout=self.cfg.max_seconds_per_file, desc=verb)
        dests = {rel: Path(task.dest) for rel, task in tasks}
        return {
            rel: ((dests[rel], n), None) if reason is None else (None, reason)
            for rel, (n, reason) in done.items()
        }

    def piece_length(self, piece: _Piece) -> int:
        return piece[1]

    def assemble_bar(self, total_pieces: int) -> tqdm:
        return tqdm(total=total_pieces, desc="assemble", unit="piece")

    def write_split_data(
        self, path: Path, pieces: list[_Piece], offsets: np.ndarray, bar: tqdm | None
    ) -> None:
        _write_split_audio(path, [dest for dest, _ in pieces], offsets, bar)

    def split_size(self, total: int) -> dict:
        return {"seconds": round(float(total) / self.cfg.sample_rate, 3)}

    def split_summary(self, info: dict) -> str:
        return f"{info['pieces']} pieces/{info['seconds']:.0f} s"

    def after_splits(self, outputs: dict[str, _Piece]) -> None:
        """Keeps only the renders this build uses (and no leftovers of killed workers)."""
        if not self.render:
            return
        used = {dest.name for dest, _ in outputs.values()}
        for stale in [*self.folder.glob("*.flac"), *self.folder.glob(".*.tmp")]:
            if stale.name not in used:
                stale.unlink(missing_ok=True)

    def manifest_fields(self) -> dict:
        return {"sample_rate": self.cfg.sample_rate}

    def manifest_tail(self, outputs: dict[str, _Piece]) -> dict:
        if not self.render:
            return {}
        tail: dict = {"renderer": self.renderer, "soundfont": str(self.soundfont) if self.soundfont else None}
        if self.programs:
            tail["programs"] = {rel: self.programs[rel] for rel in sorted(outputs)}
        return tail


def build_audio(
    out: Path,
    *,
    audio_dir: Path | None = None,
    corpus: str | None = None,
    midi_dir: Path | None = None,
    render: bool = False,
    config: AudioDataConfig | None = None,
    force: bool = False,
    limit: int | None = None,
) -> dict:
    """Build (or reuse) an audio data set in ``out`` and return its manifest.

    Give exactly one source: ``audio_dir`` (audio files, searched recursively), or ``corpus`` /
    ``midi_dir`` with ``render=True`` (MIDI rendered with FluidSynth or the built-in synthesizer).
    """
    t0 = time.perf_counter()
    if sum(x is not None for x in (audio_dir, corpus, midi_dir)) != 1:
        raise ValueError("give exactly one of audio_dir=, corpus= or midi_dir=")
    if audio_dir is not None and render:
        raise MusgenError(
            "--render renders MIDI (--corpus or --midi-dir); --audio-dir files are used as they are"
        )
    if audio_dir is None and not render:
        raise MusgenError("an audio data set from MIDI needs --render")
    cfg = config or AudioDataConfig()
    validate_config(cfg)  # a config built in Python, not read by from_dict
    source = _AudioSource(cfg, render)
    if corpus is not None:
        folder, kind, scan = None, "midi", scan_midi_dir
    elif audio_dir is not None:
        folder, kind, scan = Path(audio_dir), "audio", scan_audio_dir
    else:
        assert midi_dir is not None, "checked above: a render has a corpus or a MIDI folder"
        folder, kind, scan = Path(midi_dir), "midi", scan_midi_dir
    return build_data_set(source, Request(Path(out), corpus, folder, kind, scan, limit, force), t0)


def _write_split_audio(path: Path, pieces: list[Path], offsets: np.ndarray, bar: tqdm) -> None:
    """Copy the piece files into one int16 .npy, piece by piece: memory stays at one piece."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    total = int(offsets[-1])
    if total == 0:
        atomic_write_bytes(path, lambda f: np.save(f, np.zeros(0, dtype=np.int16)))
        return
    else:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int16, shape=(total,))
        for k, piece in enumerate(pieces):
            data, _ = sf.read(str(piece), dtype="int16")
            if len(data) != offsets[k + 1] - offsets[k]:
                raise MusgenError(f"piece file {piece} changed during the build; run again")
            arr[offsets[k] : offsets[k + 1]] = data
            bar.update(1)
        arr.flush()
        del arr
    os.replace(tmp, path)
