"""A thin Kubernetes API client that speaks dicts and counts every request.

All manager and controller traffic to the API server goes through `Client`:
requests are built by the official client's `ApiClient` (so kubeconfig auth,
TLS and in-cluster config work as usual), but responses are read raw and parsed
with `json` instead of the generated models, which is several times faster on
hot paths (informer lists, watch streams, reconcile patches). Each request
increments `rest_client_requests_total{code,method,host}`.

Errors map to `digi.errors` (`NotFound`, `Conflict`, `Forbidden`) or
`ApiError` carrying the HTTP status and the server's `Status` message.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client import rest as k8s_rest
from kubernetes.watch.watch import iter_resp_lines

from digi.errors import Conflict, DigiError, Forbidden, NotFound
from manager import metrics
from manager.types import GVR

JSON = dict[str, Any]
# (connect, read) seconds for ordinary requests; watches compute their own.
DEFAULT_TIMEOUT = (5.0, 30.0)
MERGE_PATCH = "application/merge-patch+json"
POOL_SIZE = 64


class ApiError(DigiError):
    """A request the API server refused for a reason other than 404/409/403."""

    def __init__(self, status: int, message: str, body: JSON | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}


class Unreachable(ApiError):
    """No answer from the API server at `host` (refused, TLS, timeout): status 0."""

    def __init__(self, message: str, host: str) -> None:
        super().__init__(0, message)
        self.host = host


class AlreadyExists(ApiError):
    """A create whose name is taken (409 with reason AlreadyExists)."""


_ERRORS: dict[int, type[DigiError]] = {404: NotFound, 409: Conflict, 403: Forbidden}


def _error(status: int, what: str, raw: bytes) -> DigiError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"message": raw.decode(errors="replace")}
    message = f"{what}: {body.get('message') or body}"
    if status == 409 and body.get("reason") == "AlreadyExists":
        return AlreadyExists(status, message, body)
    cls = _ERRORS.get(status)
    return cls(message) if cls is not None else ApiError(status, message, body)


def load_api_client(kubeconfig: Path | str | None = None) -> k8s.ApiClient:
    """An ApiClient from a kubeconfig file, else in-cluster config, else ~/.kube/config."""
    if kubeconfig:
        return k8s_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        configuration = k8s.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)
        return k8s.ApiClient(configuration)
    except k8s_config.ConfigException:
        return k8s_config.new_client_from_config()


def gvr_path(gvr: GVR, namespace: str | None = None, name: str | None = None) -> str:
    base = f"/apis/{gvr.group}/{gvr.version}" if gvr.group else f"/api/{gvr.version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{gvr.plural}"
    if name:
        base += f"/{name}"
    return base


class Client:
    """get/list/watch/create/update/patch/delete on any GVR, dicts in and out."""

    def __init__(self, api_client: k8s.ApiClient, user_agent: str = "digi-manager") -> None:
        configuration = api_client.configuration
        if (configuration.connection_pool_maxsize or 0) < POOL_SIZE:
            # Every informer holds a connection for its watch; with the default pool (5 per
            # core) a manager watching many kinds would keep re-handshaking TLS for other calls.
            configuration.connection_pool_maxsize = POOL_SIZE
            api_client.rest_client = k8s_rest.RESTClientObject(configuration)
        self.api = api_client
        self.api.user_agent = user_agent
        self.host = urlparse(api_client.configuration.host).netloc

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path | str | None = None, user_agent: str = "digi-manager") -> Client:
        return cls(load_api_client(kubeconfig), user_agent)

    def _send(
        self, method: str, path: str, *, query: dict[str, Any] | None = None,
        body: Any = None, content_type: str = "application/json",
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> urllib3.HTTPResponse:
        query_params = [(k, v) for k, v in (query or {}).items() if v is not None]
        request = self.api.param_serialize(
            method, path, query_params=query_params,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body, auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(*request, _request_timeout=timeout).response
        except (urllib3.exceptions.HTTPError, OSError) as e:
            metrics.rest_client_requests_total.labels("<error>", method, self.host).inc()
            raise Unreachable(f"{method} {path}: cannot reach the API server at {self.host}: {e}", self.host) from e
        metrics.rest_client_requests_total.labels(str(response.status), method, self.host).inc()
        return response

    def request(
        self, method: str, path: str, *, query: dict[str, Any] | None = None,
        body: Any = None, content_type: str = "application/json",
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> JSON:
        """One request; the parsed JSON body, or a `DigiError` naming the request."""
        raw = self.request_raw(method, path, query=query, body=body, content_type=content_type, timeout=timeout)
        return json.loads(raw) if raw else {}

    def request_raw(
        self, method: str, path: str, *, query: dict[str, Any] | None = None,
        body: Any = None, content_type: str = "application/json",
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> bytes:
        """One request; the JSON body as the server sent it (for relaying it unparsed)."""
        response = self._send(method, path, query=query, body=body, content_type=content_type, timeout=timeout)
        raw: bytes = response.data
        if not 200 <= response.status < 300:
            raise _error(response.status, f"{method} {path}", raw)
        return raw

    def get(self, gvr: GVR, namespace: str | None, name: str) -> JSON:
        return self.request("GET", gvr_path(gvr, namespace, name))

    def get_or_none(self, gvr: GVR, namespace: str | None, name: str) -> JSON | None:
        try:
            return self.get(gvr, namespace, name)
        except NotFound:
            return None

    def list(
        self, gvr: GVR, namespace: str | None = None, *, label_selector: str | None = None,
        field_selector: str | None = None, resource_version: str | None = None,
        limit: int | None = None, continue_: str | None = None,
    ) -> JSON:
        """The raw List (items + metadata.resourceVersion); `namespace=None` lists all."""
        return self.request("GET", gvr_path(gvr, namespace), query={
            "labelSelector": label_selector, "fieldSelector": field_selector,
            "resourceVersion": resource_version, "limit": limit, "continue": continue_,
        }, timeout=(5.0, 120.0))

    def list_all(self, gvr: GVR, namespace: str | None = None, *, label_selector: str | None = None,
                 field_selector: str | None = None, page: int = 500) -> tuple[builtins.list[JSON], str]:
        """Every item (following `continue`) and the list's resourceVersion."""
        items: builtins.list[JSON] = []
        token: str | None = None
        while True:
            result = self.list(gvr, namespace, label_selector=label_selector,
                               field_selector=field_selector, limit=page, continue_=token)
            items.extend(result.get("items") or [])
            token = result.get("metadata", {}).get("continue")
            if not token:
                return items, str(result.get("metadata", {}).get("resourceVersion", ""))

    def watch(
        self, gvr: GVR, namespace: str | None = None, *, resource_version: str,
        timeout_seconds: int, label_selector: str | None = None,
    ) -> WatchStream:
        """Watch events (`{type, object}`) from `resource_version`, with bookmarks.

        The server ends the stream after `timeout_seconds`; the socket read
        timeout is a little longer so a silently dead connection is noticed
        instead of blocking forever.
        """
        path = gvr_path(gvr, namespace)
        response = self._send("GET", path, query={
            "watch": "true", "allowWatchBookmarks": "true", "resourceVersion": resource_version,
            "timeoutSeconds": timeout_seconds, "labelSelector": label_selector,
        }, timeout=(5.0, timeout_seconds + 15.0))
        if response.status != 200:
            raise _error(response.status, f"WATCH {path}", response.data)
        return WatchStream(response)

    def create(self, gvr: GVR, namespace: str | None, body: JSON) -> JSON:
        return self.request("POST", gvr_path(gvr, namespace), body=body)

    def update(self, gvr: GVR, namespace: str | None, body: JSON) -> JSON:
        """PUT the whole object; 409 (`Conflict`) if its resourceVersion is stale."""
        return self.request("PUT", gvr_path(gvr, namespace, body["metadata"]["name"]), body=body)

    def patch(self, gvr: GVR, namespace: str | None, name: str, patch: Any, *,
              content_type: str = MERGE_PATCH, resource_version: str | None = None,
              subresource: str | None = None) -> JSON:
        """Patch (JSON merge patch by default). With `resource_version` the write is
        refused with `Conflict` if the object moved on."""
        raw = self.patch_raw(gvr, namespace, name, patch, content_type=content_type,
                             resource_version=resource_version, subresource=subresource)
        result: JSON = json.loads(raw)
        return result

    def patch_raw(self, gvr: GVR, namespace: str | None, name: str, patch: Any, *,
                  content_type: str = MERGE_PATCH, resource_version: str | None = None,
                  subresource: str | None = None) -> bytes:
        """`patch`, returning the new object as the JSON bytes the API server sent."""
        if resource_version is not None and content_type == MERGE_PATCH:
            patch = {**patch, "metadata": {**(patch.get("metadata") or {}), "resourceVersion": resource_version}}
        path = gvr_path(gvr, namespace, name) + (f"/{subresource}" if subresource else "")
        return self.request_raw("PATCH", path, body=patch, content_type=content_type)

    def delete(self, gvr: GVR, namespace: str | None, name: str, *,
               propagation: str | None = "Background") -> JSON:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        return self.request("DELETE", gvr_path(gvr, namespace, name), body=body)


class WatchStream:
    """An open watch: iterate for events; `close()` from any thread ends it."""

    def __init__(self, response: urllib3.HTTPResponse) -> None:
        self._response = response

    def __iter__(self) -> Iterator[JSON]:
        try:
            for line in iter_resp_lines(self._response):
                if line:
                    yield json.loads(line)
        finally:
            self._response.release_conn()

    def close(self) -> None:
        self._response.shutdown()
