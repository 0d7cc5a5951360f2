"""The ASGI lifespan protocol: startup before the worker serves, shutdown after it drained.

``--lifespan auto`` (default) runs it and, if the app does not support it (it raises before
answering, as Django's ASGIHandler does), carries on without; ``on`` makes any failure fatal;
``off`` skips it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("rsgi.lifespan")

STARTUP_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 30.0


class Lifespan:
    def __init__(self, app: Any, mode: str) -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.supported = mode != "off"
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self._inbox.get, self._outbox.put)
        except BaseException as e:
            self._failed = e
        finally:
            # Wake startup()/shutdown() if the app returned or raised without answering.
            await self._outbox.put({"type": "_rsgi.lifespan.ended"})

    async def _exchange(self, event: str, timeout: float) -> dict[str, Any]:
        await self._inbox.put({"type": f"lifespan.{event}"})
        return await asyncio.wait_for(self._outbox.get(), timeout)

    async def startup(self) -> bool:
        """True when the worker may serve. Logs why when it may not."""
        if not self.supported:
            return True
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            answer = await self._exchange("startup", STARTUP_TIMEOUT)
        except asyncio.TimeoutError:
            log.error("ASGI lifespan startup did not finish within %.0fs", STARTUP_TIMEOUT)
            return False
        kind = answer["type"]
        if kind == "lifespan.startup.complete":
            return True
        if kind == "lifespan.startup.failed":
            log.error("ASGI lifespan startup failed: %s", answer.get("message", ""))
            return False
        # The app ended without answering: it does not speak lifespan.
        self.supported = False
        if self.mode == "on":
            log.error("the app does not support the ASGI lifespan protocol (--lifespan on)", exc_info=self._failed)
            return False
        log.info("the app does not support ASGI lifespan; continuing without it (%r)", self._failed)
        return True

    async def shutdown(self) -> None:
        if not self.supported or self._task is None:
            return
        try:
            answer = await self._exchange("shutdown", SHUTDOWN_TIMEOUT)
        except asyncio.TimeoutError:
            log.error("ASGI lifespan shutdown did not finish within %.0fs", SHUTDOWN_TIMEOUT)
            return
        if answer["type"] == "lifespan.shutdown.failed":
            log.error("ASGI lifespan shutdown failed: %s", answer.get("message", ""))
        elif answer["type"] != "lifespan.shutdown.complete" and self._failed is not None:
            log.error("the app failed during lifespan shutdown", exc_info=self._failed)
