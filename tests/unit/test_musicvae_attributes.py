"""MusicVAE's interpolation file layout and attribute vectors without a trained model: the joined
sequence with rests, the attributes measured on windows, the quartile difference, what a checkpoint
may store and the atomic metadata update that stores it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from musgen import checkpoint
from musgen.data.melody import FIRST_PITCH_ID, HOLD, NOTE_OFF, MelodyConfig
from musgen.errors import CheckpointError, MusgenError
from musgen.models.musicvae import (
    join_with_rests,
    measure_attribute,
    quartile_difference,
    stored_attributes,
)

CFG = MelodyConfig(num_bars=2)  # 32 steps, 16 per bar, pitches from 21


def on(pitch: int) -> int:
    return FIRST_PITCH_ID + pitch - CFG.pitch_range[0]


def test_joined_windows_start_one_bar_of_rest_apart():
    a = np.array([on(60), HOLD, HOLD, HOLD])  # a note held to the end of its window
    b = np.array([HOLD, on(62), NOTE_OFF, HOLD])  # opens silent
    c = np.array([on(64), HOLD, HOLD, HOLD])
    joined = join_with_rests([a, b, c], rest_steps=3)
    size = len(a) + 3
    assert len(joined) == 3 * len(a) + 2 * 3
    for i, window in enumerate((a, b, c)):
        np.testing.assert_array_equal(joined[i * size : i * size + len(a)], window)
    for i in range(2):  # each rest silences the last note and stays silent
        np.testing.assert_array_equal(joined[i * size + len(a) : (i + 1) * size], [NOTE_OFF, HOLD, HOLD])
    assert join_with_rests([], 3).size == 0


def test_density_and_mean_pitch_of_windows():
    window = np.full(32, HOLD)
    window[[0, 4, 8, 16]] = [on(60), on(64), on(67), on(72)]
    window[20] = NOTE_OFF
    assert measure_attribute(window[None], "density", CFG)[0] == pytest.approx(2.0)  # 4 onsets, 2 bars
    assert measure_attribute(window[None], "pitch", CFG)[0] == pytest.approx((60 + 64 + 67 + 72) / 4)
    assert math.isnan(measure_attribute(np.full((1, 32), HOLD), "pitch", CFG)[0])
    with pytest.raises(MusgenError, match="unknown attribute 'loudness'"):
        measure_attribute(window[None], "loudness", CFG)


def test_attribute_vector_is_top_quartile_mean_minus_bottom_quartile_mean():
    values = np.array([5.0, 1.0, 7.0, 3.0, np.nan, 2.0, 8.0, 6.0, 4.0])  # 8 known: quartiles of 2
    mu = np.zeros((9, 2))
    mu[:, 0] = np.nan_to_num(values)  # first dimension follows the attribute
    mu[:, 1] = np.arange(9)
    got = quartile_difference(mu, values, "unit")
    # bottom: values 1, 2 (rows 1, 5); top: 7, 8 (rows 2, 6)
    assert got["vector"] == pytest.approx([(7 + 8) / 2 - (1 + 2) / 2, (2 + 6) / 2 - (1 + 5) / 2])
    assert got["computed_from"]["quartile_windows"] == 2
    assert got["computed_from"]["bottom_quartile_mean"] == pytest.approx(1.5)
    assert got["computed_from"]["top_quartile_mean"] == pytest.approx(7.5)
    with pytest.raises(MusgenError, match="too few windows"):
        quartile_difference(mu[:3], values[:3], "unit")


def test_stored_attributes_are_checked():
    assert stored_attributes({}, 4) == {}
    good = {"attributes": {"density": {"vector": [0.0, 1.0, 2.0, 3.0], "computed_from": {"split": "train"}}}}
    assert stored_attributes(good, 4)["density"]["vector"] == [0.0, 1.0, 2.0, 3.0]
    for bad in (
        {"attributes": [1, 2]},
        {"attributes": {"density": {"vector": [1.0]}}},
        {"attributes": {"x": 3}},
    ):
        with pytest.raises(CheckpointError) as err:
            stored_attributes(bad, 4)
        assert "\n" not in str(err.value)


def test_update_meta_rewrites_musgen_json_atomically(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "musgen.json").write_text(json.dumps({"format_version": 1, "family": "musicvae", "step": 3}))
    checkpoint.update_meta(ckpt, {"attributes": {"pitch": {"vector": [1.5]}}})
    meta = json.loads((ckpt / "musgen.json").read_text())
    assert meta == {
        "format_version": 1,
        "family": "musicvae",
        "step": 3,
        "attributes": {"pitch": {"vector": [1.5]}},
    }
    assert sorted(p.name for p in ckpt.iterdir()) == ["musgen.json"]  # no temporary file left
