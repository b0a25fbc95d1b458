"""Hypothesis strategies: every special class of value is reached in every format, drawn values are values
of the format inside their bounds, case inputs broadcast as torch needs, and bad bounds are refused."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from suite import cases, dtypes, run, search
from suite.inputs import grids
from suite.inputs import strategies as xs
from tests.conftest import skip_where_torch_raises

FORMATS = list(dtypes.FORMATS.values())
FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=300)
ALL_CLASSES = {"+0", "-0", "+inf", "-inf", "nan", "subnormal", "normal", "threshold"}


def _draws(strategy: st.SearchStrategy, n: int = 300) -> list:
    """``n`` derandomised draws, the same whatever modules the process imported before (Hypothesis mixes their
    literal constants into its draws otherwise, so a test passed or failed with the order tests ran in)."""
    out: list = []

    @settings(FIXED, max_examples=n)
    @given(strategy)
    def collect(value: object) -> None:
        out.append(value)

    with search.without_local_constants():
        collect()
    return out


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_floats_of_reaches_every_special_class(fmt: dtypes.FloatFormat) -> None:
    values = _draws(xs.floats_of(fmt, allow_nan=True))
    assert xs.drawn_classes(values, fmt) == ALL_CLASSES
    finite = np.array([v for v in values if not math.isnan(v)])
    assert dtypes.is_representable(finite, fmt).all()


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_probabilities_reach_zeros_subnormals_one_and_thresholds(fmt: dtypes.FloatFormat) -> None:
    values = _draws(xs.probabilities(fmt))
    assert xs.drawn_classes(values, fmt) == {"+0", "-0", "subnormal", "normal", "threshold"}
    assert 1.0 in values, "the upper end of the domain, p = 1 (BCE's log(1 - p) = -inf), is never drawn"
    assert all(0 <= v <= 1 for v in values)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
@pytest.mark.parametrize("kind", list(xs.KIND_STRATEGIES))
def test_kind_strategies_draw_representable_values_in_range(kind: str, fmt: dtypes.FloatFormat) -> None:
    values = np.array(_draws(xs.for_kind(kind, fmt), 60))
    assert not np.isnan(values).any()
    assert dtypes.is_representable(values, fmt).all()
    if kind in ("probability", "target"):
        assert ((values >= 0) & (values <= 1)).all()
    if kind in ("weight", "pos_weight"):
        assert np.isfinite(values).all() and (values >= 0).all()
    if kind == "log_target":
        assert (values <= fmt.max_finite).all()


@given(st.data())
def test_bounded_draws_stay_inside_inward_rounded_bounds(data: st.DataObject) -> None:
    fmt = data.draw(st.sampled_from(FORMATS))
    low = data.draw(st.floats(-1e4, 1e4))
    high = data.draw(st.floats(low + 64, 3e4))  # float16 spacing is at most 16 below 3e4
    allow_subnormal = data.draw(st.booleans())
    value = data.draw(xs.floats_of(fmt, min_value=low, max_value=high, allow_subnormal=allow_subnormal))
    assert low <= value <= high
    assert dtypes.is_representable(value, fmt)
    if not allow_subnormal:
        assert value == 0 or abs(value) >= fmt.smallest_normal


def test_subnormals_can_be_excluded() -> None:
    values = _draws(xs.floats_of(dtypes.FLOAT16, allow_subnormal=False), 200)
    assert "subnormal" not in xs.drawn_classes(values, dtypes.FLOAT16)
    normal = dtypes.FLOAT16.smallest_normal  # a subnormal draw goes to the nearest of 0 and +-normal
    choices = [0.0, normal, -normal]
    assert xs.nearest(float(np.float16(0.75 * normal)), choices) == normal
    assert xs.nearest(float(np.float16(-0.75 * normal)), choices) == -normal
    assert xs.nearest(float(np.float16(0.25 * normal)), choices) == 0.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"min_value": 1.0, "max_value": 0.0}, "greater than"),
    ({"min_value": math.nan}, "NaN"),
    ({"max_value": "1"}, "real number"),
    ({"min_value": 0.1, "max_value": 0.1}, "no value of float16"),
    ({"min_value": 1e-7, "max_value": 5e-5, "allow_subnormal": False}, "only subnormal"),
    ({"min_value": 7e4, "allow_infinity": False}, "no finite value"),
    ({"kind": "probabilty"}, "kind"),
])
def test_bad_bounds_are_refused_with_a_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        xs.floats_of(dtypes.FLOAT16, **kwargs)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="must be one of"):
        xs.for_kind("logits", dtypes.FLOAT32)


def _has_ndim(name: str, ndim: int) -> Callable[[dict[str, np.ndarray]], bool]:
    return lambda inputs: bool(inputs[name].ndim == ndim)


@pytest.mark.parametrize("case", cases.all_cases(), ids=lambda c: c.name)
def test_case_inputs_broadcast_and_run_in_torch(case: cases.Case) -> None:
    fmt = dtypes.FLOAT16
    skip_where_torch_raises(case.name, fmt.name)
    batches: set[int] = set()

    @settings(FIXED, max_examples=20)
    @given(xs.case_inputs(case, fmt))
    def check(inputs: dict[str, np.ndarray]) -> None:
        assert set(inputs) == {s.name for s in case.inputs}
        shape = np.broadcast_shapes(*(v.shape for v in inputs.values()))
        batches.add(shape[0])
        for name, values in inputs.items():
            assert not np.isnan(values).any()
            assert dtypes.is_representable(values, fmt).all()
            spec = case.spec(name)
            assert ((values >= spec.low) & (values <= spec.high)).all()
            if spec.role == "parameter" and spec.kind == "pos_weight":
                assert values.shape in ((), shape[-1:])
        if case.rows:
            assert not np.all(inputs["input"] == -math.inf, axis=-1).any()
        tensors = {k: run.to_tensor(v, fmt, "cpu") for k, v in inputs.items()}
        with torch.no_grad():
            for reduction in case.reductions:
                case.forward(tensors, reduction)  # raises if shapes do not broadcast as torch needs

    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check()
    assert max(batches) > 1
    for spec in case.inputs:
        if spec.role == "parameter":  # every broadcast form is reachable (found by search, not by luck)
            for ndim in ((0, 1) if spec.kind == "pos_weight" else (0, 1, 2)):
                found = find(xs.case_inputs(case, fmt), _has_ndim(spec.name, ndim),
                             settings=settings(FIXED, max_examples=1000))
                assert found[spec.name].ndim == ndim


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_every_binade_of_the_moderate_band_is_drawn(fmt: dtypes.FloatFormat) -> None:
    """Uniform ordinals put a float64 draw in [2, 4) once in 2046 (numpy's spacing: every binade holds as many
    values); the band source (:data:`suite.inputs.grids.BAND`) reaches each of its binades."""
    low, high = grids.BAND
    values = np.array(_draws(xs.logits(fmt), 3000))
    magnitudes = np.abs(values[np.isfinite(values)])
    binades = {int(e) for e in np.floor(np.log2(magnitudes[magnitudes > 0]))}
    assert binades >= set(range(int(math.log2(low)), int(math.log2(high))))
    assert np.spacing(2.0) == np.spacing(3.999) and np.nextafter(4.0, 0) < 4.0  # one spacing per binade


def _position_in_binade(values: np.ndarray) -> np.ndarray:
    """Where each nonzero finite value lies in its binade [2^e, 2^(e+1)): 0 at the start, 1 at the end."""
    mantissas, _ = np.frexp(np.abs(values))  # |v| = m 2^e with m in [0.5, 1)
    return 2 * mantissas - 1


@pytest.mark.parametrize("fmt", [dtypes.FLOAT64, dtypes.FLOAT32], ids=str)
def test_band_values_are_spread_over_each_binade(fmt: dtypes.FloatFormat) -> None:
    """A bug in one segment of a binade (a polynomial piece, a cut-off at 25) is found only if the middle of a
    binade is drawn as often as its ends.  Hypothesis draws a wide integer with a bias toward small values,
    so fraction bits drawn as one integer left the middle three quarters of each binade almost empty."""
    low, high = grids.BAND
    values = np.unique(_draws(xs.logits(fmt), 3000))
    band = values[np.isfinite(values) & (np.abs(values) >= low) & (np.abs(values) < high)]
    counts, _ = np.histogram(_position_in_binade(band), bins=8, range=(0, 1))
    assert counts.min() > band.size / 8 / 3, counts  # each eighth of a binade holds a third of its share


@pytest.mark.parametrize("fmt", [dtypes.FLOAT64, dtypes.BFLOAT16], ids=str)
def test_the_whole_range_is_drawn_binade_by_binade(fmt: dtypes.FloatFormat) -> None:
    """Every binade of the range is as likely as another, huge and tiny magnitudes included (an ordinal drawn
    as one integer put about half of all draws at subnormals and hardly any above 2^100)."""
    values = np.array(_draws(xs.logits(fmt), 3000))
    finite = np.abs(values[np.isfinite(values) & (values != 0)])
    exponents = np.floor(np.log2(finite)).astype(int)
    assert len(set(exponents[exponents > 100].tolist())) > 10  # float64 and bfloat16 reach 2^127 and beyond
    assert len(set(exponents[exponents < -100].tolist())) > 10
    assert (finite < fmt.smallest_normal).mean() < 0.2


def test_uniform_bits_are_uniform() -> None:
    drawn = np.array(_draws(xs.uniform_bits(52), 2000))
    assert ((drawn >= 0) & (drawn < 2**52)).all()
    counts, _ = np.histogram(drawn / 2.0**52, bins=16, range=(0, 1))
    assert counts.min() > drawn.size / 16 / 3, counts


def test_the_band_respects_bounds() -> None:
    values = np.array(_draws(xs.probabilities(dtypes.FLOAT64), 1000))
    assert ((values >= 0) & (values <= 1)).all()
    assert ((values >= 0.5) & (values < 1)).sum() > 20  # 1 ordinal draw in 2046 lands there
    band = grids.exponents(dtypes.FLOAT64, grids.BAND)
    assert grids.binades(0, 10, dtypes.FLOAT64, band) == ()  # none below the band


def test_square_batches_are_drawn() -> None:
    """A per-class weight (C,) of a (C, C) batch is where a weight applied per sample goes unnoticed."""
    shapes = [np.shape(b["input"]) for b in _draws(xs.case_inputs(cases.get("bce_weight"), dtypes.FLOAT32), 200)]
    square = [s for s in shapes if len(s) == 2 and s[0] == s[1] > 1]
    assert len(square) > 10


def test_wide_rows_are_drawn_for_rows_cases_alone() -> None:
    """Rows past a vector register's lanes (log_softmax's vectorised paths and their tails) are drawn, a few at
    a time; elementwise cases keep sides of at most ``max_batch``."""
    rows = [np.shape(b["input"]) for b in _draws(xs.case_inputs(cases.get("log_softmax_kl_div"), dtypes.FLOAT32), 200)]
    wide = [s for s in rows if s[-1] > 8]
    low, high = xs.WIDE_ROW_SIDES
    assert len(wide) > 10 and all(low <= s[-1] <= high and s[0] <= 2 for s in wide)
    assert any(s[-1] >= 16 for s in wide) and all(s[-1] >= 2 for s in rows)
    flat = [np.shape(b["input"]) for b in _draws(xs.case_inputs(cases.get("kl_div"), dtypes.FLOAT32), 200)]
    assert max(max(s) for s in flat) <= 8


def test_with_nans_puts_nan_only_at_drawn_positions_of_a_copy() -> None:
    clean = {"input": np.array([[0.25, 0.5], [1.0, 2.0]]), "target": np.array([[0.0, 1.0], [0.5, 0.5]]),
             "weight": np.array(3.0)}
    kept = {k: v.copy() for k, v in clean.items()}
    for poisoned in _draws(xs.with_nans(clean), 100):
        nan = {k: np.isnan(v) for k, v in poisoned.items()}
        assert sum(int(m.sum()) for m in nan.values()) >= 1
        for name, values in poisoned.items():
            np.testing.assert_array_equal(values[~nan[name]], clean[name][~nan[name]])
    for name in clean:
        np.testing.assert_array_equal(clean[name], kept[name])
    seen = {k for p in _draws(xs.with_nans(clean), 100) for k, v in p.items() if np.isnan(v).any()}
    assert seen == set(clean)


def test_targets_go_above_one_exactly_where_the_domain_does() -> None:
    """kl_div takes any nonnegative target (a kernel may mishandle those above 1); BCE's are in [0, 1]."""
    kl = np.array(_draws(xs.for_spec(cases.get("kl_div").spec("target"), dtypes.FLOAT32), 200))
    assert (kl > 1).any() and ((kl >= 0) & (kl <= 1)).mean() > 0.5 and np.isfinite(kl).all()
    bce = np.array(_draws(xs.for_spec(cases.get("bce").spec("target"), dtypes.FLOAT32), 200))
    assert ((bce >= 0) & (bce <= 1)).all()
