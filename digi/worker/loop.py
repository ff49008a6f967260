"""`serve(engine)`: receive the digi's model events from the manager and feed the engine.

The WebSocket `/api/v1/workers/events?gvr=&ns=&name=` delivers `{"type": "MODEL", "object",
"old"}` in order. They are handled on this thread, so handlers of one digi
never run concurrently; the messages that arrived while a cycle ran are handed
over together (`engine.handle_batch`), which reconciles the newest only. When the connection
drops (manager restart, lease handover, network), `serve` reconnects with
backoff and the manager's first message is a resync of the current model.
`serve` returns when the manager says the digi is gone (close code 4404) or
another worker of the same digi took over (4409); it raises `DigiError` when
the token is refused (a worker cannot fix that by retrying).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from digi.errors import DigiError
from digi.worker.client import WorkerEnv

log = logging.getLogger("digi.worker")

CLOSE_GONE, CLOSE_REPLACED = 4404, 4409
_MAX_MESSAGE = 64 * 1024 * 1024
Event = tuple[dict[str, Any], dict[str, Any] | None]  # a MODEL's object and old


class EventSink(Protocol):
    """What `serve` feeds: an `Engine`, or any object with `handle(obj, old)`.

    A sink with `handle_batch(events)` as well (the Engine) gets the messages that
    queued up together; one with `handle` only gets each of them in turn.
    """

    def handle(self, obj: dict[str, Any], old: dict[str, Any] | None) -> None: ...


def events_url(env: WorkerEnv) -> str:
    base = env.manager_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    query = {"gvr": env.gvr, "ns": env.namespace, "name": env.name}
    return f"{base}/api/v1/workers/events?{urlencode(query)}"


def serve(engine: EventSink, env: WorkerEnv | None = None, stop: threading.Event | None = None) -> None:
    """Run until the digi is gone, the worker is replaced, or `stop` is set."""
    env = env or WorkerEnv.from_environ()

    def on_messages(batch: list[dict[str, Any]]) -> None:
        models = [(m["object"], m.get("old")) for m in batch if m.get("type") == "MODEL"]
        handle_batch: Callable[[Sequence[Event]], None] | None = getattr(engine, "handle_batch", None)
        if handle_batch is not None and models:
            handle_batch(models)
            return
        for obj, old in models:
            engine.handle(obj, old)

    stream(events_url(env), env, on_messages, stop, f"digi {env.namespace}/{env.name}")


def _received(ws: ClientConnection) -> list[dict[str, Any]]:
    """The messages that have arrived already (recv with timeout 0 does not wait)."""
    more = []
    while True:
        try:
            more.append(json.loads(ws.recv(timeout=0)))
        except TimeoutError:
            return more


def stream(url: str, env: WorkerEnv, on_messages: Callable[[list[dict[str, Any]]], None],
           stop: threading.Event | None, what: str) -> None:
    """Feed the messages of the WebSocket at `url` to `on_messages`, reconnecting with backoff
    (the manager resyncs on connect); return on close codes 4404/4409 or `stop`, raise on 403.

    Each call gets a message and every one already received behind it, in order."""
    stop = stop or threading.Event()
    delay = 0.2
    while not stop.is_set():
        try:
            with connect(url, additional_headers=env.headers, proxy=None, max_size=_MAX_MESSAGE,
                         open_timeout=10, compression=None) as ws:
                log.info("connected to the manager for %s", what)
                delay = 0.2
                while not stop.is_set():
                    try:
                        batch = [json.loads(ws.recv(timeout=0.5))]
                    except TimeoutError:
                        continue
                    on_messages(batch + _received(ws))
        except InvalidStatus as e:
            if e.response.status_code == 403:
                raise DigiError(
                    f"the manager refused this worker's token for {what} (HTTP 403); "
                    "the worker must be started by the manager that issued DIGI_TOKEN"
                ) from e
            log.warning("manager answered HTTP %s; retrying in %.1fs", e.response.status_code, delay)
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
            if code in (CLOSE_GONE, CLOSE_REPLACED):
                log.info("manager closed the stream: %s (%s)", e.rcvd.reason if e.rcvd else "", code)
                return
            log.warning("connection to the manager closed (%s); resyncing in %.1fs", code, delay)
        except OSError as e:
            log.warning("cannot reach the manager at %s: %s; retrying in %.1fs", env.manager_url, e, delay)
        stop.wait(delay)
        delay = min(delay * 2, 5.0)
