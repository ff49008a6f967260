"""The manager's HTTP surface (FastAPI on uvicorn): probes, metrics, the worker API.

`app.build_app` makes the FastAPI app (`mgr.http`) with `/healthz`, `/readyz`
and `/metrics`; `workers_api` adds the worker endpoints; `serve.HttpServers`
runs one uvicorn server per bind address on a single event loop thread.
"""
