"""The piper's scheduler: runs every pipeline when its sources change.

Data flow: `apply(pipeline)` / `remove(id)` come from the controller. Pipelines
are woken by
- the lake's `/events` stream: a `branch-commit` on `pool@branch` wakes every
  pipeline reading that branch;
- every (re)connect of that stream: all pipelines forget their cached tips and
  watermarks and are re-checked, because the stream has no replay;
- a slow poll (`poll_interval`) as the safety net for a missed event;
- `wake(id)` (the controller calls it when a digi's mounts change).
Worker threads take woken pipelines one at a time (a pipeline never runs on two
threads) and call `PipelineRun.step()` until it reports no more work. A lake
that is down or a commit conflict reschedules that pipeline with exponential
backoff; any other exception is logged and treated the same way, so one
pipeline never stops the others or the manager.

Metrics: `digi_pipelet_records_total{pipelet}`, `digi_pipelet_lag_seconds{pipelet}`,
`digi_pipelet_errors_total{pipelet}` (the label is the pipeline id).
`on_change(run, old_state, old_message)` is called after a step that changed a
pipeline's state (or its error message).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from controllers.piper.engine import ERROR, PipelineRun, Stamps, describe
from controllers.piper.spec import Pipeline
from digi.lake import (
    EventStream,
    LakeClient,
    LakeConflict,
    LakeError,
    LakeEvent,
    LakeUnavailable,
    QueryError,
)

log = logging.getLogger(__name__)

records_total = Counter(
    "digi_pipelet_records", "Records a pipeline loaded into its destination", ("pipelet",)
)
lag_seconds = Gauge(
    "digi_pipelet_lag_seconds",
    "Age of the oldest record a pipeline has not moved yet (0 when caught up)",
    ("pipelet",),
)
errors_total = Counter(
    "digi_pipelet_errors", "Failed pipeline steps (flow errors, lake errors)", ("pipelet",)
)

_BATCHES_PER_TURN = 20

OnChange = Callable[[PipelineRun, str, str], None]


class Piper:
    def __init__(
        self,
        lake_url: str,
        *,
        batch_size: int = 1000,
        late_window: float = 10.0,
        poll_interval: float = 10.0,
        workers: int = 2,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        on_change: OnChange | None = None,
    ) -> None:
        self.lake = LakeClient(lake_url, author="digi-piper")
        self.batch_size = batch_size
        self.late_window = late_window
        # One stamp sequence per destination across all pipelines: several feed one `main`.
        self.stamps = Stamps()
        self.poll_interval = poll_interval
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.on_change = on_change
        self.events = EventStream(lake_url, max_backoff=max_backoff)
        self._workers = workers
        self._runs: dict[str, PipelineRun] = {}
        self._cond = threading.Condition()
        self._ready: deque[str] = deque()
        self._queued: set[str] = set()
        self._busy: set[str] = set()
        self._dirty: set[str] = set()
        self._delayed: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._pool_names: dict[str, str] = {}
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- what the controller uses ------------------------------------------------------

    def apply(self, pipeline: Pipeline) -> None:
        """Add a pipeline or take its new description, and check it now."""
        with self._cond:
            run = self._runs.get(pipeline.config.id)
            if run is None:
                self._runs[pipeline.config.id] = PipelineRun(
                    pipeline, self.lake, batch_size=self.batch_size,
                    late_window=self.late_window, stamps=self.stamps,
                )
                for metric in (records_total, lag_seconds, errors_total):
                    metric.labels(pipeline.config.id)  # the series exist (at 0) from the start
            else:
                run.update(pipeline)
            self._delayed.pop(pipeline.config.id, None)
            self._enqueue(pipeline.config.id)

    def remove(self, pipeline_id: str) -> None:
        with self._cond:
            self._runs.pop(pipeline_id, None)
            self._delayed.pop(pipeline_id, None)
        for metric in (records_total, lag_seconds, errors_total):
            with contextlib.suppress(KeyError):
                metric.remove(pipeline_id)

    def ids(self) -> set[str]:
        with self._cond:
            return set(self._runs)

    def run(self, pipeline_id: str) -> PipelineRun | None:
        with self._cond:
            return self._runs.get(pipeline_id)

    def wake(self, pipeline_id: str) -> None:
        with self._cond:
            self._enqueue(pipeline_id)

    def wake_all(self, *, forget: bool = False) -> None:
        with self._cond:
            for pid, run in self._runs.items():
                if forget:
                    run.forget_state()
                    self._delayed.pop(pid, None)
                self._enqueue(pid)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._cond:
            runs = list(self._runs.values())
        return [describe(r) for r in sorted(runs, key=lambda r: r.config.id)]

    def idle(self) -> bool:
        """No pipeline is queued, running or waiting for a retry."""
        with self._cond:
            return not (self._ready or self._busy or self._delayed or self._dirty)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        targets: list[tuple[str, Callable[[], None]]] = [
            ("piper events", lambda: self.events.run(self._on_event, self._on_connect)),
            ("piper poll", self._poll),
        ]
        targets += [(f"piper worker {i}", self._work) for i in range(self._workers)]
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped.set()
        self.events.stop()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.lake.close()

    # -- internals ----------------------------------------------------------------------

    def _enqueue(self, pid: str) -> None:
        """Queue `pid` (caller holds the lock); a running pipeline is re-run after its step."""
        if pid in self._busy:
            self._dirty.add(pid)
        elif pid not in self._queued and pid not in self._delayed:
            self._ready.append(pid)
            self._queued.add(pid)
            self._cond.notify()

    def _on_connect(self) -> None:
        log.info("piper: connected to the lake's event stream; re-checking every pipeline")
        self._pool_names.clear()
        self.wake_all(forget=True)

    def _on_event(self, event: LakeEvent) -> None:
        if event.type != "branch-commit":
            return
        pool = self._pool_names.get(event.pool_id)
        if pool is None:
            try:
                self._pool_names = {p.id: p.name for p in self.lake.pools()}
            except LakeError as exc:
                log.info("piper: cannot list pools (%s); waking every pipeline", exc)
                self.wake_all()
                return
            pool = self._pool_names.get(event.pool_id)
        source = f"{pool}@{event.branch}"
        with self._cond:
            for pid, run in self._runs.items():
                if source in run.status.sources:
                    self._enqueue(pid)

    def _poll(self) -> None:
        while not self._stopped.wait(self.poll_interval):
            self.wake_all()

    def _take(self) -> str | None:
        with self._cond:
            while not self._stopped.is_set():
                now = time.monotonic()
                for pid, due in list(self._delayed.items()):
                    if due <= now:
                        del self._delayed[pid]
                        self._enqueue(pid)
                if self._ready:
                    pid = self._ready.popleft()
                    self._queued.discard(pid)
                    self._busy.add(pid)
                    return pid
                wait = min(self._delayed.values()) - now if self._delayed else None
                self._cond.wait(wait)
            return None

    def _work(self) -> None:
        while (pid := self._take()) is not None:
            retry_in = None
            try:
                run = self.run(pid)
                if run is not None:
                    retry_in = self._step(run)
            finally:
                with self._cond:
                    self._busy.discard(pid)
                    if retry_in is not None and pid in self._runs:
                        self._dirty.discard(pid)
                        self._delayed[pid] = time.monotonic() + retry_in
                        self._cond.notify()
                    elif pid in self._dirty:
                        self._dirty.discard(pid)
                        self._enqueue(pid)

    def _step(self, run: PipelineRun) -> float | None:
        """Run `run` until it has no more work; the delay before a retry, or None."""
        pid = run.config.id
        old_state, old_message = run.status.state, run.status.message
        records, errors = run.status.records_total, run.status.errors_total
        retry_in = None
        try:
            for _ in range(_BATCHES_PER_TURN):
                if not run.step() or self._stopped.is_set() or self.run(pid) is not run:
                    break
            else:
                # More is waiting: go to the back of the queue so other pipelines get a turn.
                with self._cond:
                    self._dirty.add(pid)
            self._backoff.pop(pid, None)
        except (LakeUnavailable, LakeConflict, QueryError) as exc:
            retry_in = self._next_backoff(pid)
            log.info("piper: %s: %s; retrying in %.1fs", pid, exc, retry_in)
        except Exception as exc:
            retry_in = self._next_backoff(pid)
            run.status.errors_total += 1
            run.status.state, run.status.message = ERROR, f"internal error: {exc}"
            log.exception("piper: %s failed; retrying in %.1fs", pid, retry_in)
        if self.run(pid) is run:
            records_total.labels(pid).inc(run.status.records_total - records)
            errors_total.labels(pid).inc(run.status.errors_total - errors)
            lag_seconds.labels(pid).set(run.status.lag_seconds)
            changed = run.status.state != old_state or (
                run.status.state == ERROR and run.status.message != old_message
            )
            if changed and self.on_change is not None:
                try:
                    self.on_change(run, old_state, old_message)
                except Exception:
                    log.exception("piper: reporting the state of %s failed", pid)
        return retry_in

    def _next_backoff(self, pid: str) -> float:
        delay = min(self._backoff.get(pid, self.min_backoff / 2) * 2, self.max_backoff)
        self._backoff[pid] = delay
        return delay
