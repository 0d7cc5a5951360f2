"""The supervisor's view of its workers: counters each worker's Rust core stores into memory
shared across fork. The mapping, its layout and the readings are Rust's (`rsgi._rsgi.Scoreboard`,
src/scoreboard/): the supervisor takes and returns slot numbers, hands a worker its
`Scoreboard.slot(i)` handle, and reads requests, busy threads and named metrics. It is read once
a second for --max-requests and --timeout; nothing is sent over pipes and no worker is asked
anything."""

from __future__ import annotations

import mmap

from ._rsgi import Scoreboard, SlotHandle

__all__ = ["Scoreboard", "SlotHandle", "rss_mb"]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB, from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * mmap.PAGESIZE / (1024 * 1024)
