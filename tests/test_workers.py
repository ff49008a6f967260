"""Workers end to end against the real API server: a manager process, local workers, the probe kind.

The probe kind's driver is a tiny engine defined in `manager_fixtures` so these
tests exercise the transport (dispatch, tokens, restarts, resync) on their own;
the lamp tests in `test_workers_lamp.py` run the real engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from digi.errors import Conflict, DigiError
from digi.worker.client import HttpModelClient, WorkerEnv
from digi.worker.loop import events_url
from manager.events import EVENT_GVR
from manager.kube import Client
from manager.server.tokens import TokenIssuer
from manager.types import ObjectKey
from manager.workers.local import worker_files
from tests.manager_fixtures import (
    PROBE_GVR,
    ManagerProcess,
    ensure_probe_crd,
    probe,
    wait_for,
    write_probe_kind,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(space: object) -> Client:
    c = Client.from_kubeconfig(space.kubeconfig)  # type: ignore[attr-defined]
    ensure_probe_crd(c)
    return c


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_probe_kind(tmp_path_factory.mktemp("probe-kind"))


@pytest.fixture(scope="module")
def manager(space: object, client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerProcess]:
    mgr = ManagerProcess(space, tmp_path_factory.mktemp("manager")).start()
    try:
        yield mgr
    finally:
        code = mgr.stop()
        assert code == 0, f"manager exited {code} on SIGTERM:\n{mgr.log()[-3000:]}"


def status(client: Client, namespace: str, name: str) -> str | None:
    obj = client.get(PROBE_GVR, namespace, name)
    return obj["spec"].get("control", {}).get("power", {}).get("status")


def status_is(client: Client, namespace: str, name: str, want: str) -> bool:
    return status(client, namespace, name) == want


def set_intent(client: Client, namespace: str, name: str, intent: str) -> None:
    client.patch(PROBE_GVR, namespace, name, {"spec": {"control": {"power": {"intent": intent}}}})


def worker_state(manager: ManagerProcess, namespace: str, name: str) -> dict[str, object]:
    _, path = worker_files(manager.root, namespace, "probes", name)
    return json.loads(path.read_text())


def test_worker_drives_status_to_intent(manager: ManagerProcess, client: Client, driver: Path, namespace: str) -> None:
    client.create(PROBE_GVR, namespace, probe("p1", namespace, driver))
    wait_for(lambda: status(client, namespace, "p1") == "off", 60, "the worker's first reconcile")
    set_intent(client, namespace, "p1", "on")
    wait_for(lambda: status(client, namespace, "p1") == "on", 30, "status to follow intent 'on'")
    events, _ = client.list_all(EVENT_GVR, namespace)
    assert any(e["reason"] == "WorkerStarted" and e["involvedObject"]["name"] == "p1" for e in events)


def test_worker_cannot_patch_another_digi(manager: ManagerProcess, client: Client, driver: Path, namespace: str) -> None:
    client.create(PROBE_GVR, namespace, probe("victim", namespace, None, intent="off"))
    client.create(PROBE_GVR, namespace, probe("attacker", namespace, driver, target=f"{namespace}/victim"))
    attacker = wait_for(lambda: client.get(PROBE_GVR, namespace, "attacker")["spec"].get("obs"), 60,
                        "the attacker to record its attempt")
    assert attacker["attack"] == 403
    assert "status" not in client.get(PROBE_GVR, namespace, "victim")["spec"]["control"]["power"]
    assert f"tried to patch digi {namespace}/victim" in manager.log()
    assert f"{namespace}/attacker tried" in manager.log(), "the refusal names the offending worker"


def test_killed_worker_restarts_with_backoff_and_converges(
    manager: ManagerProcess, client: Client, driver: Path, namespace: str
) -> None:
    client.create(PROBE_GVR, namespace, probe("k1", namespace, driver))
    wait_for(lambda: status(client, namespace, "k1") == "off", 60, "the first reconcile")
    pid = int(worker_state(manager, namespace, "k1")["pid"])  # type: ignore[call-overload]
    os.kill(pid, signal.SIGKILL)
    set_intent(client, namespace, "k1", "on")
    wait_for(lambda: worker_state(manager, namespace, "k1").get("restarts") == 1, 30, "the restart to be counted")
    wait_for(lambda: status(client, namespace, "k1") == "on", 60, "the restarted worker to converge")
    state = worker_state(manager, namespace, "k1")
    assert state["state"] == "running" and state["pid"] != pid
    events, _ = client.list_all(EVENT_GVR, namespace)
    crashed = [e for e in events if e["reason"] == "WorkerCrashed" and e["involvedObject"]["name"] == "k1"]
    assert crashed and "code -9" in crashed[0]["message"]


def test_guarded_write_through_the_manager_is_refused_when_stale(
    manager: ManagerProcess, client: Client, namespace: str
) -> None:
    client.create(PROBE_GVR, namespace, probe("g1", namespace, None))
    token = _token(manager, namespace, "g1")
    model = HttpModelClient(WorkerEnv(manager.url, token, "test.digi.dev", "v1", "probes", "Probe", "g1", namespace))
    obj = wait_for(lambda: model.get(), 30, "the manager to know g1")
    model.patch({"spec": {"meta": {"x": 1}}}, resource_version=obj["metadata"]["resourceVersion"])
    with pytest.raises(Conflict):
        model.patch({"spec": {"meta": {"x": 2}}}, resource_version=obj["metadata"]["resourceVersion"])
    assert client.get(PROBE_GVR, namespace, "g1")["spec"]["meta"]["x"] == 1


def test_a_worker_cannot_change_the_managers_own_annotations_or_labels(
    manager: ManagerProcess, client: Client, driver: Path, namespace: str
) -> None:
    client.create(PROBE_GVR, namespace, probe("a1", namespace, driver))
    wait_for(lambda: status(client, namespace, "a1") == "off", 60, "the worker's first reconcile")
    model = HttpModelClient(WorkerEnv(manager.url, _token(manager, namespace, "a1"), "test.digi.dev", "v1", "probes",
                                      "Probe", "a1", namespace))
    attempts = [("annotations", "digi.dev/driver-dir", "/tmp/elsewhere"), ("annotations", "digi.dev/image", "evil:1"),
                ("annotations", "digi.dev/driver-dir", None), ("labels", "digi.dev/kind", "x"),
                ("annotations", "worker-mode.digi.dev/x", "y")]
    for field, key, value in attempts:
        with pytest.raises(DigiError, match="HTTP 422") as refused:
            model.patch({"metadata": {field: {key: value}}})
        assert f"metadata.{field} {key}" in str(refused.value), "the refusal names the key"
    with pytest.raises(DigiError, match=r"HTTP 422.*must be an object"):
        model.patch({"metadata": {"annotations": None}})  # would delete every annotation
    model.patch({"metadata": {"annotations": {"example.com/note": "mine"}, "labels": {"team": "a"}}})
    meta = client.get(PROBE_GVR, namespace, "a1")["metadata"]
    assert meta["annotations"]["digi.dev/driver-dir"] == str(driver) and "digi.dev/image" not in meta["annotations"]
    assert meta["annotations"]["example.com/note"] == "mine" and meta["labels"] == {"team": "a"}
    assert f"refused (422): the worker of digi {namespace}/a1 tried to change metadata.annotations" in manager.log()


def test_every_request_must_name_the_kind(manager: ManagerProcess, client: Client, namespace: str) -> None:
    client.create(PROBE_GVR, namespace, probe("n1", namespace, None))
    headers = {"Authorization": f"Bearer {_token(manager, namespace, 'n1')}"}
    url = f"{manager.url}/api/v1/digis/{namespace}/n1"
    wait_for(lambda: httpx.get(url, params={"gvr": str(PROBE_GVR)}, headers=headers).status_code == 200, 30,
             "the manager to know n1")
    assert httpx.get(url, headers=headers).status_code == 422
    assert httpx.get(url, params={"gvr": "probes"}, headers=headers).status_code == 422
    assert httpx.get(url, params={"gvr": "other.digi.dev/v1/probes"}, headers=headers).status_code == 403


def _token(manager: ManagerProcess, namespace: str, name: str) -> str:
    issuer = TokenIssuer.from_file(manager.root / "manager" / "worker-token.secret")
    return issuer.token(ObjectKey(PROBE_GVR, namespace, name))


def test_one_watch_per_kind_however_many_digis(manager: ManagerProcess, client: Client, driver: Path, namespace: str) -> None:
    for i in range(6):
        client.create(PROBE_GVR, namespace, probe(f"w{i}", namespace, driver, intent="on"))
    for i in range(6):
        wait_for(partial(status_is, client, namespace, f"w{i}", "on"), 60, f"w{i} to converge")
    text = subprocess.run(["kubectl", "--kubeconfig", str(manager.space.kubeconfig), "get", "--raw", "/metrics"],
                          check=True, capture_output=True, text=True).stdout
    watches = sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                  if s.name == "apiserver_longrunning_requests"
                  and s.labels.get("resource") == "probes" and s.labels.get("verb") == "WATCH")
    assert watches == 1, f"{watches} watches on probes for 6+ probe digis: informers must be shared per kind"


def test_reconnect_resyncs_with_the_last_model_sent_as_old(manager: ManagerProcess, client: Client, namespace: str) -> None:
    client.create(PROBE_GVR, namespace, probe("r1", namespace, None))  # no driver: this test is the worker
    env = WorkerEnv(manager.url, _token(manager, namespace, "r1"), "test.digi.dev", "v1", "probes", "Probe",
                    "r1", namespace)

    def receive_one() -> dict[str, Any]:
        with connect(events_url(env), additional_headers=env.headers, proxy=None) as ws:
            return dict(json.loads(ws.recv(timeout=10)))

    first = wait_for(receive_one, 30, "the first resync")
    assert first["type"] == "MODEL" and first["old"] is None
    set_intent(client, namespace, "r1", "on")  # while disconnected
    wait_for(lambda: client.get(PROBE_GVR, namespace, "r1")["metadata"]["resourceVersion"]
             != first["object"]["metadata"]["resourceVersion"], 10, "the patch")
    second = wait_for(lambda: (m := receive_one())["object"]["spec"]["control"]["power"]["intent"] == "on" and m,
                      30, "a resync carrying the change")
    assert second["old"]["metadata"]["resourceVersion"] == first["object"]["metadata"]["resourceVersion"]

    with connect(events_url(env), additional_headers=env.headers, proxy=None) as ws:
        ws.recv(timeout=10)  # the resync
        set_intent(client, namespace, "r1", "off")
        live = json.loads(ws.recv(timeout=10))
    assert live["object"]["spec"]["control"]["power"]["intent"] == "off"
    assert live["old"]["spec"]["control"]["power"]["intent"] == "on", "events carry the previous model"


def test_a_forged_token_cannot_open_another_digis_stream(manager: ManagerProcess, client: Client, namespace: str) -> None:
    client.create(PROBE_GVR, namespace, probe("s1", namespace, None))
    env = WorkerEnv(manager.url, _token(manager, namespace, "other"), "test.digi.dev", "v1", "probes", "Probe",
                    "s1", namespace)
    with pytest.raises(InvalidStatus) as refused, connect(events_url(env), additional_headers=env.headers, proxy=None):
        pass
    assert refused.value.response.status_code == 403
