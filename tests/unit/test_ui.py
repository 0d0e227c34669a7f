"""The page of `musgen ui`, its functions called directly (no browser, no gradio needed): every safety
rule (checkpoint names stay inside the folder, uploads are small, valid and come from the upload
folder, requests are capped, errors are messages) and each action on the shipped checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path

import pretty_midi
import pytest

from musgen import cli, ui
from musgen.errors import MusgenError

REPO = Path(__file__).resolve().parents[2]
CHECKPOINTS = REPO / "checkpoints"


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> ui.Page:
    uploads = tmp_path_factory.mktemp("uploads")
    return ui.Page(CHECKPOINTS, uploads, tmp_path_factory.mktemp("work"))


def melody(path: Path, bars: int = 8) -> Path:
    """A one-track MIDI melody of quarter notes (120 bpm, 4/4)."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(program=0, name="melody")
    for i in range(bars * 4):
        pitch = 60 + [0, 2, 4, 5, 7, 9, 11, 12][i % 8]
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=i * 0.5, end=i * 0.5 + 0.45))
    midi.instruments.append(inst)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))
    return path


def upload(page: ui.Page, name: str, data: bytes | None = None, bars: int = 8) -> Path:
    path = page.upload_root / name
    if data is None:
        melody(path, bars)
    else:
        path.write_bytes(data)
    return path


# -- checkpoints: names inside the folder ---------------------------------------------------------


def test_checkpoint_names_are_the_folders_with_a_musgen_json(tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "musgen.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("")
    assert ui.checkpoint_names(tmp_path) == ["good"]
    assert ui.checkpoint_names(tmp_path / "missing") == []
    assert "transformer" in ui.checkpoint_names(CHECKPOINTS)


@pytest.mark.parametrize(
    "name",
    [
        "..",
        ".",
        "../checkpoints/transformer",
        "transformer/../lstm",
        str(CHECKPOINTS / "transformer"),
        "/etc",
        "",
    ],
)
def test_a_checkpoint_is_a_plain_name_inside_the_folder(name):
    with pytest.raises(MusgenError):
        ui.resolve_checkpoint(CHECKPOINTS, name)
    assert ui.resolve_checkpoint(CHECKPOINTS, "transformer") == (CHECKPOINTS / "transformer").resolve()


def test_a_link_leading_outside_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "musgen.json").write_text("{}")
    root = tmp_path / "checkpoints"
    root.mkdir()
    (root / "sneaky").symlink_to(outside)
    with pytest.raises(MusgenError, match="no checkpoint called 'sneaky'"):
        ui.resolve_checkpoint(root, "sneaky")


def test_a_bad_checkpoint_name_is_a_message_on_the_page(page):
    for name in ("../../etc", "nosuch", None):
        result = page.generate(name)
        assert result.message.startswith("Error: ") and not result.files, result
    with pytest.raises(MusgenError):
        page.controls("/etc")


# -- uploads: from the upload folder, small, readable ---------------------------------------------


def test_uploads_are_checked_before_use(page, tmp_path):
    good = upload(page, "good.mid")
    assert ui.read_midi_upload(str(good), page.upload_root, "primer") == good.resolve()
    elsewhere = melody(tmp_path / "elsewhere.mid")  # a valid file, but not an upload
    huge = page.upload_root / "huge.mid"
    with open(huge, "wb") as f:  # sparse: no 6 MB written
        f.truncate(ui.MAX_UPLOAD_BYTES + 1)
    cases = {
        str(elsewhere): "not an uploaded file",
        str(page.upload_root / ".." / elsewhere.name): "not an uploaded file",
        str(upload(page, "empty.mid", b"")): "empty file",
        str(huge): "more than 5 MB",
        str(upload(page, "junk.mid", b"MThd not really a midi file" * 10)): "junk.mid: unreadable MIDI",
        str(upload(page, "cut.mid", good.read_bytes()[:30])): "cut.mid:",
        str(upload(page, "text.txt", b"hello")): "should be a .mid / .midi file",
    }
    for path, message in cases.items():
        with pytest.raises(MusgenError, match=message):
            ui.read_midi_upload(path, page.upload_root, "primer")
        result = page.generate("transformer", path, length=8)  # the same, as the page shows it
        assert message.split(":")[0] in result.message and result.message.startswith("Error: "), result
        assert not result.files


def test_a_bad_audio_primer_is_a_message(page):
    noise = upload(page, "noise.wav", b"RIFF" + b"\x00" * 100)
    result = page.generate("prior", str(noise), seconds=0.5)
    assert result.message.startswith("Error: ") and "noise.wav" in result.message, result


# -- requests are capped ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_samples": ui.MAX_SAMPLES + 1}, "number of samples must be between 1 and 4"),
        ({"length": ui.MAX_TOKENS + 1}, "length must be between 1 and 1024"),
        ({"bars": 1000}, "bars must be between 1 and 16"),
        ({"top_p": 2.0}, "top-p must be between 0 and 1"),
    ],
)
def test_requests_are_capped(page, options, message):
    result = page.generate("transformer", **options)
    assert result.message == f"Error: {message} on this page, got {list(options.values())[0]:g}"
    assert not result.files
    assert page.generate("prior", seconds=ui.MAX_SECONDS + 1).message.startswith("Error: seconds must be")


# -- the actions on the shipped checkpoints --------------------------------------------------------


def test_controls_follow_the_checkpoint(page):
    transformer = page.controls("transformer")
    recommended = page.generator("transformer").recommended_sampling
    assert transformer["values"]["temperature"] == recommended["temperature"]
    assert transformer["values"]["top_p"] == recommended["top_p"]
    assert (
        transformer["shown"]["prime"]
        and transformer["shown"]["length"]
        and not transformer["shown"]["seconds"]
    )
    musegan = page.controls("musegan")  # its voices are drawn at a temperature; no primer, no top-k
    assert musegan["shown"]["temperature"] and musegan["shown"]["bars"] and musegan["accompanies"]
    assert not any(musegan["shown"][k] for k in ("prime", "top_k", "top_p", "length"))
    musicvae = page.controls("musicvae")
    assert musicvae["interpolates"] and not musicvae["shown"]["prime"] and not musicvae["shown"]["length"]
    prior = page.controls("prior")
    assert prior["audio"] and prior["shown"]["seconds"] and not prior["shown"]["length"]
    # its recommendation is one temperature per codebook level: no one number to show, the field
    # stays empty and generating without one uses the recommendation
    assert isinstance(page.generator("prior").recommended_sampling["temperature"], list)
    assert prior["values"]["temperature"] is None and prior["values"]["top_p"] == 1.0


def test_generate_from_an_uploaded_primer(page):
    primer = upload(page, "primer.mid")
    result = page.generate("transformer", str(primer), length=16, seed=3, num_samples=2)
    assert result.message.startswith("generated with transformer: 2 file(s)"), result
    midis = [p for p in result.files if p.suffix == ".mid"]
    assert len(midis) == 2 and len(result.rolls) == 2 and all(p.stat().st_size > 0 for p in result.rolls)
    assert result.audio is not None and result.audio.suffix == ".wav" and result.audio in result.files
    assert result.audio.read_bytes()[:4] == b"RIFF"


def test_interpolate_two_uploaded_clips(page):
    short = upload(page, "short.mid")  # 8 bars: the shipped MusicVAE reads 16
    assert "too short" in page.interpolate("musicvae", str(short), str(short)).message
    a, b = upload(page, "a.mid", bars=16), upload(page, "b.mid", bars=16)
    result = page.interpolate("musicvae", str(a), str(b), steps=3, seed=0)
    assert result.message.startswith("interpolated with musicvae"), result
    assert [p.name for p in result.files[:4]] == [
        "interpolation.mid",
        "interp_000.mid",
        "interp_001.mid",
        "interp_002.mid",
    ]
    assert result.audio is not None and result.audio.name == "interpolation.wav"
    assert "needs a musicvae checkpoint" in page.interpolate("transformer", str(a), str(b)).message


def test_accompany_an_uploaded_melody(page):
    tune = upload(page, "tune.mid")
    result = page.accompany("musegan", str(tune), bars=4, seed=0)
    assert result.message.startswith("accompanied with musegan: 1 file(s)"), result
    assert result.rolls and result.audio is not None
    assert "needs a musegan checkpoint" in page.accompany("transformer", str(tune)).message
    assert "Error: upload the melody" == page.accompany("musegan", None).message


# -- the command --------------------------------------------------------------------------------


def test_ui_binds_localhost_and_limits_uploads_by_default(monkeypatch, tmp_path):
    launched: dict = {}

    class FakeApp:
        def queue(self, **kwargs):
            return self

        def launch(self, **kwargs):
            launched.update(kwargs)

    monkeypatch.setattr(ui, "import_gradio", lambda: None)
    monkeypatch.setattr(ui, "build_app", lambda page: FakeApp())
    monkeypatch.setattr(ui, "upload_folder", lambda: tmp_path)
    args = cli.build_parser().parse_args(["ui", "--checkpoints", str(CHECKPOINTS)])
    assert args.host == "127.0.0.1"
    cli.COMMANDS[("ui", None)](args)
    assert launched["server_name"] == "127.0.0.1" and launched["share"] is False
    assert launched["max_file_size"] == ui.MAX_UPLOAD_BYTES


def test_ui_without_gradio_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert cli.main(["ui", "--checkpoints", str(CHECKPOINTS)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'musgen[ui]'" in err[0], err


def test_ui_without_checkpoints_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(ui, "import_gradio", lambda: None)
    assert cli.main(["ui", "--checkpoints", str(tmp_path)]) == 2
    assert "no checkpoints" in capsys.readouterr().err


def test_ui_has_help_with_an_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["ui", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and "musgen ui --checkpoints" in out and "127.0.0.1" in out


def test_a_held_out_piece_of_a_data_set_primes_by_name_only(bach_data, tmp_path_factory):
    page = ui.Page(
        CHECKPOINTS, tmp_path_factory.mktemp("uploads"), tmp_path_factory.mktemp("work"), bach_data
    )
    names = list(page.held_out())
    assert names and all(page.held_out()[n].is_file() for n in names)
    result = page.generate("transformer", None, held_out=names[0], length=16, seed=0)
    assert result.message.startswith("generated") and result.files, result.message
    import json

    runs = json.loads((result.files[0].parent / "samples.json").read_text())
    assert runs[-1]["settings"]["prime"] == str(page.held_out()[names[0]])  # the primer that was used
    for bad in ("../../etc/passwd", str(page.held_out()[names[0]]), "test 999: nothing"):
        assert page.generate("transformer", None, held_out=bad, length=16).message.startswith(
            "Error: no held-out"
        )
    assert not ui.Page(CHECKPOINTS, tmp_path_factory.mktemp("u2")).held_out()  # no data set: no choices
