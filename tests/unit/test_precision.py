"""train.mixed_precision: auto picks bf16 only where the probe measured it faster on this machine."""

from __future__ import annotations

import logging
import re

import pytest

from musgen.training import precision
from musgen.training.precision import probe_step_seconds, resolve_mixed_precision


@pytest.fixture(autouse=True)
def fresh_probe():
    """The probe's answer is cached per process: each test probes (or fakes the probe) anew."""
    precision.cpu_bf16_is_faster.cache_clear()
    yield
    precision.cpu_bf16_is_faster.cache_clear()


@pytest.mark.parametrize("setting", ["no", "bf16", "fp16"])
def test_an_explicit_setting_is_kept_without_probing(setting, monkeypatch):
    monkeypatch.setattr(precision, "probe_step_seconds", lambda bf16: pytest.fail("probed"))
    assert resolve_mixed_precision(setting, on_cpu=True) == setting


@pytest.mark.parametrize(
    ("fp32", "bf16", "expected"),
    [(0.010, 0.003, "bf16"), (0.003, 0.030, "no"), (0.010, 0.0095, "no")],  # native bf16, AVX2, a tie
)
def test_auto_on_a_cpu_picks_the_faster_precision(fp32, bf16, expected, monkeypatch, caplog):
    monkeypatch.setattr(precision, "probe_step_seconds", lambda use_bf16: bf16 if use_bf16 else fp32)
    with caplog.at_level(logging.INFO, logger="musgen.training.precision"):
        assert resolve_mixed_precision("auto", on_cpu=True) == expected
    assert f"{1e3 * fp32:.2f} ms float32, {1e3 * bf16:.2f} ms bf16" in caplog.text


def test_the_real_probe_decides_and_logs_its_numbers(caplog):
    with caplog.at_level(logging.INFO, logger="musgen.training.precision"):
        choice = resolve_mixed_precision("auto", on_cpu=True)
    fp32, bf16 = (float(x) for x in re.search(r"([\d.]+) ms float32, ([\d.]+) ms bf16", caplog.text).groups())
    assert fp32 > 0 and bf16 > 0
    assert choice == ("bf16" if bf16 * precision.MARGIN < fp32 else "no")
    assert probe_step_seconds(False, repeats=1, batch=8, width=8) > 0
