"""A controller: a named reconcile function fed by a rate-limited work queue.

Event handlers (usually informer handlers, see `watches`) `enqueue` object
keys; `workers` threads take keys from the queue and call `reconcile(key)`.
The result decides what happens to the key, as in controller-runtime:

- returns None / `Result()`  → done (`result="success"`), backoff forgotten;
- `Result(requeue=True)`     → re-added with per-key backoff (`"requeue"`);
- `Result(requeue_after=s)`  → re-added after s seconds (`"requeue_after"`);
- raises                     → logged with its traceback, re-added with backoff
  (`"error"`, `controller_runtime_reconcile_errors_total`); one failing key
  never stops the others.

The manager starts a controller's workers once it holds the leader lease, so
reconcile functions may write; keys enqueued before that wait in the queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from manager import metrics
from manager.informer import Informer
from manager.types import ObjectKey
from manager.workqueue import WorkQueue

log = logging.getLogger(__name__)

JSON = dict[str, Any]


@dataclass(frozen=True)
class Result:
    requeue: bool = False
    requeue_after: float | None = None


Reconcile = Callable[[ObjectKey], "Result | None"]
Mapper = Callable[[str, JSON, "JSON | None"], Iterable[ObjectKey]]


class Controller:
    def __init__(self, name: str, reconcile: Reconcile, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"controller {name!r}: workers must be at least 1, got {workers}")
        self.name = name
        self.reconcile = reconcile
        self.workers = workers
        self.queue: WorkQueue[ObjectKey] = WorkQueue(name)
        self._threads: list[threading.Thread] = []
        self._active = metrics.active_workers.labels(name)
        metrics.max_concurrent_reconciles.labels(name).set(workers)
        for result in ("success", "error", "requeue", "requeue_after"):
            metrics.reconcile_total.labels(name, result)
        metrics.reconcile_errors_total.labels(name)

    def enqueue(self, key: ObjectKey) -> None:
        self.queue.add(key)

    def enqueue_after(self, key: ObjectKey, delay: float) -> None:
        self.queue.add_after(key, delay)

    def watches(self, informer: Informer, mapper: Mapper | None = None) -> None:
        """Enqueue keys for every event of `informer`: the object's own key, or
        the keys `mapper(event_type, obj, old)` returns (e.g. the owner's)."""
        gvr = informer.gvr

        def handler(event_type: str, obj: JSON, old: JSON | None) -> None:
            keys = mapper(event_type, obj, old) if mapper else (ObjectKey.of(gvr, obj),)
            for key in keys:
                self.enqueue(key)

        informer.add_handler(handler)

    def start(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"{self.name} worker {i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking keys and wait (up to `timeout` in total) for reconciles in flight."""
        self.queue.shutdown()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            self._active.inc()
            started = time.monotonic()
            try:
                result = self.reconcile(key) or Result()
            except Exception:
                log.exception("controller %s: reconcile %s failed", self.name, key)
                metrics.reconcile_errors_total.labels(self.name).inc()
                metrics.reconcile_total.labels(self.name, "error").inc()
                self.queue.add_rate_limited(key)
            else:
                if result.requeue_after:
                    self.queue.forget(key)
                    self.queue.add_after(key, result.requeue_after)
                    metrics.reconcile_total.labels(self.name, "requeue_after").inc()
                elif result.requeue:
                    self.queue.add_rate_limited(key)
                    metrics.reconcile_total.labels(self.name, "requeue").inc()
                else:
                    self.queue.forget(key)
                    metrics.reconcile_total.labels(self.name, "success").inc()
            finally:
                metrics.reconcile_time_seconds.labels(self.name).observe(time.monotonic() - started)
                self._active.dec()
                self.queue.done(key)
