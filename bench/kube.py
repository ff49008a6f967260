"""The thinnest Kubernetes REST client we can write, for the benchmarks' own traffic.

The floor (see bench/README.md) is the cost of the API server itself, so the
benchmark's clients must add as little as possible: `httpx` over one keep-alive
connection per `Kube` object, JSON in and out, no models, no retries. Writes
and watches use separate `Kube` objects (separate connections, separate
threads), as a real writer and a real watcher would.

Credentials come from the space's kubeconfig (client cert embedded as
`-data`), unpacked once next to it because `ssl` loads certs from files only.
"""

from __future__ import annotations

import base64
import functools
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Resource:
    """A namespaced resource, addressed as the API paths need it."""

    group: str
    version: str
    plural: str

    def collection(self, namespace: str) -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{prefix}/namespaces/{namespace}/{self.plural}"

    def item(self, namespace: str, name: str) -> str:
        return f"{self.collection(namespace)}/{name}"


@functools.cache
def ssl_context(kubeconfig: Path) -> tuple[str, ssl.SSLContext]:
    """The server URL and a TLS context with the kubeconfig's CA and client cert.

    The client cert and key are unpacked next to the kubeconfig (the private
    space's root, mode 0700, removed with it)."""
    config = yaml.safe_load(kubeconfig.read_text())
    current = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    keydir = kubeconfig.parent / "bench-client"
    keydir.mkdir(mode=0o700, exist_ok=True)
    cert, key = keydir / "client.crt", keydir / "client.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    key.chmod(0o600)
    ctx = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    ctx.load_cert_chain(cert, key)
    return cluster["server"], ctx


class Kube:
    """One keep-alive connection to the API server."""

    def __init__(self, kubeconfig: Path) -> None:
        server, ctx = ssl_context(kubeconfig)
        self.server = server
        self._http = httpx.Client(base_url=server, verify=ctx, timeout=30.0)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: Any = None, *,
                content_type: str = "application/json", params: dict[str, str] | None = None,
                ok_missing: bool = False) -> JSON:
        content = None if body is None else json.dumps(body).encode()
        resp = self._http.request(method, path, content=content, params=params,
                                  headers={"Content-Type": content_type})
        if ok_missing and resp.status_code in (404, 409):
            return {}
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:500]}")
        return dict(resp.json()) if resp.content else {}

    def get(self, path: str) -> JSON:
        return self.request("GET", path)

    def create(self, path: str, obj: JSON) -> JSON:
        return self.request("POST", path, obj)

    def apply_missing(self, path: str, obj: JSON) -> None:
        """Create `obj` unless it already exists (409 is fine)."""
        self.request("POST", path, obj, ok_missing=True)

    def merge_patch(self, path: str, patch: JSON) -> JSON:
        return self.request("PATCH", path, patch, content_type=MERGE_PATCH)

    def delete(self, path: str) -> None:
        self.request("DELETE", path, ok_missing=True)

    def text(self, path: str) -> str:
        resp = self._http.get(path)
        resp.raise_for_status()
        return resp.text

    def watch_lines(self, path: str, resource_version: str) -> Iterator[JSON]:
        """Watch events of a collection from `resource_version`, until the stream ends."""
        params = {"watch": "1", "resourceVersion": resource_version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": "3600"}
        with self._http.stream("GET", path, params=params, timeout=None) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines():
                if line:
                    yield json.loads(line)


class Watcher:
    """A background watch of one collection that hands each event to `on_event`.

    Runs on its own thread and its own connection; `on_event(type, obj)` is called
    on that thread as soon as a line is parsed.
    """

    def __init__(self, kubeconfig: Path, path: str,
                 on_event: Callable[[str, JSON], None]) -> None:
        self._kube = Kube(kubeconfig)
        self._path = path
        self._on_event = on_event
        self._rv = self._list_rv()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {path}", daemon=True)
        self._thread.start()

    def _list_rv(self) -> str:
        return str(self._kube.get(self._path)["metadata"]["resourceVersion"])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for event in self._kube.watch_lines(self._path, self._rv):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        # 410 Gone: our resourceVersion expired; start again from now.
                        self._rv = self._list_rv()
                        break
                    self._rv = str(obj.get("metadata", {}).get("resourceVersion", self._rv))
                    if event["type"] != "BOOKMARK":
                        self._on_event(event["type"], obj)
                    if self._stop.is_set():
                        return
            except (httpx.HTTPError, RuntimeError):
                if self._stop.is_set():
                    return
                # A dropped stream resumes from the last resourceVersion we saw.
                self._stop.wait(0.1)

    def close(self) -> None:
        self._stop.set()
        self._kube.close()


def ensure_crd(kube: Kube, crd: JSON, timeout: float = 30.0) -> None:
    """Create `crd` if missing and wait until the API server serves it (Established)."""
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    kube.apply_missing(path, crd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = kube.get(f"{path}/{crd['metadata']['name']}").get("status") or {}
        conditions = status.get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.1)
    raise TimeoutError(f"CRD {crd['metadata']['name']} not Established after {timeout} s")
