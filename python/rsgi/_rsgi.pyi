"""Stub of the compiled core (src/lib.rs)."""

from collections.abc import Iterator
from typing import Any, Protocol

__version__: str

class _ServerConfig(Protocol):
    runtime_threads: int
    keepalive: float
    body_timeout: float
    graceful_timeout: float
    max_body_size: int
    body_spool_threshold: int
    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    max_connections: int
    server_header: bool
    date_header: bool
    ws_max_size: int
    ws_ping_interval: float
    ws_ping_timeout: float
    root_path: str

class Worker:
    def __init__(self, config: _ServerConfig, fds: list[int]) -> None: ...
    def run_wsgi(self, app: Any, base_environ: dict[str, Any]) -> None: ...
    def stop(self, fast: bool = False) -> None: ...
    def shutdown(self) -> None: ...

class FileWrapper:
    filelike: Any
    blksize: int
    def __init__(self, filelike: Any, blksize: int = 8192) -> None: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None: ...

class StartResponse:
    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any: ...
    def write(self, data: bytes) -> None: ...
