"""Bench lamp: the mock lamp's driver (status follows intent), with a timing probe.

The one control handler reads `time.monotonic()` as it starts and again as it
ends — the engine's single write follows right after — and sends both, with
the brightness intent that identifies the trial, to the benchmark over UDP
(bench/probe.py). No API write is added. `meta.probe_port: 0` disables it.
The digi's name comes from `meta.probe_id` (set from the CR template), not
`digi.name`, so it is right in a shared worker hosting many lamps too.
"""

import json
import socket
import time
from typing import Any

import digi
import digi.on as on

_probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


@on.control
def follow(control: dict[str, Any], proc_view: dict[str, Any]) -> None:
    start = time.monotonic()
    for attr in ("power", "brightness"):
        if "intent" in control.get(attr, {}):
            control[attr]["status"] = control[attr]["intent"]
    meta = proc_view.get("meta", {})
    port = meta.get("probe_port") or 0
    if port:
        value = control.get("brightness", {}).get("intent")
        msg = {"digi": meta.get("probe_id"), "ev": "lamp", "v": value, "start": start,
               "end": time.monotonic()}
        _probe.sendto(json.dumps(msg).encode(), ("127.0.0.1", port))


if __name__ == "__main__":
    digi.run()
