"""Receives the bench drivers' probes: handler start/end times, sent over UDP.

A bench driver (bench/kinds/*/driver/handler.py) reads `time.monotonic()` when
its handler starts and again when its last handler ends (just before the
engine's single write), and sends both in one datagram to
`127.0.0.1:<spec.meta.probe_port>`:

    {"digi": "<name>", "ev": "down"|"up"|"lamp", "v": <trial value>, "start": t0, "end": t1}

UDP on loopback adds no API write, no disk write and no blocking to the
measured path (a send is a syscall of a few µs); the timestamps are taken in
the driver, so the receive delay does not count. Each datagram becomes two
marks, `("start", ev, digi, v)` and `("end", ev, digi, v)`; while `recording`,
each message is also appended to `log` (the scale benchmark, whose analysis
needs every delivery, not one per key).
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

from bench.marks import Marks


class ProbeServer:
    def __init__(self, marks: Marks) -> None:
        self.marks = marks
        self.received = 0
        self.recording = False
        self.log: list[dict[str, Any]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return
            msg = json.loads(data)
            self.received += 1
            if self.recording:
                self.log.append(msg)
                continue
            key = (msg["ev"], msg["digi"], msg["v"])
            self.marks.mark(("start", *key), msg["start"])
            self.marks.mark(("end", *key), msg["end"])

    def close(self) -> None:
        self._sock.close()
