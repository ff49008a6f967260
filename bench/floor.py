"""floor(k): what k sequential API round trips cost on this API server, right now.

One round trip = a merge `PATCH` of a custom resource by one client, and the
resulting watch event observed by another client (its own connection and
thread). floor(k) is the time from the first PATCH being issued to the k-th
event being observed, each PATCH issued only after the previous event was seen.
No manager, no driver: this is the least any controller could do for k
sequential writes, and every latency figure is divided by floor(k) for its own
number of API writes.

The CR is lamp-shaped (`spec.control.brightness.intent` etc.) of a
schema-less CRD `floors.bench.digi.dev`, so the bytes per write are those of a
lamp's.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.kube import JSON, Kube, Resource, Watcher, ensure_crd
from bench.marks import Marks
from bench.results import Figure
from bench.trials import Plan, run

FLOORS = Resource("bench.digi.dev", "v1", "floors")
NAMESPACE = "default"
NAME = "floor"

_CRD: JSON = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "floors.bench.digi.dev"},
    "spec": {
        "group": "bench.digi.dev",
        "scope": "Namespaced",
        "names": {"kind": "Floor", "plural": "floors", "singular": "floor", "listKind": "FloorList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True}},
            }},
        }],
    },
}

_LAMP_SPEC: JSON = {
    "control": {"power": {"intent": "on", "status": "on"},
                "brightness": {"intent": 0.0, "status": 0.0}},
    "meta": {"managed": False, "gen_interval": -1, "wattage": 12, "actuation_delay": 0},
}


class FloorProbe:
    """A writer and a watcher of one lamp-shaped CR, for timing round trips."""

    def __init__(self, kubeconfig: Path) -> None:
        self.writer = Kube(kubeconfig)
        ensure_crd(self.writer, _CRD)
        self.path = FLOORS.item(NAMESPACE, NAME)
        self.writer.delete(self.path)
        self.writer.create(FLOORS.collection(NAMESPACE), {
            "apiVersion": "bench.digi.dev/v1", "kind": "Floor",
            "metadata": {"name": NAME}, "spec": _LAMP_SPEC,
        })
        self.marks = Marks()
        self.watcher = Watcher(kubeconfig, FLOORS.collection(NAMESPACE), self._on_event)
        self.seq = 0

    def _on_event(self, _type: str, obj: JSON) -> None:
        now = time.monotonic()
        if obj["metadata"]["name"] == NAME:
            self.marks.mark(obj["spec"]["control"]["brightness"]["intent"], now)

    def round_trips(self, k: int) -> float:
        """Seconds for k sequential PATCH → watch-event round trips."""
        start = time.monotonic()
        for _ in range(k):
            self.seq += 1
            self.writer.merge_patch(
                self.path, {"spec": {"control": {"brightness": {"intent": float(self.seq)}}}})
            end = self.marks.wait(float(self.seq))
        return end - start

    def close(self) -> None:
        self.watcher.close()
        self.writer.close()

    def __enter__(self) -> FloorProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def measure(kubeconfig: Path, ks: list[int], plan: Plan) -> list[Figure]:
    """floor(k) for each k in `ks`, with `plan`'s warm-up and trials for each.

    The ks are interleaved (trial i measures every k once), so a drift in the
    machine's load during the section affects every k alike.
    """
    with FloorProbe(kubeconfig) as probe:
        def trial(_i: int) -> dict[str, float]:
            return {str(k): 1e3 * probe.round_trips(k) for k in ks}

        samples = run("floor", plan, trial)
    return [
        Figure(key=f"floor.{k}", title=f"floor({k}): {k} sequential PATCH→watch round trips",
               unit="ms", samples=samples.by_name.get(str(k), []),
               trials=len(samples.by_name.get(str(k), [])), warmup=plan.warmup,
               extra={"lost": samples.lost} if samples.lost else {})
        for k in ks
    ]
