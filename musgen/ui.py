"""``musgen ui``: a local web page to try checkpoints, a thin layer over ``musgen.load``.

``Page`` holds what the page does (list and load checkpoints, check uploads, generate, interpolate,
accompany) with plain values in and out, so it is tested without a browser; ``build_app`` lays it out
with Gradio (the optional ``musgen[ui]`` extra). Safety: the server binds 127.0.0.1 unless told
otherwise; a checkpoint is a name resolved inside the checkpoints folder; an upload must come from the
upload folder, be small and read cleanly with musgen's own readers; every request is capped in size
(samples, tokens, bars, seconds) so that it ends in seconds; an expected error is a line on the page.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musgen.errors import MusgenError

log = logging.getLogger(__name__)

MAX_HELD_OUT = 200  # held-out pieces offered as primers
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_SAMPLES = 4
MAX_TOKENS = 1024  # new tokens (or audio code frames) per sample
MAX_BARS = 16
MAX_SECONDS = 20.0  # of new audio per sample
MAX_STEPS = 9  # interpolation steps
RENDER_SECONDS = 60.0  # a rendered MIDI sample is cut here
RENDER_RATE = 22050
DEFAULT_LENGTH = 256  # new tokens when the page opens: a few seconds on a CPU
MIDI_SUFFIXES = (".mid", ".midi")
INSTALL_HINT = "the web page needs gradio: pip install 'musgen[ui]' (or pip install 'gradio>=5,<7')"


@dataclass
class Result:
    """What one request shows: piano rolls, one audio file to play, files to download, a status line."""

    message: str
    rolls: list[Path] = field(default_factory=list)
    audio: Path | None = None
    files: list[Path] = field(default_factory=list)


def checkpoint_names(root: Path) -> list[str]:
    """The folders directly under ``root`` that hold a portable checkpoint (``musgen.json``)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "musgen.json").is_file())


def resolve_checkpoint(root: Path, name: str | None) -> Path:
    """The checkpoint folder called ``name`` inside ``root``; anything else (a path, ``..``, a link
    leading outside, an unknown name) is refused."""
    if not name:
        raise MusgenError("choose a checkpoint")
    if name in (".", "..") or "/" in name or "\\" in name or Path(name).is_absolute():
        raise MusgenError(f"{name!r} is not a checkpoint name")
    base = root.resolve()
    path = (base / name).resolve()
    if path.parent != base or name not in checkpoint_names(root):
        raise MusgenError(f"no checkpoint called {name!r} in {root}")
    return path


def check_upload(path: str | Path | None, upload_root: Path, suffixes: tuple[str, ...], what: str) -> Path:
    """An uploaded file, refused unless it lies in ``upload_root``, has one of ``suffixes`` and holds
    between 1 byte and ``MAX_UPLOAD_BYTES``."""
    if path is None:
        raise MusgenError(f"upload the {what}")
    file = Path(path).resolve()
    name = Path(path).name
    if not file.is_relative_to(upload_root.resolve()):
        raise MusgenError(f"{name}: not an uploaded file")
    if file.suffix.lower() not in suffixes:
        raise MusgenError(f"{name}: the {what} should be a {' / '.join(suffixes)} file")
    size = file.stat().st_size if file.is_file() else 0
    if size == 0:
        raise MusgenError(f"{name}: empty file")
    if size > MAX_UPLOAD_BYTES:
        raise MusgenError(f"{name}: {size / 2**20:.1f} MB, more than {MAX_UPLOAD_BYTES // 2**20} MB")
    return file


def read_midi_upload(path: str | Path | None, upload_root: Path, what: str) -> Path:
    """An uploaded MIDI file that musgen's reader accepts (notes, a sane length)."""
    from musgen.data.tokenizers import MidiReadError, load_score

    file = check_upload(path, upload_root, MIDI_SUFFIXES, what)
    try:
        load_score(file)
    except MidiReadError as err:
        raise MusgenError(f"{Path(path or '').name}: {err.reason}") from None
    return file


def read_audio_upload(path: str | Path | None, upload_root: Path, sample_rate: int, what: str) -> Path:
    """An uploaded audio file that musgen's reader accepts."""
    from musgen.data.audio_io import AUDIO_SUFFIXES, AudioReadError, read_audio

    file = check_upload(path, upload_root, AUDIO_SUFFIXES, what)
    try:
        read_audio(file, sample_rate, max_seconds=1.0)
    except AudioReadError as err:
        raise err.about(Path(path or "").name) from None
    return file


def capped(name: str, value: float | None, low: float, high: float) -> float | None:
    """``value`` (None: not given) if it lies in [low, high], else a message naming the range."""
    if value is not None and not low <= value <= high:
        raise MusgenError(f"{name} must be between {low:g} and {high:g} on this page, got {value:g}")
    return value


def whole(value: float | None) -> int | None:
    return None if value is None else int(value)


class Page:
    """The page's actions over the checkpoints of one folder; one model is kept loaded at a time."""

    def __init__(
        self,
        checkpoints: Path,
        upload_root: Path,
        work_dir: Path | None = None,
        data_dir: Path | None = None,
    ):
        """``data_dir``: a data set whose held-out pieces are offered as primers (by name only)."""
        self.root = Path(checkpoints)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._held_out: dict[str, Path] | None = None
        self.upload_root = Path(upload_root)
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="musgen-ui-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # one request at a time uses (or replaces) the loaded model
        self._loaded: tuple[str, Any] | None = None

    def names(self) -> list[str]:
        return checkpoint_names(self.root)

    def held_out(self) -> dict[str, Path]:
        """Primer choices: "test 003: X0004" -> the source MIDI of a held-out piece of ``data_dir``
        (test split, then valid; at most MAX_HELD_OUT). The page takes a name, never a path."""
        if self._held_out is None:
            from musgen.data.dataset import source_files

            pieces: dict[str, Path] = {}
            splits = ("test", "valid") if self.data_dir is not None else ()
            for split in splits:
                for i, path in enumerate(source_files(Path(str(self.data_dir)), split)):
                    if len(pieces) < MAX_HELD_OUT and path.is_file():
                        pieces[f"{split} {i:03d}: {path.stem}"] = path
            self._held_out = pieces
        return self._held_out

    def generator(self, name: str | None) -> Any:
        from musgen.generator import load

        path = resolve_checkpoint(self.root, name)
        with self._lock:
            if self._loaded is None or self._loaded[0] != name:
                self._loaded = (str(name), load(path))
            return self._loaded[1]

    def controls(self, name: str | None) -> dict[str, Any]:
        """Which sampling controls the checkpoint's generator takes (``shown``) and their starting
        values (its recommended sampling), plus whether it interpolates or accompanies."""
        gen = self.generator(name)
        audio = gen.sample_suffix != ".mid"
        # Primer and length belong to sequence models: a latent model's windows have a fixed length,
        # and MuseGAN only accepts (and refuses) them so that its command line can say why.
        takes = set(gen.controls) if gen.draws_tokens else {"bars", "seconds"} & set(gen.controls)
        latent = hasattr(gen, "interpolate_to")
        shown = {
            "prime": "prime" in takes and not latent,
            "temperature": "temperature" in takes,
            "top_k": "top_k" in takes,
            "top_p": "top_p" in takes,
            "length": "length" in takes and not audio and not latent,
            "bars": "bars" in takes and not audio and not latent,
            "seconds": "seconds" in takes,
        }
        # a per-level recommendation (a list: an audio prior's) has no one number to show: the field
        # stays empty and generating without a value uses it
        settings = {k: None if isinstance(v, list) else v for k, v in gen.sampling_settings().items()}
        values = {**settings, "length": DEFAULT_LENGTH if shown["length"] else None}
        return {
            "shown": shown,
            "values": values,
            "audio": audio,
            "interpolates": latent,
            "accompanies": "condition" in gen.options,
            "about": f"{gen.family}, step {gen.checkpoint.meta.get('step', '?')}, writes {gen.sample_suffix}",
        }

    # -- actions: each returns a Result; an expected error is its message ---------------------------
    def generate(
        self,
        name: str | None,
        primer: str | None = None,
        *,
        temperature: float | None = None,
        top_k: float | None = None,
        top_p: float | None = None,
        length: float | None = None,
        bars: float | None = None,
        seconds: float | None = None,
        seed: float | None = None,
        num_samples: float = 1,
        held_out: str | None = None,
    ) -> Result:
        """``primer``: an uploaded file; ``held_out``: the name of a held-out piece (``held_out()``),
        used when no file is uploaded."""

        def run(gen: Any, out: Path) -> list[Path]:
            shown = self.controls(name)["shown"]
            given = {
                "prime": self.primer(gen, primer, held_out) if shown["prime"] else None,
                "temperature": capped("temperature", temperature, 0.01, 10.0),
                "top_k": whole(capped("top-k", top_k, 0, 100_000)),
                "top_p": capped("top-p", top_p, 0.0, 1.0),
                "length": whole(capped("length", length, 1, MAX_TOKENS)),
                "bars": whole(capped("bars", bars, 1, MAX_BARS)),
                "seconds": capped("seconds", seconds, 0.1, MAX_SECONDS),
            }
            options = {k: v for k, v in given.items() if shown[k]}  # a hidden field is not given
            count = whole(capped("number of samples", num_samples, 1, MAX_SAMPLES)) or 1
            return gen.generate_to(out, count, seed=whole(seed), **options)

        return self._run(name, "generated", run)

    def interpolate(
        self,
        name: str | None,
        clip_a: str | None,
        clip_b: str | None,
        steps: float = 5,
        seed: float | None = None,
    ) -> Result:
        def run(gen: Any, out: Path) -> list[Path]:
            interpolate_to = gen.require("interpolate_to", "interpolation")
            a = read_midi_upload(clip_a, self.upload_root, "first clip")
            b = read_midi_upload(clip_b, self.upload_root, "second clip")
            count = whole(capped("steps", steps, 2, MAX_STEPS)) or 2
            paths = interpolate_to(out, a, b, count, seed=whole(seed))
            return paths[-1:] + paths[:-1]  # interpolation.mid (every step in a row) first

        return self._run(name, "interpolated", run)

    def accompany(
        self,
        name: str | None,
        melody: str | None,
        track: str | None = None,
        bars: float | None = None,
        seed: float | None = None,
    ) -> Result:
        def run(gen: Any, out: Path) -> list[Path]:
            gen.require("accompany", "accompaniment")
            file = read_midi_upload(melody, self.upload_root, "melody")
            options = {"bars": whole(capped("bars", bars, 1, MAX_BARS)), "seed": whole(seed)}
            return gen.generate_to(out, 1, condition=file, track=track or None, **options)

        return self._run(name, "accompanied", run)

    def primer(self, gen: Any, path: str | None, held_out: str | None = None) -> Path | None:
        """The uploaded primer (checked), else the chosen held-out piece, else None."""
        if not path:
            if not held_out:
                return None
            if held_out not in self.held_out():
                raise MusgenError(f"no held-out piece {held_out!r}")
            if gen.sample_suffix != ".mid":
                raise MusgenError("held-out pieces are MIDI: an audio checkpoint needs an audio primer")
            return self.held_out()[held_out]
        if gen.sample_suffix == ".mid":
            return read_midi_upload(path, self.upload_root, "primer")
        return read_audio_upload(path, self.upload_root, gen.sample_rate, "primer")

    def _run(self, name: str | None, verb: str, action: Any) -> Result:
        """Runs ``action(generator, out_dir)`` (which writes files) under the lock, then adds each MIDI
        file's piano roll and a rendering of the first one; a MusgenError becomes the message."""
        start = time.perf_counter()
        try:
            with self._lock:
                gen = self.generator(name)
                out = Path(tempfile.mkdtemp(prefix="request-", dir=self.work_dir))
                paths = action(gen, out)
                return self._media(paths, f"{verb} with {name}", time.perf_counter() - start)
        except MusgenError as err:
            return Result(message=f"Error: {err}")
        except OSError as err:  # an upload that vanished, a full disk
            return Result(
                message=f"Error: {err.strerror or err}" + (f": {err.filename}" if err.filename else "")
            )

    def _media(self, paths: list[Path], what: str, seconds: float) -> Result:
        from musgen.viz.media import plot_png

        midis = [p for p in paths if p.suffix == ".mid"]
        rolls = [plot_png(p, p.with_suffix(".png")) for p in midis]
        audio = render(midis[0]) if midis else paths[0] if paths else None
        files = paths + ([audio] if audio is not None and audio not in paths else [])
        return Result(f"{what}: {len(paths)} file(s) in {seconds:.1f} s", rolls, audio, files)


def render(midi: Path) -> Path | None:
    """A WAV of a MIDI sample (cut at RENDER_SECONDS), or None for one without notes."""
    from musgen.viz.media import render_wav

    return render_wav(midi, midi.with_suffix(".wav"), RENDER_RATE, max_seconds=RENDER_SECONDS)


# -- the Gradio page --------------------------------------------------------------------------------


def import_gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local tool: no calls home
    try:
        import gradio
    except ImportError:
        raise MusgenError(INSTALL_HINT) from None
    return gradio


def build_app(page: Page) -> Any:
    """The Gradio Blocks of the page."""
    gr = import_gradio()
    names = page.names()
    with gr.Blocks(title="musgen", analytics_enabled=False) as app:
        gr.Markdown("## musgen: try a checkpoint")
        with gr.Row():
            checkpoint = gr.Dropdown(names, value=names[0] if names else None, label="Checkpoint")
            about = gr.Markdown()
        with gr.Tab("Generate"):
            with gr.Row():
                primer = gr.File(label="Primer (MIDI, or audio for an audio checkpoint)", type="filepath")
                pieces = list(page.held_out())
                held_out = gr.Dropdown(
                    pieces, value=None, label="or a held-out piece", visible=bool(pieces), elem_id="held-out"
                )
            with gr.Row():
                temperature = gr.Number(label="Temperature", minimum=0.01, maximum=10)
                top_k = gr.Number(label="Top-k (0 = off)", precision=0, minimum=0)
                top_p = gr.Number(label="Top-p (1 = off)", minimum=0, maximum=1)
            with gr.Row():
                length = gr.Number(
                    label=f"Length (new tokens, <= {MAX_TOKENS})", precision=0, elem_id="length"
                )
                bars = gr.Number(label=f"Bars (<= {MAX_BARS})", precision=0)
                seconds = gr.Number(label=f"Seconds (<= {MAX_SECONDS:g})")
                seed = gr.Number(label="Seed (empty = random)", precision=0)
                count = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples")
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
        with gr.Tab("Interpolate (MusicVAE)") as interpolate_tab:
            with gr.Row():
                clip_a = gr.File(label="Clip A (MIDI)", type="filepath")
                clip_b = gr.File(label="Clip B (MIDI)", type="filepath")
            steps = gr.Slider(2, MAX_STEPS, value=5, step=1, label="Steps")
            interpolate = gr.Button("Interpolate", variant="primary")
        with gr.Tab("Accompany (MuseGAN)") as accompany_tab:
            melody = gr.File(label="Melody (MIDI)", type="filepath")
            with gr.Row():
                track = gr.Textbox(label="Track of the melody (empty: the file's first track)")
                accompany_bars = gr.Number(label=f"Bars (<= {MAX_BARS})", precision=0)
            accompany = gr.Button("Accompany", variant="primary")
        status = gr.Markdown(elem_id="status")
        rolls = gr.Gallery(label="Piano roll", columns=1, height="auto")
        player = gr.Audio(label="Listen", type="filepath", elem_id="player")
        files = gr.File(label="Download", file_count="multiple", elem_id="downloads")

        fields = {
            "prime": primer,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "length": length,
            "bars": bars,
            "seconds": seconds,
        }

        def show_controls(name: str | None) -> list[Any]:
            try:
                info = page.controls(name)
            except MusgenError as err:
                return [gr.update() for _ in fields] + [f"Error: {err}", gr.update(), gr.update()]
            updates = [
                gr.update(visible=info["shown"][key], value=info["values"].get(key))
                for key in fields
                if key != "prime"
            ]
            return [
                gr.update(visible=info["shown"]["prime"]),
                *updates,
                info["about"],
                gr.update(visible=info["interpolates"]),
                gr.update(visible=info["accompanies"]),
            ]

        def shown(result: Result) -> tuple[Any, ...]:  # Gradio takes paths as strings
            audio = str(result.audio) if result.audio else None
            files = [str(p) for p in result.files] or None
            return [str(p) for p in result.rolls], audio, files, result.message

        outputs = [rolls, player, files, status]
        events = {"concurrency_limit": 1, "concurrency_id": "model"}
        checkpoint.change(
            show_controls, checkpoint, [*fields.values(), about, interpolate_tab, accompany_tab]
        )
        app.load(show_controls, checkpoint, [*fields.values(), about, interpolate_tab, accompany_tab])
        generate.click(
            lambda name, prime, h, t, k, p, n, b, s, sd, c: shown(
                page.generate(
                    name,
                    prime,
                    held_out=h,
                    temperature=t,
                    top_k=k,
                    top_p=p,
                    length=n,
                    bars=b,
                    seconds=s,
                    seed=sd,
                    num_samples=c,
                )
            ),
            [checkpoint, primer, held_out, temperature, top_k, top_p, length, bars, seconds, seed, count],
            outputs,
            **events,
        )
        interpolate.click(
            lambda name, a, b, n, sd: shown(page.interpolate(name, a, b, n, sd)),
            [checkpoint, clip_a, clip_b, steps, seed],
            outputs,
            **events,
        )
        accompany.click(
            lambda name, m, t, b, sd: shown(page.accompany(name, m, t, b, sd)),
            [checkpoint, melody, track, accompany_bars, seed],
            outputs,
            **events,
        )
    return app


def upload_folder() -> Path:
    """Where Gradio stores uploads (``$GRADIO_TEMP_DIR``): the only files the page reads besides
    its checkpoints."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder())


def serve(checkpoints: Path, host: str = "127.0.0.1", port: int = 7860, data_dir: Path | None = None) -> None:
    """Builds the page for the checkpoints under ``checkpoints`` and serves it until interrupted."""
    import_gradio()
    if not checkpoint_names(checkpoints):
        raise MusgenError(f"no checkpoints (folders with a musgen.json) in {checkpoints}")
    if data_dir is not None and not (Path(data_dir) / "manifest.json").is_file():
        raise MusgenError(f"--data {data_dir} is not a musgen data set (no manifest.json)")
    page = Page(checkpoints, upload_folder(), data_dir=data_dir)
    app = build_app(page)
    app.queue(max_size=16)
    log.info("serving the checkpoints of %s on http://%s:%d", checkpoints, host, port)
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        max_file_size=MAX_UPLOAD_BYTES,
        ssr_mode=False,
    )
