"""Bench room: passes its brightness intent down to every mounted child, and
reports the children's common brightness status as its own — the mock room's
work, on a value that identifies the trial (the mock room divides it among its
lamps; here it is copied so the value survives any depth).

Probes (bench/probe.py), sent over UDP with `time.monotonic()` taken in the
handler: `down` when the intent handler starts/ends, `up` when the mount
handler starts/ends with a child's status value in the replica. No API write
is added. `meta.probe_port: 0` disables them. The digi's name comes from
`meta.probe_id` (set from the CR template), so it is right in a shared worker.
"""

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import digi
import digi.on as on

_probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def _send(model: dict[str, Any], ev: str, value: Any, start: float) -> None:
    meta = model.get("meta", {})
    port = meta.get("probe_port") or 0
    if port:
        msg = {"digi": meta.get("probe_id"), "ev": ev, "v": value, "start": start,
               "end": time.monotonic()}
        _probe.sendto(json.dumps(msg).encode(), ("127.0.0.1", port))


def _children(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for replicas in model.get("mount", {}).values():
        yield from replicas.values()


@on.control("brightness")
def push_down(brightness: dict[str, Any], proc_view: dict[str, Any]) -> None:
    start = time.monotonic()
    if "intent" not in brightness:
        return
    for child in _children(proc_view):
        spec = child.setdefault("spec", {})
        control = spec.setdefault("control", {})
        control.setdefault("brightness", {})["intent"] = brightness["intent"]
    _send(proc_view, "down", brightness["intent"], start)


@on.mount
def gather_up(proc_view: dict[str, Any]) -> None:
    start = time.monotonic()
    statuses = {
        child.get("spec", {}).get("control", {}).get("brightness", {}).get("status")
        for child in _children(proc_view)
    }
    if len(statuses) != 1 or None in statuses:
        return
    (status,) = statuses
    proc_view.setdefault("control", {}).setdefault("brightness", {})["status"] = status
    _send(proc_view, "up", status, start)


if __name__ == "__main__":
    digi.run()
