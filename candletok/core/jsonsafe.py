"""JSON has no NaN, no tuples and no numpy scalars: the one cleaning step before writing.

Every JSON document candletok writes (manifests, calibration maps, evaluation reports,
search results) goes through :func:`clean_json`, so a missing figure is ``null`` in all
of them rather than ``NaN`` (which strict JSON readers refuse) in some.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def clean_json(obj: Any, *, str_keys: bool = False) -> Any:
    """``obj`` JSON-ready, recursively: non-finite floats -> None, tuples -> lists, numpy
    scalars -> Python scalars; with ``str_keys`` dict keys become text (as JSON writes
    them), so that the in-memory document equals the one read back."""
    if isinstance(obj, dict):
        return {(str(k) if str_keys else k): clean_json(v, str_keys=str_keys)
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_json(v, str_keys=str_keys) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
