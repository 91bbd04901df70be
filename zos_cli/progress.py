"""The progress callback a command hands a long library job (reflect, analyze).

Library modules never draw anything: they call `progress(description, total)` and advance the
bar it gives. A command passes a function that draws one on stderr (`output.progress`); a
library caller that wants none passes nothing and gets `no_progress`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol


class ProgressBar(Protocol):
    def advance(self, n: int = 1) -> None: ...


# progress(description, total) → a context manager giving a bar, live while the items run.
Progress = Callable[[str, int], AbstractContextManager[ProgressBar]]


class _NoBar:
    def advance(self, n: int = 1) -> None:
        pass


def no_progress(description: str, total: int) -> AbstractContextManager[ProgressBar]:
    return nullcontext(_NoBar())
