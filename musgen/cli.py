"""The ``musgen`` command line (see shared/CLI.md): a thin layer over the Python API.

Expected errors (bad flags, bad input, missing files) print one line on stderr and exit with 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

from musgen import __version__
from musgen.errors import MusgenError
from musgen.registry import FAMILIES

log = logging.getLogger("musgen")

EXAMPLES = {
    "data build": "musgen data build --corpus bach --out data/bach\n"
    "  musgen data build --midi-dir ~/lakh --out data/lakh --tokenizer tsd --set bpe_vocab_size=2000\n"
    "  musgen data build --corpus bach --render --out data/bach-audio --set sample_rate=16000\n"
    "  musgen data build --audio-dir ~/recordings --out data/recordings --set max_seconds_per_piece=60",
    "train": "musgen train transformer --data data/bach --out runs/transformer\n"
    "  musgen train lstm --data data/bach --out runs/tiny --config tiny/lstm "
    "--set train.steps=100\n  musgen train transformer --data data/bach --out runs/transformer --resume\n"
    "  musgen train vqvae --data data/bach-audio --out runs/vqvae\n"
    "  musgen train prior --data data/bach-audio --out runs/prior --set vqvae=runs/vqvae",
    "sample": "musgen sample --checkpoint runs/transformer --out samples --num-samples 4 --length 512\n"
    "  musgen sample --checkpoint runs/transformer --prime seed.mid --bars 8 --top-p 0.95 --seed 1 "
    "--out samples\n"
    "  musgen sample --checkpoint runs/musegan --bars 8 --num-samples 4 --out samples\n"
    "  musgen sample --checkpoint runs/musegan --condition-track melody.mid --track soprano --out harmonised\n"
    "  musgen sample --checkpoint runs/prior --prime seed.wav --seconds 10 --out audio",
    "interpolate": "musgen interpolate a.mid b.mid --checkpoint runs/musicvae --steps 8 --out morph\n"
    "  musgen interpolate a.mid b.mid --checkpoint runs/musicvae_2bar --steps 5 --bar-offset 4 --out morph\n"
    "  musgen interpolate a.mid --attribute density --amount 1.5 --steps 5 --checkpoint runs/musicvae "
    "--out denser",
    "reconstruct": "musgen reconstruct a.mid --checkpoint runs/musicvae --out recon\n"
    "  musgen reconstruct take.wav --checkpoint runs/vqvae --out recon",
    "infill": "musgen infill chorale.mid --bars 9-12 --checkpoint checkpoints/transformer-infill --out filled\n"
    "  musgen infill chorale.mid --bars 1-8 --track alto --checkpoint checkpoints/transformer-infill "
    "--out new_alto --num-samples 4 --render\n"
    "  musgen infill chorale.mid --bars 5-6 --density high --seed 1 --checkpoint runs/infill --out busier",
    "render": "musgen render chorale.mid --out chorale.wav\n"
    "  musgen render chorale.mid --out chorale.flac --soundfont ~/sf2/GeneralUser.sf2 --sample-rate 16000\n"
    "  musgen render chorale.mid --out organ.wav --engine synth --program 19",
    "eval": "musgen eval --checkpoint runs/transformer --data data/bach --out runs/transformer/eval.json\n"
    "  musgen eval --checkpoint runs/lstm --data data/bach --num-samples 64 --length 1024 --out lstm_eval.json\n"
    "  musgen eval --checkpoint runs/vqvae --data data/bach-audio --out vqvae_eval.json",
    "plot": "musgen plot chorale.mid --out chorale.png",
    "card": "musgen card runs/transformer --out cards/transformer\n"
    "  musgen card checkpoints/prior --out cards/prior --seconds 5",
    "report": "musgen report runs/transformer --out runs/transformer/report\n"
    "  musgen report runs/lstm --samples samples/lstm --eval lstm_eval.json --out report_lstm",
    "ui": "musgen ui\n  musgen ui --checkpoints runs --port 7861",
}


CHECKPOINT_HELP = "a RUN_DIR, a checkpoint directory, or a Hugging Face hub id org/name"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks for errors"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors"
    )


def _sub(subparsers, name: str, key: str, help_text: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {EXAMPLES[key]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="musgen",
        description="Train and sample music generators (MIDI and audio).",
        epilog="example:\n  "
        + EXAMPLES["data build"].splitlines()[0]
        + "\n  "
        + EXAMPLES["train"].splitlines()[0]
        + "\n  "
        + EXAMPLES["sample"].splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"musgen {__version__}")
    _add_common(parser)
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    verbs.required = True

    _add_data_build(verbs)
    _add_train(verbs)
    _add_sample(verbs)
    _add_interpolate(verbs)
    _add_reconstruct(verbs)
    _add_infill(verbs)
    _add_render(verbs)
    _add_eval(verbs)
    _add_plot(verbs)
    _add_report(verbs)
    _add_card(verbs)
    _add_ui(verbs)
    return parser


def _add_data_build(verbs: Any) -> None:
    """Adds the `data build` command."""
    data = verbs.add_parser("data", help="build data sets", description="Build data sets.")
    _add_common(data)
    data_verbs = data.add_subparsers(dest="data_verb", metavar="ACTION", parser_class=_Parser)
    data_verbs.required = True
    build = _sub(
        data_verbs,
        "build",
        "data build",
        "Build a data set: MIDI -> train/valid/test split by piece -> tokens, with a manifest; "
        "or audio (--audio-dir, or --corpus/--midi-dir with --render) -> split by piece -> 16-bit "
        "samples, for the vqvae and prior families.",
    )
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--corpus",
        choices=["bach", "folk", "palestrina", "all"],
        help="the built-in corpus shipped inside the music21 package",
    )
    source.add_argument("--midi-dir", type=Path, help="a folder of .mid/.midi files (searched recursively)")
    source.add_argument(
        "--audio-dir",
        type=Path,
        help="a folder of audio files (.wav .flac .ogg .aiff .mp3, searched recursively): an audio data set",
    )
    build.add_argument(
        "--render",
        action="store_true",
        help="render the --corpus or --midi-dir MIDI to audio: an audio data set",
    )
    build.add_argument(
        "--soundfont",
        type=Path,
        metavar="SF2",
        help="General MIDI soundfont for --render (default: $MUSGEN_SOUNDFONT or a system one)",
    )
    build.add_argument("--out", type=Path, required=True, help="DATA_DIR to write")
    build.add_argument("--tokenizer", help="remi (default), midilike, tsd, structured")
    build.add_argument("--config", type=Path, help="YAML file with data settings (token or audio settings)")
    build.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a data setting, e.g. --set bpe_vocab_size=2000",
    )
    build.add_argument("--force", action="store_true", help="rebuild even if a matching build exists")
    build.add_argument("--limit", type=int, help="use only the first N source files (quick experiments)")


def _add_train(verbs: Any) -> None:
    """Adds `train`."""
    train = _sub(verbs, "train", "train", "Train a model family on a data set built by `musgen data build`.")
    train.add_argument("family", metavar="FAMILY", help=", ".join(FAMILIES))
    train.add_argument("--data", type=Path, required=True, help="DATA_DIR from `musgen data build`")
    train.add_argument(
        "--out", type=Path, required=True, help="RUN_DIR for config, logs, state and checkpoints"
    )
    train.add_argument(
        "--config",
        metavar="PRESET|FILE",
        help="a packaged preset (tiny/lstm, pretrained/transformer, lstm ...; default: the preset named "
        "FAMILY) or a YAML file",
    )
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=3e-4 (repeatable)",
    )
    train.add_argument("--resume", action="store_true", help="continue RUN_DIR from its last complete state")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_sample(verbs: Any) -> None:
    """Adds `sample`."""
    sample = _sub(
        verbs,
        "sample",
        "sample",
        "Sample new music from a trained checkpoint. OUT_DIR/samples.json records each run: the "
        "checkpoint and its step, musgen's version, every setting (the temperature / top-k / top-p "
        "used included) and the seed; without --seed one is drawn, and --seed with it repeats the "
        "run. A rerun into the same OUT_DIR never overwrites: it continues the numbering "
        "(sample_003.mid after sample_002.mid) and adds its run to samples.json. Magenta's flag "
        "names --primer_midi, --num_outputs and --output_dir work too.",
    )
    sample.add_argument("--checkpoint", type=Path, required=True, help=CHECKPOINT_HELP)
    sample.add_argument(
        "--out",
        "--output_dir",
        type=Path,
        required=True,
        help="OUT_DIR for sample_000.mid ... and samples.json (numbering continues after files already there)",
    )
    sample.add_argument(
        "--prime",
        "--primer_midi",
        type=Path,
        help="a MIDI file the samples continue and start with (an audio file for the audio prior)",
    )
    sample.add_argument("--num-samples", "--num_outputs", type=int, default=1, help="default 1")
    sample.add_argument(
        "--seed", type=int, help="random seed (default: a fresh one, recorded in OUT_DIR/samples.json)"
    )
    length = sample.add_mutually_exclusive_group()
    length.add_argument("--length", type=int, help="new tokens per sample (default 512)")
    length.add_argument("--bars", type=int, help="new bars per sample (tokenizers with Bar tokens)")
    length.add_argument(
        "--seconds", type=float, help="new seconds of audio per sample (audio prior; default 5)"
    )
    sample.add_argument(
        "--max-silence",
        type=float,
        metavar="SECONDS",
        help="audio prior: the longest stretch of digital silence a sample may write (0: none, inf: "
        "no limit; default: the checkpoint's recommendation, else no limit)",
    )
    sample.add_argument(
        "--min-length",
        type=int,
        help="no end-of-piece before this many new tokens (default: a quarter of --length)",
    )
    _sampling_arguments(sample)
    _device_arguments(sample)
    sample.add_argument(
        "--compile",
        action="store_true",
        default=None,  # not given: None, so families without the option do not refuse it
        help="transformers, the LSTM and the audio prior: decode with a compiled one-token step "
        "(the same samples, faster at batch 1; compiling takes seconds, cached on disk after)",
    )
    sample.add_argument(
        "--density",
        choices=["rest", "low", "mid", "high"],
        help="models trained on named tracks: notes per beat in every new bar of every track "
        "(low: fewer than one, mid: one, high: 1.5 or more)",
    )
    sample.add_argument("--render", action="store_true", help="also write sample_000.wav ... (rendered MIDI)")
    sample.add_argument("--plot", action="store_true", help="also write sample_000.png ... (piano rolls)")
    gan = sample.add_argument_group("piano-roll models (accompaniment)")
    gan.add_argument(
        "--condition-track",
        type=Path,
        metavar="PATH",
        help="accompany a track of this MIDI file (generate the other tracks around it)",
    )
    gan.add_argument(
        "--track", metavar="NAME", help="which track of the model --condition-track supplies, e.g. soprano"
    )
    gan.add_argument(
        "--binarize",
        choices=["threshold", "bernoulli"],
        help="notes from probabilities: above --threshold (default) or drawn",
    )
    gan.add_argument("--threshold", type=float, help="note threshold for --binarize threshold (default 0.5)")


def _add_interpolate(verbs: Any) -> None:
    """Adds `interpolate`."""
    interp = _sub(
        verbs,
        "interpolate",
        "interpolate",
        "Morph one MIDI clip into another through a MusicVAE's latent space (slerp between the "
        "two latent means), or, with --attribute, move one clip along an attribute vector (more or "
        "fewer notes, higher or lower). Writes interp_000.mid ... (--steps files, both endpoints "
        "included) and interpolation.mid with all steps in order, a bar of rest and a marker "
        "between them, and records the run in samples.json; a rerun into the same folder adds "
        "files, never overwrites. Each clip is reduced to its melody line (the highest note at "
        "each moment) and cut to the model's window (2 or 16 bars).",
    )
    interp.add_argument("clip_a", metavar="A.mid", type=Path)
    interp.add_argument("clip_b", metavar="B.mid", type=Path, nargs="?", help="omitted with --attribute")
    interp.add_argument(
        "--steps",
        "--num_outputs",
        type=int,
        default=8,
        help="files to write, endpoints included (default 8; Magenta's --num_outputs)",
    )
    interp.add_argument(
        "--attribute",
        metavar="NAME",
        help="decode z_A + t * AMOUNT * v for t from 0 to 1, v the checkpoint's attribute vector NAME "
        "(density: note onsets per bar; pitch: mean pitch), stored by scripts/attribute_vectors.py",
    )
    interp.add_argument(
        "--amount", type=float, help="how far to move along --attribute (default 1; negative lowers it)"
    )
    _latent_arguments(interp)
    _device_arguments(interp)


def _add_reconstruct(verbs: Any) -> None:
    """Adds `reconstruct`."""
    recon = _sub(
        verbs,
        "reconstruct",
        "reconstruct",
        "Encode a clip and decode it again. A MusicVAE takes a MIDI file and writes original.mid (the "
        "melody window the model sees) and reconstruction.mid; a vqvae (audio codec) takes an audio "
        "file and writes original.wav (at the codec's sample rate) and reconstruction.wav. The run "
        "is recorded in samples.json; a rerun into the same folder writes original_001.mid ...",
    )
    recon.add_argument("clip_a", metavar="A.mid|A.wav", type=Path)
    _latent_arguments(recon)
    _device_arguments(recon)


def _add_infill(verbs: Any) -> None:
    """Adds `infill`."""
    infill = _sub(
        verbs,
        "infill",
        "infill",
        "Regenerate bars of a piece (every track, or one with --track) with a token model trained to "
        "infill (a data set with named tracks and data.infill > 0, e.g. checkpoints/transformer-infill): "
        "the model sees the music before and after the bars. Everything outside the selection is kept "
        "exactly. Writes OUT_DIR/infill_000.mid ... and records the run in samples.json (a rerun adds "
        "files, never overwrites).",
    )
    infill.add_argument("piece", metavar="PIECE.mid", type=Path)
    infill.add_argument("--bars", required=True, help="the bars to regenerate, counted from 1: 9-12, or 5")
    infill.add_argument(
        "--track", metavar="NAME", help="regenerate only this track (e.g. alto) in those bars"
    )
    infill.add_argument("--checkpoint", type=Path, required=True, help=CHECKPOINT_HELP)
    infill.add_argument(
        "--out", type=Path, required=True, help="OUT_DIR for infill_000.mid ... and samples.json"
    )
    infill.add_argument(
        "--density",
        choices=["rest", "low", "mid", "high"],
        help="notes per beat in each regenerated bar of each track: low (fewer than one), mid (one), "
        "high (1.5 or more) or rest (none); default: the model chooses",
    )
    infill.add_argument(
        "--pitch-range",
        metavar="LOW-HIGH",
        help="MIDI pitches the regenerated notes may have, e.g. 55-67 (a constraint on sampling)",
    )
    infill.add_argument("--num-samples", type=int, default=1, help="versions to write (default 1)")
    infill.add_argument(
        "--seed", type=int, help="random seed (default: a fresh one, recorded in samples.json)"
    )
    _sampling_arguments(infill)
    _device_arguments(infill)
    infill.add_argument("--compile", action="store_true", default=None, help="decode with a compiled step")
    infill.add_argument("--render", action="store_true", help="also write infill_000.wav ... (rendered MIDI)")
    infill.add_argument("--plot", action="store_true", help="also write infill_000.png ... (piano rolls)")


def _add_render(verbs: Any) -> None:
    """Adds `render`."""
    render = _sub(
        verbs,
        "render",
        "render",
        "Render a MIDI file to audio (mono) with a General MIDI soundfont: the fluidsynth program "
        "when it is installed, else RustySynth (bundled, no program to install); without a "
        "working soundfont synthesizer, the built-in additive one. Every engine gives the same "
        "length (the last note-off plus 1 s). Logs the engine used. The format follows the --out "
        "suffix.",
    )
    render.add_argument("midi", metavar="IN.mid", type=Path)
    render.add_argument("--out", type=Path, required=True, help="OUT.wav (or .flac, .ogg)")
    render.add_argument(
        "--soundfont",
        type=Path,
        metavar="SF2",
        help="General MIDI soundfont (default: $MUSGEN_SOUNDFONT or a system one)",
    )
    render.add_argument("--sample-rate", type=int, default=44100, metavar="HZ", help="default 44100")
    render.add_argument(
        "--engine",
        choices=["auto", "fluidsynth", "rustysynth", "synth"],
        default="auto",
        help="fluidsynth: the FluidSynth program with the soundfont; rustysynth: the RustySynth "
        "soundfont synthesizer (bundled, no program to install); synth: the built-in additive "
        "synthesizer (no soundfont); auto (default): the first of these that can run",
    )
    render.add_argument(
        "--max-seconds",
        type=float,
        default=0.0,
        metavar="S",
        help="render only the first S seconds (e.g. a prompt for the audio prior)",
    )
    render.add_argument(
        "--program",
        type=int,
        metavar="N",
        help="play every non-drum part with General MIDI program N (0-127), e.g. 19 church organ",
    )


def _add_eval(verbs: Any) -> None:
    """Adds `eval`."""
    evaluate = _sub(
        verbs,
        "eval",
        "eval",
        "Evaluate a checkpoint on a data set's held-out split: NLL / perplexity (per token and per "
        "note; per code for the audio prior), MusicVAE reconstruction accuracy, musical statistics "
        "of samples next to the held-out pieces' (overlap area and KL divergence, as mgeval), and for "
        "audio MR-STFT distance, SI-SDR, codebook usage and a Frechet distance on random-CNN "
        "embeddings. Writes REPORT.json and prints a table.",
    )
    evaluate.add_argument("--checkpoint", type=Path, required=True, help=CHECKPOINT_HELP)
    evaluate.add_argument("--data", type=Path, required=True, help="DATA_DIR the model was trained on")
    evaluate.add_argument("--out", type=Path, required=True, help="REPORT.json to write")
    evaluate.add_argument(
        "--num-samples",
        type=int,
        default=32,
        help="samples whose statistics are compared with the data (default 32; 0 = none)",
    )
    evaluate.add_argument(
        "--split", default="test", help="held-out split (default test; valid when test is empty)"
    )
    evaluate.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    evaluate.add_argument(
        "--length",
        type=int,
        help="new tokens per language-model sample (default: enough for --excerpt-quarters)",
    )
    evaluate.add_argument(
        "--excerpt-quarters",
        type=float,
        default=32.0,
        help="language models: samples and held-out pieces are compared as excerpts of this many "
        "quarter notes (default 32; 0 = whole pieces)",
    )
    _sampling_arguments(evaluate)
    evaluate.add_argument("--seconds", type=float, help="seconds per audio-prior sample (default 5)")
    evaluate.add_argument(
        "--max-seconds",
        type=float,
        default=10.0,
        help="audio: first seconds of each held-out piece (default 10; 0 = all)",
    )
    evaluate.add_argument("--batch-size", type=int, default=16, help="held-out windows per forward pass")
    evaluate.add_argument(
        "--save-samples",
        type=Path,
        metavar="DIR",
        help="also write the samples here, with samples.json (numbering continues after files already there)",
    )
    _device_arguments(evaluate)


def _add_plot(verbs: Any) -> None:
    """Adds `plot`."""
    plot = _sub(
        verbs, "plot", "plot", "Draw a MIDI file's piano roll as a PNG: one colour per track, bar lines."
    )
    plot.add_argument("midi", metavar="IN.mid", type=Path)
    plot.add_argument("--out", type=Path, required=True, help="OUT.png")
    plot.add_argument("--title", help="title above the roll (default: the file name)")


def _add_report(verbs: Any) -> None:
    """Adds `report`."""
    report = _sub(
        verbs,
        "report",
        "report",
        "Write a static HTML page about a run: training curves (metrics.jsonl), the evaluation "
        "(RUN_DIR/eval.json from `musgen eval`), and each sample's piano roll with an audio player "
        "(MIDI under RUN_DIR/samples/ or --samples; missing WAV/PNG files are made).",
    )
    report.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    report.add_argument("--out", type=Path, required=True, help="HTML_DIR for index.html and media/")
    report.add_argument(
        "--samples",
        type=Path,
        action="append",
        metavar="DIR",
        help="a folder of samples (repeatable; default RUN_DIR/samples)",
    )
    report.add_argument("--eval", type=Path, metavar="FILE", help="an eval JSON (default RUN_DIR/eval.json)")
    report.add_argument("--max-samples", type=int, default=48, help="samples shown at most (default 48)")


def _add_card(verbs: Any) -> None:
    """Adds `card`."""
    card = _sub(
        verbs,
        "card",
        "card",
        "Write a Hugging Face model card for a checkpoint into OUT_DIR: README.md (the hub's YAML "
        "header, what the model is, its training settings, its eval.json table, how to load it), "
        "media/ with one sample (MIDI, piano roll and rendering; or WAV and spectrogram for audio "
        "families), and the checkpoint's own files, so OUT_DIR can be pushed to the hub as is.",
    )
    card.add_argument("checkpoint", metavar="CKPT", type=Path, help=CHECKPOINT_HELP)
    card.add_argument("--out", type=Path, required=True, help="OUT_DIR (may be the checkpoint folder itself)")
    card.add_argument(
        "--hub-id", metavar="ORG/NAME", help="the id the card tells readers to load (default ORG/NAME)"
    )
    card.add_argument("--seed", type=int, default=0, help="seed of the card's sample (default 0)")
    card.add_argument(
        "--length", type=int, default=256, help="new tokens of a language model's sample (default 256)"
    )
    card.add_argument(
        "--seconds", type=float, default=5.0, help="seconds of an audio prior's sample (default 5)"
    )
    card.add_argument(
        "--card-only", action="store_true", help="write README.md and media/ only, not the checkpoint's files"
    )
    _device_arguments(card)


def _device_arguments(parser: argparse.ArgumentParser) -> None:
    """--device and --revision: where the model runs, which hub revision a hub id loads."""
    parser.add_argument(
        "--device",
        default="cpu",
        metavar="DEVICE",
        help="cpu (default), cuda, cuda:N, mps, or auto (cuda, else mps, else cpu)",
    )
    parser.add_argument(
        "--revision",
        metavar="REV",
        help="with a hub id as --checkpoint: the branch, tag or commit to load (default main)",
    )


def _load(args: argparse.Namespace) -> Any:
    """The --checkpoint's Generator on --device (a hub id at --revision)."""
    from musgen.api import load

    return load(args.checkpoint, args.device, revision=args.revision)


def _add_ui(verbs: Any) -> None:
    """Adds `ui`."""
    ui = _sub(
        verbs,
        "ui",
        "ui",
        "Serve a local web page to try the checkpoints of a folder: primer upload, sampling controls, "
        "piano roll, audio, download (needs `pip install 'musgen[ui]'`).",
    )
    ui.add_argument(
        "--data",
        type=Path,
        metavar="DATA_DIR",
        help="a data set whose held-out pieces the page offers as primers (by name)",
    )
    ui.add_argument(
        "--checkpoints",
        type=Path,
        default=Path("checkpoints"),
        metavar="DIR",
        help="folder whose subfolders are portable checkpoints (default: ./checkpoints)",
    )
    ui.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    ui.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")


def _latent_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="a musicvae (or vqvae) " + CHECKPOINT_HELP
    )
    parser.add_argument(
        "--out", "--output_dir", type=Path, required=True, help="OUT_DIR for the files and samples.json"
    )
    parser.add_argument("--bar-offset", type=int, default=0, help="start the window at this bar of each clip")
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="decoder sampling temperature; 0 (default) decodes greedily",
    )
    parser.add_argument("--top-k", type=int, default=0, help="keep the K most likely events (0 = off)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    parser.add_argument(
        "--seed",
        type=int,
        help="random seed when sampling (--temperature > 0; default: a fresh one, recorded in samples.json)",
    )


def _cmd_data_build(args: argparse.Namespace) -> None:
    from musgen.config import from_dict, merge, parse_overrides, read_yaml, to_dict
    from musgen.data import DataConfig, build

    if args.limit is not None and args.limit < 1:
        raise MusgenError(f"--limit must be at least 1, got {args.limit}")
    if args.render and args.audio_dir is not None:
        raise MusgenError(
            "--render renders MIDI (--corpus or --midi-dir); --audio-dir files are used as they are"
        )
    if args.soundfont is not None and not args.render:
        raise MusgenError("--soundfont only applies with --render")
    settings = read_yaml(args.config) if args.config else {}
    if args.render or args.audio_dir is not None:
        _build_audio(args, settings)
        return
    if args.tokenizer:
        settings["tokenizer"] = args.tokenizer
    settings = merge(settings, parse_overrides(args.overrides))
    config = from_dict(DataConfig, merge(to_dict(DataConfig()), settings), where="data")
    manifest = build(
        args.out,
        corpus=args.corpus,
        midi_dir=args.midi_dir,
        config=config,
        force=args.force,
        limit=args.limit,
    )
    splits = manifest["splits"]
    print(
        f"data set in {args.out}: "
        + ", ".join(f"{name} {s['pieces']} pieces / {s['tokens']} tokens" for name, s in splits.items())
        + f"; {len(manifest['skipped'])} files skipped (reasons in {args.out / 'manifest.json'})"
    )


def _build_audio(args: argparse.Namespace, settings: dict) -> None:
    from musgen.config import from_dict, merge, parse_overrides, to_dict
    from musgen.data import AudioDataConfig, build_audio

    if args.tokenizer:
        raise MusgenError("--tokenizer does not apply to an audio data set")
    settings = merge(settings, parse_overrides(args.overrides))
    if args.soundfont is not None:
        settings["soundfont"] = str(args.soundfont)
    config = from_dict(AudioDataConfig, merge(to_dict(AudioDataConfig()), settings), where="data")
    manifest = build_audio(
        args.out,
        audio_dir=args.audio_dir,
        corpus=args.corpus,
        midi_dir=args.midi_dir,
        render=args.render,
        config=config,
        force=args.force,
        limit=args.limit,
    )
    rendered = f" (rendered with {manifest['renderer']})" if args.render else ""
    print(
        f"audio data set in {args.out} at {manifest['sample_rate']} Hz{rendered}: "
        + ", ".join(
            f"{name} {s['pieces']} pieces / {s['seconds']:.1f} s" for name, s in manifest["splits"].items()
        )
        + f"; {len(manifest['skipped'])} files skipped (reasons in {args.out / 'manifest.json'})"
    )


def _cmd_render(args: argparse.Namespace) -> None:
    from musgen.data.audio_io import audio_format, write_audio
    from musgen.data.render import render_midi

    audio_format(args.out)  # a bad suffix fails before the render, not after
    try:
        wave = render_midi(
            args.midi,
            args.sample_rate,
            soundfont=args.soundfont,
            engine=args.engine,
            program=args.program,
            max_seconds=args.max_seconds,
        )
    except MusgenError as err:
        reason = getattr(err, "reason", None)  # a MidiReadError's; None: a setting or a missing file
        if reason is None:
            raise
        raise MusgenError(f"cannot render {args.midi}: {reason}") from None
    print(write_audio(args.out, wave, args.sample_rate))


def _sampling_arguments(parser: argparse.ArgumentParser) -> None:
    from musgen.generate.sampling import one_or_per_level

    note = (
        " (default: the checkpoint's recommended setting, else {}; an audio prior also takes one value"
        " per codebook level, comma-separated)"
    )
    parser.add_argument(
        "--temperature", type=one_or_per_level(float), help="sampling temperature" + note.format(1)
    )
    parser.add_argument(
        "--top-k",
        type=one_or_per_level(int),
        help="keep the K most likely tokens, 0 = off" + note.format("off"),
    )
    parser.add_argument(
        "--top-p", type=one_or_per_level(float), help="nucleus sampling mass, 1 = off" + note.format("off")
    )


def _log_sampling(generator: Any, args: argparse.Namespace) -> None:
    """Says which sampling settings were used and where each one came from."""
    used = generator.sampling_settings(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    used = {k: v for k, v in used.items() if k in generator.controls}  # a voice MuseGAN: temperature only
    recommended = generator.recommended_sampling
    used |= generator.option_sampling(vars(args))
    origin = {
        k: "given"
        if getattr(args, k, None) is not None
        else "recommended by the checkpoint"
        if k in recommended
        else "default"
        for k in used
    }
    log.info(
        "sampled with %s", ", ".join(f"{k.replace('_', '-')} {v} ({origin[k]})" for k, v in used.items())
    )


def _cmd_train(args: argparse.Namespace) -> None:
    from musgen.api import train

    result = train(
        args.family,
        args.data,
        args.out,
        config=args.config,
        overrides=args.overrides,
        resume=args.resume,
        progress=not args.no_progress,
    )
    if not getattr(result, "main", True):  # another process of `accelerate launch`: the main one reports
        return
    metrics = ", ".join(
        f"{k}={v:.4f}" for k, v in result.metrics.items() if k in ("valid_nll", "valid_ppl", "valid_wdist")
    )
    print(
        f"trained {args.family} to step {result.step}; checkpoint {result.checkpoint}"
        + (f"; {metrics}" if metrics else "")
    )


def _cmd_sample(args: argparse.Namespace) -> None:
    for flag, path in (("primer", args.prime), ("--condition-track", args.condition_track)):
        if path is not None and not path.is_file():
            raise MusgenError(f"{flag} {path} is not a file")
    generator = _load(args)
    if (args.render or args.plot) and generator.sample_suffix != ".mid":
        raise MusgenError("--render and --plot apply to MIDI samples; this checkpoint writes audio already")
    paths = generator.generate_to(
        args.out,
        args.num_samples,
        prime=args.prime,
        length=args.length,
        min_length=args.min_length,
        bars=args.bars,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        condition=args.condition_track,
        track=args.track,
        binarize=args.binarize,
        threshold=args.threshold,
        seconds=args.seconds,
        max_silence=args.max_silence,
        compile=args.compile,
        density=args.density,
    )
    if generator.draws_tokens:  # e.g. MuseGAN's controls are --binarize / --threshold
        _log_sampling(generator, args)
    _print_with_media(paths, args)


def _print_with_media(paths: list[Path], args: argparse.Namespace) -> None:
    """Prints the paths written, with their renderings / piano rolls when --render / --plot ask."""
    for path in paths:
        print(path)
    if args.render or args.plot:
        from musgen.progress import progress
        from musgen.viz.media import sample_media

        for path in progress(paths, desc="render" if args.render else "plot", unit="sample"):
            for extra in sample_media(path, render=args.render, plot=args.plot):
                print(extra)


def _cmd_infill(args: argparse.Namespace) -> None:
    if not args.piece.is_file():
        raise MusgenError(f"{args.piece} is not a file")
    generator = _load(args)
    paths = generator.require("infill_to", "infilling")(
        args.out,
        args.piece,
        args.bars,
        args.num_samples,
        track=args.track,
        density=args.density,
        pitch_range=args.pitch_range,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        compile=args.compile,
    )
    _log_sampling(generator, args)
    _print_with_media(paths, args)


def _cmd_eval(args: argparse.Namespace) -> None:
    import json

    from musgen.eval.evaluate import evaluate_checkpoint

    if args.out.suffix.lower() != ".json":
        raise MusgenError(f"--out {args.out} should be a .json file")
    report = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        num_samples=args.num_samples,
        split=args.split,
        seed=args.seed,
        length=args.length,
        seconds=args.seconds,
        max_seconds=args.max_seconds,
        batch_size=args.batch_size,
        samples_dir=args.save_samples,
        excerpt_quarters=args.excerpt_quarters or None,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        device=args.device,
        revision=args.revision,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    print(report["table"])
    print(f"\nwritten {args.out}")


def _json_default(value):
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _cmd_plot(args: argparse.Namespace) -> None:
    from musgen.data.tokenizers import MidiReadError
    from musgen.viz.pianoroll_plot import plot_pianoroll

    if not args.midi.is_file():
        raise MusgenError(f"MIDI file {args.midi} does not exist")
    if args.out.suffix.lower() != ".png":
        raise MusgenError(f"--out {args.out} should be a .png file")
    try:
        print(plot_pianoroll(args.midi, args.out, title=args.title or args.midi.name))
    except MidiReadError as err:
        raise MusgenError(f"cannot plot {args.midi}: {err.reason}") from None


def _cmd_report(args: argparse.Namespace) -> None:
    from musgen.viz.report import build_report

    if args.max_samples < 0:
        raise MusgenError(f"--max-samples must be at least 0, got {args.max_samples}")
    print(
        build_report(
            args.run_dir, args.out, samples=args.samples, eval_file=args.eval, max_samples=args.max_samples
        )
    )


def _cmd_card(args: argparse.Namespace) -> None:
    from musgen.card import CardOptions, write_card
    from musgen.hub import looks_like_hub_id

    if args.hub_id is not None and not looks_like_hub_id(args.hub_id):
        raise MusgenError(f"--hub-id must look like org/name, not {args.hub_id!r}")
    options = CardOptions(
        hub_id=args.hub_id,
        seed=args.seed,
        length=args.length,
        seconds=args.seconds,
        copy_checkpoint=not args.card_only,
        device=args.device,
        revision=args.revision,
    )
    written = write_card(args.checkpoint, args.out, options)
    print(written[-1])


def _clips(args: argparse.Namespace, names: tuple[str, ...]) -> list[Path]:
    clips = [getattr(args, name) for name in names]
    for clip in clips:
        if not clip.is_file():
            raise MusgenError(f"clip {clip} is not a file")
    return clips


def _decode_controls(args: argparse.Namespace) -> dict:
    return {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}


def _cmd_interpolate(args: argparse.Namespace) -> None:
    if args.attribute is not None:
        paths = _shift_along_attribute(args)
    else:
        if args.clip_b is None:
            raise MusgenError("interpolate needs two clips A.mid B.mid, or one clip with --attribute NAME")
        if args.amount is not None:
            raise MusgenError("--amount applies only with --attribute NAME")
        a, b = _clips(args, ("clip_a", "clip_b"))
        paths = _load(args).require("interpolate_to", "interpolation")(
            args.out, a, b, args.steps, bar_offset=args.bar_offset, **_decode_controls(args)
        )
    for path in paths:
        print(path)


def _shift_along_attribute(args: argparse.Namespace) -> list[Path]:
    """`interpolate A.mid --attribute NAME --amount X`: one clip moved along an attribute vector."""
    if args.clip_b is not None:
        raise MusgenError("--attribute moves one clip: give A.mid only (drop --attribute to morph A into B)")
    (a,) = _clips(args, ("clip_a",))
    amount = 1.0 if args.amount is None else args.amount
    return _load(args).require("shift_to", "--attribute")(
        args.out, a, args.attribute, amount, args.steps, bar_offset=args.bar_offset, **_decode_controls(args)
    )


def _cmd_reconstruct(args: argparse.Namespace) -> None:
    (a,) = _clips(args, ("clip_a",))
    for path in _load(args).require("reconstruct_to", "reconstruction")(
        args.out, a, bar_offset=args.bar_offset, **_decode_controls(args)
    ):
        print(path)


def _cmd_ui(args: argparse.Namespace) -> None:
    from musgen.ui import serve

    if not 0 < args.port < 65536:
        raise MusgenError(f"--port must be in 1..65535, got {args.port}")
    serve(args.checkpoints, host=args.host, port=args.port, data_dir=args.data)


COMMANDS = {
    ("data", "build"): _cmd_data_build,
    ("train", None): _cmd_train,
    ("sample", None): _cmd_sample,
    ("interpolate", None): _cmd_interpolate,
    ("reconstruct", None): _cmd_reconstruct,
    ("infill", None): _cmd_infill,
    ("render", None): _cmd_render,
    ("eval", None): _cmd_eval,
    ("plot", None): _cmd_plot,
    ("report", None): _cmd_report,
    ("card", None): _cmd_card,
    ("ui", None): _cmd_ui,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if debug else "%(message)s",
        stream=sys.stderr,
    )
    for noisy in ("accelerate", "urllib3", "filelock", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING if debug else logging.ERROR)
    command = COMMANDS[(args.verb, getattr(args, "data_verb", None))]
    try:
        command(args)
    except MusgenError as err:
        if debug:
            raise
        print(f"musgen: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system said no (an --out that is a file, a read-only folder ...)
        if debug:
            raise
        where = f": {err.filename}" if err.filename else ""
        print(f"musgen: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("musgen: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
