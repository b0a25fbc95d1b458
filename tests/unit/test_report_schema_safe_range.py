"""Report schema validation, float encoding, safe ranges and region grouping on synthetic data."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from suite.errors import UsageError
from suite.report import findings, safe_range, schema


def minimal_payload() -> dict:
    return {"schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION, "created": "2026-01-01T00:00:00Z",
            "environment": {}, "options": {}, "cases": {}, "results": [], "findings": [], "safe_ranges": [],
            "search": []}


def test_valid_payload_passes() -> None:
    assert schema.validate(minimal_payload())["schema_version"] == schema.SCHEMA_VERSION


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.update(schema_version=schema.SCHEMA_VERSION + 1), "schema version"),
    (lambda p: p.pop("schema"), "not an accuracy report"),
    (lambda p: p.pop("findings"), "lacks field 'findings'"),
    (lambda p: p.pop("search"), "lacks field 'search'"),
    (lambda p: p["results"].append({"key": "k"}), r"results\[0\] lacks field .case."),
    (lambda p: p.update(results={}), "should be list"),
])
def test_invalid_payload_is_one_line_usage_error(mutate: Callable[[dict], object], message: str) -> None:
    payload = minimal_payload()
    mutate(payload)
    with pytest.raises(UsageError, match=message) as info:
        schema.validate(payload, "x.json")
    assert "\n" not in str(info.value)


def test_float_encoding_round_trips_and_is_strict_json() -> None:
    assert schema.encode_float(math.nan) is None
    assert schema.encode_float(-math.inf) == "-inf"
    assert schema.encode_float(1.5) == 1.5
    for v in (0.0, -2.5, math.inf, -math.inf):
        assert schema.decode_float(schema.encode_float(v)) == v
    assert math.isnan(schema.decode_float(None))


def test_safe_range_grows_from_center_to_first_failure() -> None:
    x = np.array([-10.0, -5.0, -1.0, 0.0, 1.0, 5.0, 10.0, np.inf])
    nan = np.array([0, 1, 0, 0, 0, 0, 0, 0], bool)
    flushed = np.array([0, 0, 0, 0, 0, 0, 1, 1], bool)
    found = safe_range.safe_range(x, {"loss nan": nan, "loss flushed": flushed}, center=0.0)
    assert (found.low, found.high, found.status) == (-1.0, 5.0, "range")
    assert found.limits == {"low": "loss nan at -5.0", "high": "loss flushed at 10.0"}


def test_safe_range_considers_every_other_input_at_a_value() -> None:
    # two targets per logit: a failure of either target at a logit excludes it
    x = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0], [-2.0, -1.0, 0.0, 1.0, 2.0]])
    bad = np.zeros_like(x, bool)
    bad[1, 3] = True
    found = safe_range.safe_range(x, {"grad nan": bad}, center=0.0)
    assert (found.low, found.high) == (-2.0, 0.0)
    assert found.limits["low"] is None


def test_safe_range_is_none_when_center_fails_and_whole_without_failures() -> None:
    x = np.linspace(0, 1, 11)
    bad = np.isclose(x, 0.5)
    assert safe_range.safe_range(x, {"loss inaccurate": bad}, center=0.5).status == "none"
    whole = safe_range.safe_range(x, {"loss inaccurate": np.zeros_like(bad)}, center=0.5)
    assert (whole.low, whole.high, whole.status) == (0.0, 1.0, "whole_grid")


def test_regions_split_at_gaps_and_merge_down_to_the_largest_gaps() -> None:
    x = np.arange(20.0)
    mask = np.isin(x, [1, 2, 3, 6, 7, 15])
    assert findings.group_regions(x, mask) == [(1.0, 3.0), (6.0, 7.0), (15.0, 15.0)]
    assert findings.group_regions(x, mask, max_regions=2) == [(1.0, 7.0), (15.0, 15.0)]
    assert findings.group_regions(x, np.zeros(20, bool)) == []


def test_regions_count_grid_values_not_elements() -> None:
    # a 2-D grid: value 2 is failing for one target, value 3 for none: so 2 and 4 are separate regions
    x = np.tile([1.0, 2.0, 3.0, 4.0, -np.inf], (2, 1))
    mask = np.zeros_like(x, bool)
    mask[0, 1] = mask[1, 3] = mask[1, 4] = True
    assert findings.group_regions(x, mask) == [(-np.inf, -np.inf), (2.0, 2.0), (4.0, 4.0)]
