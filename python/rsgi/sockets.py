"""Bind the listening sockets in the supervisor; workers inherit them across fork."""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from .config import ConfigError


def bind(address: str, backlog: int) -> socket.socket:
    """Bind and listen on HOST:PORT, [IPv6]:PORT, unix:/path or fd://N."""
    if address.startswith("unix:"):
        return _bind_unix(address[5:], backlog)
    if address.startswith("fd://"):
        sock = socket.socket(fileno=int(address[5:]))
        sock.listen(backlog)
        return sock
    host, port = split_host_port(address)
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # [::]:8000 means IPv6 only; bind 0.0.0.0 too for both (as gunicorn does).
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _bind_unix(path: str, backlog: int) -> socket.socket:
    # A socket file left by a previous run would make bind fail; remove it, but never a file
    # that is not a socket.
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def same_address(sock: socket.socket, address: str, default_host: str | None = None) -> bool:
    """Whether `sock` (an inherited listening socket) is what binding `address` would give: the
    same Unix socket path, the same resolved host and port, or the descriptor fd://N itself.
    `default_host` is what an empty host means (`:8000`; None: any address, as `bind` does)."""
    try:
        name = sock.getsockname()
    except OSError:
        return False
    if address.startswith("unix:"):
        return sock.family == socket.AF_UNIX and name == address[5:]
    if address.startswith("fd://"):
        return address[5:].isdigit() and sock.fileno() == int(address[5:])
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        host, port = split_host_port(address)
        infos = socket.getaddrinfo(host or default_host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (ConfigError, OSError):
        return False
    family, _, _, _, addr = infos[0]
    return family == sock.family and tuple(addr[:2]) == tuple(name[:2])


def split_host_port(address: str) -> tuple[str, int]:
    """'127.0.0.1:8000' / '[::1]:8000' / 'localhost:8000' / ':8000' / '8000'."""
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
        if not sep:
            raise ConfigError(f"bad bind address {address!r}")
    elif address.count(":") == 1:
        host, _, port = address.rpartition(":")
    elif address.isdigit():
        host, port = "0.0.0.0", address
    else:
        host, port = address, "8000"
    try:
        return host, int(port)
    except ValueError:
        raise ConfigError(f"bad port in bind address {address!r}") from None


def describe(sock: socket.socket, scheme: str = "http") -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    if sock.family == socket.AF_INET6:
        return f"{scheme}://[{name[0]}]:{name[1]}"
    return f"{scheme}://{name[0]}:{name[1]}"
