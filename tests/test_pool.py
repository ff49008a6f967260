"""`digi.pool` from a worker's point of view: env-configured, stamps ts/event_ts, real lake."""

from __future__ import annotations

from datetime import UTC, datetime

import lake_fixtures
import pytest
from lake_fixtures import ZedServer

import digi.pool
from digi.errors import DigiError
from digi.lake import LakeClient

zed_server = lake_fixtures.zed_server


@pytest.fixture
def worker_env(zed_server: ZedServer, monkeypatch: pytest.MonkeyPatch) -> ZedServer:
    monkeypatch.setenv("DIGI_LAKE_URL", zed_server.url)
    monkeypatch.setenv("NAME", "l1")
    monkeypatch.setenv("NAMESPACE", "home")
    return zed_server


def test_load_stamps_and_query_reads_own_pool(worker_env: ZedServer) -> None:
    before = datetime.now(UTC)
    digi.pool.load([{"watt": 10.0}, {"watt": 5.5, "event_ts": "yesterday"}])
    digi.pool.load([{"watt": 1.0}])
    # The pool is ordered by ts; records of one load share their ts.
    rows = digi.pool.query()
    assert [r["watt"] for r in rows[2:]] == [1.0] and {r["watt"] for r in rows[:2]} == {10.0, 5.5}
    first = {r["watt"]: r for r in rows[:2]}
    assert first[10.0]["ts"] == first[10.0]["event_ts"] == first[5.5]["ts"]
    assert first[5.5]["event_ts"] == "yesterday"
    first = datetime.fromisoformat(rows[0]["ts"].replace("Z", "+00:00"))
    assert before <= first <= datetime.fromisoformat(rows[2]["ts"].replace("Z", "+00:00"))
    assert digi.pool.query("sum(watt)") == [16.5]
    with LakeClient(worker_env.url) as lake:
        assert [p.name for p in lake.pools()] == ["home_l1"]


def test_pool_name_in_default_namespace(worker_env: ZedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAMESPACE", "default")
    assert digi.pool.name() == "l1"
    assert digi.pool.load([]) is None


def test_missing_environment_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGI_LAKE_URL", raising=False)
    monkeypatch.setenv("NAME", "l1")
    with pytest.raises(DigiError, match="DIGI_LAKE_URL"):
        digi.pool.query("count()")
