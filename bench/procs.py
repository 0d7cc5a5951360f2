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


def http_fetch(
    port: int,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    content_type: str = "",
    timeout: float = 10,
    headers: dict | None = None,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request; returns (status, body). Raises OSError/HTTPException when nobody answers."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        sent = {"Content-Type": content_type or "application/octet-stream"} if body else {}
        conn.request(method, path, body=body or None, headers=sent | (headers or {}))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_request(
    port: int, path: str, method: str = "GET", body: bytes | None = None, content_type: str = "", timeout: float = 10
) -> tuple[int, int]:
    """One HTTP/1.1 request; returns (status, body length). Raises OSError/HTTPException when nobody answers."""
    status, data = http_fetch(port, path, method, body, content_type, timeout)
    return status, len(data)


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


def pss_bytes(pid: int) -> int | None:
    """Proportional set size of one process from /proc/<pid>/smaps_rollup (shared pages divided among the processes
    that map them, so summing it over a pre-fork tree does not count copy-on-write pages once per worker)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


class RssSampler(threading.Thread):
    """Samples the RSS and PSS of a process tree every `interval` seconds; keeps the peak totals and the peaks per
    process. PSS is None when the kernel has no smaps_rollup (before Linux 4.14) or it cannot be read."""

    def __init__(self, root: psutil.Process, interval: float = 0.25):
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.halt = threading.Event()
        self.peak_total = 0
        self.peak_pss_total: int | None = None
        self.per_process: dict[int, dict] = {}

    def sample(self) -> None:
        total, pss_total, pss_ok = 0, 0, True
        for p in tree(self.root):
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            pss = pss_bytes(p.pid)
            total += rss
            if pss is None:
                pss_ok = False
            else:
                pss_total += pss
            role = "main" if p.pid == self.root.pid else "worker"
            entry = self.per_process.setdefault(p.pid, {"pid": p.pid, "role": role, "peak_rss": 0, "peak_pss": 0})
            entry["peak_rss"] = max(entry["peak_rss"], rss)
            entry["peak_pss"] = max(entry["peak_pss"], pss or 0)
        self.peak_total = max(self.peak_total, total)
        if pss_ok and total:
            self.peak_pss_total = max(self.peak_pss_total or 0, pss_total)

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
            {
                "pid": e["pid"],
                "role": e["role"],
                "peak_rss_mb": round(e["peak_rss"] / 2**20, 1),
                "peak_pss_mb": round(e["peak_pss"] / 2**20, 1),
            }
            for e in self.per_process.values()
        ]


def _socket_inodes(port: int) -> tuple[set[str], set[str]]:
    """Socket inodes on local port `port`: (established connections, listening sockets)."""
    established, listening = set(), set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()  # sl local_address rem_address st ... inode (index 9)
                    if len(fields) <= 9 or int(fields[1].rsplit(":", 1)[1], 16) != port:
                        continue
                    if fields[3] == "01":  # ESTABLISHED
                        established.add(fields[9])
                    elif fields[3] == "0A":  # LISTEN
                        listening.add(fields[9])
        except OSError:
            pass
    return established, listening


def connections_per_worker(root: psutil.Process, port: int) -> dict[int, int]:
    """How many accepted connections on `port` each process of the tree that listens on `port` holds, from
    /proc/<pid>/fd: a socket fd links to `socket:[inode]`, matched against /proc/net/tcp{,6}. Processes without the
    listening socket (helpers such as multiprocessing's resource tracker) are left out, and so is the root (a
    supervisor or master) when other processes listen."""
    established, listening = _socket_inodes(port)
    out, holders = {}, {}
    for p in tree(root):
        count, listens = 0, False
        try:
            fds = os.listdir(f"/proc/{p.pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{p.pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inode = link[8:-1]
                count += inode in established
                listens = listens or inode in listening
        holders[p.pid] = count
        if listens:
            out[p.pid] = count
    out = out or holders  # nobody seen listening (a socket passed in another way): every process
    if len(out) > 1:
        out.pop(root.pid, None)
    return out


class ConnSampler(threading.Thread):
    """Counts, every `interval` seconds during a load, the connections each worker of a server holds: with
    keep-alive, a connection stays with the worker that accepted it, so this shows how evenly the kernel (and the
    server's accept logic) spread the load's connections (see `connections_per_worker` for who counts as a
    worker). `samples` is a list of {pid: count}."""

    def __init__(self, root: psutil.Process, port: int, interval: float = 1.0):
        super().__init__(daemon=True)
        self.root, self.port, self.interval = root, port, interval
        self.halt = threading.Event()
        self.samples: list[dict[int, int]] = []

    def sample(self) -> None:
        counts = connections_per_worker(self.root, self.port)
        if counts:
            self.samples.append(counts)

    def run(self) -> None:
        while not self.halt.wait(self.interval):  # first sample one interval in: the load has connected by then
            self.sample()

    def finish(self) -> dict:
        """Stop; returns {"samples": n, "per_worker": [median count per worker, highest first], "total": median sum}."""
        self.halt.set()
        self.join()
        if not self.samples:
            return {}
        pids = sorted({pid for s in self.samples for pid in s})
        per_worker = sorted((_median([s.get(pid, 0) for s in self.samples]) for pid in pids), reverse=True)
        return {
            "samples": len(self.samples),
            "per_worker": per_worker,
            "total": _median([sum(s.values()) for s in self.samples]),
        }


def _median(values: list[int]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return float(values[mid]) if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
