"""The driver engine's reconcile cycle (spec §4.3), fed model events directly.

The engine writes through `digi.engine.MemoryModelClient`, an in-process
ModelClient with the API server's resourceVersion/generation/409 behaviour.
That client is the engine's transport seam (what `digi.worker` implements
over HTTP), not a mock of Kubernetes: the cycle's logic — ordering,
conditions, skipping its own writes, re-running pending handlers after a lost
write — is exercised exactly as in a worker. `Harness.pump` delivers every
stored version in order with the previous one as `old`, as the manager does.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import digi
from digi.engine import Engine, MemoryModelClient, Registry
from digi.engine.handlers import ALIASES, POSITIONAL, parse_path
from digi.errors import Conflict, DigiError


class Harness:
    def __init__(self, registry: Registry, spec: dict[str, Any]) -> None:
        self.client = MemoryModelClient({
            "apiVersion": "mock.digi.dev/v1", "kind": "Room",
            "metadata": {"name": "r1", "namespace": "default"}, "spec": spec,
        })
        self.engine = Engine(registry, self.client, name="default/r1")
        self.delivered = 0

    def pump(self) -> None:
        while self.delivered < len(self.client.history):
            obj = self.client.history[self.delivered]
            old = self.client.history[self.delivered - 1] if self.delivered else None
            self.delivered += 1
            self.engine.handle(obj, old)

    def user(self, patch: dict[str, Any]) -> None:
        self.client.update_spec(patch)
        self.pump()

    @property
    def spec(self) -> dict[str, Any]:
        return self.client.get()["spec"]


def lamp_spec() -> dict[str, Any]:
    return {"control": {"power": {"intent": "off"}, "brightness": {"intent": 0.5}}, "meta": {"x": 0}}


def test_handlers_run_in_ascending_priority_and_negative_is_disabled() -> None:
    reg, calls = Registry(), []
    for name, prio in (("late", 2), ("first", 0), ("never", -1), ("mid", 1), ("first_b", 0)):
        def fn(sv: Any, _n: str = name) -> None:
            calls.append(_n)
        fn.__name__ = name
        reg.add(fn, ("control",), priority=prio)
    h = Harness(reg, lamp_spec())
    h.pump()
    assert calls == ["first", "first_b", "mid", "late"]


def test_default_condition_is_subtree_changed() -> None:
    reg, calls = Registry(), []
    reg.add(lambda sv: calls.append(dict(sv)), ("control", "power"))
    h = Harness(reg, lamp_spec())
    h.pump()  # the first event has no previous model: an empty diff counts as changed
    assert calls == [{"intent": "off"}]
    h.user({"meta": {"x": 1}})
    h.user({"control": {"brightness": {"intent": 0.7}}})
    assert len(calls) == 1
    h.user({"control": {"power": {"intent": "on"}}})
    assert calls[-1] == {"intent": "on"}
    h.user({"control": None})  # a change above the subtree counts too
    assert len(calls) == 3


def test_a_new_engine_runs_every_handler_on_its_first_event() -> None:
    reg, calls = Registry(), []
    reg.add(lambda meta: calls.append("meta"), ("meta",))
    h = Harness(reg, lamp_spec())
    h.client.update_spec({"control": {"power": {"intent": "on"}}})
    # A restarted worker: the manager resyncs with the last model it sent as `old`.
    h.engine.handle(h.client.history[-1], h.client.history[0])
    assert calls == ["meta"]
    h.client.update_spec({"control": {"power": {"intent": "off"}}})
    h.engine.handle(h.client.history[-1], h.client.history[-2])
    assert calls == ["meta"]


def test_custom_condition() -> None:
    reg, calls = Registry(), []
    reg.add(lambda meta: calls.append(meta["x"]), ("meta",), condition=lambda pv, diff, path: pv["meta"]["x"] > 1)
    h = Harness(reg, lamp_spec())
    h.pump()
    h.user({"meta": {"x": 1}})
    assert calls == []
    h.user({"meta": {"x": 2}})
    h.user({"control": {"power": {"intent": "on"}}})  # condition holds though meta did not change
    assert calls == [2, 2]


def expected_argument(canonical: str, h: Harness, before: dict[str, Any], spec: dict[str, Any]) -> Any:
    return {
        "subview": spec["control"],
        "proc_view": spec,
        "view": spec,
        "old_view": before,
        "mount": spec["mount"],
        "obs": spec["obs"],
        "meta": spec["meta"],
        "typ": None,
    }[canonical]


@pytest.mark.parametrize(("alias", "canonical"),
                         [(a, c) for c, names in ALIASES.items() for a in names], ids=lambda x: x)
def test_every_argument_alias(alias: str, canonical: str) -> None:
    reg, got = Registry(), list[Any]()
    ns: dict[str, Any] = {"got": got}
    exec(f"def handler({alias}):\n    got.append({alias})\n", ns)
    reg.add(ns["handler"], ("control",))
    spec = {**lamp_spec(), "obs": {"seen": True},
            "mount": {"mock.digi.dev/v1/lamps": {"default/l1": {"spec": {"control": {}}}}}}
    h = Harness(reg, spec)
    h.pump()
    before = h.spec
    h.user({"control": {"power": {"intent": "on"}}, "mount": {"mock.digi.dev/v1/lamps": {
        "default/l1": {"spec": {"control": {"power": {"intent": "on"}}}}}}})
    value = got[-1]
    if canonical == "diff":
        assert ("change", ("spec", "control", "power", "intent"), "off", "on") in value
    elif canonical == "back_prop":
        assert value == [("add", ("spec", "mount", "mock.digi.dev/v1/lamps", "default/l1", "spec", "control",
                                  "power"), None, {"intent": "on"})]
    else:
        assert value == expected_argument(canonical, h, before, h.spec)


def test_positional_fallback_order() -> None:
    reg, got = Registry(), dict[str, Any]()

    def handler(a, b, c, d, e, f, g, h, i):  # type: ignore[no-untyped-def]
        got.update(zip(POSITIONAL, (a, b, c, d, e, f, g, h, i), strict=True))

    reg.add(handler, ("meta",))
    h = Harness(reg, {**lamp_spec(), "obs": {"o": 1}, "mount": {}})
    h.pump()
    spec = h.spec
    assert got["subview"] == spec["meta"] and got["proc_view"] == spec and got["view"] == spec
    assert got["old_view"] == {} and got["mount"] == {} and got["obs"] == {"o": 1}
    assert got["back_prop"] == [] and got["diff"] == [] and got["meta"] == spec["meta"]


def test_named_parameters_override_position_and_unknown_required_parameter_is_refused() -> None:
    reg, got = Registry(), dict[str, Any]()

    def handler(meta, sv):  # type: ignore[no-untyped-def]
        got.update(meta=meta, sv=sv)

    reg.add(handler, ("control",))
    Harness(reg, lamp_spec()).pump()
    assert got == {"meta": {"x": 0}, "sv": lamp_spec()["control"]}
    with pytest.raises(DigiError, match="'x' is not a known argument"):
        reg.add(lambda *, x: None, ("control",))


def test_mutations_are_written_once_and_missing_subtrees_attached() -> None:
    reg = Registry()

    def do_power(p):  # type: ignore[no-untyped-def]
        p["status"] = p["intent"]

    def do_obs(obs):  # type: ignore[no-untyped-def]
        obs["lamps"] = 1

    reg.add(do_power, ("control", "power"))
    reg.add(do_obs, ("control",))
    h = Harness(reg, lamp_spec())
    h.pump()
    assert h.spec["control"]["power"]["status"] == "off"
    assert h.spec["obs"] == {"lamps": 1}
    assert len(h.client.history) == 2  # the start event, then exactly one write


def test_own_write_is_skipped_and_do_not_skip_processes_it() -> None:
    reg, calls = Registry(), []

    def count(pv):  # type: ignore[no-untyped-def]
        calls.append(1)
        pv.setdefault("obs", {})["n"] = len(calls)

    reg.add(count, ())
    h = Harness(reg, lamp_spec())
    h.pump()
    assert len(calls) == 1 and h.spec["obs"]["n"] == 1
    assert h.delivered == len(h.client.history) == 2  # the own write was delivered, and skipped

    reg2, calls2 = Registry(), []

    def again(pv):  # type: ignore[no-untyped-def]
        calls2.append(1)
        pv.setdefault("obs", {})["n"] = len(calls2)
        if len(calls2) == 1:
            digi.rc.do_not_skip()

    reg2.add(again, ())
    h2 = Harness(reg2, lamp_spec())
    h2.pump()
    assert len(calls2) == 2 and h2.spec["obs"]["n"] == 2


def test_lost_write_reruns_pending_handlers_on_the_newer_model_at_once() -> None:
    reg, runs = Registry(), []

    def do_power(p):  # type: ignore[no-untyped-def]
        runs.append(p.get("intent"))
        p["status"] = p["intent"]

    reg.add(do_power, ("control", "power"))
    h = Harness(reg, lamp_spec())
    h.pump()
    # Two writes land before the driver sees the first: its write on the first is refused (409).
    h.client.update_spec({"control": {"power": {"intent": "on"}}})
    h.client.update_spec({"meta": {"x": 5}})
    h.delivered += 1
    h.engine.handle(h.client.history[h.delivered - 1], h.client.history[h.delivered - 2])
    # It re-read the newer model (a meta-only change, where do_power's condition is false)
    # and ran the pending handler there, without waiting for another event.
    assert h.client.conflicts == 1 and h.engine.pending == []
    assert runs == ["off", "on", "on"]
    assert h.spec["control"]["power"]["status"] == "on"
    h.pump()  # the event of the model it re-read, and of its own write: nothing left to do
    assert runs == ["off", "on", "on"]


def test_write_lost_to_a_metadata_only_change_still_runs_its_handlers() -> None:
    """A write that changes no spec (labels, annotations, finalizers) keeps the generation; the
    handlers whose write lost to it must still run on the re-read model, not be skipped as
    "already reconciled" (an intent lost this way never reached the device)."""
    reg, runs = Registry(), []

    def do_power(p):  # type: ignore[no-untyped-def]
        runs.append(p.get("intent"))
        p["status"] = p["intent"]

    reg.add(do_power, ("control", "power"))
    h = Harness(reg, lamp_spec())
    h.pump()
    h.client.update_spec({"control": {"power": {"intent": "on"}}})
    # Before the driver sees the intent, another writer changes something outside spec.
    h.client.patch({"status": {"observed": True}})
    generations = [o["metadata"]["generation"] for o in h.client.history[-2:]]
    assert generations[0] == generations[1]
    h.delivered += 1
    h.engine.handle(h.client.history[h.delivered - 1], h.client.history[h.delivered - 2])
    assert h.client.conflicts == 1 and h.engine.pending == []
    assert h.spec["control"]["power"]["status"] == "on"
    h.pump()
    assert runs == ["off", "on", "on"]


def test_lost_write_waits_for_the_next_event_when_the_model_cannot_be_re_read() -> None:
    class Unreadable(MemoryModelClient):
        def get(self) -> dict[str, Any]:
            raise DigiError("manager unreachable")

    reg, runs = Registry(), []

    def do_power(p):  # type: ignore[no-untyped-def]
        runs.append(p.get("intent"))
        p["status"] = p["intent"]

    reg.add(do_power, ("control", "power"))
    client = Unreadable({"metadata": {}, "spec": lamp_spec()})
    engine = Engine(reg, client)
    first = client.update_spec({"control": {"power": {"intent": "on"}}})
    client.update_spec({"meta": {"x": 5}})
    engine.handle(first, None)
    assert client.conflicts == 1 and engine.pending == ["do_power"]
    engine.handle(client.history[-1], first)  # the next event runs the pending handler
    assert engine.pending == [] and runs == ["on", "on"]


def test_handler_error_is_logged_stops_the_cycle_and_shows_on_obs_reason(caplog: pytest.LogCaptureFixture) -> None:
    reg, after = Registry(), []
    state = {"fail": True}

    def first(pv):  # type: ignore[no-untyped-def]
        pv["meta"]["first"] = True

    def boom(pv):  # type: ignore[no-untyped-def]
        pv["meta"]["half_done"] = True
        if state["fail"]:
            raise ValueError("lamp unreachable")

    reg.add(first, ("control",), priority=0)
    reg.add(boom, ("control",), priority=1)
    reg.add(lambda pv: after.append(1), ("control",), priority=2)
    h = Harness(reg, lamp_spec())
    with caplog.at_level(logging.ERROR, logger="digi.engine"):
        h.pump()
    record = next(r for r in caplog.records if "handler boom failed" in r.getMessage())
    assert record.exc_info is not None and "lamp unreachable" in caplog.text and "Traceback" in caplog.text
    assert after == []
    assert h.spec["obs"]["reason"] == "handler boom failed: ValueError: lamp unreachable"
    assert h.spec["meta"]["first"] is True and "half_done" not in h.spec["meta"]
    # The driver keeps running: the next event runs again, and a success clears the reason.
    state["fail"] = False
    h.user({"control": {"power": {"intent": "on"}}})
    assert after == [1] and "reason" not in h.spec.get("obs", {}) and h.spec["meta"]["half_done"] is True


def test_write_errors_other_than_conflict_do_not_escape() -> None:
    class Broken(MemoryModelClient):
        def patch(self, patch: dict[str, Any], *, resource_version: str | None = None) -> dict[str, Any]:
            raise DigiError("manager unreachable")

    reg = Registry()
    reg.add(lambda sv: sv.update(status="x"), ("control", "power"))
    engine = Engine(reg, Broken({"metadata": {}, "spec": lamp_spec()}))
    engine.handle({"metadata": {"generation": 1, "resourceVersion": "1"}, "spec": lamp_spec()}, None)
    assert engine.pending == ["<lambda>"]


def test_reflex_install_replace_reprioritise_and_remove() -> None:
    reg, coded = Registry(), []

    def do_brightness(sv):  # type: ignore[no-untyped-def]
        coded.append("do_brightness")

    def do_other(sv):  # type: ignore[no-untyped-def]
        coded.append("do_other")

    reg.add(do_brightness, ("control",))
    reg.add(do_other, ("control",))
    h = Harness(reg, {**lamp_spec(), "obs": {"motion": False}})
    h.pump()
    assert coded == ["do_brightness", "do_other"]

    motion = "if .obs.motion then .control.brightness.intent = 1 else . end"
    h.user({"reflex": {"motion": {"policy": motion, "processor": "jq", "priority": 0}}})
    h.user({"obs": {"motion": True}})
    assert h.spec["control"]["brightness"]["intent"] == 1

    coded.clear()
    h.user({"reflex": {"do_brightness": {"policy": ".meta.replaced = true", "priority": 0},
                       "do_other": {"priority": -1}}, "control": {"power": {"intent": "on"}}})
    assert coded == [] and h.spec["meta"]["replaced"] is True
    assert [x.name for x in h.engine.handlers()] == ["motion", "do_brightness"]
    assert all(x.reflex for x in h.engine.handlers())

    h.user({"reflex": None, "control": {"power": {"intent": "off"}}})
    assert coded == ["do_brightness", "do_other"]
    assert [x.name for x in h.engine.handlers()] == ["do_brightness", "do_other"]


def test_bad_and_disabled_reflexes_are_reported_without_stopping_coded_handlers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGI_ALLOW_PY_REFLEX", raising=False)
    reg = Registry()
    reg.add(lambda p: p.update(status=p["intent"]), ("control", "power"))
    h = Harness(reg, lamp_spec())
    h.pump()
    h.user({"reflex": {"bad": {"policy": ".a |||", "processor": "jq"}}, "control": {"power": {"intent": "on"}}})
    assert "reflex.bad: jq policy does not compile" in h.spec["obs"]["reason"]
    assert h.spec["control"]["power"]["status"] == "on"
    h.user({"reflex": {"bad": None, "code": {"policy": "model['meta']['py'] = 1", "processor": "py"}}})
    assert "DIGI_ALLOW_PY_REFLEX=1" in h.spec["obs"]["reason"] and "py" not in h.spec["meta"]

    monkeypatch.setenv("DIGI_ALLOW_PY_REFLEX", "1")
    h.user({"reflex": {"code": {"policy": "model['meta']['py'] = 2", "processor": "py"}}})
    assert h.spec["meta"]["py"] == 2 and "reason" not in h.spec["obs"]


def test_jq_reflex_that_does_not_return_an_object_fails_like_a_handler() -> None:
    h = Harness(Registry(), {**lamp_spec(), "reflex": {"r": {"policy": ".meta.x"}}})
    h.pump()
    assert h.spec["obs"]["reason"].startswith("handler r failed: ReflexError")


def test_memory_client_refuses_stale_resource_version() -> None:
    client = MemoryModelClient({"metadata": {}, "spec": {"a": 1}})
    new = client.patch({"spec": {"a": 2}}, resource_version="1")
    assert new["metadata"] == {"resourceVersion": "2", "generation": 2}
    with pytest.raises(Conflict):
        client.patch({"spec": {"a": 3}}, resource_version="1")
    same = client.patch({"spec": {"a": 2}})
    assert same["metadata"]["resourceVersion"] == "2"


@pytest.mark.parametrize(("sub", "path", "typ"), [
    (None, ("mount",), None),
    ("lamps", ("mount", "mock.digi.dev/v1/lamps"), "mock.digi.dev/v1/lamps"),
    ("x.digi.dev/v2/fans.default/f1", ("mount", "x.digi.dev/v2/fans", "default/f1"), "x.digi.dev/v2/fans"),
])
def test_mount_paths(sub: str | None, path: tuple[str, ...], typ: str | None) -> None:
    assert parse_path("mount", sub, "mock.digi.dev", "v1") == (path, typ)


def test_model_and_rc_facades_reach_the_engine_and_are_not_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    reg, seen = Registry(), []
    reg.add(lambda obs: seen.append(dict(obs)), ("obs",))
    h = Harness(reg, {**lamp_spec(), "obs": {"watt": 0}})
    h.pump()
    # What a loader thread does between events: a plain, unguarded write of its own model.
    assert digi.model.patch("obs.watt", 3)["obs"] == {"watt": 3}
    digi.model.patch({"meta": {"x": None}})
    assert digi.model.get()["meta"] == {} and "x" not in h.spec["meta"]
    h.pump()
    assert seen[-1] == {"watt": 3}
    assert digi.rc.view()["obs"] == {"watt": 3}

    monkeypatch.setenv("GROUP", "mock.digi.dev")
    monkeypatch.setenv("PLURAL", "rooms")
    monkeypatch.setenv("NAME", "r1")
    monkeypatch.setenv("NAMESPACE", "default")
    gen = h.client.get()["metadata"]["generation"]
    cur, resp, err = digi.util.check_gen_and_patch_spec("mock.digi.dev", "v1", "rooms", "r1", "default",
                                                        {"meta": {"y": 1}}, gen)
    assert err is None and resp is not None and resp["spec"]["meta"]["y"] == 1
    cur, resp, err = digi.util.check_gen_and_patch_spec("mock.digi.dev", "v1", "rooms", "r1", "default",
                                                        {"meta": {"y": 2}}, gen)
    assert isinstance(err, digi.util.GenerationOutdated) and resp is None and cur == gen + 1
    _, resp, err = digi.util.check_gen_and_patch_spec("mock.digi.dev", "v1", "lamps", "l1", "default", {}, 1)
    assert resp is None and "reaches only its own model" in str(err)


def test_dbox_managed_condition_and_seed() -> None:
    reg, runs = Registry(), []
    reg.add(lambda sv: runs.append(sv.get("intent")), ("control", "power"), condition=digi.dbox.managed)
    h = Harness(reg, {**lamp_spec(), "meta": {"managed": False}})
    h.pump()
    h.user({"meta": {"managed": True}})
    h.user({"control": {"power": {"intent": "on"}}})  # managed: the mock's own handler holds off
    assert runs == ["off"]
    h.user({"meta": {"managed": False}})  # the flip itself runs it
    assert runs == ["off", "on"]

    digi.dbox.seed(42)
    first = [digi.dbox.random.random() for _ in range(3)]
    digi.dbox.seed(7)
    digi.dbox.seed(42)
    assert [digi.dbox.random.random() for _ in range(3)] == first


def test_a_batch_runs_one_cycle_on_the_newest_model_diffed_against_the_model_before_it() -> None:
    reg, power, meta = Registry(), [], []
    reg.add(lambda sv: power.append(sv["intent"]), ("control", "power"))
    reg.add(lambda sv: meta.append(sv["x"]), ("meta",))
    h = Harness(reg, lamp_spec())
    h.pump()
    power.clear(), meta.clear()
    before = len(h.client.history)
    h.client.update_spec({"control": {"power": {"intent": "on"}}})
    h.client.update_spec({"meta": {"x": 1}})
    h.client.update_spec({"meta": {"x": 2}})
    events = [(h.client.history[i], h.client.history[i - 1]) for i in range(before, len(h.client.history))]
    h.delivered = len(h.client.history)
    h.engine.handle_batch(events)
    # The power change was only in the first event: the diff against the model before the
    # batch still has it, so its handler runs — once, on the newest model.
    assert power == ["on"] and meta == [2]


def test_a_batch_holding_the_drivers_own_write_diffs_against_that_write() -> None:
    reg, calls = Registry(), []

    def mirror(sv: Any) -> None:
        calls.append(sv["power"]["intent"])
        sv["power"]["status"] = sv["power"]["intent"]

    reg.add(mirror, ("control",))
    h = Harness(reg, lamp_spec())
    h.pump()  # runs mirror and writes status: the engine's own write
    assert calls == ["off"] and h.spec["control"]["power"]["status"] == "off"
    own = h.client.history[-1]
    h.client.update_spec({"meta": {"x": 1}})  # someone else's change, outside control
    h.engine.handle_batch([(own, h.client.history[-3]), (h.client.history[-1], own)])
    # Diffed against the model before the batch, control would look changed (by the
    # driver's own status write) and mirror would run again.
    assert calls == ["off"]
