"""`ManagerHttp`: keep-alive HTTP/1.1 to the manager's worker API, one connection per thread.

A worker's hot path is one small request per reconcile cycle (the engine's
guarded PATCH). Through `httpx`, its per-request machinery (URL model, h11
state machine, cookies, hooks) was most of a worker's CPU per propagation
(see the profile in bench/README.md); the standard library's `http.client`
sends the same request for a fraction of it. `http.client` connections are
not thread-safe and a shared worker writes from several lanes at once, so each
thread keeps its own connection.

A kept-alive connection the manager has since closed (its keep-alive timeout,
a restart) fails on reuse; the request is then re-sent once at once on a new
connection, as urllib3 does. Any other failure raises `ManagerUnreachable`,
which the caller retries with backoff.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit


class ManagerUnreachable(OSError):
    """The request did not get an HTTP response from the manager."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


class ManagerHttp:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the manager URL {base_url!r} is not http(s)://host[:port]")
        self._connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._local = threading.local()
        self._open: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()

    def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                body: Any = None, headers: dict[str, str] | None = None) -> Response:
        url = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body).encode()
        sent = dict(headers or {})
        if data is not None:
            sent["Content-Type"] = "application/json"
        reused = getattr(self._local, "conn", None) is not None
        while True:
            conn = self._connection()
            try:
                conn.request(method, url, body=data, headers=sent)
                reply = conn.getresponse()
                return Response(reply.status, reply.read())
            except (http.client.HTTPException, OSError) as e:
                self._discard(conn)
                stale = isinstance(e, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError)
                if reused and stale:
                    reused = False
                    continue
                raise ManagerUnreachable(f"{type(e).__name__}: {e}") from e

    def close(self) -> None:
        with self._lock:
            for conn in self._open:
                conn.close()
            self._open.clear()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connection_class(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._open.add(conn)
        return conn

    def _discard(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None
        with self._lock:
            self._open.discard(conn)
