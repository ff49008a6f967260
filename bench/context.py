"""What every benchmark section gets: the space, the trial plan, probes, and digi helpers.

Sections create their digis with the real CLI (`digi run`, `digi mount`) so the
path measured is the path users get; the bench kinds live in bench/kinds/.
Trial values come from one counter for the whole run, so a value identifies
exactly one trial everywhere (intent, status, probe, watch event).
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import profile
from bench.kube import JSON, Kube, Resource
from bench.marks import Marks
from bench.probe import ProbeServer
from bench.results import Results
from bench.space import BenchSpace, wait_for
from bench.trials import Plan

KINDS = Path(__file__).resolve().parent / "kinds"
GROUP, VERSION = "bench.digi.dev", "v1"
LAMPS = Resource(GROUP, VERSION, "lamps")
ROOMS = Resource(GROUP, VERSION, "rooms")
NAMESPACE = "default"


@dataclass
class Context:
    bs: BenchSpace
    plan: Plan
    quick: bool
    results: Results
    marks: Marks = field(default_factory=Marks)
    watch_baseline: dict[str, int] = field(default_factory=dict)
    profile_dir: Path | None = None
    _probe: ProbeServer | None = None
    _kube: Kube | None = None
    _values: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube(self.bs.kubeconfig)
        return self._kube

    @property
    def probe(self) -> ProbeServer:
        if self._probe is None:
            self._probe = ProbeServer(self.marks)
        return self._probe

    def profiled(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Record the manager and its workers with py-spy while the block runs, if asked to."""
        if self.profile_dir is None:
            return contextlib.nullcontext()
        return profile.recording(self.bs.manager_pid(), self.profile_dir, name)

    def next_value(self) -> float:
        return float(next(self._values))

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
        if self._kube is not None:
            self._kube.close()

    # -- digis -----------------------------------------------------------------------------

    def kind_dir(self, kind: str) -> Path:
        """A copy of bench/kinds/KIND whose CR template points probes at this run's port.

        Baking the port into `deploy/cr.yaml` means even a digi's very first
        reconcile is probed, and no setup write follows `digi run`.
        """
        target = self.bs.root / "kinds" / kind
        if not target.exists():
            shutil.copytree(KINDS / kind, target)
            cr = target / "deploy" / "cr.yaml"
            cr.write_text(cr.read_text().replace("probe_port: 0", f"probe_port: {self.probe.port}"))
        return target

    def run_digis(self, kind: str, names: list[str]) -> None:
        """`digi run <bench kind> NAME…` (in batches, to keep argv short)."""
        for i in range(0, len(names), 500):
            self.bs.digi("run", str(self.kind_dir(kind)), *names[i:i + 500], timeout=1200)

    def mount(self, child: str, child_res: Resource, parent: str, parent_res: Resource) -> None:
        """`digi mount CHILD PARENT` and wait until the parent holds the replica."""
        self.bs.digi("mount", child, parent)
        gvr = f"{child_res.group}/{child_res.version}/{child_res.plural}"

        def mounted() -> bool:
            obj = self.kube.get(parent_res.item(NAMESPACE, parent))
            return f"{NAMESPACE}/{child}" in obj["spec"].get("mount", {}).get(gvr, {})

        wait_for(mounted, 60, f"mount of {child} in {parent}")

    def set_intent(self, res: Resource, name: str, value: float) -> float:
        """Write `control.brightness.intent = value`; returns the time just before the PATCH."""
        t0 = time.monotonic()
        self.kube.merge_patch(res.item(NAMESPACE, name),
                              {"spec": {"control": {"brightness": {"intent": value}}}})
        return t0


def brightness_status(obj: JSON) -> object:
    return obj.get("spec", {}).get("control", {}).get("brightness", {}).get("status")
