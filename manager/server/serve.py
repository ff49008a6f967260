"""Runs uvicorn servers for the manager on one event loop in a background thread.

Each bind address (`host:port`, `:port` meaning all interfaces, `0`
disabled) gets its own uvicorn server; all share one asyncio loop, on which the
worker API also pushes events to worker connections.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


def parse_bind(address: str) -> tuple[str, int] | None:
    """`host:port` / `:port` → (host, port); `0` or empty → None (disabled)."""
    if address in ("", "0"):
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bind address {address!r} is not host:port, e.g. 127.0.0.1:8081 or :8081")
    return host or "0.0.0.0", int(port)


class HttpServers:
    def __init__(self) -> None:
        self._servers: list[uvicorn.Server] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._started = threading.Event()

    def add(self, app: FastAPI, host: str, port: int) -> None:
        # No permessage-deflate: workers talk to the manager on loopback or a cluster network,
        # where compressing every model event cost more CPU than the bytes it saved.
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                                ws_ping_interval=20, ws_ping_timeout=20, ws_per_message_deflate=False)
        self._servers.append(uvicorn.Server(config))

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once every server listens (raises if one cannot bind)."""
        self._thread.start()
        self._started.wait(timeout)
        failed = [s.config.port for s in self._servers if not s.started]
        if failed:
            raise RuntimeError(f"manager HTTP server could not listen on port(s) {failed}; "
                               "is another manager running? Pick other --*-bind-address ports.")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve_all() -> None:
            tasks = [asyncio.create_task(s.serve()) for s in self._servers]
            while not all(s.started for s in self._servers) and not any(t.done() for t in tasks):
                await asyncio.sleep(0.02)
            self._started.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self._loop.run_until_complete(serve_all())
        finally:
            self._started.set()

    def stop(self, timeout: float = 10.0) -> None:
        for server in self._servers:
            server.should_exit = True
        self._thread.join(timeout)
