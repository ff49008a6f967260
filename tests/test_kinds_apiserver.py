"""Generated CRDs on the real API server of the `space` fixture: accepted, and nothing pruned.

For every kind of the original project (tests/data/kinds/mock) and ours
(digis/*), `digi gen` runs on a copy of the kind directory, `kubectl apply`
installs the CRD, and the kind's `deploy/cr.yaml` (name filled in) is created
and read back; its spec must come back field for field. Extra tests fill the
free-form parts (mount replicas, openapi objects, reflexes, obs.reason) with
fields no schema names, and check a field outside the schema *is* pruned, so
the comparison is known to detect pruning.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kubernetes import client
from kubernetes.client.rest import ApiException

from digi.cli.kinds_cmd import gen_cmd
from digi.kinds import CR_TEMPLATE, Kind, load_kind, render_cr
from digi.space import Space

MOCKS = Path(__file__).resolve().parent / "data" / "kinds" / "mock"
DIGIS = Path(__file__).resolve().parents[1] / "digis"
KIND_DIRS = sorted(MOCKS.iterdir()) + sorted(p for p in DIGIS.iterdir() if (p / "model.yaml").is_file())


def kubectl(space: Space, *args: str) -> str:
    result = subprocess.run(["kubectl", "--kubeconfig", str(space.kubeconfig), *args],
                            capture_output=True, text=True, env=space.env(), timeout=120)
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every leaf; empty dicts and lists count as leaves."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def assert_nothing_pruned(sent: dict[str, Any], got: dict[str, Any]) -> None:
    expected, actual = dict(leaves(sent)), dict(leaves(got))
    missing = {p: v for p, v in expected.items() if p not in actual}
    changed = {p: (v, actual[p]) for p, v in expected.items() if p in actual and actual[p] != v}
    assert not missing and not changed, f"pruned: {missing}; changed: {changed}"
    assert got == sent


def install(space: Space, kind_dir: Path, work: Path) -> Kind:
    """`digi gen` on a copy of the kind directory, then `kubectl apply` the CRD and wait for it."""
    copy = work / kind_dir.name
    shutil.copytree(kind_dir, copy, ignore=shutil.ignore_patterns("crd.yaml", "driver"))
    result = CliRunner().invoke(gen_cmd, [str(copy)])
    assert result.exit_code == 0, result.output
    kind = load_kind(copy)
    kubectl(space, "apply", "-f", str(copy / "crd.yaml"))
    kubectl(space, "wait", "--for=condition=Established", f"crd/{kind.crd_name}", "--timeout=60s")
    return kind


def create(kube: client.ApiClient, kind: Kind, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Create the object and read it back; retries while the new resource is not served yet."""
    api = client.CustomObjectsApi(kube)
    for attempt in range(50):
        try:
            api.create_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, obj)
            break
        except ApiException as e:
            if e.status != 404 or attempt == 49:
                raise
            time.sleep(0.2)
    got = api.get_namespaced_custom_object(kind.group, kind.version, namespace, kind.plural, obj["metadata"]["name"])
    assert isinstance(got, dict)
    return got


@pytest.mark.slow
@pytest.mark.parametrize("kind_dir", KIND_DIRS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_generated_crd_is_accepted_and_cr_comes_back_whole(
        space: Space, kube: client.ApiClient, namespace: str, kind_dir: Path, tmp_path: Path) -> None:
    kind = install(space, kind_dir, tmp_path)
    crd = client.ApiextensionsV1Api(kube).read_custom_resource_definition(kind.crd_name)
    assert crd.metadata is not None and (crd.metadata.labels or {}).get("digi.dev/kind") == "true"
    obj = render_cr((kind_dir / CR_TEMPLATE).read_text(), f"{kind.singular}-1", namespace)
    got = create(kube, kind, namespace, obj)
    assert_nothing_pruned(obj["spec"], got["spec"])


def free_form_spec() -> dict[str, Any]:
    replica = {
        "mode": "hide", "status": "active", "generation": 7,
        "spec": {"control": {"power": {"intent": "on", "status": "on"}},
                 "anything": {"deep": [1, {"x": "y"}], "n": None}},
    }
    return {
        "meta": {"managed": True, "gen_interval": 2, "seed": 1},
        "obs": {"human_presence": True, "reason": "handler h failed: ValueError: x"},
        "mount": {"mock.digi.dev/v1/lamps": {"default/l1": replica},
                  "mock.digi.dev/v1/scenes": {"other/s1": {"mode": "expose", "status": "inactive", "spec": {}}}},
        "egress": {"occupancy": {"flow": "cut occupancy", "de_id": {"fields": ["name"]}, "link": "x"}},
        "reflex": {"dim": {"policy": ".control.brightness.intent = 0.1", "processor": "jq", "priority": 2}},
    }


@pytest.mark.slow
def test_free_form_subtrees_are_kept(space: Space, kube: client.ApiClient, namespace: str, tmp_path: Path) -> None:
    room = install(space, MOCKS / "room", tmp_path)
    obj: dict[str, Any] = {"apiVersion": room.api_version, "kind": room.kind, "metadata": {"name": "r1"},
                           "spec": free_form_spec()}
    got = create(kube, room, namespace, obj)
    assert_nothing_pruned(obj["spec"], got["spec"])

    home = install(space, MOCKS / "home", tmp_path)
    rooms = {"kitchen": {"objects": [{"class": "human", "name": "alice", "seen_at": 3}],
                         "brightness": 0.5, "mode": "work", "note": "free"}}
    obj = {"apiVersion": home.api_version, "kind": home.kind, "metadata": {"name": "h1"},
           "spec": {"control": {"mode": {"intent": "work"}}, "obs": {"rooms": rooms}}}
    assert_nothing_pruned(obj["spec"], create(kube, home, namespace, obj)["spec"])


@pytest.mark.slow
def test_fields_outside_the_schema_are_pruned(
        space: Space, kube: client.ApiClient, namespace: str, tmp_path: Path) -> None:
    lamp = install(space, DIGIS / "lamp", tmp_path)
    obj = render_cr((DIGIS / "lamp" / CR_TEMPLATE).read_text(), "l-extra", namespace)
    obj["spec"]["control"]["power"]["bogus"] = 1
    got = create(kube, lamp, namespace, obj)
    assert "bogus" not in got["spec"]["control"]["power"]
    with pytest.raises(AssertionError, match=r"pruned: \{'control.power.bogus': 1\}"):
        assert_nothing_pruned(obj["spec"], got["spec"])


@pytest.mark.slow
def test_kubectl_get_shows_control_columns(space: Space, kube: client.ApiClient, namespace: str,
                                           tmp_path: Path) -> None:
    kind_dir = tmp_path / "gadget"
    kind_dir.mkdir()
    (kind_dir / "model.yaml").write_text(
        "group: mock.digi.dev\nversion: v1\nkind: Gadget\n"
        "control:\n  power: string\n  brightness: number\n  cfg: object\n  mode: string\n  set-point: integer\n")
    gadget = install(space, kind_dir, tmp_path / "gen")
    control = {"power": {"intent": "on", "status": "off"}, "brightness": {"intent": 0.5, "status": 0.25},
               "cfg": {"intent": {"x": 1}}, "mode": {"intent": "work", "status": "idle"},
               "set-point": {"intent": 21, "status": 19}}
    create(kube, gadget, namespace, {"apiVersion": gadget.api_version, "kind": gadget.kind,
                                     "metadata": {"name": "g1"}, "spec": {"control": control}})

    def table(*extra: str) -> dict[str, str]:
        # A list of a resource established a moment ago can still come back empty
        # (the server's cache of the new resource catches up), so wait for the row. The
        # resource is named with its group: another test's kind is also called `gadgets`.
        for _ in range(50):
            lines = kubectl(space, "get", gadget.crd_name, "-n", namespace, *extra).splitlines()
            if lines:
                break
            time.sleep(0.2)
        header, row = lines
        return dict(zip(header.split(), row.split(), strict=True))

    shown = table()
    assert shown.pop("AGE")
    assert shown == {"NAME": "g1", "POWER": "off", "POWER-INTENT": "on", "BRIGHTNESS": "0.25",
                     "BRIGHTNESS-INTENT": "0.5", "MODE": "idle", "MODE-INTENT": "work"}
    wide = table("-o", "wide")
    assert (wide["SET-POINT"], wide["SET-POINT-INTENT"]) == ("19", "21")
