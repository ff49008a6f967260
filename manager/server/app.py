"""The FastAPI app every manager serves: probes and metrics.

`/healthz` answers 200 while the process serves; `/readyz` answers 200 once
every informer has listed (503 with the reason before). `/metrics` is
prometheus-client's text exposition of the default registry. Controllers and
the worker API add their own routers to the same app (`mgr.http`).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def add_probes(app: FastAPI, ready: Callable[[], str | None]) -> None:
    """`ready()` returns None when ready, else why not."""

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        return Response("ok", media_type="text/plain")

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> Response:
        reason = ready()
        if reason is None:
            return Response("ok", media_type="text/plain")
        return Response(reason, status_code=503, media_type="text/plain")


def add_metrics(app: FastAPI) -> None:
    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def build_app(ready: Callable[[], str | None]) -> FastAPI:
    app = FastAPI(title="digi-manager", docs_url=None, redoc_url=None)
    add_probes(app, ready)
    add_metrics(app)
    return app


def metrics_app() -> FastAPI:
    app = FastAPI(title="digi-manager metrics", docs_url=None, redoc_url=None, openapi_url=None)
    add_metrics(app)
    return app
