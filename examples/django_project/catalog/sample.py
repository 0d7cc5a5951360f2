"""The deterministic binary bodies behind ``/download`` and ``/big``.

``/download`` is 8192 SHA-256 digests of ``b"rsgi-sample-<n>"`` for n = 0..8191,
concatenated (exactly 256 KiB); ``/big`` is 32768 digests of ``b"rsgi-big-<n>"``
(exactly 1 MiB). Clients can recompute and verify both.
"""

import functools
import hashlib
import os
import tempfile
from pathlib import Path

SAMPLE_NAME = "sample.bin"
SAMPLE_SIZE = 256 * 1024
BIG_SIZE = 1024 * 1024


def sample_bytes():
    digests = (hashlib.sha256(b"rsgi-sample-%d" % n).digest() for n in range(SAMPLE_SIZE // 32))
    return b"".join(digests)


@functools.cache
def big_bytes():
    """The body of ``/big``: SHA-256 digests of ``b"rsgi-big-<n>"`` for n = 0..32767 (1 MiB)."""
    return b"".join(hashlib.sha256(b"rsgi-big-%d" % n).digest() for n in range(BIG_SIZE // 32))


@functools.cache
def sample_path():
    """Return the path of the sample file, writing it on first use in this process."""
    directory = Path(tempfile.gettempdir()) / "rsgi-django-example"
    directory.mkdir(exist_ok=True)
    path = directory / SAMPLE_NAME
    data = sample_bytes()
    if not path.is_file() or path.read_bytes() != data:
        # Write to a private temp file and rename, so concurrent workers never
        # serve a half-written file.
        fd, tmp_name = tempfile.mkstemp(dir=directory)
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
        os.replace(tmp_name, path)
    return path
