"""train.mixed_precision: auto picks bf16 where the CPU has native bf16 (its x86 flags) or, without
x86 flags, where the probe measured it faster on this machine."""

from __future__ import annotations

import logging
import re

import pytest

from musgen.training import precision
from musgen.training.precision import cpu_native_bf16, probe_step_seconds, resolve_mixed_precision


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
def test_auto_on_a_cpu_without_x86_flags_picks_the_faster_precision(
    fp32, bf16, expected, monkeypatch, caplog
):
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: None)
    monkeypatch.setattr(precision, "probe_step_seconds", lambda use_bf16: bf16 if use_bf16 else fp32)
    with caplog.at_level(logging.INFO, logger="musgen.training.precision"):
        assert resolve_mixed_precision("auto", on_cpu=True) == expected
    assert f"{1e3 * fp32:.2f} ms float32, {1e3 * bf16:.2f} ms bf16" in caplog.text


INTEL_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\nbugs\t\t: spectre_v1\n"
EPYC_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE_RAPIDS = "flags\t\t: avx2 avx512f amx_bf16 amx_tile\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [(INTEL_AVX2, False), (EPYC_BF16, True), (SAPPHIRE_RAPIDS, True), (ARM, None), ("", None)],
)
def test_native_bf16_is_read_from_x86_flags_only(cpuinfo, expected):
    assert cpu_native_bf16(cpuinfo) is expected


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_an_x86_cpu_follows_its_flags_whatever_a_probe_would_time(native, monkeypatch):
    # a probe timed under load once chose float32 on a bf16 CPU: the flags must decide, not the clock
    monkeypatch.setattr(precision, "cpu_native_bf16", lambda: native)
    monkeypatch.setattr(precision, "probe_step_seconds", lambda bf16: pytest.fail("probed"))
    assert resolve_mixed_precision("auto", on_cpu=True) == ("bf16" if native else "no")


def test_this_machine_decides_by_its_flags_or_else_by_the_probe(caplog):
    with caplog.at_level(logging.INFO, logger="musgen.training.precision"):
        choice = resolve_mixed_precision("auto", on_cpu=True)
    native = cpu_native_bf16()
    if native is None:  # no x86 flags here: the probe decided, and said so
        assert "precision probe" in caplog.text
    else:
        assert choice == ("bf16" if native else "no")
        assert "flags" in caplog.text


def test_the_real_probe_decides_and_logs_its_numbers(caplog):
    with caplog.at_level(logging.INFO, logger="musgen.training.precision"):
        faster = precision.probe_bf16_is_faster()
    choice = "bf16" if faster else "no"
    fp32, bf16 = (float(x) for x in re.search(r"([\d.]+) ms float32, ([\d.]+) ms bf16", caplog.text).groups())
    assert fp32 > 0 and bf16 > 0
    assert choice == ("bf16" if bf16 * precision.MARGIN < fp32 else "no")
    assert probe_step_seconds(False, repeats=1, batch=8, width=8) > 0
