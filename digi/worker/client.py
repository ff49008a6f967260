"""`HttpModelClient`: the engine's `ModelClient` over the manager's worker API.

`get()` and `patch()` map to `GET`/`PATCH /api/v1/digis/{namespace}/{name}?gvr=`
with the worker's bearer token (the token is its digi's, kind included, so
`gvr` is always sent). HTTP 409/403/404 become `digi.errors.Conflict`
/ `Forbidden` / `NotFound`. Requests that cannot reach the manager (it is
restarting, or another manager is taking over the lease) are retried with
backoff for a while; a guarded patch is safe to retry because the
resourceVersion precondition refuses a duplicate. Requests go through
`digi.worker.http.ManagerHttp` (keep-alive `http.client`, one connection per
thread); a shared worker's clients share one and send their own digi's token
on every request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from digi.errors import Conflict, DigiError, Forbidden, NotFound
from digi.worker.http import ManagerHttp, ManagerUnreachable

_ERRORS: dict[int, type[DigiError]] = {409: Conflict, 403: Forbidden, 404: NotFound}
# 503: the manager lost or has not yet got the lease; it is worth waiting for.
_RETRY_STATUS = {502, 503, 504}


@dataclass(frozen=True)
class WorkerEnv:
    """The environment the manager gives every worker."""

    manager_url: str
    token: str
    group: str
    version: str
    plural: str
    kind: str
    name: str
    namespace: str
    lake_url: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, *, shared: bool = False) -> WorkerEnv:
        """The worker's environment; `shared`: a shared worker's (no NAME: it hosts many digis)."""
        env = os.environ if environ is None else environ
        # The manager's token names the digi's kind, and every request must name it too.
        required = ("DIGI_MANAGER_URL", "DIGI_TOKEN", "GROUP", "VERSION", "PLURAL", "NAMESPACE") + (
            ("DIGI_WORKER_POOL",) if shared else ("NAME",))
        missing = [k for k in required if not env.get(k)]
        if missing:
            raise DigiError(
                f"the worker environment lacks {', '.join(missing)}: workers are started by the manager "
                "('digi run KIND_DIR NAME'); to run a driver by hand, export DIGI_MANAGER_URL, DIGI_TOKEN, "
                "GROUP, VERSION, PLURAL, KIND, NAME and NAMESPACE"
            )
        return cls(
            manager_url=env["DIGI_MANAGER_URL"].rstrip("/"), token=env["DIGI_TOKEN"],
            group=env["GROUP"], version=env["VERSION"], plural=env["PLURAL"],
            kind=env.get("KIND", ""), name=env.get("NAME", ""), namespace=env["NAMESPACE"],
            lake_url=env.get("DIGI_LAKE_URL", ""),
        )

    @property
    def gvr(self) -> str:
        return f"{self.group}/{self.version}/{self.plural}"

    def for_digi(self, name: str, token: str, namespace: str | None = None) -> WorkerEnv:
        """The environment of one digi hosted by a shared worker."""
        return replace(self, name=name, token=token, namespace=namespace or self.namespace)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class HttpModelClient:
    def __init__(self, env: WorkerEnv, *, retry_for: float = 30.0, http: ManagerHttp | None = None) -> None:
        self.env = env
        self.retry_for = retry_for
        self._owns_http = http is None
        self._http = http or ManagerHttp(env.manager_url)
        self._path = f"/api/v1/digis/{env.namespace}/{env.name}"
        self._params = {"gvr": env.gvr}

    def get(self) -> dict[str, Any]:
        return self._request("GET")

    def patch(self, patch: dict[str, Any], *, resource_version: str | None = None) -> dict[str, Any]:
        return self._request("PATCH", {"patch": patch, "resourceVersion": resource_version})

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def _request(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + self.retry_for
        delay = 0.2
        while True:
            try:
                response = self._http.request(method, self._path, params=self._params, body=body,
                                              headers=self.env.headers)
                if response.status not in _RETRY_STATUS:
                    break
                problem = f"HTTP {response.status}: {response.text}"
            except ManagerUnreachable as e:
                problem = f"cannot reach the manager at {self.env.manager_url}: {e}"
            if time.monotonic() + delay > deadline:
                raise DigiError(f"{method} digi {self.env.namespace}/{self.env.name}: {problem}")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        if response.is_success:
            result: dict[str, Any] = response.json()
            return result
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise _ERRORS.get(response.status, DigiError)(
            f"{method} digi {self.env.namespace}/{self.env.name}: HTTP {response.status}: {detail}"
        )


def client_from_env() -> HttpModelClient:
    return HttpModelClient(WorkerEnv.from_environ())
