"""Piano-roll phrases from a data set built by ``musgen data build`` (MuseGAN's view of the data).

Token streams merge the tracks, so the rolls are read from the split's source MIDI files (listed in
``DATA_DIR/{split}.pieces.json``) once and cached as ``DATA_DIR/pianorolls/{split}-{key}.npz``
(``key`` hashes the data fingerprint and the roll settings); pitch bits are packed (84 pitches in 11
bytes). The data set's train/valid/test split by piece carries over unchanged.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from musgen.errors import MusgenError

from .dataset import TransposedItems, source_files
from .pianoroll import PianorollConfig, midi_to_roll, phrase_starts, transpose_roll
from .tokenizers import MidiReadError
from .view_cache import cache_path, read_cache, write_cache

log = logging.getLogger(__name__)

CACHE_VERSION = 1
# Settings that change the rolls (phrase settings only change the index over them).
_ROLL_KEYS = (
    "steps_per_bar",
    "quarters_per_bar",
    "lowest_pitch",
    "num_pitches",
    "tracks",
    "track_names",
    "other_track",
    "separate_repeats",
)


def _cache_path(data_dir: Path, split: str, cfg: PianorollConfig) -> Path:
    settings = {k: asdict(cfg)[k] for k in _ROLL_KEYS}
    return cache_path(data_dir, "pianorolls", split, {"v": CACHE_VERSION, **settings})


def load_rolls(
    data_dir: Path, split: str, cfg: PianorollConfig, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(packed rolls uint8 (K, T_total, ceil(P / 8)), piece offsets int64 (pieces + 1,)) of a split;
    read from the source MIDI files once, then cached."""
    data_dir = Path(data_dir)
    path = _cache_path(data_dir, split, cfg)
    cached = read_cache(path, "packed", "offsets")
    if cached is not None:
        packed, offsets = cached
        return packed, offsets
    files = source_files(data_dir, split)
    rolls: list[np.ndarray] = []
    reasons: Counter[str] = Counter()
    for file in tqdm(
        files, desc=f"piano rolls ({split})", unit="piece", disable=not progress, mininterval=1.0
    ):
        if not file.is_file():
            reasons["source file missing"] += 1
            continue
        try:
            rolls.append(midi_to_roll(file, cfg))
        except MidiReadError as err:  # reported and skipped: one bad file never stops a build
            reasons[err.reason] += 1
        except Exception as err:  # noqa: BLE001
            log.debug("%s: %s", file, err)
            reasons[f"{type(err).__name__}"] += 1
    if reasons:
        log.info(
            "%s: %d of %d pieces skipped (%s)",
            split,
            sum(reasons.values()),
            len(files),
            "; ".join(f"{n} x {r}" for r, n in reasons.most_common(4)),
        )
    if files and reasons.get("source file missing", 0) == len(files):
        raise MusgenError(
            f"the source MIDI files of {data_dir} are gone (e.g. {files[0]}); piano rolls are read "
            f"from them: rebuild the data set with `musgen data build ... --force`"
        )
    k, p = cfg.num_tracks, cfg.num_pitches
    packed = (
        np.packbits(np.concatenate(rolls, axis=1), axis=-1)
        if rolls
        else np.zeros((k, 0, (p + 7) // 8), dtype=np.uint8)
    )
    offsets = np.zeros(len(rolls) + 1, dtype=np.int64)
    np.cumsum([r.shape[1] for r in rolls], out=offsets[1:])
    write_cache(path, "piano rolls", packed=packed, offsets=offsets)
    return packed, offsets


def grid_transitions(rolls: np.ndarray, sub_steps: int, positions: int, pitches: int) -> np.ndarray:
    """(N, K, T, P) rolls -> (S, K, P + 1, P + 1) counts of each track's move from one grid point
    (every ``sub_steps`` steps) to the next, over its pitch or the rest (index P), per metrical
    position of the next grid point (as ``RollPhrases.voice_transitions``)."""
    grid = rolls[:, :, ::sub_steps]  # (N, K, T16, P)
    value = np.where(grid.any(-1), grid.argmax(-1), pitches)  # (N, K, T16)
    n, k, t16 = value.shape
    where = np.broadcast_to(np.arange(1, t16) % positions, (n, t16 - 1))
    counts = np.zeros((positions, k, pitches + 1, pitches + 1))
    for track in range(k):
        np.add.at(counts[:, track], (where, value[:, track, :-1], value[:, track, 1:]), 1)
    return counts


class RollPhrases(TransposedItems):
    """Phrases of ``cfg.num_bars`` bars: item i is a fixed (piece, start) pair, (K, T, P) float32 in {0, 1}.

    Transposition (training only): see ``TransposedItems``.
    """

    def __init__(
        self,
        data_dir: Path,
        split: str,
        cfg: PianorollConfig,
        *,
        transpose: int = 0,
        seed: int = 0,
        progress: bool = True,
    ):
        super().__init__(transpose, seed)
        self.cfg = cfg
        self.drums = [k for k in range(cfg.num_tracks) if cfg.is_drum(k)]
        self.packed, self.offsets = load_rolls(data_dir, split, cfg, progress)
        starts = []
        for j in range(len(self.offsets) - 1):
            lo, hi = int(self.offsets[j]), int(self.offsets[j + 1])
            starts.append(lo + phrase_starts(self._unpack(lo, hi), cfg))
        self.starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)  # absolute steps

    def _unpack(self, lo: int, hi: int) -> np.ndarray:
        return np.unpackbits(self.packed[:, lo:hi], axis=-1, count=self.cfg.num_pitches).astype(bool)

    def phrase(self, i: int) -> np.ndarray:
        """The untransposed phrase i, (K, T, P) bool."""
        start = int(self.starts[i])
        return self._unpack(start, start + self.cfg.phrase_steps)

    item = phrase

    def pitch_ranges(self, share: float = 0.005) -> tuple[list[int], list[int]]:
        """Per track the pitch indices below and above which ``share`` of its sounding steps lie in this
        split (untransposed; a few stray notes do not widen a voice); (0, P - 1) for a silent track."""
        k, steps, _ = self.packed.shape
        counts = np.zeros((k, self.cfg.num_pitches))
        for a in range(0, steps, 50_000):  # unpacked in chunks: (K, 50k, P) bools at a time
            counts += np.unpackbits(self.packed[:, a : a + 50_000], axis=-1, count=self.cfg.num_pitches).sum(
                1
            )
        lowest, highest = [], []
        for row in counts:
            if not row.any():
                lowest.append(0)
                highest.append(self.cfg.num_pitches - 1)
                continue
            cdf = np.cumsum(row) / row.sum()
            lowest.append(int(np.searchsorted(cdf, share)))
            highest.append(int(np.searchsorted(cdf, 1 - share)))
        return lowest, highest

    def voice_transitions(self, sub_steps: int, positions: int = 1) -> np.ndarray:
        """(S, K, P + 1, P + 1) counts of each track's move from one grid point (every ``sub_steps``
        steps: a 16th) to the next, over its pitch (the lowest sounding) or the rest (index P), per
        metrical position of the next grid point (its index in the piece modulo ``positions`` = S;
        pieces start on a downbeat); the moves across a piece boundary are left out."""
        k, p = self.cfg.num_tracks, self.cfg.num_pitches
        counts = np.zeros((positions, k, p + 1, p + 1))
        for j in range(len(self.offsets) - 1):
            roll = self._unpack(int(self.offsets[j]), int(self.offsets[j + 1]))  # (K, T, P)
            counts += grid_transitions(roll[None], sub_steps, positions, p)
        return counts

    def voice_restrikes(self, sub_steps: int, positions: int = 1) -> np.ndarray:
        """(S, K, 2) counts, per metrical position of a grid point (as ``voice_transitions``) and track,
        of the grid points that keep the pitch of the one before (first entry) and of those among them
        that strike it again (second: the step before is silent, as ``separate_repeats`` writes a
        repeated note)."""
        k, p = self.cfg.num_tracks, self.cfg.num_pitches
        counts = np.zeros((positions, k, 2))
        for j in range(len(self.offsets) - 1):
            full = self._unpack(int(self.offsets[j]), int(self.offsets[j + 1]))  # (K, T, P)
            value = np.where(full[:, ::sub_steps].any(-1), full[:, ::sub_steps].argmax(-1), p)  # (K, T16)
            n = value.shape[1]
            kept = (value[:, 1:] == value[:, :-1]) & (value[:, 1:] < p)  # (K, T16 - 1)
            before = full[:, sub_steps - 1 :: sub_steps][:, : n - 1]  # (K, T16 - 1, P): the step before
            sounding = np.take_along_axis(before, np.minimum(value[:, 1:], p - 1)[..., None], -1)[..., 0]
            where = np.arange(1, n) % positions
            for track in range(k):
                np.add.at(counts[:, track, 0], where, kept[track])
                np.add.at(counts[:, track, 1], where, kept[track] & ~sounding[track])
        return counts

    def voice_intervals(self, sub_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Vertical intervals between the tracks at each grid point (every ``sub_steps`` steps): (K, K,
        2P - 1) counts of track k's pitch minus track j's (index d + P - 1, d in semitones; both
        sounding, lowest pitch of each), and the counts the same grid points would give if the two
        tracks chose their pitches independently, each from its own pitch distribution (j, k)."""
        k, p = self.cfg.num_tracks, self.cfg.num_pitches
        joint = np.zeros((k, k, 2 * p - 1))
        marginal = np.zeros((k, p))  # each track's pitch counts at the grid points
        for j in range(len(self.offsets) - 1):
            roll = self._unpack(int(self.offsets[j]), int(self.offsets[j + 1]))[:, ::sub_steps]  # (K, T16, P)
            marginal += roll.sum(1)
            value = np.where(roll.any(-1), roll.argmax(-1), p)  # (K, T16), the rest = P
            for lead in range(k):
                for track in range(k):
                    both = (value[lead] < p) & (value[track] < p)
                    np.add.at(joint[lead, track], value[track, both] - value[lead, both] + p - 1, 1)
        independent = np.zeros_like(joint)
        for lead in range(k):
            for track in range(k):
                a = marginal[lead] / max(1.0, marginal[lead].sum())
                b = marginal[track] / max(1.0, marginal[track].sum())
                # sum over l of P_lead(l) * P_track(l + d), at index d + P - 1
                independent[lead, track] = np.convolve(b, a[::-1]) * joint[lead, track].sum()
        return joint, independent

    def shift(self, roll: np.ndarray, semitones: int) -> np.ndarray | None:
        return transpose_roll(roll, semitones, self.drums)

    def as_batch(self, roll: np.ndarray) -> dict[str, torch.Tensor]:
        return {"roll": torch.from_numpy(roll.astype(np.float32))}


def require_phrases(dataset: RollPhrases, data_dir: Path, split: str) -> None:
    if len(dataset) == 0:
        cfg = dataset.cfg
        raise MusgenError(
            f"the {split} split of {data_dir} has no piano-roll phrase of {cfg.num_bars} bars of "
            f"{cfg.quarters_per_bar} quarters with tracks {cfg.track_names} (at most {cfg.max_empty:.0%} empty "
            f"track-bars); check data.tracks / data.track_names, or use more data"
        )
