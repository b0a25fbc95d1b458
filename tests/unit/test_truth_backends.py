"""The MPFR truth backend against the mpmath one: the same truths everywhere, the same dispatch rules.

MPFR (through gmpy2) is the fast default; mpmath is the reference implementation.  Every built-in case is
evaluated on both over a thinned quick grid of each dtype (every special value, subnormal and threshold of
the grid is kept), and the truths must be identical bit for bit; condition numbers, which are floats computed
from high-precision values, must agree to a relative 1e-12.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

import gmpy2
import mpmath
import numpy as np
import numpy.typing as npt
import pytest

from suite import cases, dtypes, exact_math, truth
from suite.inputs import grids
from suite.truth import Reference, Status, TruthSet

FORMATS = (dtypes.FLOAT32, dtypes.FLOAT16, dtypes.BFLOAT16, dtypes.FLOAT64)
#: Points per case and dtype besides the special ones (about 5,000 in all, a few seconds per backend).
STRIDE_POINTS = 100


def _thinned(case: cases.Case, fmt: dtypes.FloatFormat) -> dict[str, npt.NDArray[np.float64]]:
    """The quick grid of ``case`` reduced to every special main value (non-finite, zero, subnormal, beyond
    2^30 where MPFR's exponent range ends) plus an even stride over the rest, flattened to samples."""
    grid = grids.case_grid(case, fmt, quick=True)
    main = grids.main_values(case, grid)
    if case.rows:
        main = main[..., 0]
    flat = main.reshape(-1)
    special = ~np.isfinite(flat) | (np.abs(flat) < fmt.smallest_normal) | (np.abs(flat) > 2.0 ** 30)
    stride = max(1, flat.size // STRIDE_POINTS)
    keep = special | (np.arange(flat.size) % stride == 0)
    width = grid[case.inputs[0].name].shape[-1] if case.rows else 1
    shape = (-1, width) if case.rows else (-1,)
    return {name: np.broadcast_to(values, np.broadcast_shapes(*(a.shape for a in grid.values())))
            .reshape(flat.size, width)[keep].reshape(shape) for name, values in grid.items()}


def _evaluate(case: cases.Case, inputs: Mapping[str, Any], backend: str, **options: Any) -> TruthSet:
    return truth.evaluate(case.reference, inputs, rows=case.rows, in_domain=case.in_domain,
                          differentiable=case.differentiable, backend=backend, **options)


def _assert_same_truths(a: TruthSet, b: TruthSet) -> None:
    for name, (x, y) in {"values": (a.values, b.values), **{g: (a.grads[g], b.grads[g]) for g in a.grads}}.items():
        np.testing.assert_array_equal(x.status, y.status, err_msg=name)
        np.testing.assert_array_equal(x.infinite, y.infinite, err_msg=name)
        np.testing.assert_array_equal(x.hi, y.hi, err_msg=name)
        np.testing.assert_array_equal(x.lo, y.lo, err_msg=name)
        np.testing.assert_array_equal(np.signbit(x.hi), np.signbit(y.hi), err_msg=name)
    assert a.grads.keys() == b.grads.keys() and a.grad_condition.keys() == b.grad_condition.keys()
    for name, (c, d) in {"condition": (a.condition, b.condition),
                         **{g: (a.grad_condition[g], b.grad_condition[g]) for g in a.grad_condition}}.items():
        np.testing.assert_array_equal(np.isnan(c), np.isnan(d), err_msg=name)
        np.testing.assert_allclose(c[~np.isnan(c)], d[~np.isnan(d)], rtol=1e-12, atol=0, err_msg=name)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize("name", cases.BUILTIN)
def test_backends_give_identical_truths(name: str, fmt: dtypes.FloatFormat) -> None:
    case = cases.get(name)
    assert exact_math.backends_of(case.reference) == exact_math.BACKENDS  # else the test would compare mpmath twice
    inputs = _thinned(case, fmt)
    on_mpfr, on_mpmath = _evaluate(case, inputs, "mpfr"), _evaluate(case, inputs, "mpmath")
    _assert_same_truths(on_mpfr, on_mpmath)
    assert on_mpfr.values.determined.mean() > 0.5  # the comparison is not between two empty truths


def test_undefined_and_undetermined_agree() -> None:
    """Outside the domain and at NaN both backends say UNDEFINED; with the precision capped at 256 bits a
    tail that only 256 bits see (softplus(87.3365...) = x + 1.2e-38) is UNDETERMINED on both."""
    bce = cases.get("bce")
    inputs = {"input": np.array([1.5, -0.25, np.nan, 0.5]), "target": np.array([1.0, 0.0, 0.0, np.nan])}
    for backend in exact_math.BACKENDS:
        assert (_evaluate(bce, inputs, backend).values.status == Status.UNDEFINED).all()
    logits = cases.get("bce_with_logits")
    x = float(np.float32(87.33653259277344))
    point = {"input": np.array([x, 1.5]), "target": np.array([0.0, 0.0])}
    capped = [_evaluate(logits, point, backend, max_precision=256) for backend in exact_math.BACKENDS]
    for t in capped:
        assert t.values.status.tolist() == [Status.UNDETERMINED, Status.DETERMINED]
    _assert_same_truths(*capped)
    full = [_evaluate(logits, point, backend) for backend in exact_math.BACKENDS]
    _assert_same_truths(*full)
    with mpmath.workprec(600):
        tail = mpmath.log1p(mpmath.exp(-mpmath.mpf(x)))
    assert full[0].values.hi[0] == x and full[0].values.lo[0] == float(tail)


def test_beyond_mpfr_exponent_range_falls_back_to_mpmath() -> None:
    """exp(1e308) overflows MPFR's exponents but not mpmath's: the truth is finite beyond float64 (hi = inf,
    not infinite), as on mpmath; exp(-3.4e38) underflows MPFR, and BCE-with-logits stays identical."""
    kl = cases.get("kl_div_log_target")
    t = _evaluate(kl, {"input": np.array([0.0]), "target": np.array([1e308])}, "mpfr")
    assert t.values.determined.all() and t.values.hi[0] == np.inf and not t.values.infinite[0]
    logits = cases.get("bce_with_logits")
    extreme = {"input": np.array([-3.4e38, 3.4e38, -1e10]), "target": np.array([1.0, 1.0, 0.0])}
    _assert_same_truths(_evaluate(logits, extreme, "mpfr"), _evaluate(logits, extreme, "mpmath"))


def _random_mpfr(rng: random.Random, bits: int) -> Any:
    """A random ``bits``-bit number over the whole float64 range and beyond, often at a rounding tie of a
    float64 (subnormal ties included)."""
    man = rng.getrandbits(bits) | (1 << (bits - 1))
    if rng.random() < 0.3:  # exactly halfway between two float64 values, or next to it
        man = ((man >> (bits - 54)) | 1) << (bits - 54)
        man += rng.choice((-1, 0, 1))
    exp = rng.randrange(-1200, 1100)
    with gmpy2.context(precision=bits):
        x = gmpy2.mul_2exp(gmpy2.mpfr(man), exp - bits)
        return -x if rng.random() < 0.5 else x


def test_dd_from_mpfr_matches_dd_from_mpf() -> None:
    """The MPFR double-double of 20,000 random 128-bit numbers (ties, subnormals, overflow) equals the mpmath
    one, which rounds in integer arithmetic (:func:`suite.dtypes.round_mpf`)."""
    rng = random.Random(7)
    for _ in range(20_000):
        x = _random_mpfr(rng, 128)
        man, exp = x.as_mantissa_exp()
        with mpmath.workprec(128):
            expected = truth.dd_from_mpf(mpmath.mpf((int(man), int(exp))))
        got = truth.dd_from_mpfr(x)
        assert got == expected and [math.copysign(1, v) for v in got[:2]] == [
            math.copysign(1, v) for v in expected[:2]], (x, got, expected)


def test_dd_from_mpfr_specials() -> None:
    assert truth.dd_from_mpfr(gmpy2.mpfr("-0")) == (0.0, 0.0, False)
    assert math.copysign(1, truth.dd_from_mpfr(gmpy2.mpfr("-0"))[0]) == 1  # the truth of 0 is +0
    assert truth.dd_from_mpfr(gmpy2.mpfr("-inf")) == (-math.inf, 0.0, True)
    assert math.isnan(truth.dd_from_mpfr(gmpy2.mpfr("nan"))[0])
    with gmpy2.context(precision=64):
        big = gmpy2.mpfr(2) ** 1024
    assert truth.dd_from_mpfr(big) == (math.inf, 0.0, False)  # finite beyond float64
    with gmpy2.context(precision=300):  # more bits than the current context: the remainder stays exact
        x = gmpy2.mpfr(1) + gmpy2.mpfr(2) ** -200
    with gmpy2.context(precision=53):
        assert truth.dd_from_mpfr(x) == (1.0, 2.0 ** -200, False)


def _mpmath_only_reference(sample: Mapping[str, list[Any]]) -> Reference:
    """A user's plugin reference calling mpmath directly: softplus(-x) with no gradient."""
    x = sample["input"][0]
    return Reference([mpmath.log1p(mpmath.exp(-x))])


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    agnostic = cases.get("bce").reference
    monkeypatch.delenv(truth.BACKEND_ENV, raising=False)
    assert truth.resolve_backend(agnostic) == "mpfr"
    assert truth.resolve_backend(agnostic, "mpmath") == "mpmath"
    assert truth.resolve_backend(_mpmath_only_reference) == "mpmath"
    assert truth.resolve_backend(_mpmath_only_reference, "mpfr") == "mpmath"
    monkeypatch.setenv(truth.BACKEND_ENV, "mpmath")
    assert truth.resolve_backend(agnostic) == "mpmath"
    assert truth.resolve_backend(agnostic, "mpfr") == "mpfr"  # an explicit choice wins
    monkeypatch.setenv(truth.BACKEND_ENV, "fast")
    with pytest.raises(ValueError, match=r"SUITE_TRUTH_BACKEND.*'fast'"):
        truth.resolve_backend(agnostic)
    with pytest.raises(ValueError, match="unknown truth backend 'gpu'"):
        truth.evaluate(agnostic, {"input": [0.5], "target": [0.5]}, backend="gpu")


def test_plugin_reference_runs_on_mpmath() -> None:
    """An mpmath-only reference gives, under the default backend, the truth of the built-in loss at y = 1."""
    x = np.array([-30.0, 0.5, 40.0])
    plugin = truth.evaluate(_mpmath_only_reference, {"input": x})
    builtin = truth.evaluate(cases.get("bce_with_logits").reference, {"input": x, "target": np.ones(3)})
    np.testing.assert_array_equal(plugin.values.hi, builtin.values.hi)
    np.testing.assert_array_equal(plugin.values.lo, builtin.values.lo)


def test_helpers_keep_their_backend() -> None:
    """Each helper returns a number of its argument's backend, and the memo keeps the backends apart (an
    ``mpf`` and an ``mpfr`` of equal value are equal keys)."""
    with exact_math.working_precision("mpfr", 128):
        x = gmpy2.mpfr(0.5)
        results = [exact_math.sigmoid(x), exact_math.softplus(x), exact_math.log(x), exact_math.log(x - x),
                   exact_math.times(x - x, gmpy2.inf()), exact_math.reciprocal(x - x), exact_math.exp(x)]
        assert all(type(r) is type(x) for r in results)
        assert str(results[0]) == str(1 / (1 + gmpy2.exp(-x)))
    with mpmath.workprec(128):
        y = mpmath.mpf(0.5)
        results = [exact_math.sigmoid(y), exact_math.softplus(y), exact_math.log(y), exact_math.log(y - y),
                   exact_math.times(y - y, mpmath.inf), exact_math.reciprocal(y - y), exact_math.exp(y)]
        assert all(type(r) is type(y) for r in results)
        assert results[0] == 1 / (1 + mpmath.exp(-y))
    assert results[3] == -mpmath.inf and results[4] == 0 and results[5] == mpmath.inf


@pytest.mark.parametrize("backend", exact_math.BACKENDS)
def test_condition_numbers_from_closed_forms(backend: str) -> None:
    """Condition numbers are computed at the final precision only (none at the first): at x = 1.5, y = 0.9
    they equal the closed forms ``(|x s s'| + |1 - y|) / |s - y|`` for the logit gradient (s = sigmoid(x),
    s' = sigmoid(-x)) and ``(|x (s - y)| + |x (1 - y)|) / loss`` for the loss, evaluated at 600 bits (the target,
    above 1/2, is perturbed relative to its exact complement 1 - y: exact_math.unit_interval_scale)."""
    case = cases.get("bce_with_logits")
    got = _evaluate(case, {"input": np.array([1.5]), "target": np.array([0.9])}, backend)
    with mpmath.workprec(600):
        x, y = mpmath.mpf(1.5), mpmath.mpf(0.9)
        s, s_neg = 1 / (1 + mpmath.exp(-x)), 1 / (1 + mpmath.exp(x))
        loss = y * mpmath.log1p(mpmath.exp(-x)) + (1 - y) * (x + mpmath.log1p(mpmath.exp(-x)))
        grad_condition = float((abs(x * s * s_neg) + abs(1 - y)) / abs(s - y))
        condition = float((abs(x * (s - y)) + abs(x * (1 - y))) / loss)
    assert got.precision[0] == 256
    assert got.grad_condition["input"][0] == pytest.approx(grad_condition, rel=1e-12)
    assert got.condition[0] == pytest.approx(condition, rel=1e-12)
