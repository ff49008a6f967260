"""`ManagerHttp` against a real HTTP/1.1 server on loopback: keep-alive, stale connections, errors."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from digi.worker.http import ManagerHttp, ManagerUnreachable


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    drop_after_reply = False
    peers: ClassVar[list[int]] = []

    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.peers.append(self.client_address[1])
        reply = json.dumps({"path": self.path, "body": body, "auth": self.headers.get("Authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
        # Like a server whose keep-alive timeout passed: it closes without saying so.
        self.close_connection = self.drop_after_reply

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    _Handler.peers = []
    _Handler.drop_after_reply = False
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def test_requests_of_one_thread_reuse_one_connection(server: ThreadingHTTPServer) -> None:
    http = ManagerHttp(_url(server))
    for i in range(3):
        r = http.request("PATCH", "/api/v1/digis/default/l1", params={"gvr": "a/v1/b"}, body={"i": i},
                         headers={"Authorization": "Bearer t"})
        assert r.is_success and r.json() == {"path": "/api/v1/digis/default/l1?gvr=a%2Fv1%2Fb",
                                             "body": {"i": i}, "auth": "Bearer t"}
    assert len(_Handler.peers) == 3 and len(set(_Handler.peers)) == 1
    http.close()


def test_a_connection_the_server_closed_is_replaced_without_an_error(server: ThreadingHTTPServer) -> None:
    _Handler.drop_after_reply = True
    http = ManagerHttp(_url(server))
    for i in range(3):
        assert http.request("PATCH", "/x", body={"i": i}).json()["body"] == {"i": i}
    assert len(set(_Handler.peers)) == 3
    http.close()


def test_threads_get_their_own_connections(server: ThreadingHTTPServer) -> None:
    http = ManagerHttp(_url(server))
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(http.request("PATCH", "/x", body={}).status))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 4 and len(set(_Handler.peers)) == 4
    http.close()


def test_no_server_raises_manager_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ManagerUnreachable, match="ConnectionRefused"):
        ManagerHttp(f"http://127.0.0.1:{port}").request("GET", "/healthz")


def test_a_url_that_is_not_http_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'ws://x' is not http"):
        ManagerHttp("ws://x")
