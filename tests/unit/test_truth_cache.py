"""The on-disk truth cache: an entry gives back exactly the truth it stored, a corrupt one is recomputed, and
the key changes with every piece of code that computes a truth (so an edit never reuses a stale value)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import mpmath
import numpy as np
import pytest

from suite import cases, dtypes, exact_math, truth, truth_cache

#: logits and targets with the special values the grids hold: +-0, +-inf, NaN, a subnormal, saturation
INPUTS = {"input": np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 40.0, -750.0]),
          "target": np.array([0.0, 1.0, 0.5, 0.5, 0.5, 1.0, 0.0, 1.0])}


def _entry(tmp_path: Path) -> tuple[cases.Case, Path]:
    case = cases.get("bce_with_logits")
    return case, truth_cache.cache_path(case, INPUTS, tmp_path)


def _assert_same(a: truth.TruthSet, b: truth.TruthSet) -> None:
    for name, (x, y) in {"values": (a.values, b.values), **{g: (a.grads[g], b.grads[g]) for g in a.grads}}.items():
        for field in ("hi", "lo", "status", "infinite", "big_hi", "big_lo"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field), err_msg=f"{name}.{field}")
        np.testing.assert_array_equal(np.signbit(x.hi), np.signbit(y.hi), err_msg=name)
    assert a.grads.keys() == b.grads.keys()
    np.testing.assert_array_equal(a.condition, b.condition)
    np.testing.assert_array_equal(a.precision, b.precision)


def test_a_stored_truth_comes_back_bit_for_bit_without_recomputing(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    case, path = _entry(tmp_path)
    computed = truth_cache.cached_truth(case, INPUTS, cache_dir=tmp_path)
    assert path.exists()
    # log(1 + e^0) - 0 = log 2, from mpmath independently of the suite's reference
    assert computed.values.hi[0] == float(mpmath.log(2))

    def refuse(*args: Any, **kwargs: Any) -> truth.TruthSet:
        raise AssertionError("the cache entry was not used")

    monkeypatch.setattr(truth, "evaluate", refuse)
    _assert_same(truth_cache.cached_truth(case, INPUTS, cache_dir=tmp_path), computed)


def test_an_entry_is_plain_numeric_arrays(tmp_path: Path) -> None:
    case, path = _entry(tmp_path)
    truth_cache.cached_truth(case, INPUTS, cache_dir=tmp_path)
    with np.load(path, allow_pickle=False) as data:
        assert all(data[name].dtype.kind in "fiub" for name in data.files)
        assert "allow_pickle" not in data.files and "values.hi" in data.files


def test_a_corrupt_entry_is_recomputed_and_replaced(tmp_path: Path) -> None:
    case, path = _entry(tmp_path)
    expected = truth_cache.cached_truth(case, INPUTS, cache=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an npz")
    _assert_same(truth_cache.cached_truth(case, INPUTS, cache_dir=tmp_path), expected)
    with np.load(path, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["values.hi"], expected.values.hi)


@pytest.mark.parametrize("edited", [truth, exact_math, dtypes], ids=lambda m: m.__name__)
def test_an_edit_of_any_truth_module_is_a_new_key(edited: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    case = cases.get("bce_with_logits")
    before = truth_cache.cache_key(case, INPUTS, truth.DEFAULT_PRECISION, truth.MAX_PRECISION)
    getsource = inspect.getsource
    monkeypatch.setattr(inspect, "getsource",
                        lambda obj: getsource(obj) + ("\n# edited" if obj is edited else ""))
    assert truth_cache.cache_key(case, INPUTS, truth.DEFAULT_PRECISION, truth.MAX_PRECISION) != before


def test_the_key_follows_the_input_bits_and_the_precision_and_is_shared_by_one_reference() -> None:
    key = truth_cache.cache_key(cases.get("bce_with_logits"), INPUTS, truth.DEFAULT_PRECISION, truth.MAX_PRECISION)
    assert key == truth_cache.cache_key(cases.get("sigmoid_bce"), INPUTS, truth.DEFAULT_PRECISION,
                                        truth.MAX_PRECISION)
    nudged = {**INPUTS, "input": INPUTS["input"].copy()}
    nudged["input"][6] = np.nextafter(40.0, np.inf)
    assert key != truth_cache.cache_key(cases.get("bce_with_logits"), nudged, truth.DEFAULT_PRECISION,
                                        truth.MAX_PRECISION)
    assert key != truth_cache.cache_key(cases.get("bce_with_logits"), INPUTS, truth.DEFAULT_PRECISION + 1,
                                        truth.MAX_PRECISION)
    assert key != truth_cache.cache_key(cases.get("kl_div"), INPUTS, truth.DEFAULT_PRECISION, truth.MAX_PRECISION)
