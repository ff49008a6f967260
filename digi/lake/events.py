"""The lake's `/events` stream (server-sent events), with reconnects.

`EventStream.run(on_event, on_connect)` blocks: it connects, calls
`on_connect()` (the stream has no replay, so the caller re-checks whatever it
watches each time a connection is established), then calls
`on_event(LakeEvent)` for every event until `stop()` is called. A broken or
refused connection is retried with exponential backoff (capped), and the
backoff resets once a connection is up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LakeEvent:
    """`type` is e.g. `branch-commit`, `branch-update`, `pool-new`; `data` has `pool_id`, `branch`…"""

    type: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def pool_id(self) -> str:
        return str(self.data.get("pool_id", ""))

    @property
    def branch(self) -> str:
        return str(self.data.get("branch", ""))


class EventStream:
    def __init__(self, url: str, *, min_backoff: float = 0.2, max_backoff: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.connected = threading.Event()
        self._stopped = threading.Event()
        self._response: httpx.Response | None = None
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            if self._response is not None:
                _shutdown(self._response)

    def run(self, on_event: Callable[[LakeEvent], None], on_connect: Callable[[], None]) -> None:
        backoff = self.min_backoff
        # No read timeout: the stream is silent until something happens in the lake.
        timeout = httpx.Timeout(10.0, read=None)
        while not self._stopped.is_set():
            try:
                with httpx.Client(timeout=timeout) as http, http.stream(
                    "GET", f"{self.url}/events", headers={"Accept": "application/json"}
                ) as response:
                    response.raise_for_status()
                    with self._lock:
                        self._response = response
                    self.connected.set()
                    backoff = self.min_backoff
                    on_connect()
                    self._read(response, on_event)
            except (httpx.HTTPError, ValueError) as exc:
                if not self._stopped.is_set():
                    log.info("lake event stream %s: %s; reconnecting in %.1fs", self.url, exc, backoff)
            finally:
                self.connected.clear()
                with self._lock:
                    self._response = None
            if self._stopped.wait(backoff):
                return
            backoff = min(backoff * 2, self.max_backoff)

    def _read(self, response: httpx.Response, on_event: Callable[[LakeEvent], None]) -> None:
        kind, data = "", []
        for line in response.iter_lines():
            if self._stopped.is_set():
                return
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and kind:
                on_event(LakeEvent(kind, json.loads("\n".join(data)) if data else {}))
                kind, data = "", []


def _shutdown(response: httpx.Response) -> None:
    """Unblock a read in progress on another thread: closing the response does not, so
    shut the socket down under it."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    else:
        response.close()
