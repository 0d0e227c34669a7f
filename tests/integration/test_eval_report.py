"""`musgen eval`, `musgen plot`, `sample --render --plot` and `musgen report` end to end on real tiny
runs, the report page checked in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from musgen.eval.midi_stats import FEATURES, SCALARS

REPO = Path(__file__).resolve().parents[2]


def musgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "musgen.cli", *args], capture_output=True, text=True, cwd=REPO
    )


def test_eval_language_model_prints_nll_and_statistics(tiny_lm_run, bach_data, tmp_path):
    out = tmp_path / "eval.json"
    proc = musgen(
        "eval",
        "--checkpoint",
        str(tiny_lm_run.run_dir),
        "--data",
        str(bach_data),
        "--num-samples",
        "4",
        "--length",
        "96",
        "--seed",
        "1",
        "--out",
        str(out),
        "--save-samples",
        str(tmp_path / "samples"),
        "--excerpt-quarters",
        "0",
    )  # whole pieces: 96 tokens are too short for two-bar features
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    likelihood = report["likelihood"]
    assert "nll" in proc.stdout and "nll_per_note" in proc.stdout and "held-out" in proc.stdout
    for name in FEATURES:
        assert name in proc.stdout, name
    # The Task's own evaluation: on the valid split (the whole of it fits in the loop's eval_batches)
    # it gives the training run's last validation NLL.
    assert report["split"] in ("test", "valid")
    if report["split"] == "valid":
        assert likelihood["nll"] == pytest.approx(tiny_lm_run.metrics["valid_nll"], rel=1e-4)
    assert 0 < likelihood["nll"] < math.log(likelihood["tokens"])
    assert likelihood["ppl"] == pytest.approx(math.exp(likelihood["nll"]), rel=1e-6)
    # Nats per note: the same total NLL over the notes the held-out tokens decode to (fewer than tokens).
    assert likelihood["notes"] > 0
    assert likelihood["nll_per_note"] == pytest.approx(
        likelihood["nll"] * likelihood["tokens"] / likelihood["notes"]
    )
    assert likelihood["nll_per_note"] > likelihood["nll"]
    stats = report["statistics"]
    # Equal counts on both sides: at most the 4 samples, as many as each real half of the held-out holds.
    assert 1 <= stats["generated_pieces"] == stats["reference_pieces"] <= 4
    assert len(list((tmp_path / "samples").glob("sample_*.mid"))) == 4
    for name in SCALARS:  # the held-out chorales' statistics sit next to the samples'
        assert stats["features"][name]["reference_mean"] is not None, name
    if stats["reference_pieces"] >= 2:
        assert 0 <= stats["mean_overlap_area"] <= 1 and stats["mean_kl_divergence"] >= 0
        # Next to it, as many other held-out pieces compared with the same ones (real vs real).
        assert stats["real_vs_real"]["feature_frechet"] > 0 and "real overlap" in proc.stdout


def test_eval_mistakes(tiny_gan_run, bach_audio_data, bach_data, tmp_path):
    from musgen.errors import MusgenError
    from musgen.eval.evaluate import evaluate_checkpoint

    proc = musgen(
        "eval", "--checkpoint", str(tiny_gan_run.run_dir), "--data", str(tmp_path), "--out", "e.json"
    )
    assert (
        proc.returncode == 2
        and "no manifest.json" in proc.stderr
        and len(proc.stderr.strip().splitlines()) == 1
    )
    with pytest.raises(MusgenError, match="evaluated on a MIDI data set"):
        evaluate_checkpoint(tiny_gan_run.run_dir, bach_audio_data)
    with pytest.raises(MusgenError, match="no split 'tset'"):
        evaluate_checkpoint(tiny_gan_run.run_dir, bach_data, split="tset")


def test_eval_other_families(
    tiny_vae_run, folk_data, tiny_gan_run, bach_data, tiny_codec_run, tiny_prior_run, bach_audio_data
):
    from musgen.eval.evaluate import evaluate_checkpoint

    vae = evaluate_checkpoint(tiny_vae_run.run_dir, folk_data, num_samples=3)
    assert 0 <= vae["reconstruction"]["accuracy"] <= 1 and 0 <= vae["reconstruction"]["event_accuracy"] <= 1
    assert vae["statistics"]["generated_pieces"] == 3 and "reconstruction" in vae["table"]
    gan = evaluate_checkpoint(tiny_gan_run.run_dir, bach_data, num_samples=3)
    assert (
        math.isfinite(gan["critic"]["wdist"])
        and gan["statistics"]["features"]["tonal_distance"]["reference_mean"]
    )
    codec = evaluate_checkpoint(tiny_codec_run.run_dir, bach_audio_data, max_seconds=3)
    assert codec["codec"]["pieces"] >= 1 and math.isfinite(codec["codec"]["si_sdr_db"])
    assert codec["frechet"]["frechet_distance"] > 0 and "codebook" in codec["table"]
    prior = evaluate_checkpoint(
        tiny_prior_run.run_dir, bach_audio_data, num_samples=2, seconds=1.5, max_seconds=3
    )
    assert prior["likelihood"]["nll"] > 0 and prior["frechet"]["generated_windows"] >= 2
    json.dumps(prior)  # JSON-ready as it is


def test_plot_writes_a_piano_roll(bach_midi_dir, tmp_path):
    midi = sorted(bach_midi_dir.glob("*.mid"))[0]
    out = tmp_path / "roll.png"
    proc = musgen("plot", str(midi), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    image = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert image.shape[1] > image.shape[0] > 200
    coloured = (image.max(axis=2) - image.min(axis=2)) > 60  # note bars; axes and text are grey
    assert coloured.mean() > 0.01
    (tmp_path / "junk.mid").write_text("not MIDI")
    proc = musgen("plot", str(tmp_path / "junk.mid"), "--out", str(out))
    assert (
        proc.returncode == 2 and "cannot plot" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    )


# -------------------------------------------------------------------------- the report in a browser


def _chromium() -> str | None:
    return next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )


CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images), audios = Array.from(document.querySelectorAll('audio'));
  const settled = () => imgs.every(i => i.complete) && audios.every(a => a.error || a.readyState >= 1);
  let tries = 0;
  const poll = () => {
    if (!settled() && ++tries < 200) { setTimeout(poll, 50); return; }
    const out = document.createElement('pre');
    out.id = 'media-check';
    out.textContent = JSON.stringify({
      images: imgs.map(i => ({src: i.getAttribute('src'), width: i.naturalWidth})),
      audio: audios.map(a => ({src: a.getAttribute('src'), ready: a.readyState, error: a.error ? a.error.code : 0,
                               duration: a.duration})),
    });
    document.body.appendChild(out);
  };
  poll();
});
</script>"""


def browser_check(page: Path, chromium: str, profile: Path) -> dict:
    """Opens a copy of ``page`` (same folder) with CHECK_SCRIPT in headless chromium and returns what the
    script saw: each image's natural width and each audio element's readyState / error after load."""
    probe = page.with_name("browser-check.html")
    probe.write_text(page.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    proc = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--mute-audio",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = proc.stdout
    start = dom.find('<pre id="media-check">')
    assert start >= 0, f"the check script did not run: {proc.stderr[-2000:]}"
    text = dom[start + len('<pre id="media-check">') : dom.index("</pre>", start)]
    return json.loads(text.replace("&quot;", '"').replace("&amp;", "&"))


@pytest.mark.parametrize("tiny_lm_run", ["lstm"], indirect=True)
def test_sample_render_plot_and_report_page_in_a_browser(tiny_lm_run, bach_data, tmp_path):
    chromium = _chromium()
    run = tmp_path / "run"
    shutil.copytree(tiny_lm_run.run_dir, run)
    proc = musgen(
        "sample",
        "--checkpoint",
        str(run),
        "--out",
        str(run / "samples"),
        "--num-samples",
        "2",
        "--length",
        "96",
        "--seed",
        "0",
        "--render",
        "--plot",
    )
    assert proc.returncode == 0, proc.stderr
    for i in range(2):
        for suffix in (".mid", ".wav", ".png"):
            assert (run / "samples" / f"sample_{i:03d}{suffix}").is_file(), suffix
    from musgen.eval.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(run, bach_data, num_samples=2, length=64)
    report.pop("table")
    (run / "eval.json").write_text(json.dumps(report))
    (run / "samples" / "extra.mid").write_bytes(
        (run / "samples" / "sample_000.mid").read_bytes()
    )  # no WAV/PNG yet

    html_dir = tmp_path / "html"
    proc = musgen("report", str(run), "--out", str(html_dir))
    assert proc.returncode == 0, proc.stderr
    page = html_dir / "index.html"
    text = page.read_text()
    assert "Training" in text and "nll_per_note" in text and "pitch_class_entropy" in text
    assert text.count("<audio") == 3 and text.count("<img") == 4  # curves + 3 piano rolls
    assert "http" not in text  # nothing from the network
    if chromium is None:
        pytest.skip(
            "no chromium binary (make install puts Debian's chromium there when run as root with apt)"
        )
    seen = browser_check(page, chromium, tmp_path / "profile")
    assert len(seen["images"]) == 4 and all(i["width"] > 100 for i in seen["images"]), seen
    assert len(seen["audio"]) == 3, seen
    for audio in seen["audio"]:
        assert audio["error"] == 0 and audio["ready"] >= 1 and audio["duration"] > 1, seen

    # The check itself can fail: a missing picture and a file that is not audio are seen as broken.
    (html_dir / "media" / "broken.wav").write_text("not audio")
    page.write_text(
        text.replace("media/curves.png", "media/missing.png", 1).replace(
            seen["audio"][0]["src"], "media/broken.wav", 1
        )
    )
    broken = browser_check(page, chromium, tmp_path / "profile")
    assert broken["images"][0]["width"] == 0
    assert broken["audio"][0]["error"] != 0 or broken["audio"][0]["ready"] == 0


def test_report_mistakes(tmp_path):
    proc = musgen("report", str(tmp_path / "nope"), "--out", str(tmp_path / "html"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = musgen("report", str(tmp_path), "--out", str(tmp_path / "html"))
    assert proc.returncode == 2 and "not a musgen run directory" in proc.stderr
