"""-D/--daemon: detach from the terminal, as gunicorn's setting does, for init scripts and systemd
units of Type=forking that start the server and wait for the command to return."""

from __future__ import annotations

import os
import sys


def daemonize(keep_stdio: bool) -> None:
    """The starting process exits at once (status 0); the server continues in a grandchild that
    leads a session of its own, so it has no controlling terminal and can never get one. stdin
    reads /dev/null; stdout and stderr do too unless `keep_stdio` (--enable-stdio-inheritance).
    Called before anything is bound, imported or threaded: a failure after this is reported in
    the error log (and --pid names the grandchild), not by the exit status, as with gunicorn."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    if not keep_stdio:
        os.dup2(null, 1)
        os.dup2(null, 2)
    os.close(null)
