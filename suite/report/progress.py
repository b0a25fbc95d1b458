"""Progress of a long report run, on stderr, without dependencies.

On a terminal one text bar is redrawn in place at each step of each case/dtype job (``[#####-----] 7/36
19% 0:42 bce float16: truth``).  Elsewhere (a log file, CI) the bar stays quiet and one line is written per
finished job, so logs stay readable.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class Progress:
    """``total`` jobs; :meth:`step` says what job ``number`` is doing now, :meth:`done` that it finished.
    ``tty`` defaults to whether ``stream`` is a terminal; ``quiet`` writes nothing; ``clock`` is for tests."""

    def __init__(self, total: int = 0, stream: TextIO | None = None, *, tty: bool | None = None,
                 quiet: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.quiet = quiet
        self.total = total
        self._clock = clock
        self._started = self._clock()
        self._finished = 0
        self._drawn = False

    def bar(self, text: str) -> str:
        """The bar line for the current state with ``text`` after it, cut to the terminal's width."""
        fraction = self._finished / self.total if self.total else 0.0
        filled = round(fraction * BAR_WIDTH)
        line = (f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {self._finished}/{self.total} "
                f"{fraction:4.0%} {_clock(self._clock() - self._started)} {text}")
        width = shutil.get_terminal_size((100, 20)).columns - 1
        return line[:width]

    def _write(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(text)
            self.stream.flush()

    def _draw(self, text: str) -> None:
        self._write("\r\x1b[2K" + self.bar(text))
        self._drawn = True

    def step(self, number: int, label: str, phase: str) -> None:
        """Job ``number`` (1-based) named ``label`` entered ``phase``: redraws the bar on a terminal."""
        if self.tty:
            self._draw(f"{label}: {phase}")

    def done(self, number: int, label: str, summary: str) -> None:
        """Job ``number`` finished (jobs may finish in any order): advances the bar on a terminal, else writes
        one line."""
        self._finished += 1
        if self.tty:
            self._draw(f"{label}: done")
        else:
            self.line(f"[{number}/{self.total}] {label}: {summary}")

    def line(self, text: str) -> None:
        """A message of its own line (below the bar on a terminal, which is redrawn by the next step)."""
        if self.tty and self._drawn:
            self._write("\r\x1b[2K")
            self._drawn = False
        self._write(text + "\n")

    def close(self) -> None:
        """End the bar's line on a terminal."""
        if self.tty and self._drawn:
            self._write("\n")
            self._drawn = False
