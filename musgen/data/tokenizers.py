"""MidiTok wrappers: one flat id stream per MIDI file, tolerant decoding, pitch transposition tables.

Every tokenizer here produces ONE token sequence per file:

* ``use_programs=True``: miditok's own one-stream multitrack mode (``Program`` tokens in the stream).
* ``use_programs=False``: miditok 3.1 would return one sequence per track, so we merge all
  non-drum tracks into a single piano track first (drum tracks are dropped: their notes are not
  pitches). A 4-voice chorale becomes one polyphonic piano stream.
* ``tracks=[...]``: the tracks layout (``musgen.data.track_layout``): named tracks kept apart, bar
  by bar, with density controls and fill-in-the-middle tokens (REMI only).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import miditok
import numpy as np
import symusic
from miditok.utils import merge_tracks

from musgen.errors import ConfigError, MusgenError, first_line

log = logging.getLogger(__name__)

TOKENIZERS: dict[str, type[miditok.MusicTokenizer]] = {
    "remi": miditok.REMI,
    "midilike": miditok.MIDILike,
    "tsd": miditok.TSD,
    "structured": miditok.Structured,
}

SPECIAL_TOKENS = ["PAD", "BOS", "EOS", "MASK"]
DEFAULT_BEAT_RES = {"0_4": 8, "4_12": 4}
# A longer piece is taken for a corrupt file (a huge delta time or note length): tokenizing it would
# emit one Bar token per empty bar, millions of them, before any time limit could stop it.
MAX_QUARTERS = 100_000  # about 7 hours at 240 quarter notes per minute
# Token families that carry an absolute pitch and so move under transposition.
# PitchDrum is deliberately absent: drum "pitches" are instruments.
_PITCHED_TYPES = ("Pitch", "NoteOn", "NoteOff")


class MidiReadError(MusgenError):
    """A MIDI file that cannot be tokenized; ``reason`` is one line for the build manifest."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _parse_beat_res(beat_res: dict | None) -> dict[tuple[int, int], int]:
    """Accept YAML-friendly {"0_4": 8} as well as miditok's {(0, 4): 8}."""
    beat_res = DEFAULT_BEAT_RES if beat_res is None else beat_res
    out: dict[tuple[int, int], int] = {}
    for key, res in beat_res.items():
        if isinstance(key, str):
            lo, hi = (int(x) for x in key.replace("-", "_").split("_"))
        else:
            lo, hi = (int(x) for x in key)
        out[(lo, hi)] = int(res)
    return out


def make_tokenizer(
    name: str,
    *,
    use_programs: bool = False,
    beat_res: dict | None = None,
    num_velocities: int = 32,
    pitch_range: tuple[int, int] = (21, 109),
    extra: dict | None = None,
    tracks: list[str] | None = None,
) -> miditok.MusicTokenizer:
    """Build a miditok tokenizer with PAD/BOS/EOS/MASK; ``extra`` goes to ``TokenizerConfig``;
    ``tracks`` (names) makes it a tracks-layout tokenizer (``musgen.data.track_layout``)."""
    from musgen.data.track_layout import layout_special_tokens

    key = name.lower()
    if key not in TOKENIZERS:
        raise ConfigError(f"unknown tokenizer {name!r}; choose from {sorted(TOKENIZERS)}")
    if tracks and (key != "remi" or use_programs):
        raise ConfigError("the tracks layout (tracks=[...]) needs tokenizer remi without use_programs")
    params = {
        "pitch_range": tuple(pitch_range),
        "beat_res": _parse_beat_res(beat_res),
        "num_velocities": num_velocities,
        "special_tokens": list(SPECIAL_TOKENS) + (layout_special_tokens(tracks) if tracks else []),
        "use_programs": use_programs,
        "one_token_stream_for_programs": True,
    }
    if tracks:  # bars follow the piece's metre; the bar's time signature is the layout's bar header
        params["use_time_signatures"] = True
    params.update(extra or {})
    return TOKENIZERS[key](miditok.TokenizerConfig(**params))


def load_tokenizer(path: Path) -> miditok.MusicTokenizer:
    """Load a ``tokenizer.json`` (or a directory holding one) saved by ``tokenizer.save``."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    try:
        with path.open() as f:
            cls_name = json.load(f)["tokenization"]
    except (OSError, ValueError, KeyError, TypeError) as e:  # missing, not JSON, or JSON of something else
        raise MusgenError(
            f"{path} is not a miditok tokenizer file ({type(e).__name__}: {e})".splitlines()[0]
        ) from None
    cls = getattr(miditok, str(cls_name), None)
    if not (isinstance(cls, type) and issubclass(cls, miditok.MusicTokenizer)):
        raise MusgenError(f"{path}: unknown miditok tokenization {cls_name!r}")
    try:
        return cls(params=path)
    except Exception as e:  # miditok raises many types on a damaged config
        raise MusgenError(
            f"{path}: miditok cannot load this tokenizer ({type(e).__name__}: {e})".splitlines()[0]
        ) from None


def load_score(path_or_score: Path | str | symusic.Score) -> symusic.Score:
    """Read a MIDI file, turning every failure into a one-line ``MidiReadError``."""
    if isinstance(path_or_score, symusic.Score):
        return path_or_score
    path = Path(path_or_score)
    try:
        if path.stat().st_size == 0:
            raise MidiReadError("empty file")
        score = symusic.Score(str(path))
    except MidiReadError:
        raise
    except Exception as e:  # symusic raises RuntimeError/ValueError/OSError on junk
        raise MidiReadError(f"unreadable MIDI: {first_line(e)}") from None
    if score.note_num() == 0:
        raise MidiReadError("no notes")
    tpq = score.ticks_per_quarter
    if tpq <= 0:
        raise MidiReadError(f"invalid time division ({tpq} ticks per quarter note)")
    quarters = score.end() / tpq
    if quarters > MAX_QUARTERS:
        raise MidiReadError(
            f"too long: {quarters:.0f} quarter notes (more than {MAX_QUARTERS}; corrupt delta times?)"
        )
    return score


def count_notes(score: symusic.Score) -> int:
    return int(score.note_num())


def prepare_score(tokenizer: miditok.MusicTokenizer, score: symusic.Score) -> symusic.Score:
    """Merge tracks into one piano track when the tokenizer does not use programs."""
    if tokenizer.config.use_programs or (len(score.tracks) <= 1 and not _has_drums(score)):
        return score
    score = score.copy()
    pitched = [t for t in score.tracks if not t.is_drum and len(t.notes) > 0]
    if not pitched:
        raise MidiReadError("no pitched (non-drum) notes")
    merged = merge_tracks(pitched)
    merged.program = 0
    merged.is_drum = False
    score.tracks = [merged]
    return score


def _has_drums(score: symusic.Score) -> bool:
    return any(t.is_drum for t in score.tracks)


def encode_score(
    tokenizer: miditok.MusicTokenizer, score: symusic.Score, encode_ids: bool = True
) -> miditok.TokSequence:
    """Tokenize an already loaded score into one ``TokSequence``."""
    from musgen.data.track_layout import encode_tracks, layout_of

    if layout_of(tokenizer) is not None:
        try:
            ids = encode_tracks(tokenizer, score)
        except Exception as e:
            raise MidiReadError(f"tokenizer failed: {type(e).__name__}: {e}".splitlines()[0]) from None
        if not ids:
            raise MidiReadError("no notes in any track of the layout")
        return miditok.TokSequence(ids=ids)
    score = prepare_score(tokenizer, score)
    try:
        seq = tokenizer.encode(score, encode_ids=encode_ids)
    except Exception as e:
        raise MidiReadError(f"tokenizer failed: {type(e).__name__}: {e}".splitlines()[0]) from None
    if isinstance(seq, list):  # per-track mode: after merging there is at most one track
        if not seq:
            raise MidiReadError("no notes left after preprocessing")
        seq = seq[0]
    if len(seq.ids) == 0:
        raise MidiReadError("empty token sequence")
    return seq


def midi_to_ids(tokenizer: miditok.MusicTokenizer, path_or_score: Path | str | symusic.Score) -> list[int]:
    """One flat list of token ids for a file (BPE-encoded if the tokenizer is trained)."""
    return list(encode_score(tokenizer, load_score(path_or_score)).ids)


def special_token_ids(tokenizer: miditok.MusicTokenizer) -> set[int]:
    return {tokenizer.vocab[f"{t}_None"] for t in SPECIAL_TOKENS if f"{t}_None" in tokenizer.vocab}


def decode_ids(tokenizer: miditok.MusicTokenizer, ids: list[int]) -> symusic.Score:
    """miditok decoding of one flat id stream (BPE ids included); raises on ill-formed input."""
    from musgen.data.track_layout import decode_tracks, layout_of

    if layout_of(tokenizer) is not None:
        return decode_tracks(tokenizer, ids)
    arg = ids if tokenizer.one_token_stream else [ids]
    return tokenizer.decode(arg)


def _sanitize(score: symusic.Score) -> symusic.Score:
    """Make the score safe to dump: pretty_midi rejects what symusic 0.6 writes otherwise.

    symusic writes a track-less score's meta events unsorted (negative delta times, which
    pretty_midi reads as a corrupt huge tick), so we sort them and keep at least one track.
    """
    for track in score.tracks:
        track.notes = [n for n in track.notes if n.duration > 0 and 0 <= n.pitch <= 127]
    score.tracks = [t for t in score.tracks if len(t.notes) > 0]
    score.tempos = sorted(score.tempos, key=lambda e: e.time)
    score.time_signatures = sorted(score.time_signatures, key=lambda e: e.time)
    score.key_signatures = sorted(score.key_signatures, key=lambda e: e.time)
    if len(score.tracks) == 0:
        score.tracks.append(symusic.Track("empty", 0, False))
    return score


def ids_to_score(tokenizer: miditok.MusicTokenizer, ids: list[int]) -> symusic.Score:
    """Decode any id sequence a model could produce; never raises.

    Special tokens and out-of-vocabulary ids are dropped; miditok itself skips most ill-formed
    token successions. If decoding still fails we keep the longest prefix that decodes (binary
    search: ``log n`` decodes), and fall back to an empty score.
    """
    try:
        drop = special_token_ids(tokenizer)
        n_vocab = len(tokenizer)
        clean = [int(i) for i in ids if 0 <= int(i) < n_vocab and int(i) not in drop]
    except Exception:  # e.g. non-integer input: nothing sensible to decode
        clean = []

    def attempt(seq: list[int]) -> symusic.Score | None:
        try:
            return _sanitize(decode_ids(tokenizer, seq))
        except Exception:
            return None

    score = attempt(clean) if clean else None
    if score is None and clean:
        log.debug("full decode failed on %d ids; searching longest decodable prefix", len(clean))
        lo, hi, best = 1, len(clean) - 1, None
        while lo <= hi:
            mid = (lo + hi) // 2
            s = attempt(clean[:mid])
            if s is not None:
                best, lo = s, mid + 1
            else:
                hi = mid - 1
        score = best
    if score is None:
        score = symusic.Score(tokenizer.time_division)
        score.tempos.append(symusic.Tempo(0, 120.0))
        score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
        score = _sanitize(score)
    return score


def pitch_shift_table(tokenizer: miditok.MusicTokenizer, semitones: int) -> np.ndarray:
    """Map every BASE token id to the id of the same token transposed by ``semitones``.

    Pitch/NoteOn/NoteOff tokens move, PitchDrum and every non-pitch token maps to itself, and a
    pitch pushed outside the vocabulary maps to -1. The table covers the base vocabulary only:
    a BPE token is a sequence of base tokens whose transposition is generally not another BPE
    token, so for trained (BPE) tokenizers the dataset disables transposition (with a warning)
    instead of re-encoding every window with BPE on the fly.
    """
    vocab: dict[str, int] = tokenizer.vocab
    table = np.arange(len(vocab), dtype=np.int64)
    for tok, idx in vocab.items():
        typ, _, val = tok.partition("_")
        if typ in _PITCHED_TYPES and val.lstrip("-").isdigit():
            table[idx] = vocab.get(f"{typ}_{int(val) + semitones}", -1)
    return table


def velocity_ids(tokenizer: miditok.MusicTokenizer) -> np.ndarray:
    """Ids of Velocity tokens sorted by velocity value (for velocity jitter)."""
    vels = []
    for tok, idx in tokenizer.vocab.items():
        typ, _, val = tok.partition("_")
        if typ == "Velocity" and val.isdigit():
            vels.append((int(val), idx))
    return np.array([i for _, i in sorted(vels)], dtype=np.int64)
