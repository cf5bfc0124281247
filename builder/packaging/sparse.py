"""Where a sparse file holds data: its allocation map, read with SEEK_DATA/SEEK_HOLE.

The raw image is 20 GiB long but holds only a few hundred MB; reading it front to back would
cost minutes, so converters visit only the extents the file system reports as data.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) byte ranges of `fd` that may hold data, in order. Holes read as zeros.

    On a file system without SEEK_DATA support the whole file is one extent (slow but right).
    """
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after offset: the rest is a hole
                return
            if exc.errno == errno.EINVAL:  # SEEK_DATA unsupported here
                yield offset, size
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        offset = end


def data_blocks(fd: int, size: int, block: int) -> Iterator[int]:
    """Indexes of the `block`-sized blocks that overlap data, ascending and each once."""
    last = -1
    for start, end in data_extents(fd, size):
        first = max(start // block, last + 1)
        yield from range(first, (end - 1) // block + 1)
        last = max(last, (end - 1) // block)
