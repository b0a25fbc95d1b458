"""Fixtures of the accuracy property tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from suite import modes


@pytest.fixture
def fresh_compiles() -> Iterator[None]:
    """Each compiled test compiles anew, as each job of the report does (:func:`suite.modes.fresh_compiles`):
    dynamo keeps every compiled variant of the one function :func:`suite.modes.forward_for` compiles, so without
    this the variants of earlier tests pile up (in one worker, every test after the 16th failed)."""
    modes.fresh_compiles()
    yield
    modes.fresh_compiles()
