"""The per-file process pool: a slow, failing or crashing file becomes a reason, never a stopped build."""

from __future__ import annotations

import os
import time

import pytest

from musgen.data.workpool import run_files
from musgen.errors import MusgenError


class _Refused(MusgenError):
    reason = "refused on purpose"


def _work(arg: str) -> int:
    if arg == "slow":
        time.sleep(30)
    if arg == "refuse":
        raise _Refused("x")
    if arg == "bug":
        raise ValueError("bad value\nsecond line")
    if arg == "crash":
        os._exit(3)  # the worker process dies
    return len(arg)


@pytest.mark.parametrize("workers", [1, 2])
def test_every_file_gets_a_value_or_a_reason(workers):
    args = ["ok", "slow", "refuse", "bug", "fine"] + (["crash"] if workers > 1 else [])
    t0 = time.perf_counter()
    res = run_files(_work, [(a, a) for a in args], workers=workers, timeout=0.5, desc="test")
    assert time.perf_counter() - t0 < 10
    assert res["ok"] == (2, None) and res["fine"] == (4, None)
    assert res["slow"] == (None, "processing exceeded 0.5 s")
    assert res["refuse"] == (None, "refused on purpose")
    assert res["bug"] == (None, "ValueError: bad value")
    if workers > 1:
        assert res["crash"][0] is None and "crashed" in res["crash"][1]
