"""The public Python API names exist and are callable whatever was imported first."""

from __future__ import annotations

import musgen
import musgen.training.loop  # the training package must not shadow the musgen.train function


def test_public_api_is_callable():
    assert callable(musgen.train) and callable(musgen.load)
    from musgen.data import build

    assert callable(build)
