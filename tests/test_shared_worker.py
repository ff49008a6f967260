"""Shared workers end to end: a real API server, a real manager, the real engine.

The `SharedProbe` kind's CRD carries `digi.dev/worker-mode: shared`, so the
manager's local backend runs one `python -m digi.worker` process per
namespace hosting every SharedProbe there. Its driver (below) is written with
`digi.on`: status follows intent, `obs.pid` says which process reconciled the
digi, and `meta.target` makes it try to patch another digi with the token the
shared worker holds for *this* digi, recording the HTTP status in
`obs.attack`. Each test uses its own namespace, hence its own shared worker.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from click.testing import CliRunner
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from digi.cli.main import cli
from digi.engine import Engine, Registry
from digi.worker.client import WorkerEnv
from digi.worker.shared import SharedWorker, shared_url
from manager.cache import CRD_GVR, crd_gvr
from manager.kube import Client
from manager.server.tokens import TokenIssuer
from manager.types import GVR, ObjectKey
from manager.workers.base import RUNNING, WorkerSpec, pool_id
from manager.workers.local import _Pool, worker_files
from tests.manager_fixtures import ManagerProcess, probe_crd, wait_for

pytestmark = pytest.mark.slow

GVR_ = GVR("test.digi.dev", "v1", "sharedprobes")

DRIVER = textwrap.dedent('''
    """SharedProbe driver: status follows intent; optional attack on another digi."""
    import os

    import httpx

    import digi
    import digi.on as on
    from digi.engine.current import current_engine


    @on.control("power")
    def follow(p, obs):
        if "intent" in p:
            p["status"] = p["intent"]
        obs["pid"] = os.getpid()


    @on.meta
    def attack(meta, obs):
        target = meta.get("target")
        if not target or obs.get("attack_target") == target:
            return
        env = current_engine().client.env  # the token this process holds for *this* digi
        ns, name = target.split("/")
        r = httpx.patch(f"{env.manager_url}/api/v1/digis/{ns}/{name}", params={"gvr": env.gvr}, headers=env.headers,
                        json={"patch": {"spec": {"control": {"power": {"status": "hacked"}}}}}, trust_env=False)
        obs["attack"] = r.status_code
        obs["attack_target"] = target


    if __name__ == "__main__":
        digi.run()
''')


def shared_crd() -> dict[str, Any]:
    crd = probe_crd()
    crd["metadata"]["name"] = "sharedprobes.test.digi.dev"
    crd["metadata"]["annotations"] = {"digi.dev/worker-mode": "shared"}
    crd["spec"]["names"] = {"kind": "SharedProbe", "plural": "sharedprobes", "singular": "sharedprobe",
                            "listKind": "SharedProbeList"}
    return crd


@pytest.fixture(scope="module")
def client(space: Any) -> Client:
    c = Client.from_kubeconfig(space.kubeconfig)
    if c.get_or_none(CRD_GVR, None, "sharedprobes.test.digi.dev") is None:
        c.create(CRD_GVR, None, shared_crd())
    wait_for(lambda: crd_gvr(c.get(CRD_GVR, None, "sharedprobes.test.digi.dev")), 30, "the CRD to be established")
    return c


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("shared-kind") / "driver"
    d.mkdir()
    (d / "handler.py").write_text(DRIVER)
    return d


@pytest.fixture(scope="module")
def manager(space: Any, client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagerProcess]:
    mgr = ManagerProcess(space, tmp_path_factory.mktemp("shared-manager")).start()
    try:
        yield mgr
    finally:
        code = mgr.stop()
        assert code == 0, f"manager exited {code} on SIGTERM:\n{mgr.log()[-3000:]}"


def create(client: Client, namespace: str, name: str, driver: Path | None, intent: str = "off", **meta: Any) -> None:
    annotations = {"digi.dev/driver-dir": str(driver)} if driver else {}
    client.create(GVR_, namespace, {
        "apiVersion": "test.digi.dev/v1", "kind": "SharedProbe",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"control": {"power": {"intent": intent}}, "meta": meta},
    })


def spec(client: Client, namespace: str, name: str) -> dict[str, Any]:
    return dict(client.get(GVR_, namespace, name)["spec"])


def status_is(client: Client, namespace: str, name: str, want: str) -> bool:
    return spec(client, namespace, name)["control"]["power"].get("status") == want


def set_intent(client: Client, namespace: str, name: str, intent: str) -> None:
    client.patch(GVR_, namespace, name, {"spec": {"control": {"power": {"intent": intent}}}})


def member_state(manager: ManagerProcess, namespace: str, name: str) -> dict[str, Any]:
    return dict(json.loads(worker_files(manager.root, namespace, "sharedprobes", name)[1].read_text()))


def pool_state(manager: ManagerProcess, namespace: str, driver: Path) -> dict[str, Any]:
    path = worker_files(manager.root, namespace, "sharedprobes", pool_id(str(driver)))[1]
    return dict(json.loads(path.read_text()))


def converge(client: Client, namespace: str, names: list[str], want: str, what: str) -> None:
    for name in names:
        wait_for(partial(status_is, client, namespace, name, want), 60, f"{name} {what}")


def digi_cli(manager: ManagerProcess, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--root", str(manager.root), "--kubeconfig", str(manager.space.kubeconfig),
                                      *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_one_process_hosts_the_kind_and_converges(
    manager: ManagerProcess, client: Client, driver: Path, namespace: str
) -> None:
    names = [f"s{i}" for i in range(5)]
    for name in names:
        create(client, namespace, name, driver)
    converge(client, namespace, names, "off", "the first reconcile")
    pids = {spec(client, namespace, n)["obs"]["pid"] for n in names}
    pool = pool_state(manager, namespace, driver)
    assert pids == {pool["pid"]}, "every digi of the kind is reconciled by the one shared worker"
    assert pool["state"] == "running" and pool["members"] == len(names)
    for name in names:
        state = member_state(manager, namespace, name)
        assert state["shared"] == pool_id(str(driver)) and state["pid"] == pool["pid"]
    for name in names:
        set_intent(client, namespace, name, "on")
    converge(client, namespace, names, "on", "to follow intent 'on'")
    rows = [line.split() for line in digi_cli(manager, "list", "-n", namespace).splitlines()[1:]]
    assert sorted((r[1], r[3]) for r in rows) == [(n, "running") for n in names]
    assert f"hosting digi {namespace}/s3" in digi_cli(manager, "log", "s3", "-n", namespace), \
        "a member's log is the shared worker's"


def test_a_hosted_digi_cannot_write_another_digi(
    manager: ManagerProcess, client: Client, driver: Path, namespace: str
) -> None:
    create(client, namespace, "victim", driver)
    converge(client, namespace, ["victim"], "off", "the victim's first reconcile")
    # The attacker lives in the same process, which holds the victim's token too: still refused.
    create(client, namespace, "attacker", driver, target=f"{namespace}/victim")
    obs = wait_for(lambda: spec(client, namespace, "attacker").get("obs", {}).get("attack"), 60,
                   "the attacker to record its attempt")
    assert obs == 403
    assert spec(client, namespace, "victim")["control"]["power"]["status"] == "off"
    assert f"{namespace}/attacker tried to patch digi {namespace}/victim" in manager.log()

    tokens = TokenIssuer.from_file(manager.root / "manager" / "worker-token.secret")
    pool_token = tokens.pool_token(namespace, GVR_, pool_id(str(driver)))
    forged = httpx.patch(f"{manager.url}/api/v1/digis/{namespace}/victim", params={"gvr": str(GVR_)},
                         headers={"Authorization": f"Bearer {pool_token}"},
                         json={"patch": {"spec": {"meta": {"x": 1}}}}, trust_env=False)
    assert forged.status_code == 403, "the pool's token opens its stream only, it writes no digi"

    victim_token = tokens.token(ObjectKey(GVR_, namespace, "victim"))
    victim_env = WorkerEnv(manager.url, victim_token, GVR_.group, GVR_.version, GVR_.plural, "SharedProbe", "", namespace)
    with pytest.raises(InvalidStatus) as refused, \
            connect(shared_url(victim_env, pool_id(str(driver))), additional_headers=victim_env.headers, proxy=None):
        pass
    assert refused.value.response.status_code == 403, "a digi's token does not open its shared worker's stream"


def test_killed_shared_worker_restarts_and_resyncs_every_digi(
    manager: ManagerProcess, client: Client, driver: Path, namespace: str
) -> None:
    names = [f"k{i}" for i in range(3)]
    for name in names:
        create(client, namespace, name, driver)
    converge(client, namespace, names, "off", "the first reconcile")
    pid = int(pool_state(manager, namespace, driver)["pid"])
    os.kill(pid, signal.SIGKILL)
    for name in names:
        set_intent(client, namespace, name, "on")
    wait_for(lambda: all(member_state(manager, namespace, n).get("restarts") == 1 for n in names), 30,
             "the restart to be counted on every member")
    converge(client, namespace, names, "on", "to converge after the restart")
    new_pid = pool_state(manager, namespace, driver)["pid"]
    assert new_pid != pid and {spec(client, namespace, n)["obs"]["pid"] for n in names} == {new_pid}


def test_digis_join_and_leave_the_running_shared_worker(
    manager: ManagerProcess, client: Client, driver: Path, namespace: str
) -> None:
    create(client, namespace, "first", driver)
    create(client, namespace, "second", driver)
    converge(client, namespace, ["first", "second"], "off", "the first reconcile")
    pid = pool_state(manager, namespace, driver)["pid"]

    create(client, namespace, "late", driver, intent="on")
    converge(client, namespace, ["late"], "on", "the late digi to be reconciled")
    assert spec(client, namespace, "late")["obs"]["pid"] == pid, "a new digi joins the running process"

    client.delete(GVR_, namespace, "first")
    wait_for(lambda: member_state(manager, namespace, "first")["state"] == "stopped", 30, "'first' to leave")
    wait_for(lambda: pool_state(manager, namespace, driver)["members"] == 2, 30, "the pool to count 2 members")
    assert "no longer hosting digi" in worker_files(manager.root, namespace, "sharedprobes",
                                                    pool_id(str(driver)))[0].read_text()
    set_intent(client, namespace, "second", "on")
    converge(client, namespace, ["second"], "on", "the remaining digi to keep converging")
    assert pool_state(manager, namespace, driver)["pid"] == pid, "a leaving digi does not restart the others"

    client.delete(GVR_, namespace, "second")
    client.delete(GVR_, namespace, "late")
    wait_for(lambda: pool_state(manager, namespace, driver)["state"] == "stopped", 30,
             "the shared worker to stop with its last digi")


def test_switching_a_kind_to_shared_moves_its_running_digis(
    manager: ManagerProcess, client: Client, driver: Path, namespace: str
) -> None:
    crd = shared_crd()
    crd["metadata"] = {"name": "switchprobes.test.digi.dev", "labels": crd["metadata"]["labels"]}
    crd["spec"]["names"] = {"kind": "SwitchProbe", "plural": "switchprobes", "singular": "switchprobe",
                            "listKind": "SwitchProbeList"}
    switch = GVR("test.digi.dev", "v1", "switchprobes")
    if client.get_or_none(CRD_GVR, None, crd["metadata"]["name"]) is None:
        client.create(CRD_GVR, None, crd)
    wait_for(lambda: crd_gvr(client.get(CRD_GVR, None, crd["metadata"]["name"])), 30, "the CRD to be established")

    def pid_of(name: str, intent: str) -> int | None:
        power_spec = client.get(switch, namespace, name)["spec"]
        return power_spec["obs"]["pid"] if power_spec["control"]["power"].get("status") == intent else None

    for name in ("a", "b"):
        client.create(switch, namespace, {
            "apiVersion": "test.digi.dev/v1", "kind": "SwitchProbe",
            "metadata": {"name": name, "namespace": namespace, "annotations": {"digi.dev/driver-dir": str(driver)}},
            "spec": {"control": {"power": {"intent": "off"}}},
        })
    own = {wait_for(partial(pid_of, n, "off"), 60, f"{n}'s own worker") for n in ("a", "b")}
    assert len(own) == 2, "without the annotation each digi has a process of its own"

    client.patch(CRD_GVR, None, crd["metadata"]["name"], {"metadata": {"annotations": {"digi.dev/worker-mode": "shared"}}})
    files = partial(worker_files, manager.root, namespace, "switchprobes")
    wait_for(lambda: all(json.loads(files(n)[1].read_text()).get("shared") for n in ("a", "b")), 30,
             "both digis to join a shared worker")
    for name in ("a", "b"):
        client.patch(switch, namespace, name, {"spec": {"control": {"power": {"intent": "on"}}}})
    shared = {wait_for(partial(pid_of, n, "on"), 60, f"{n} in the shared worker") for n in ("a", "b")}
    assert len(shared) == 1 and not shared & own
    client.delete(CRD_GVR, None, crd["metadata"]["name"])


def test_pool_state_survives_members_joining_while_the_supervisor_writes(tmp_path: Path) -> None:
    """The pool's state file is written from the supervisor and from joining members at once;
    a shared temp file used to make one rename fail, killing the supervisor thread (CI saw the
    shared worker never start). No process is started here: the writers are called directly."""
    pool = _Pool(WorkerSpec(ObjectKey(GVR_, "ns", "m0"), "SharedProbe", {}, driver_dir=str(tmp_path),
                            pool="_shared-x"), tmp_path, lambda *_: None)
    errors: list[BaseException] = []

    def run(fn: Any) -> None:
        try:
            for _ in range(100):
                fn()
        except BaseException as e:  # any failure of a writer is the finding
            errors.append(e)

    writers = [threading.Thread(target=run, args=(partial(pool._set, RUNNING),))] + [
        threading.Thread(target=run, args=(partial(pool.join, WorkerSpec(
            ObjectKey(GVR_, "ns", f"m{i}"), "SharedProbe", {}, driver_dir=str(tmp_path), pool="_shared-x")),))
        for i in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    assert errors == []
    assert json.loads(pool.state_path.read_text())["members"] == 4


def test_models_arriving_while_a_digi_is_busy_join_one_batch() -> None:
    """The shared worker's queueing, in process: the recorder stands in for a digi's Engine
    (whose batch handling tests/test_engine.py covers) so the test sees which events reach it."""
    entered, release, batches = threading.Event(), threading.Event(), []

    class Recorder:
        def handle_batch(self, events: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
            batches.append([obj["v"] for obj, _ in events])
            entered.set()
            release.wait(10)

    env = WorkerEnv("http://127.0.0.1:9", "pool-token", "test.digi.dev", "v1", "probes", "Probe", "", "ns")
    worker = SharedWorker(Registry(), env, threads=1)
    worker.engines[("ns", "a")] = ("t", cast(Engine, Recorder()))

    def model(v: int) -> dict[str, Any]:
        return {"type": "MODEL", "namespace": "ns", "name": "a", "object": {"v": v}, "old": None}

    try:
        worker.on_messages([model(1)])
        assert entered.wait(10)  # batch [1] runs and blocks; what comes now waits behind it
        worker.on_messages([model(2), model(3)])
        # A step of another type ends the batch: the MODEL after it must not run before it.
        worker.on_message({"type": "ASSIGN", "namespace": "ns", "name": "a", "token": "t"})
        worker.on_messages([model(4)])
        release.set()
        wait_for(lambda: len(batches) == 3, 10, "three batches")
        assert batches == [[1], [2, 3], [4]]
    finally:
        release.set()
        worker.close()
