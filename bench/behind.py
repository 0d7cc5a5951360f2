"""Start a backend server, wait until it accepts connections, then become the front server.

    python bench/behind.py PORT TIMEOUT -- BACKEND ARGV... -- FRONT ARGV...

bench/run.py starts one process per run; a stack of two servers (nginx reverse-proxying to gunicorn) is this
process: the backend is started as a child (same process group, so run.py's stop reaches it), and once its
127.0.0.1:PORT accepts a TCP connection this process execs the front server, which keeps the backend as its child
(its memory and CPU count in the stack's tree). Waiting first means the front never answers 502 while the backend
boots, so run.py's readiness poll and probe see the stack as a client would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    try:
        port, timeout = int(argv[0]), float(argv[1])
        rest = argv[2:]
        first = rest.index("--")
        second = rest.index("--", first + 1)
    except (IndexError, ValueError):
        print(__doc__, file=sys.stderr)
        return 2
    backend, front = rest[first + 1 : second], rest[second + 1 :]
    if not backend or not front:
        print(__doc__, file=sys.stderr)
        return 2
    proc = subprocess.Popen(backend)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            print(f"behind.py: the backend exited with code {proc.returncode} before listening", file=sys.stderr)
            return 1
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                print(f"behind.py: nothing listens on 127.0.0.1:{port} after {timeout:g} s", file=sys.stderr)
                proc.kill()
                return 1
            time.sleep(0.05)
    sys.stdout.flush()
    os.execvp(front[0], front)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
