"""suite.budgets: the packaged file's values, and malformed entries refused with the part named."""

from __future__ import annotations

import pytest

from suite import budgets
from suite.metrics import Label

DEFAULT = "[default]\nfloat64 = 4.0\nfloat32 = 4.0\nfloat16 = 1.0\nbfloat16 = 1.0\n"


def test_packaged_budgets_and_labels() -> None:
    assert budgets.ulp_budget("bce", "float16") == 1.0 and budgets.ulp_budget("kl_div", "float64", "cuda:0") == 4.0
    assert budgets.never_acceptable() <= {label.text for label in Label}
    assert {"nan", "inaccurate", "clamped", "device_assert"} <= budgets.never_acceptable()
    assert not budgets.never_acceptable() & {"exact", "ok", "overflow", "undefined", "undetermined"}


def test_the_most_specific_override_wins() -> None:
    parsed = budgets.parse(DEFAULT + '[[override]]\ncase = "kl_div"\nulps = 8\nreason = "r"\n'
                                     '[[override]]\ncase = "kl_div"\ndtype = "float32"\nulps = 16\nreason = "r"\n')
    assert [o["ulps"] for o in parsed.overrides] == [8.0, 16.0]


@pytest.mark.parametrize(("extra", "message"), [
    ('[[override]]\ncase = "kl_div"\ndtyp = "float32"\nulps = 8\nreason = "r"\n', "unknown keys \\['dtyp'\\]"),
    ('[[override]]\ncase = "kl_div"\nreason = "r"\n', "ulps must be a positive number"),
    ('[[override]]\ncase = "kl_div"\nulps = -1\nreason = "r"\n', "ulps must be a positive number"),
    ('[[override]]\ncase = "kl_div"\nulps = 8\n', "needs a reason"),
    ('[[override]]\nulps = 8\nreason = "r"\n', "names none of"),
    ('[[override]]\ndtype = "float8"\nulps = 8\nreason = "r"\n', "unknown dtype 'float8'"),
    ('never_acceptable = ["nan", "clampd"]\n', "names labels outside"),
    ('budget = 3\n', "unknown top-level keys"),
])
def test_malformed_entries_are_refused(extra: str, message: str) -> None:
    text = extra + DEFAULT if extra.startswith(("never", "budget")) else DEFAULT + extra
    with pytest.raises(ValueError, match=message):
        budgets.parse(text)


def test_a_default_for_each_dtype_is_required() -> None:
    with pytest.raises(ValueError, match="must give every dtype"):
        budgets.parse("[default]\nfloat64 = 4.0\n")
