"""A rate-limited work queue with client-go's semantics.

A key added several times before a worker takes it is processed once (the
"dirty" set coalesces); a key being processed that is added again is queued
again only when its processing is `done`, so one key is never processed by two
workers at once. `add_rate_limited` retries with per-key exponential backoff
(5 ms doubling to 1000 s, client-go's default item limiter) until `forget`.
`add_after` delays an add (requeue-after). Every operation updates the
`workqueue_*{name,controller}` series.

An add wakes one waiting worker, not all of them, and delayed items have
their own lock and timer thread: with every waiter woken on every add, the
manager's hot path spent a tenth of its time in thread hand-offs.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

from manager import metrics

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, name: str, *, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.name = name
        self._labels = (name, name)
        self._queue: list[K] = []
        self._dirty: set[K] = set()
        self._processing: dict[K, float] = {}  # key -> start time
        self._added_at: dict[K, float] = {}
        self._failures: dict[K, int] = {}
        self._delayed: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._timer_cond = threading.Condition()  # guards _delayed
        self._shutting_down = False
        self._base_delay, self._max_delay = base_delay, max_delay
        self._depth = metrics.workqueue_depth.labels(*self._labels)
        self._adds = metrics.workqueue_adds_total.labels(*self._labels)
        self._queue_duration = metrics.workqueue_queue_duration_seconds.labels(*self._labels)
        self._work_duration = metrics.workqueue_work_duration_seconds.labels(*self._labels)
        self._retries = metrics.workqueue_retries_total.labels(*self._labels)
        metrics.workqueue_unfinished_work_seconds.labels(*self._labels).set_function(self._unfinished)
        metrics.workqueue_longest_running_processor_seconds.labels(*self._labels).set_function(self._longest)
        self._timer = threading.Thread(target=self._promote_delayed, name=f"workqueue {name} delays", daemon=True)
        self._timer.start()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def add(self, key: K) -> None:
        with self._cond:
            if self._shutting_down or key in self._dirty:
                return
            self._adds.inc()
            self._dirty.add(key)
            self._added_at.setdefault(key, time.monotonic())
            if key in self._processing:
                return
            self._queue.append(key)
            self._depth.set(len(self._queue))
            self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._timer_cond:
            if self._shutting_down:
                return
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), key))
            if self._delayed[0][2] is key:  # a new earliest deadline: the timer must wake sooner
                self._timer_cond.notify()

    def add_rate_limited(self, key: K) -> None:
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        self._retries.inc()
        self.add_after(key, min(self._base_delay * 2**failures, self._max_delay))

    def forget(self, key: K) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def get(self) -> K | None:
        """The next key, blocking; None once the queue shuts down."""
        with self._cond:
            while not self._queue and not self._shutting_down:
                self._cond.wait()
            if not self._queue:
                return None
            key = self._queue.pop(0)
            self._depth.set(len(self._queue))
            now = time.monotonic()
            self._queue_duration.observe(now - self._added_at.pop(key, now))
            self._processing[key] = now
            self._dirty.discard(key)
            return key

    def done(self, key: K) -> None:
        with self._cond:
            started = self._processing.pop(key, None)
            if started is not None:
                self._work_duration.observe(time.monotonic() - started)
            if key in self._dirty:
                self._queue.append(key)
                self._depth.set(len(self._queue))
                self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._shutting_down = True
            self._cond.notify_all()
        with self._timer_cond:
            self._timer_cond.notify_all()

    def _promote_delayed(self) -> None:
        while True:
            with self._timer_cond:
                if self._shutting_down:
                    return
                now = time.monotonic()
                due = []
                while self._delayed and self._delayed[0][0] <= now:
                    due.append(heapq.heappop(self._delayed)[2])
                if not due:
                    self._timer_cond.wait(self._delayed[0][0] - now if self._delayed else None)
                    continue
            for key in due:
                self.add(key)

    def _unfinished(self) -> float:
        with self._cond:
            now = time.monotonic()
            return sum(now - t for t in self._processing.values())

    def _longest(self) -> float:
        with self._cond:
            now = time.monotonic()
            return max((now - t for t in self._processing.values()), default=0.0)
