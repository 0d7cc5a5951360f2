"""--drain-delay: how the supervisor tells its workers that a stop is coming, so their health path
answers 503 while they keep accepting and serving. A pipe whose write end only the supervisor
holds: closing it is the notice. Every worker (also one forked during the delay) holds the read
end and sees end-of-file, on a thread of its own; no signal is involved, so no signal mask or
handler of the app is touched."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any


class Notice:
    """The supervisor's side. Made after the --reload watcher is forked (which must not hold the
    write end), before the first worker."""

    def __init__(self) -> None:
        self.read, self._write = os.pipe2(os.O_CLOEXEC)

    @property
    def given(self) -> bool:
        return self._write < 0

    def give(self) -> None:
        """Every worker marks itself unready."""
        if self._write >= 0:
            os.close(self._write)
            self._write = -1

    def in_worker(self) -> int:
        """In a freshly forked worker: drops the write end; returns the read end to follow."""
        if self._write >= 0:
            os.close(self._write)
            self._write = -1
        return self.read

    def close(self) -> None:
        self.give()
        with contextlib.suppress(OSError):
            os.close(self.read)


def follow(core: Any, fd: int) -> None:
    """The worker's side: a daemon thread waits for end-of-file on `fd`, then calls
    `core.unready()` (the `rsgi._rsgi.Worker`). `fd` < 0: no notice to follow."""
    if fd < 0:
        return

    def wait() -> None:
        try:
            while os.read(fd, 64):  # nothing is ever written: this returns at end-of-file
                pass
        except OSError:
            return
        core.unready()

    threading.Thread(target=wait, name="rsgi-drain", daemon=True).start()
