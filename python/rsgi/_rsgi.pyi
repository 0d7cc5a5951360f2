"""Stub of the compiled core (src/lib.rs)."""

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

__version__: str

class _ServerConfig(Protocol):
    """What the core reads from `rsgi.config.Config` (src/config.rs)."""

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
    limit_concurrency: int
    access_log_format: str
    root_path: str
    def access_log_target(self) -> str | None: ...

def forward_logs() -> None:
    """Hands the core's log records to `logging` as they come; runs until the process exits."""

def flush_logs() -> None:
    """Hands every queued log record of the core to `logging` now."""

class Worker:
    def __init__(self, config: _ServerConfig, fds: list[int], interface: str = "wsgi", slot: int = 0) -> None: ...
    def run_wsgi(self, app: Any, base_environ: dict[str, Any], thread: int = 0) -> None: ...
    def asgi_bridge(
        self,
        app: Any,
        event_loop: Any,
        run_http: Callable[[Any, dict[str, Any], Any], Awaitable[None]],
        state: dict[str, Any] | None,
        stopped: Any,
    ) -> AsgiBridge: ...
    def stop(self, fast: bool = False) -> None: ...
    def shutdown(self) -> None: ...

class AsgiBridge:
    def fileno(self) -> int: ...
    def on_wake(self) -> None: ...
    def heartbeat(self) -> None: ...

class HttpProtocol:
    def receive(self) -> Awaitable[dict[str, Any]]: ...
    def send(self, message: dict[str, Any]) -> Awaitable[None]: ...
    def complete(self, exc: BaseException | None = None) -> None: ...

class WebSocketProtocol:
    def receive(self) -> Awaitable[dict[str, Any]]: ...
    def send(self, message: dict[str, Any]) -> Awaitable[None]: ...
    def complete(self, exc: BaseException | None = None) -> None: ...

class Ready:
    def __await__(self) -> Iterator[Any]: ...

class Done:
    def __await__(self) -> Iterator[None]: ...

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
