"""The work queue's client-go semantics (pure in-process: a queue needs no API server)."""

from __future__ import annotations

import threading
import time

from manager.workqueue import WorkQueue


def test_repeated_adds_coalesce_into_one_item() -> None:
    q: WorkQueue[str] = WorkQueue("coalesce")
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert q.get() == "a"
    assert q.get() == "b"


def test_key_added_while_processing_is_requeued_after_done_not_given_twice() -> None:
    q: WorkQueue[str] = WorkQueue("processing")
    q.add("a")
    assert q.get() == "a"
    q.add("a")
    assert len(q) == 0, "a key being processed must not be handed to a second worker"
    q.done("a")
    assert len(q) == 1
    assert q.get() == "a"


def test_rate_limited_adds_back_off_per_key_until_forget() -> None:
    q: WorkQueue[str] = WorkQueue("ratelimit", base_delay=0.01)
    for expected in (1, 2, 3):
        q.add_rate_limited("a")
        assert q.num_requeues("a") == expected
        assert q.get() == "a"
        q.done("a")
    q.forget("a")
    assert q.num_requeues("a") == 0


def test_add_after_delivers_later_and_get_unblocks_on_shutdown() -> None:
    q: WorkQueue[str] = WorkQueue("delayed")
    q.add_after("a", 0.05)
    assert len(q) == 0
    assert q.get() == "a"
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    time.sleep(0.05)
    q.shutdown()
    t.join(5)
    assert got == [None]
