"""A plugin module for the interruption tests: importing it registers ``slow_bce_with_logits``, torch's
BCE-with-logits (judged as the built-in one, ``known_as``) that sleeps before each call on the dtype named by
``SUITE_TEST_SLOW_DTYPE``, so that a test can stop a report while that job runs and the others have finished.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import torch

from suite import cases
from suite.cases import Case
from suite.cases.bce_with_logits import reference

NAME = "slow_bce_with_logits"
SLOW_DTYPE_ENV = "SUITE_TEST_SLOW_DTYPE"


def forward(t: Mapping[str, torch.Tensor], reduction: str) -> torch.Tensor:
    if str(t["input"].dtype).removeprefix("torch.") == os.environ.get(SLOW_DTYPE_ENV):
        time.sleep(60)
    return torch.nn.functional.binary_cross_entropy_with_logits(t["input"], t["target"], reduction=reduction)


CASE = cases.register(Case(NAME, "user", "BCE-with-logits that sleeps on one dtype",
                           cases.get("bce_with_logits").inputs, forward, reference, module_forward=forward,
                           known_as="bce_with_logits"))
