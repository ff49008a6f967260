"""Building `hq` → room `office-1` → two lamps and two sensors, fed by a replay.

`Office` names the digis; `OfficeRun` drives a dSpace through the `digi` command
line (run, mount, graph, query — so the demo exercises what a user types) and the
Kubernetes API (the few model patches a user would make with `kubectl patch`), in
this order: `preflight` (are the kinds in digis/ complete?), then `reset` (remove a previous run),
`create`, `configure`, `compose` (mounts, in an order that gives the replay the
sensors and the room the lamps, see digis/README.md), `start`, `follow` (progress),
`settle` (wait for the pipelines into the room and the building). `digi.demo.observe`
then reads what the product produced.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from digi.kinds.model import load_kind

PROJECT = Path(__file__).resolve().parents[2]
KINDS = ("building", "room", "lamp", "occupancy", "sensor", "replay")
KIND_FILES = ("model.yaml", "crd.yaml", "deploy/cr.yaml", "driver/handler.py")
class DemoError(Exception):
    """The scenario cannot go on; the message says what is missing or wrong and what to do."""


@dataclass(frozen=True)
class Office:
    building: str = "hq"
    room: str = "office-1"
    namespace: str = "default"

    @property
    def lamps(self) -> tuple[str, str]:
        return (f"{self.room}-lamp-1", f"{self.room}-lamp-2")

    @property
    def motion(self) -> str:
        return f"{self.room}-motion"

    @property
    def env(self) -> str:
        return f"{self.room}-env"

    @property
    def replay(self) -> str:
        return f"{self.room}-replay"

    def members(self) -> list[tuple[str, str]]:
        """(kind, name) of every digi of the scenario, parents first."""
        return [("building", self.building), ("room", self.room),
                *(("lamp", lamp) for lamp in self.lamps),
                ("occupancy", self.motion), ("sensor", self.env), ("replay", self.replay)]


@dataclass(frozen=True)
class Gvr:
    group: str
    version: str
    plural: str

    def __str__(self) -> str:
        return f"{self.group}/{self.version}/{self.plural}"


def kind_dir(kind: str) -> Path:
    return PROJECT / "digis" / kind


# Attributes the scenario's data-time contract needs in a kind's model (digis/README.md).
CONTRACT = {
    "lamp": (("meta", "event_ts"),),
    "room": (("obs", "occupancy"),),
}


def missing_attributes(kind: str) -> list[str]:
    model = yaml.safe_load((kind_dir(kind) / "model.yaml").read_text()) or {}
    return [f"{group}.{attr}" for group, attr in CONTRACT.get(kind, ()) if attr not in (model.get(group) or {})]


def missing_parts() -> list[str]:
    """What the scenario needs of `digis/` that is absent or lacks its data-time attributes.

    The kinds are ordinary directories a user may edit or remove; finding that out
    before the space starts beats a worker crashing half-way through the replay.
    """
    missing = []
    for kind in KINDS:
        absent = [f for f in KIND_FILES if not (kind_dir(kind) / f).exists()]
        if absent:
            missing.append(f"digis/{kind}/{{{','.join(absent)}}}: restore it (git checkout -- digis/{kind})")
        elif attrs := missing_attributes(kind):
            missing.append(f"digis/{kind}/model.yaml has no {', '.join(attrs)}, which carries the data "
                           "time through the scenario (see digis/README.md)")
    return missing


def preflight() -> None:
    """Fail with the list of missing parts, before anything is started."""
    missing = missing_parts()
    if missing:
        raise DemoError("the demo cannot run with this checkout's digis/:\n  - " + "\n  - ".join(missing))


class DigiCli:
    """Runs `digi --root ROOT …` in a subprocess, echoing the command line; the command's
    own output goes to `stream` (stdout, or stderr when stdout is kept for a report)."""

    def __init__(self, root: Path, echo: Callable[[str], None], stream: TextIO) -> None:
        self.root, self.echo, self.stream = root, echo, stream

    def argv(self, args: Sequence[str]) -> list[str]:
        return [sys.executable, "-c", "from digi.cli.main import main; main()", "--root", str(self.root), *args]

    def run(self, *args: str, quiet: bool = False) -> None:
        self.echo(f"$ digi {' '.join(args)}")
        self.stream.flush()
        done = subprocess.run(self.argv(args), stdout=subprocess.PIPE if quiet else self.stream,
                              stderr=subprocess.PIPE if quiet else None, text=True, check=False)
        if done.returncode != 0:
            detail = f": {(done.stderr or done.stdout).strip()}" if quiet else " (its output is above)"
            raise DemoError(f"`digi {' '.join(args)}` failed with exit code {done.returncode}{detail}")

    def output(self, *args: str) -> str:
        done = subprocess.run(self.argv(args), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DemoError(f"`digi {' '.join(args)}` failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def query(self, text: str) -> list[dict[str, Any]]:
        """Records of `digi query --raw TEXT -o json` (a JSON array, or one JSON value per line)."""
        out = self.output("query", "--raw", text, "-o", "json").strip()
        if not out:
            return []
        try:
            value = json.loads(out)
        except json.JSONDecodeError:
            return [json.loads(line) for line in out.splitlines() if line.strip()]
        return value if isinstance(value, list) else [value]


class OfficeRun:
    def __init__(self, cli: DigiCli, api: client.ApiClient, office: Office,
                 echo: Callable[[str], None]) -> None:
        self.cli, self.office, self.echo = cli, office, echo
        self.objects = client.CustomObjectsApi(api)
        self.gvrs = {kind: _gvr(kind) for kind in KINDS}

    # -- model access -------------------------------------------------------

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        g = self.gvrs[kind]
        try:
            obj: Any = self.objects.get_namespaced_custom_object(
                g.group, g.version, self.office.namespace, g.plural, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return cast(dict[str, Any], obj)

    def spec(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.get(kind, name)
        if obj is None:
            raise DemoError(f"{kind} {self.office.namespace}/{name} does not exist")
        return dict(obj.get("spec") or {})

    def patch(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        g = self.gvrs[kind]
        self.objects.patch_namespaced_custom_object(
            g.group, g.version, self.office.namespace, g.plural, name, {"spec": spec})

    # -- steps --------------------------------------------------------------

    def reset(self, delete_pool: Callable[[str], None]) -> None:
        """Delete the digis and pools of a previous run, so figures describe this run only."""
        present = [(k, n) for k, n in self.office.members() if self.get(k, n) is not None]
        if present:
            self.echo(f"removing the previous run: {', '.join(n for _, n in present)}")
        for kind, name in reversed(present):
            g = self.gvrs[kind]
            self.objects.delete_namespaced_custom_object(
                g.group, g.version, self.office.namespace, g.plural, name)
        _wait(lambda: all(self.get(k, n) is None for k, n in present), 60,
              "the previous run's digis to be deleted")
        for _, name in self.office.members():
            delete_pool(name)

    def create(self) -> None:
        by_kind: dict[str, list[str]] = {}
        for kind, name in self.office.members():
            by_kind.setdefault(kind, []).append(name)
        for kind, names in by_kind.items():
            self.cli.run("run", str(kind_dir(kind)), *names)

    def configure(self, source: Path, first_row: int, rows: int | None, mode: str, speed: float,
                  timeout: float) -> None:
        o = self.office
        for sensor_kind, name in (("occupancy", o.motion), ("sensor", o.env)):
            self.patch(sensor_kind, name, {"meta": {"managed": True, "gen_interval": -1}})
        self.patch("room", o.room, {"control": {"mode": {"intent": "adaptive"}}})
        self.patch("replay", o.replay, {"meta": {
            "source": str(source), "first_row": first_row, "row_count": rows or 0,
            "mode": mode, "speed": speed, "timeout": timeout, "pause": True}})

    def compose(self) -> None:
        """Mount in the order that makes the replay the sensors' writer and the room the lamps'."""
        o = self.office
        plan = [(o.room, o.building), *((lamp, o.room) for lamp in o.lamps),
                (o.motion, o.replay), (o.env, o.replay),
                (o.motion, o.room), (o.env, o.room),
                *((lamp, o.replay) for lamp in o.lamps)]
        for child, parent in plan:
            self.cli.run("mount", child, parent, quiet=True)
        expected = {
            ("building", o.building): {("room", o.room): "active"},
            ("room", o.room): {**{("lamp", lamp): "active" for lamp in o.lamps},
                               ("occupancy", o.motion): "inactive", ("sensor", o.env): "inactive"},
            ("replay", o.replay): {("occupancy", o.motion): "active", ("sensor", o.env): "active",
                                   **{("lamp", lamp): "inactive" for lamp in o.lamps}},
        }
        _wait(lambda: not self._mount_mismatches(expected), 60, "the mounts to settle",
              lambda: "; ".join(self._mount_mismatches(expected)))

    def _mount_mismatches(self, expected: dict[tuple[str, str], dict[tuple[str, str], str]]) -> list[str]:
        out = []
        for (pkind, parent), children in expected.items():
            mounts = self.spec(pkind, parent).get("mount") or {}
            for (ckind, child), status in children.items():
                entry = (mounts.get(str(self.gvrs[ckind])) or {}).get(f"{self.office.namespace}/{child}")
                if entry is None or not entry.get("spec"):
                    out.append(f"{parent} has no replica of {child} yet")
                elif (entry.get("status") or "active") != status:
                    out.append(f"{parent}'s mount of {child} is {entry.get('status')}, expected {status}")
        return out

    def start(self) -> None:
        self.patch("replay", self.office.replay, {"meta": {"pause": False}})

    def follow(self, on_progress: Callable[[dict[str, Any]], None], stall: float) -> dict[str, Any]:
        """Poll the replay's `obs` until it is done; its final `obs`. Fails on error or a stall."""
        last_change, last_key = time.monotonic(), None
        while True:
            obs = self.spec("replay", self.office.replay).get("obs") or {}
            on_progress(obs)
            state = obs.get("state")
            if state == "done":
                return obs
            if state == "error":
                raise DemoError(f"replay {self.office.replay} failed: {obs.get('reason')}")
            key = (state, obs.get("rows_applied"))
            if key != last_key:
                last_change, last_key = time.monotonic(), key
            elif time.monotonic() - last_change > stall:
                raise DemoError(f"replay {self.office.replay} made no progress for {stall:g}s "
                                f"(state {state!r}, {obs.get('rows_applied')} rows applied); "
                                f"see its log with 'digi log {self.office.replay}'")
            time.sleep(0.2)

    def settle(self, counts: Callable[[], dict[str, tuple[int, int]]], timeout: float) -> list[str]:
        """Wait until every pipeline's (have, want) counts meet; the ones still lagging after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            lagging = [f"{name}: {have} of {want} records" for name, (have, want) in counts().items()
                       if have < want]
            if not lagging or time.monotonic() > deadline:
                return lagging
            time.sleep(0.5)


def _gvr(kind: str) -> Gvr:
    k = load_kind(kind_dir(kind))
    return Gvr(k.group, k.version, k.plural)


def _wait(done: Callable[[], bool], timeout: float, what: str,
          detail: Callable[[], str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            extra = f": {detail()}" if detail else ""
            raise DemoError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(0.2)

