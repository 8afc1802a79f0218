"""Values that JSON can hold: NaN and the infinities, which Python's ``json`` would write as the
invalid tokens ``NaN`` and ``Infinity``, replaced everywhere inside dicts, lists and tuples."""

from __future__ import annotations

import math
from typing import Literal


def json_safe(value: object, *, infinity: Literal["text", "null"] = "text") -> object:
    """``value`` with every float that is not finite replaced: NaN by None, and +-infinity by
    ``"inf"``/``"-inf"`` (``infinity="text"``: a reader can tell "unbounded" from "missing",
    as ``lowkey eval``'s thresholds need) or by None (``"null"``: where a schema says a number or
    null, as the daemon's answers do). Tuples become lists; other values are returned as they
    are (dicts and lists are copied, never changed in place)."""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value) or infinity == "null":
            return None
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: json_safe(v, infinity=infinity) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, infinity=infinity) for v in value]
    return value
