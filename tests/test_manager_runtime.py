"""The manager runtime in-process against the real API server: informers, the digi-kind cache,
controllers, Events, and graceful shutdown of a manager process."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from manager import metrics
from manager.cache import CRD_GVR, Cache
from manager.controller import Controller, Result
from manager.events import EVENT_GVR, EventRecorder
from manager.informer import Informer
from manager.kube import Client
from manager.types import GVR, ObjectKey
from tests.manager_fixtures import (
    PROBE_GVR,
    ManagerProcess,
    ensure_probe_crd,
    probe,
    wait_for,
    write_probe_kind,
)

CONFIGMAPS = GVR("", "v1", "configmaps")


@pytest.fixture
def client(space: Any) -> Client:
    return Client.from_kubeconfig(space.kubeconfig)


def configmap(name: str, namespace: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, event_type: str, obj: dict[str, Any], _old: dict[str, Any] | None) -> None:
        with self.lock:
            self.events.append((event_type, obj["metadata"]["name"]))

    def saw(self, event: tuple[str, str]) -> bool:
        with self.lock:
            return event in self.events


def test_informer_recovers_from_a_broken_watch_and_reports_what_it_missed(client: Client, namespace: str) -> None:
    client.create(CONFIGMAPS, namespace, configmap("kept", namespace))
    client.create(CONFIGMAPS, namespace, configmap("doomed", namespace))
    informer = Informer(client, CONFIGMAPS)
    seen = Recorder()
    informer.add_handler(lambda t, o, old: seen(t, o, old) if o["metadata"]["namespace"] == namespace else None)
    informer.start()
    try:
        assert informer.wait_synced(30)
        assert seen.saw(("ADDED", "kept")) and seen.saw(("ADDED", "doomed"))
        stream = wait_for(lambda: informer._stream, 10, "the watch to open")
        with informer.lock:  # no event is applied while the connection breaks and the world changes
            stream.close()
            client.delete(CONFIGMAPS, namespace, "doomed")
            client.create(CONFIGMAPS, namespace, configmap("fresh", namespace))
        wait_for(lambda: seen.saw(("DELETED", "doomed")) and seen.saw(("ADDED", "fresh")), 60,
                 "the re-list to report the deletion and the addition")
        assert informer.get(namespace, "doomed") is None and informer.get(namespace, "fresh") is not None
        client.patch(CONFIGMAPS, namespace, "kept", {"data": {"k": "v"}})
        wait_for(lambda: seen.saw(("MODIFIED", "kept")), 30, "the watch to resume after the re-list")
    finally:
        informer.stop()


class _GoneOnce(Client):
    """The real client, except that the first watch after the initial list answers with the
    `ERROR 410 Gone` event a server sends once etcd compacted the watch's resourceVersion away.
    A fresh control plane's watch cache still serves every resourceVersion it has seen, so the
    condition cannot be produced for real within a test; this injects only that one event."""

    def __init__(self, base: Client) -> None:
        super().__init__(base.api)
        self.watches = 0

    def watch(self, *args: Any, **kwargs: Any) -> Any:
        self.watches += 1
        if self.watches == 1:
            return iter([{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                                      "message": "too old resource version"}}])
        return super().watch(*args, **kwargs)


def test_a_410_gone_during_watch_triggers_a_relist_not_a_crash(
    client: Client, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="manager.informer")
    gone = _GoneOnce(client)
    informer = Informer(gone, CONFIGMAPS)
    seen = Recorder()
    informer.add_handler(lambda t, o, old: seen(t, o, old) if o["metadata"]["namespace"] == namespace else None)
    informer.start()
    try:
        wait_for(lambda: gone.watches >= 2, 30, "a second watch after the re-list")
        assert "is gone, re-listing" in caplog.text
        client.create(CONFIGMAPS, namespace, configmap("after-gone", namespace))
        wait_for(lambda: seen.saw(("ADDED", "after-gone")), 30, "events to flow after the re-list")
    finally:
        informer.stop()


def test_cache_discovers_a_digi_kind_added_at_run_time_and_drops_it_when_removed(client: Client, namespace: str) -> None:
    suffix = uuid.uuid4().hex[:6]
    plural = f"gadgets{suffix}"
    gvr = GVR("rt.digi.dev", "v1", plural)
    cache = Cache(client)
    seen = Recorder()
    cache.on_digi_event(seen)
    cache.start()
    try:
        assert cache.wait_synced(30)
        assert gvr not in cache.digi_kinds()
        crd: dict[str, Any] = {
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.rt.digi.dev", "labels": {"digi.dev/kind": "true"}},
            "spec": {"group": "rt.digi.dev", "scope": "Namespaced",
                     "names": {"kind": f"Gadget{suffix}", "plural": plural},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
        }
        client.create(CRD_GVR, None, crd)
        wait_for(lambda: gvr in cache.digi_kinds(), 30, "the new kind to be discovered")
        wait_for(lambda: client.create(gvr, namespace, {"apiVersion": "rt.digi.dev/v1", "kind": f"Gadget{suffix}",
                                                         "metadata": {"name": "g1"}, "spec": {}}), 30, "the CR")
        wait_for(lambda: seen.saw(("ADDED", "g1")), 30, "the digi handler to see the new kind's digi")
        assert cache.gvr_of(cache.get(gvr, namespace, "g1") or {}) == gvr

        client.delete(CRD_GVR, None, crd["metadata"]["name"])
        wait_for(lambda: gvr not in cache.digi_kinds(), 60, "the kind to be dropped")
        assert seen.saw(("DELETED", "g1"))
    finally:
        cache.stop()


def test_controller_catches_failures_retries_with_backoff_and_counts(client: Client) -> None:
    calls: list[ObjectKey] = []
    key = ObjectKey(CONFIGMAPS, "default", f"flaky-{uuid.uuid4().hex[:6]}")

    def reconcile(k: ObjectKey) -> Result | None:
        calls.append(k)
        if len(calls) < 3:
            raise RuntimeError("transient failure")
        return None

    name = f"flaky-{uuid.uuid4().hex[:6]}"
    controller = Controller(name, reconcile, workers=2)
    controller.start()
    try:
        controller.enqueue(key)
        wait_for(lambda: len(calls) == 3, 10, "two retries after failures")
        wait_for(lambda: metrics.reconcile_total.labels(name, "success")._value.get() == 1, 5, "the success count")
        assert metrics.reconcile_errors_total.labels(name)._value.get() == 2
        assert metrics.workqueue_retries_total.labels(name, name)._value.get() == 2
        assert controller.queue.num_requeues(key) == 0, "success forgets the backoff"
    finally:
        controller.stop()


def test_repeated_events_are_counted_on_one_event_object(client: Client, namespace: str) -> None:
    cm = client.create(CONFIGMAPS, namespace, configmap("evented", namespace))
    recorder = EventRecorder(client, host="test")
    for _ in range(3):
        recorder.record(cm, "Warning", "Flaky", "it happened again")
    events = [e for e in client.list_all(EVENT_GVR, namespace)[0] if e["reason"] == "Flaky"]
    assert len(events) == 1 and events[0]["count"] == 3
    assert events[0]["involvedObject"]["uid"] == cm["metadata"]["uid"]


@pytest.mark.slow
def test_sigterm_stops_workers_and_exits_cleanly(space: Any, client: Client, namespace: str, tmp_path: Path) -> None:
    ensure_probe_crd(client)
    driver = write_probe_kind(tmp_path / "kind")
    mgr = ManagerProcess(space, tmp_path / "mgr", "--no-meta-controllers").start()
    client.create(PROBE_GVR, namespace, probe("s1", namespace, driver))
    state_file = mgr.root / "workers" / namespace / "probes" / "s1.json"
    wait_for(lambda: json.loads(state_file.read_text())["state"] == "running", 60, "the worker to run")
    pid = json.loads(state_file.read_text())["pid"]
    assert psutil.pid_exists(pid)
    assert mgr.stop() == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert json.loads(state_file.read_text())["state"] == "stopped"


def test_controller_runs_at_most_its_workers_at_once_and_one_key_never_twice() -> None:
    gate = threading.Event()
    running: set[str] = set()
    peak = [0]
    overlaps: list[str] = []
    lock = threading.Lock()

    def reconcile(k: ObjectKey) -> None:
        with lock:
            if k.name in running:
                overlaps.append(k.name)
            running.add(k.name)
            peak[0] = max(peak[0], len(running))
        gate.wait(10)
        with lock:
            running.discard(k.name)

    name = f"bounded-{uuid.uuid4().hex[:6]}"
    controller = Controller(name, reconcile, workers=2)
    controller.start()
    try:
        for i in range(5):
            controller.enqueue(ObjectKey(CONFIGMAPS, "default", f"k{i}"))
            controller.enqueue(ObjectKey(CONFIGMAPS, "default", "k0"))
        wait_for(lambda: peak[0] == 2, 10, "two reconciles in flight")
        assert metrics.active_workers.labels(name)._value.get() == 2
        assert metrics.max_concurrent_reconciles.labels(name)._value.get() == 2
        gate.set()
        wait_for(lambda: len(controller.queue) == 0 and not running, 10, "the queue to drain")
        assert peak[0] == 2 and overlaps == []
    finally:
        controller.stop()
