"""More WSGI apps for the HTTP-core and WSGI-bridge tests (tests/test_http_core.py, tests/wsgi/)."""

from __future__ import annotations

import hashlib
import json
import os
import time


def input_ops(environ, start_response):
    """Exercise wsgi.input: readline(), read(n), seek/tell, iteration, read() to the end."""
    inp = environ["wsgi.input"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    first_line = inp.readline()
    five = inp.read(5)
    after_five = inp.tell()
    rest = inp.read(length)  # asks for more than is left: must return only what is left
    at_end = inp.read(10)
    inp.seek(0)
    again = inp.read()
    inp.seek(0)
    lines = list(inp)
    out = {
        "seekable": inp.seekable(),
        "first_line": first_line.decode("latin-1"),
        "five": five.decode("latin-1"),
        "tell_after_five": after_five,
        "rest_len": len(rest),
        "at_end": at_end.decode("latin-1"),
        "reread_sha256": hashlib.sha256(again).hexdigest(),
        "reread_len": len(again),
        "line_count": len(lines),
        "lines_sha256": hashlib.sha256(b"".join(lines)).hexdigest(),
        "content_length": environ.get("CONTENT_LENGTH"),
    }
    data = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def head_aware(environ, start_response):
    """Declares the GET body's Content-Length and sends no body to HEAD, as frameworks do."""
    body = b"Hello, world!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


class Endless:
    """A long stream (64 KiB chunks) whose close() writes a marker; for client-disconnect tests."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __iter__(self):
        chunk = b"x" * 65536
        for i in range(20000):  # ~1.3 GB: far more than any test reads
            yield chunk
            if i % 16 == 0:
                time.sleep(0.001)

    def close(self) -> None:
        with open(self.marker, "a") as f:
            f.write("closed\n")


def endless_closing(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Endless(os.environ["RSGI_TEST_MARKER"])


def _read_sized(environ, start_response):
    """A well-behaved app for wsgiref.validate: reads exactly CONTENT_LENGTH bytes."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    out = {k: v for k, v in environ.items() if isinstance(v, str)}
    out["body_len"] = len(body)
    data = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def validated_sized():
    """Factory: the sized-reading app wrapped in wsgiref's validator."""
    from wsgiref.validate import validator

    return validator(_read_sized)


def tuple_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return (b"tu", b"ple")


def empty_generator(environ, start_response):
    """A generator that yields only empty strings: headers must still be sent (with no body)."""
    start_response("204 No Content", [])

    def gen():
        yield b""

    return gen()


def headers_echo(environ, start_response):
    """Returns the app's own response headers given in the query (name=value&...)."""
    from urllib.parse import parse_qsl

    headers = parse_qsl(environ.get("QUERY_STRING", ""))
    start_response("200 OK", [("Content-Type", "text/plain"), *headers])
    return [b"ok"]


def yields_str(environ, start_response):
    """PEP 3333 bodies are bytes: a str chunk is an app error (500 before anything was sent)."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["not bytes"]


def double_start(environ, start_response):
    """start_response twice without exc_info is an app error."""
    start_response("200 OK", [])
    start_response("404 Not Found", [])
    return [b"never sent"]


def exc_info_after_headers_sent(environ, start_response):
    """exc_info once the headers are out: start_response must re-raise, aborting the response."""
    import sys

    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b"first part\n"
        try:
            raise ValueError("too late to replace the headers")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        yield b"must not be sent\n"

    return gen()


def lazy_start(environ, start_response):
    """PEP 3333 allows calling start_response inside the generator, before its first chunk."""

    def gen():
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-Lazy", "yes")])
        yield b"lazy "
        yield b"start"

    return gen()


def gen_with_length(environ, start_response):
    """A generator with a declared Content-Length (?N): 5 chunks of 8 bytes, 40 in all."""
    declared = environ.get("QUERY_STRING") or "40"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", declared)])

    def gen():
        for i in range(5):
            yield b"chunk %d\n" % i

    return gen()


def file_wrapper_bytesio(environ, start_response):
    """wsgi.file_wrapper over an object with no file descriptor: the server must iterate it."""
    import io

    data = b"".join(b"line %05d\n" % i for i in range(5000))  # 55 000 bytes, blksize 4096
    start_response("200 OK", [("Content-Type", "text/plain")])
    return environ["wsgi.file_wrapper"](io.BytesIO(data), 4096)
