"""A plugin module for the child-process tests: it registers a copy of BCE-with-logits under its own name, and
refuses to be imported (RuntimeError) where the environment variable :data:`REFUSE` is set, so that a test
can load it here and see how a child process that fails to import it is reported."""

from __future__ import annotations

import os
from dataclasses import replace

from suite import cases

NAME = "bce_with_logits_refused_in_children"
REFUSE = "SUITE_TEST_REFUSE_PLUGIN"

if os.environ.get(REFUSE):
    raise RuntimeError(f"{REFUSE} is set")

CASE = cases.register(replace(cases.get("bce_with_logits"), name=NAME, known_as="bce_with_logits"))
