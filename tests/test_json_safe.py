"""lowkey.json_safe: the one JSON cleaner of the daemon's answers and lowkey eval's results."""

from __future__ import annotations

import json
import math

import numpy as np

from lowkey.json_safe import json_safe


def test_non_finite_floats_are_replaced_at_any_depth_and_nothing_else_changes():
    value = {"a": [1, 2.5, math.nan, (math.inf, -math.inf)], "b": {"c": np.float64("nan")},
             "d": "inf", "e": None, "f": True}
    text = json_safe(value)
    assert text == {"a": [1, 2.5, None, ["inf", "-inf"]], "b": {"c": None}, "d": "inf",
                    "e": None, "f": True}
    assert json_safe(value, infinity="null") == {"a": [1, 2.5, None, [None, None]],
                                                 "b": {"c": None}, "d": "inf", "e": None,
                                                 "f": True}
    assert math.isnan(value["a"][2]) and value["a"][3] == (math.inf, -math.inf)  # not in place
    json.dumps(json_safe(value, infinity="null"), allow_nan=False)  # valid JSON
    json.dumps(text, allow_nan=False)
