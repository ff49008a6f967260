"""The worker API: the only way a worker sees and changes the world.

- `WS /api/v1/workers/events?gvr=&ns=&name=` streams the digi's models (see
  `manager.dispatcher`); the first message is a resync.
- `GET /api/v1/digis/{namespace}/{name}?gvr=` returns the digi (read from the API server).
- `PATCH /api/v1/digis/{namespace}/{name}?gvr=` with `{"patch", "resourceVersion"}`
  applies a JSON merge patch, guarded by resourceVersion when given.
- `WS /api/v1/workers/shared?ns=&gvr=&pool=` (the pool's token) streams the
  events of every digi assigned to a shared worker, multiplexed: `ASSIGN`
  (namespace, name, that digi's token), `MODEL` (namespace, name, object,
  old), `LEAVE` (namespace, name); see `manager.dispatcher`.

`gvr=group/version/plural` is required everywhere: two kinds may each have a
digi of the same namespace/name, and the request must say which one it means.
Every request carries `Authorization: Bearer <token>`; the token must be the
HMAC of the *request's* kind, namespace and name (`manager.server.tokens`),
so a worker reaches its own digi only. Anything else is refused with 403 and
logged with the digi the token belongs to: the paper's access rule, enforced
centrally. Patches may touch `spec` and `metadata.labels/annotations` only,
and no `digi.dev/` label or annotation key (422): those keys are the
manager's controls (driver directory, image, worker mode). Writes need the
lease (503 otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Response, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

from digi.errors import Conflict, NotFound
from manager import metrics
from manager.dispatcher import CLOSE_GONE, Dispatcher, PoolKey, Session
from manager.kube import ApiError, Client, gvr_path
from manager.types import GVR, ObjectKey

log = logging.getLogger(__name__)

CLOSE_NOT_LEADER = 1013  # "try again later"
_PATCHABLE_META = {"labels", "annotations"}


class PatchBody(BaseModel):
    patch: dict[str, Any]
    resourceVersion: str | None = None


def _bearer(authorization: str | None) -> str:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return ""


def _parse_gvr(text: str) -> GVR | None:
    try:
        return GVR.parse(text)
    except ValueError:
        return None


def _digi_key(gvr: str, namespace: str, name: str) -> ObjectKey:
    parsed = _parse_gvr(gvr)
    if parsed is None:
        raise HTTPException(422, f"gvr={gvr!r} is not group/version/plural, e.g. mock.digi.dev/v1/lamps")
    return ObjectKey(parsed, namespace, name)


def _reserved(key: str) -> bool:
    """A `digi.dev/` (or `<sub>.digi.dev/`) label or annotation key: the manager's, not a driver's."""
    prefix, slash, _ = key.rpartition("/")
    return bool(slash) and (prefix == "digi.dev" or prefix.endswith(".digi.dev"))


def _check_patch(key: ObjectKey, patch: dict[str, Any]) -> None:
    where = f"digi {key.namespace}/{key.name}"
    meta = patch.get("metadata", {})
    if not isinstance(meta, dict):
        raise HTTPException(422, f"{where}: metadata in a worker's patch must be an object")
    extra = set(patch) - {"spec", "metadata"}
    meta_extra = set(meta) - _PATCHABLE_META - {"resourceVersion"}
    if extra or meta_extra:
        fields = sorted(extra | {f"metadata.{f}" for f in meta_extra})
        raise HTTPException(422, f"{where}: a worker may patch spec and "
                                 f"metadata.labels/annotations only, not {', '.join(fields)}")
    for field in sorted(_PATCHABLE_META & set(meta)):
        # null would delete every key, the manager's included.
        if not isinstance(meta[field], dict):
            raise HTTPException(422, f"{where}: metadata.{field} in a worker's patch must be an object of keys")
        reserved = sorted(k for k in meta[field] if _reserved(k))
        if reserved:
            # digi.dev/driver-dir and digi.dev/image pick the code the manager runs for this digi:
            # a worker that could change them could replace its own driver or image.
            log.warning("refused (422): the worker of %s tried to change metadata.%s %s", where, field,
                        ", ".join(reserved))
            raise HTTPException(422, f"{where}: a worker may not set or remove metadata.{field} "
                                     f"{', '.join(reserved)}: digi.dev/ keys are the manager's controls")


def add_worker_api(app: FastAPI, dispatcher: Dispatcher, client: Client, is_leader: Callable[[], bool]) -> None:
    tokens = dispatcher.tokens

    def authorize(token: str, key: ObjectKey, what: str) -> None:
        if not tokens.verify(token, key):
            log.warning("refused (403): %s tried to %s digi %s/%s of %s", dispatcher.identify(token), what,
                        key.namespace, key.name, key.gvr)
            raise HTTPException(403, f"this worker's token is not for digi {key.namespace}/{key.name} of {key.gvr}; "
                                     "a worker may read and write only its own model")

    def exists(key: ObjectKey) -> None:
        if not dispatcher.is_digi(key):
            raise HTTPException(404, f"no digi {key.namespace}/{key.name} of {key.gvr}")

    # Both routes relay the API server's JSON bytes as they are: re-encoding the object through
    # FastAPI's jsonable_encoder cost milliseconds per write for a room with many replicas.
    @app.get("/api/v1/digis/{namespace}/{name}", response_class=Response)
    def get_digi(namespace: str, name: str, gvr: str, authorization: str | None = Header(None)) -> Response:
        key = _digi_key(gvr, namespace, name)
        authorize(_bearer(authorization), key, "read")
        exists(key)
        try:
            return _json(client.request_raw("GET", gvr_path(key.gvr, namespace, name)))
        except NotFound as e:
            raise HTTPException(404, str(e)) from e

    @app.patch("/api/v1/digis/{namespace}/{name}", response_class=Response)
    def patch_digi(namespace: str, name: str, body: PatchBody, gvr: str,
                   authorization: str | None = Header(None)) -> Response:
        key = _digi_key(gvr, namespace, name)
        authorize(_bearer(authorization), key, "patch")
        if not is_leader():
            raise HTTPException(503, "this manager does not hold the leader lease; retry shortly")
        _check_patch(key, body.patch)
        exists(key)
        try:
            return _json(client.patch_raw(key.gvr, namespace, name, body.patch,
                                          resource_version=body.resourceVersion))
        except Conflict as e:
            raise HTTPException(409, str(e)) from e
        except NotFound as e:
            raise HTTPException(404, str(e)) from e
        except ApiError as e:
            raise HTTPException(e.status if 400 <= e.status < 600 else 502, str(e)) from e

    @app.websocket("/api/v1/workers/events")
    async def events(ws: WebSocket, ns: str, name: str, gvr: str) -> None:
        token = _bearer(ws.headers.get("authorization"))
        parsed = _parse_gvr(gvr)
        if parsed is None or not tokens.verify(token, key := ObjectKey(parsed, ns, name)):
            log.warning("refused (403): %s tried to watch digi %s/%s of %s", dispatcher.identify(token), ns, name, gvr)
            await ws.close(code=1008)  # before accept: the client sees HTTP 403
            return
        await ws.accept()
        if not is_leader() or not dispatcher.cache.synced:
            # A worker reconnecting to a manager that is not ready yet must retry, not conclude
            # from an empty cache that its digi is gone.
            await ws.close(code=CLOSE_NOT_LEADER, reason="not the leader, or not synced yet")
            return
        session = dispatcher.attach(key, asyncio.get_running_loop()) if dispatcher.is_digi(key) else None
        if session is None:
            await ws.close(code=CLOSE_GONE, reason=f"no digi {ns}/{name} of {gvr}")
            return
        await _stream(ws, session, dispatcher)

    @app.websocket("/api/v1/workers/shared")
    async def shared_events(ws: WebSocket, ns: str, gvr: str, pool: str) -> None:
        token = _bearer(ws.headers.get("authorization"))
        parsed = _parse_gvr(gvr)
        if parsed is None or not tokens.verify_pool(token, ns, parsed, pool):
            log.warning("refused (403): a token that is not shared worker %s's (%s in %s) tried to open its stream",
                        pool, gvr, ns)
            await ws.close(code=1008)
            return
        await ws.accept()
        if not is_leader() or not dispatcher.cache.synced:
            await ws.close(code=CLOSE_NOT_LEADER, reason="not the leader, or not synced yet")
            return
        session = dispatcher.attach_pool(PoolKey(ns, parsed, pool), asyncio.get_running_loop())
        await _stream(ws, session, dispatcher)


def _json(raw: bytes) -> Response:
    return Response(raw, media_type="application/json")


async def _stream(ws: WebSocket, session: Session, dispatcher: Dispatcher) -> None:
    """Send the session's messages until it is closed by either side."""
    # A reader task notices the peer going away while we wait for events.
    closed = asyncio.create_task(_drain(ws))
    try:
        while True:
            getter = asyncio.create_task(session.queue.get())
            done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
            if closed in done:
                getter.cancel()
                return
            message = getter.result()
            if message.close_code:
                await ws.close(code=message.close_code, reason=message.close_reason)
                return
            await ws.send_json(message.wire())
            if message.received is not None:
                metrics.dispatch_latency_seconds.observe(time.monotonic() - message.received)
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        closed.cancel()
        dispatcher.detach(session)


async def _drain(ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
