"""What a listener looks at and hears for each MIDI sample: a WAV (``musgen.data.render``) and a
piano-roll PNG (``musgen.viz.pianoroll_plot``) written next to it (``sample --render --plot``); for
audio, a spectrogram PNG."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from musgen.errors import MusgenError

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050  # of rendered samples: small files, and the built-in corpora fit well below 11 kHz


def render_wav(
    midi: Path, wav: Path, sample_rate: int = SAMPLE_RATE, max_seconds: float = 0.0
) -> Path | None:
    """Renders ``midi`` (its first ``max_seconds``; 0 = all) to ``wav``; None (and a log line) for a
    sample that cannot sound (no notes)."""
    from musgen.data.audio_io import write_audio
    from musgen.data.render import render_midi

    try:
        wave = render_midi(midi, sample_rate, max_seconds=max_seconds)
    except MusgenError as err:
        reason = getattr(err, "reason", None)
        if reason is None:  # a setting or the soundfont: the user has to fix that
            raise
        log.warning("%s: not rendered (%s)", midi.name, reason)
        return None
    return write_audio(wav, wave, sample_rate)


def plot_png(midi: Path, png: Path) -> Path:
    """The piano roll of ``midi`` (an empty roll for a sample without notes)."""
    import symusic

    from musgen.data.tokenizers import MidiReadError, load_score
    from musgen.viz.pianoroll_plot import plot_pianoroll

    try:
        score = load_score(midi)
    except MidiReadError:
        score = symusic.Score(str(midi))  # no notes: still a readable file; junk raises here
    return plot_pianoroll(score, png, title=midi.name)


def sample_media(midi: Path, *, render: bool = True, plot: bool = True) -> list[Path]:
    """Writes ``X.wav`` and/or ``X.png`` next to ``X.mid``; returns the files written."""
    midi = Path(midi)
    written = []
    if render:
        wav = render_wav(midi, midi.with_suffix(".wav"))
        written += [wav] if wav is not None else []
    if plot:
        written.append(plot_png(midi, midi.with_suffix(".png")))
    return written


def plot_spectrogram(wave: np.ndarray, rate: int, out: Path, title: str) -> Path:
    """A log-magnitude spectrogram PNG of a mono waveform."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 3.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    n_fft = 512 if rate <= 24000 else 1024
    ax.specgram(wave, NFFT=n_fft, Fs=rate, noverlap=n_fft * 3 // 4, cmap="magma")
    ax.set(xlabel="seconds", ylabel="Hz", title=title)
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out


def plot_audio_file(audio: Path, out: Path) -> Path | None:
    """The spectrogram PNG of an audio file (at its own rate, mixed to mono); None (and a log line)
    for a file that cannot be read."""
    import soundfile

    try:
        wave, rate = soundfile.read(str(audio), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        log.warning("no spectrogram for %s: %s", audio, err)
        return None
    return plot_spectrogram(wave.mean(axis=1), rate, out, audio.name)
