"""The supervisor's view of its workers: counters each worker's Rust core stores into memory
shared across fork (layout in src/server/scoreboard.rs). Read once a second for
--max-requests, --timeout; nothing is sent over pipes and no worker is asked anything."""

from __future__ import annotations

import ctypes
import mmap
import struct

SLOT_SIZE = 8192
HEADER = 64
ENTRY = 128
METRICS = 4096  # request metrics: 36 u64 words, layout in src/server/metrics.rs
METRIC_WORDS = 36
MAX_THREADS = (METRICS - HEADER) // ENTRY
SLOTS = 256


class Scoreboard:
    def __init__(self, slots: int = SLOTS) -> None:
        # An anonymous mapping is shared with children after fork (MAP_SHARED | MAP_ANONYMOUS).
        self._mm = mmap.mmap(-1, slots * SLOT_SIZE)
        self._free = list(range(slots - 1, -1, -1))

    def take(self) -> int | None:
        """A zeroed slot for a new worker, or None when all are in use (the worker then runs
        without one: no recycling by request count, no timeout)."""
        if not self._free:
            return None
        i = self._free.pop()
        self._mm[i * SLOT_SIZE : (i + 1) * SLOT_SIZE] = bytes(SLOT_SIZE)
        return i

    def give_back(self, i: int) -> None:
        self._free.append(i)

    def address(self, i: int | None) -> int:
        if i is None:
            return 0
        return ctypes.addressof(ctypes.c_char.from_buffer(self._mm, i * SLOT_SIZE))

    def requests(self, i: int) -> int:
        return struct.unpack_from("<Q", self._mm, i * SLOT_SIZE)[0]

    def metrics(self, i: int) -> tuple[int, ...]:
        """The worker's request metrics words (see src/server/metrics.rs for their meaning)."""
        return struct.unpack_from(f"<{METRIC_WORDS}Q", self._mm, i * SLOT_SIZE + METRICS)

    def busy(self, i: int, threads: int) -> list[tuple[float, str]]:
        """(monotonic seconds since which a thread has been busy, request line) for busy threads."""
        out = []
        for t in range(min(threads, MAX_THREADS)):
            at = i * SLOT_SIZE + HEADER + t * ENTRY
            (since_ms,) = struct.unpack_from("<Q", self._mm, at)
            if since_ms:
                n = self._mm[at + 8]
                line = bytes(self._mm[at + 9 : at + 9 + n]).decode("latin-1")
                out.append((since_ms / 1000.0, line))
        return out


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB, from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * mmap.PAGESIZE / (1024 * 1024)
