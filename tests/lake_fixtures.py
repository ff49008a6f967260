"""A private, restartable Zed lake for the data-plane tests.

The session `space` fixture runs a lake too, but the exactly-once tests must
stop and restart the lake mid-stream without disturbing other tests, so these
tests run their own `zed serve` (the real binary, `digi.space.tools`) on a
free loopback port with a temp data directory. `restart()` keeps the port and
the data, like a crash-and-restart of the lake.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from digi.space.ports import HOST, free_ports
from digi.space.tools import tool_path


class ZedServer:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_ports(1)[0]
        self.url = f"http://{HOST}:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.data.parent / "zed.log").open("ab")
        self._proc = subprocess.Popen(
            [str(tool_path("zed")), "serve", "-l", f"{HOST}:{self.port}", "-lake", str(self.data)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/version", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"zed serve on {self.url} did not become ready; see {log.name}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
            self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def zed_server(tmp_path: Path) -> Iterator[ZedServer]:
    server = ZedServer(tmp_path / "lake")
    server.start()
    try:
        yield server
    finally:
        server.stop()
