"""Logging glue: one format for the supervisor, workers and the Rust core (through pyo3-log,
behind a queue that a thread of each worker drains: see src/bridge/log.rs). That format is text
lines, or with ``--log-format json`` one JSON object per record (`JsonFormatter`)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import threading
from typing import Any

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S %z"

log = logging.getLogger("rsgi")


# What every LogRecord has; anything else on a record came from `extra=` and is logged with it.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (RFC 3339, UTC, microseconds, as the JSON
    access log writes it), ``level``, ``logger``, ``message``, ``pid``, then ``exception`` (the
    traceback text) and ``stack`` when present, then the record's ``extra=`` fields (a value JSON
    cannot hold is logged as its repr; one whose name is taken gets an ``extra_`` prefix).

    Compact, as the JSON access log is, so both can share a stream. ASCII only (``ensure_ascii``):
    control characters, quotes and backslashes are escaped, non-ASCII text is ``\\uXXXX``, DEL
    too, so a message can neither start a line nor depend on the stream's encoding. Usable in a
    --log-config file as ``{"()": "rsgi.logs.JsonFormatter"}``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
            "pid": record.process or os.getpid(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS:
                out[f"extra_{key}" if key in out else key] = _jsonable(value)
        return json.dumps(out, ensure_ascii=True, allow_nan=False, separators=(",", ":")).replace("\x7f", "\\u007f")


def _rfc3339(created: float) -> str:
    return datetime.datetime.fromtimestamp(created, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _message(record: logging.LogRecord) -> str:
    """The formatted message; a message whose arguments don't fit is still one JSON record (the
    text formatter would have printed "--- Logging error ---" and a traceback instead)."""
    try:
        return record.getMessage()
    except Exception as e:
        return f"{record.msg!r} % {record.args!r} failed: {type(e).__name__}: {e}"


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
    return value


def setup(level: str, error_log: str = "-", config_file: str = "", log_format: str = "text") -> None:
    """Configure logging once per process (workers inherit it across fork). With a config file
    (--log-config) that file decides everything, `log_format` included (a `json` given beside it
    is reported); otherwise one handler on the root logger, with rsgi's text format or
    `JsonFormatter`. `trace` maps to DEBUG (Python has no TRACE)."""
    if config_file:
        load_config_file(config_file)
        if log_format == "json":
            log.warning(
                "--log-format json has no effect with --log-config %s, which configures logging "
                "(a formatter there can be {'()': 'rsgi.logs.JsonFormatter'})",
                config_file,
            )
        return
    lvl = logging.DEBUG if level == "trace" else getattr(logging, level.upper(), logging.INFO)
    to_stderr = error_log in ("", "-")
    handler: logging.Handler = logging.StreamHandler(sys.stderr) if to_stderr else logging.FileHandler(error_log)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(FORMAT, DATEFMT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(lvl)


# --capture-output: the error log file that fds 1 and 2 point at (reopened with the handlers).
_captured: str = ""


def capture_output(path: str) -> None:
    """--capture-output: this process's stdout and stderr (fds 1 and 2, which the workers
    inherit) write into the error log file, as gunicorn's setting does. Python's own
    `sys.stdout` stays block-buffered to a file: set PYTHONUNBUFFERED for prints to show at once."""
    global _captured
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)
    _captured = path


def forward_core_logs() -> None:
    """In a worker, before the core starts: a thread that hands the Rust core's log records to
    `logging`, so the core's own (tokio) threads never wait for the GIL to log."""
    from ._rsgi import forward_logs

    threading.Thread(target=forward_logs, name="rsgi-core-log", daemon=True).start()


def flush_core_logs() -> None:
    """In a worker about to exit: the core's records still queued go to `logging` now."""
    from ._rsgi import flush_logs

    flush_logs()


def reopen_files() -> None:
    """SIGUSR1 (after logrotate moved the files): every logging.FileHandler in this process
    closes its file and opens the path again. Handlers that manage rotation themselves
    (RotatingFileHandler and friends reopen on their own schedule; WatchedFileHandler notices a
    moved file) are reopened the same way, which is harmless for them."""
    handlers = set(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers.update(logger.handlers)
    for h in handlers:
        if isinstance(h, logging.FileHandler):
            h.acquire()
            try:
                if h.stream is not None:
                    h.stream.close()
                h.stream = h._open()
            finally:
                h.release()
    if _captured:
        capture_output(_captured)


def load_config_file(path: str) -> None:
    import logging.config

    if path.endswith((".json", ".yaml", ".yml")):
        with open(path) as f:
            if path.endswith(".json"):
                import json

                config = json.load(f)
            else:
                import yaml  # PyYAML, only needed for YAML configs

                config = yaml.safe_load(f)
        logging.config.dictConfig(config)
    else:
        logging.config.fileConfig(path, disable_existing_loggers=False)


def warn_early(message: str) -> None:
    """A warning found while the config is still being read (before logging is set up)."""
    print(f"rsgi: warning: {message}", file=sys.stderr)


def set_title(role: str, name: str) -> None:
    """Process title such as ``rsgi: worker [mysite.wsgi:application]`` when setproctitle is installed."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(f"rsgi: {role} [{name}]")
