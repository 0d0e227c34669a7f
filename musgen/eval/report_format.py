"""What the text summary of ``musgen eval`` (``evaluate.format_report``) and the ``musgen report``
page share: the metric groups of an eval report, in the order shown, and how a value is printed."""

from __future__ import annotations

import math
from typing import Any

# Key of a metric group in the eval report -> its title.
SECTIONS = {
    "likelihood": "held-out likelihood",
    "reconstruction": "held-out reconstruction",
    "critic": "critic on held-out phrases",
    "codec": "codec on held-out audio",
    "frechet": "Frechet distance (random-CNN embeddings)",
}


def format_value(value: Any) -> str:
    """A float with 4 decimals (4 significant digits from 1e5 up, "nan" for NaN); anything else as str()."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"
    return str(value)
