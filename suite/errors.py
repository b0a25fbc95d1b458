"""Bad input to the suite, as one line: the exception type for it (unknown case, malformed file, bad option),
which each command line prints as one line with exit status 2, and the argument parser that reports its own
errors the same way (argparse's default prints the whole usage first)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class UsageError(Exception):
    """Bad input from the person running the suite."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2, without the usage text."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)
