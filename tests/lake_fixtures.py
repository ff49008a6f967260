"""A private, restartable Zed lake for the data-plane tests.

The session `space` fixture runs a lake too, but the exactly-once tests must
stop and restart the lake mid-stream without disturbing other tests, so these
tests run their own `zed serve` (the real binary, `digi.space.tools`) on a
free loopback port with a temp data directory. `restart()` keeps the port and
the data, like a crash-and-restart of the lake.

`by_commit` reads a branch commit by commit, so a test can check the order in
which records were *committed*: a plain `from` cannot, because every pool is
ordered by `ts` and reads come back sorted whatever order the loads had.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from digi.lake import LakeClient, zed
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


def by_commit(lake: LakeClient, pool: str, branch: str = "main") -> list[list[dict[str, Any]]]:
    """The records each commit of `pool@branch` added, oldest commit first."""
    ids = lake.query(f"from {zed.pool_ref(pool, branch)}:log | has(parent) | yield id")
    seen: Counter[str] = Counter()
    added = []
    for commit in reversed(ids):  # the log lists the newest commit first
        rows = lake.query(f"from {zed.pool_ref(pool, commit)}")
        now = Counter(json.dumps(r, sort_keys=True) for r in rows)
        added.append([json.loads(text) for text in sorted((now - seen).elements())])
        seen = now
    return added


def in_commit_order(lake: LakeClient, pool: str, branch: str = "main") -> list[dict[str, Any]]:
    """Every record of `pool@branch` in commit order, after checking that each commit's `ts`
    are above all earlier commits' (what a `ts` watermark reading this branch relies on)."""
    records: list[dict[str, Any]] = []
    for i, added in enumerate(by_commit(lake, pool, branch)):
        if records and added:
            newest = max(_time(r) for r in records)
            late = [r for r in added if _time(r) <= newest]
            assert not late, f"commit {i} of {pool}@{branch} adds records at or below ts {newest}: {late[:3]}"
        records += sorted(added, key=_time)
    return records


def _time(record: dict[str, Any], key: str = "ts") -> tuple[datetime, int]:
    """The record's time to the nanosecond (the piper ranks a batch's records 1 ns apart, and
    `datetime` keeps microseconds only)."""
    text = record.get(key) or record["ts"]
    whole, _, frac = text.removesuffix("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00"), int(frac.ljust(9, "0")[:9] or 0)
