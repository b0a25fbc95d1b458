"""The names a person lists in an option: kept in order, each once, across commas and repeated options; a blank
item is refused rather than dropped; an option not given falls back to its default."""

from __future__ import annotations

import pytest

from suite import modes, selection
from suite.errors import UsageError


@pytest.mark.parametrize("values, expected", [
    ("bce", ["bce"]),
    ("kl_div, bce", ["kl_div", "bce"]),
    ("bce,bce,kl_div,bce", ["bce", "kl_div"]),
    (["bce,kl_div", "kl_div", "bce_with_logits"], ["bce", "kl_div", "bce_with_logits"]),
    (None, []),
    ([], []),
])
def test_names_keep_the_first_occurrence_of_each_in_order(values: str | list[str] | None, expected: list[str]) -> None:
    assert selection.names(values, "--cases") == expected


@pytest.mark.parametrize("values", ["", " ", "bce,", ",bce", "bce,,kl_div", ["bce", ""]])
def test_a_blank_name_is_refused_and_the_message_quotes_the_option(values: str | list[str]) -> None:
    with pytest.raises(UsageError, match=r"^--cases .* has an empty name"):
        selection.names(values, "--cases")


def test_options_not_given_fall_back_to_their_defaults() -> None:
    assert selection.devices(None)[0] == "cpu"
    assert selection.mode_names(None) == ["eager"]
    assert selection.mode_names(None, default=modes.MODES) == list(modes.MODES)
    assert selection.mode_names("compile,eager,compile") == ["compile", "eager"]
