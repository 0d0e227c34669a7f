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

A piece keeps the split its relative path hashes to (``build.split_of``), so a chorale rendered to
audio lands in the same split as its tokens in a MIDI data set built from the same corpus.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from musgen.config import validate_config
from musgen.errors import ConfigError, MusgenError

from .audio_io import AUDIO_SUFFIXES, AudioReadError, check_rate, read_audio
from .build import SPLITS, NoUsableDataError, _atomic_write_bytes, _write_json, split_of
from .corpus import corpus_midi_files, scan_files, scan_midi_dir
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
    engine: str = "auto"  # renders: auto | fluidsynth | synth
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


def _file_stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


# ----------------------------------------------------------------------------- build


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
    out = Path(out)
    workers = cfg.workers or os.cpu_count() or 1
    renderer, soundfont = resolve_engine(cfg.engine, cfg.soundfont or None) if render else (None, None)

    # 1. collect
    if corpus is not None:
        root, paths, pre_skipped = corpus_midi_files(corpus, workers=workers, limit=limit)
        source: dict = {"corpus": corpus, "render": True}
    else:
        folder = Path(audio_dir if audio_dir is not None else midi_dir)
        if not folder.is_dir():
            raise MusgenError(
                f"--{'audio' if audio_dir is not None else 'midi'}-dir {folder} is not a directory"
            )
        root = folder.resolve()
        paths, pre_skipped = scan_audio_dir(root) if audio_dir is not None else scan_midi_dir(root)
        if limit is not None:
            paths = paths[:limit]
        source = (
            {"audio_dir": str(root)} if audio_dir is not None else {"midi_dir": str(root), "render": True}
        )
    files_found = len(paths) + len(pre_skipped)
    skipped = list(pre_skipped)
    files: list[tuple[str, Path, str]] = []  # (rel, path, size:mtime)
    for p in paths:
        rel = p.relative_to(root).as_posix()
        try:
            files.append((rel, p, _file_stamp(p)))
        except OSError as e:
            skipped.append({"path": rel, "reason": f"cannot stat: {e.strerror}"})

    # 2. cached?
    meta: dict = {
        "format": FORMAT_VERSION,
        "config": {k: v for k, v in asdict(cfg).items() if k != "workers"},
        "source": source,
        "limit": limit,
    }
    if render:
        meta.update(
            renderer=renderer,
            render_version=RENDER_VERSION,
            soundfont=f"{soundfont}:{_file_stamp(soundfont)}" if soundfont else None,
            fluidsynth=_fluidsynth_version() if renderer == "fluidsynth" else None,
        )
    fp = _fingerprint(meta, files, skipped)
    manifest_path = out / "manifest.json"
    if not force and manifest_path.is_file() and _outputs_complete(out):
        try:
            old = json.loads(manifest_path.read_text())
        except ValueError:
            old = {}
        if (
            old.get("fingerprint") == fp
            and old.get("format_version") == FORMAT_VERSION
            and old.get("kind") == "audio"
        ):
            log.info("cached audio build reused: %s (%s)", out, fp[:12])
            return old
    out.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)  # an interrupted rebuild must not look complete

    # 3. decode / render every file into a piece file (renders are cached across builds)
    programs = {rel: program_for(rel) for rel, _, _ in files} if render and cfg.random_program else {}
    for stale in out.glob(".musgen-audio-*"):  # the temporary directory of a killed build
        shutil.rmtree(stale, ignore_errors=True)
    decode_cache = out / DECODE_CACHE
    if force:
        shutil.rmtree(decode_cache, ignore_errors=True)
    if render:
        cache = out / CACHE_DIR
        cache.mkdir(exist_ok=True)
        render_meta = {k: meta[k] for k in ("render_version", "renderer", "soundfont", "fluidsynth")}
    else:
        decode_cache.mkdir(exist_ok=True)
    dests: dict[str, Path] = {}
    lengths: dict[str, int] = {}
    tasks: list[tuple[str, _Task]] = []
    min_frames = int(np.ceil(cfg.min_seconds * cfg.sample_rate))
    for rel, path, stamp in files:
        if render:
            try:
                dests[rel] = cache / f"{_render_key(path, cfg, programs.get(rel), render_meta)}.flac"
            except OSError as e:
                skipped.append({"path": rel, "reason": f"cannot read: {e.strerror}"})
                continue
        else:
            dests[rel] = decode_cache / f"{_decode_key(rel, stamp, cfg)}.flac"
        frames = _piece_frames(dests[rel])
        if frames is not None and frames >= min_frames:
            lengths[rel] = frames
            continue
        tasks.append(
            (
                rel,
                _Task(
                    str(path),
                    str(dests[rel]),
                    cfg.sample_rate,
                    cfg.max_seconds_per_piece,
                    cfg.min_seconds,
                    renderer or "",
                    str(soundfont) if soundfont else None,
                    programs.get(rel),
                ),
            )
        )
    if lengths:
        log.info(
            "%d of %d %s reused from %s",
            len(lengths),
            len(files),
            "renders" if render else "decodings",
            out / CACHE_DIR if render else decode_cache,
        )
    verb = f"render ({renderer})" if render else "decode"
    if tasks:
        log.info("%s: %d files with %d processes", verb, len(tasks), workers)
    for rel, (n, reason) in run_files(
        _do_task, tasks, workers=workers, timeout=cfg.max_seconds_per_file, desc=verb
    ).items():
        if reason is None:
            lengths[rel] = n
        else:
            skipped.append({"path": rel, "reason": reason})

    skipped.sort(key=lambda d: d["path"])
    per_split: dict[str, list[str]] = {s: [] for s in SPLITS}
    for rel, _, _ in files:
        if rel in lengths:
            per_split[split_of(rel, cfg.valid_fraction, cfg.test_fraction)].append(rel)
    if not lengths:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        where = f"corpus {corpus!r}" if corpus else str(root)
        raise NoUsableDataError(
            f"no usable {'MIDI' if render else 'audio'} file in {where}: {files_found} found, "
            f"{len(skipped)} skipped" + (f" (e.g. {reasons})" if reasons else "")
        )

    # 4. assemble the splits
    splits_info = _write_splits(out, per_split, lengths, dests, cfg.sample_rate)
    if render:  # keep only the renders this build uses (and no leftovers of killed workers)
        used = {dests[r].name for r in lengths}
        for stale in [*(out / CACHE_DIR).glob("*.flac"), *(out / CACHE_DIR).glob(".*.tmp")]:
            if stale.name not in used:
                stale.unlink(missing_ok=True)

    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": "audio",
        "source": source,
        "config": asdict(cfg),
        "fingerprint": fp,
        "sample_rate": cfg.sample_rate,
        "files_found": files_found,
        "splits": splits_info,
        "skipped": skipped,
    }
    if render:
        manifest.update(renderer=renderer, soundfont=str(soundfont) if soundfont else None)
        if programs:
            manifest["programs"] = {rel: programs[rel] for rel in sorted(lengths)}
    manifest["build_seconds"] = round(time.perf_counter() - t0, 3)
    _write_json(manifest_path, manifest)
    shutil.rmtree(decode_cache, ignore_errors=True)  # complete: the split arrays hold it all
    log.info(
        "built %s: %s; %d skipped; %.1f s",
        out,
        ", ".join(f"{s} {v['pieces']} pieces/{v['seconds']:.0f} s" for s, v in splits_info.items()),
        len(skipped),
        manifest["build_seconds"],
    )
    return manifest


def _fingerprint(meta: dict, files: list[tuple[str, Path, str]], skipped: list[dict]) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for rel, _, stamp in files:
        h.update(f"{rel}\0{stamp}\n".encode("utf-8", "surrogateescape"))
    for s in skipped:
        h.update(f"skip\0{s['path']}\0{s['reason']}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


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


def _write_splits(
    out: Path,
    per_split: dict[str, list[str]],
    lengths: dict[str, int],
    pieces: dict[str, Path],
    sample_rate: int,
) -> dict:
    """Write every split's arrays and piece list; returns the manifest's ``splits``."""
    info = {}
    bar = tqdm(total=sum(len(v) for v in per_split.values()), desc="assemble", unit="piece")
    for s in SPLITS:
        rels = per_split[s]
        offsets = np.zeros(len(rels) + 1, dtype=np.int64)
        np.cumsum([lengths[r] for r in rels], out=offsets[1:])
        _write_split_audio(out / f"{s}.audio.npy", [pieces[r] for r in rels], offsets, bar)
        _atomic_write_bytes(out / f"{s}.offsets.npy", lambda f, a=offsets: np.save(f, a))
        _write_json(out / f"{s}.pieces.json", rels)
        info[s] = {"pieces": len(rels), "seconds": round(float(offsets[-1]) / sample_rate, 3)}
    bar.close()
    return info


def _write_split_audio(path: Path, pieces: list[Path], offsets: np.ndarray, bar: tqdm) -> None:
    """Copy the piece files into one int16 .npy, piece by piece: memory stays at one piece."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    total = int(offsets[-1])
    if total == 0:
        _atomic_write_bytes(path, lambda f: np.save(f, np.zeros(0, dtype=np.int16)))
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


def _outputs_complete(out: Path) -> bool:
    names = [f"{s}.{k}" for s in SPLITS for k in ("audio.npy", "offsets.npy", "pieces.json")]
    return all((out / n).is_file() for n in names)
