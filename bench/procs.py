"""Process plumbing for bench/run.py: ports, readiness, stopping, CPU and memory of a server's process tree."""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil

HOST = "127.0.0.1"


def raise_nofile(want: int = 65536) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE (soft, up to the hard limit) for this process and the children it starts:
    1,000 wrk connections plus the server's own sockets need more than the usual 1,024. Returns the new limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def http_request(
    port: int, path: str, method: str = "GET", body: bytes | None = None, content_type: str = "", timeout: float = 10
) -> tuple[int, int]:
    """One HTTP/1.1 request; returns (status, body length). Raises OSError/HTTPException when nobody answers."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": content_type or "application/octet-stream"} if body else {}
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, len(resp.read())
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen, port: int, path: str, deadline: float) -> str | None:
    """Poll GET `path` until the server answers HTTP (any status). Returns None when ready, else why it is not."""
    while True:
        code = proc.poll()
        if code is not None:
            return f"exited with code {code} before answering"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "did not answer HTTP before the start deadline"
        try:
            http_request(port, path, timeout=min(5.0, remaining))
            return None
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)  # polling interval, not a synchronisation delay


def stop_server(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL the process group we created (start_new_session) and any stray descendants."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for child in descendants:
        try:
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                child.kill()
        except psutil.Error:
            pass


def tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_cpu(root: psutil.Process) -> dict[int, float]:
    """CPU seconds per process of the tree, including already-reaped children of each process."""
    out = {}
    for p in tree(root):
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return out


class RssSampler(threading.Thread):
    """Samples the RSS of a process tree every `interval` seconds; keeps the peak total and the peak per process."""

    def __init__(self, root: psutil.Process, interval: float = 0.25):
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.halt = threading.Event()
        self.peak_total = 0
        self.per_process: dict[int, dict] = {}

    def sample(self) -> None:
        total = 0
        for p in tree(self.root):
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            role = "main" if p.pid == self.root.pid else "worker"
            entry = self.per_process.setdefault(p.pid, {"pid": p.pid, "role": role, "peak_rss": 0})
            entry["peak_rss"] = max(entry["peak_rss"], rss)
        self.peak_total = max(self.peak_total, total)

    def run(self) -> None:
        self.sample()
        while not self.halt.wait(self.interval):
            self.sample()

    def finish(self) -> None:
        self.halt.set()
        self.join()
        self.sample()

    def per_process_mb(self) -> list[dict]:
        return [
            {"pid": e["pid"], "role": e["role"], "peak_rss_mb": round(e["peak_rss"] / 2**20, 1)}
            for e in self.per_process.values()
        ]
