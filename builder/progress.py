"""Progress for long operations: which step runs, and how long each one took."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0


def say(message: str) -> None:
    print(f"{'  ' * _depth}{message}", file=sys.stderr, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print '==> title', run the body, then 'done in N s' (or 'failed after N s')."""
    global _depth
    say(f"==> {title}")
    started = time.monotonic()
    _depth += 1
    try:
        yield
    except BaseException:
        _depth -= 1
        say(f"    {title}: failed after {time.monotonic() - started:.1f} s")
        raise
    _depth -= 1
    say(f"    {title}: done in {time.monotonic() - started:.1f} s")
