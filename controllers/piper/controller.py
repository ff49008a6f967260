"""The piper as a controller in the manager: pools, pipelines and their status (spec §7).

Data flow: every digi event and every `Pipelet` event enqueues that object's
key; `reconcile(key)` reads it from the manager's cache and
- for a digi that exists: creates its pool (`<name>` or `<namespace>_<name>`)
  if missing, derives its egress and ingress pipelines (`spec.py`) and hands
  them to the `Piper` scheduler, replacing the ones it had; ingress sources
  follow the digi's current `spec.mount` from the cache, and every event of the
  digi (a mount or unmount included) wakes its pipelines;
- for a digi that is gone: removes its pipelines and, if `delete_pools`, its pool
  (by default the data stays: `DIGI_DELETE_POOLS=true` changes that);
- for a Pipelet: one pipeline per `dst` entry.
A malformed entry is reported as a Warning Event (`InvalidPipeline`) on the
object; it runs nothing, the object's other entries run.

Status: a pipeline's state changes (running, paused, waiting, error with the
lake's message) are Events on the digi or Pipelet that owns it (reason
`PipelineRunning`, `PipelinePaused`, `PipelineWaiting`, `PipelineError`);
`GET /api/v1/pipelines` lists every pipeline with state, lag, record counts
and watermarks (what `digi lake status` shows). The scheduler runs only while
this manager leads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter

from controllers.crds import CRD_DIR, ensure_crd
from controllers.piper.engine import ERROR, PAUSED, RUNNING, PipelineRun
from controllers.piper.runner import Piper
from controllers.piper.spec import Pipeline, SpecError, digi_pipelines, pipelet_pipelines
from digi.lake import LakeError, LakeNotFound, pool_name
from manager.controller import Controller, Result
from manager.types import GVR, ObjectKey

log = logging.getLogger(__name__)

JSON = dict[str, Any]
PIPELET_GVR = GVR("digi.dev", "v1", "pipelets")
CRD_FILE = CRD_DIR / "pipelet.yaml"
_REASONS = {RUNNING: "PipelineRunning", PAUSED: "PipelinePaused", ERROR: "PipelineError"}


class PiperController:
    def __init__(
        self,
        mgr: Any,
        *,
        delete_pools: bool = False,
        batch_size: int = 1000,
        late_window: float = 10.0,
        poll_interval: float = 10.0,
    ) -> None:
        self.mgr = mgr
        self.delete_pools = delete_pools
        self.piper = Piper(
            mgr.lake_url,
            batch_size=batch_size,
            late_window=late_window,
            poll_interval=poll_interval,
            on_change=self._report,
        )
        self.controller = Controller("piper", self.reconcile, workers=2)
        self._owned: dict[ObjectKey, set[str]] = {}
        self._owners: dict[str, ObjectKey] = {}
        self._pools: set[str] = set()
        mgr.cache.on_digi_event(self._on_digi)
        self.controller.watches(mgr.cache.informer(PIPELET_GVR))
        mgr.add_controller(self.controller)
        mgr.on_leading(self.piper.start)
        mgr.on_shutdown(self.piper.stop)
        router = APIRouter()
        router.add_api_route("/api/v1/pipelines", self.piper.snapshot, methods=["GET"])
        mgr.http.include_router(router)

    def _on_digi(self, event_type: str, obj: JSON, old: JSON | None) -> None:
        gvr = self.mgr.cache.gvr_of(obj)
        if gvr is not None:
            self.controller.enqueue(ObjectKey.of(gvr, obj))

    def reconcile(self, key: ObjectKey) -> Result | None:
        obj = self.mgr.cache.get(key.gvr, key.namespace, key.name)
        errors: list[SpecError] = []
        try:
            if key.gvr == PIPELET_GVR:
                pipelines = pipelet_pipelines(obj) if obj is not None else []
            elif obj is None:
                pipelines = []
                self._drop_pool(key)
            else:
                pool = pool_name(key.name, key.namespace)
                if pool not in self._pools:  # digis change often; create each pool once
                    self.piper.lake.ensure_pool(pool)
                    self._pools.add(pool)
                pipelines, errors = digi_pipelines(
                    self.mgr.cache.kind_of(key.gvr),
                    obj,
                    lambda: self.mgr.cache.get(key.gvr, key.namespace, key.name),
                )
        except SpecError as exc:
            pipelines, errors = [], [exc]
        except LakeError as exc:
            log.info("piper: %s: %s; retrying", key, exc)
            return Result(requeue=True)
        for error in errors:
            assert obj is not None
            self.mgr.events.record(obj, "Warning", "InvalidPipeline", str(error))
        self._replace(key, pipelines)
        return None

    def _drop_pool(self, key: ObjectKey) -> None:
        if not self.delete_pools:
            return
        pool = pool_name(key.name, key.namespace)
        self._pools.discard(pool)
        try:
            self.piper.lake.delete_pool(pool)
            log.info("piper: deleted pool %s of deleted digi %s", pool, key)
        except LakeNotFound:
            pass

    def _replace(self, key: ObjectKey, pipelines: list[Pipeline]) -> None:
        wanted = {p.config.id for p in pipelines}
        for stale in self._owned.get(key, set()) - wanted:
            self.piper.remove(stale)
            self._owners.pop(stale, None)
        for pipeline in pipelines:
            self._owners[pipeline.config.id] = key
            self.piper.apply(pipeline)
        if wanted:
            self._owned[key] = wanted
        else:
            self._owned.pop(key, None)

    def _report(self, run: PipelineRun, old_state: str, old_message: str) -> None:
        key = self._owners.get(run.config.id)
        obj = self.mgr.cache.get(key.gvr, key.namespace, key.name) if key is not None else None
        if obj is None:
            return
        state = run.status.state
        type_ = "Warning" if state == ERROR else "Normal"
        reason = _REASONS.get(state, "PipelineWaiting")
        self.mgr.events.record(
            obj, type_, reason, f"{run.config.id} → {run.config.dst}: {run.status.message}"
        )


def setup(mgr: Any, environ: Mapping[str, str] = os.environ) -> PiperController | None:
    """Register the piper unless the manager has no lake (`--lake-url`).

    `DIGI_DELETE_POOLS=true` deletes a digi's pool with the digi (default: keep the data);
    `DIGI_PIPER_POLL_INTERVAL` (seconds, default 10) is the safety-net poll;
    `DIGI_PIPER_BATCH` (default 1000) the records per source per batch;
    `DIGI_PIPER_LATE_WINDOW` (seconds, default 10) how far below a source's watermark a record
    another writer committed late is still found (see docs/data-plane.md)."""
    if not mgr.lake_url:
        log.warning("piper: the manager has no --lake-url; pools and pipelines are not managed")
        return None
    # The leader creates the Pipelet CRD if missing (a Helm install ships it); a standby never writes.
    mgr.on_leading(lambda: ensure_crd(mgr.client, CRD_FILE))
    return PiperController(
        mgr,
        delete_pools=environ.get("DIGI_DELETE_POOLS", "false").lower() == "true",
        batch_size=int(environ.get("DIGI_PIPER_BATCH", "1000")),
        late_window=float(environ.get("DIGI_PIPER_LATE_WINDOW", "10")),
        poll_interval=float(environ.get("DIGI_PIPER_POLL_INTERVAL", "10")),
    )
