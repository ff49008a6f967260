"""`digi query` and `digi lake status` against a real `zed serve`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lake_fixtures
import pytest
from click.testing import CliRunner, Result
from lake_fixtures import ZedServer

from digi.cli.main import cli
from digi.lake import LakeClient

zed_server = lake_fixtures.zed_server
T0 = datetime(2026, 1, 1, tzinfo=UTC)
EVIL = 'x" | yield "pwned'


@pytest.fixture
def url(zed_server: ZedServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("DIGI_LAKE_URL", raising=False)
    with LakeClient(zed_server.url) as lake:
        for pool in ("x", EVIL, "home_l1"):
            lake.create_pool(pool)
        lake.load("x", "main", [{"ts": T0, "secret": "s"}])
        lake.load(EVIL, "main", [{"ts": T0 + timedelta(seconds=i), "watt": float(i)} for i in range(3)])
        lake.load("home_l1", "main", [{"ts": T0, "watt": 2.5}])
        lake.ensure_branch("home_l1", "energy")
    return zed_server.url


def digi(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--root", str(tmp_path / "no-space"), *args])


def test_query_runs_from_the_digis_pool(url: str, tmp_path: Path) -> None:
    result = digi(tmp_path, "query", "l1", "-n", "home", "sum(watt)", "-o", "json", "--lake-url", url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [2.5]
    assert json.loads(digi(tmp_path, "query", "home/l1", "yield watt", "-o", "json", "--lake-url", url).output) == [2.5]
    table = digi(tmp_path, "query", "l1", "-n", "home", "--lake-url", url)
    assert table.output.splitlines()[0].split() == ["TS", "WATT"]
    assert "2.5" in table.output.splitlines()[1]


def test_a_name_with_quotes_and_bars_cannot_alter_the_query(url: str, tmp_path: Path) -> None:
    result = digi(tmp_path, "query", EVIL, "-o", "json", "--lake-url", url)
    assert result.exit_code == 0, result.output
    assert [r["watt"] for r in json.loads(result.output)] == [0.0, 1.0, 2.0]
    assert "pwned" not in result.output and "secret" not in result.output


def test_raw_query_and_lake_errors(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGI_LAKE_URL", url)
    result = digi(tmp_path, "query", "--raw", 'from "x" | yield secret', "-o", "json")
    assert json.loads(result.output) == ["s"]
    bad = digi(tmp_path, "query", "l1", "-n", "home", "sum(")
    assert bad.exit_code == 1 and "error parsing Zed" in bad.output
    assert digi(tmp_path, "query").exit_code == 2


def test_unknown_digi_or_branch_names_the_fix(url: str, tmp_path: Path) -> None:
    result = digi(tmp_path, "query", "l9", "avg(watt)", "--lake-url", url)
    assert result.exit_code == 1
    assert "no digi or pool 'l9'" in result.output and "pool not found" not in result.output
    assert "digi list" in result.output and "digi lake status" in result.output
    branch = digi(tmp_path, "query", "home/l1", "-b", "nope", "--lake-url", url)
    assert branch.exit_code == 1 and "pool 'home_l1' has no branch 'nope'" in branch.output


def test_a_refused_query_is_shown_as_the_users_part(url: str, tmp_path: Path) -> None:
    result = digi(tmp_path, "query", "home/l1", "sum(", "--lake-url", url)
    assert result.exit_code == 1
    assert "the lake rejected QUERY 'sum(' on pool 'home_l1'" in result.output
    assert "error parsing Zed" in result.output and 'after `from "home_l1"@"main" | `' in result.output


def test_an_empty_result_says_so_on_stderr(url: str, tmp_path: Path) -> None:
    result = digi(tmp_path, "query", "home/l1", "where watt > 100", "--lake-url", url)
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == "no records\n"
    as_json = digi(tmp_path, "query", "home/l1", "where watt > 100", "-o", "json", "--lake-url", url)
    assert json.loads(as_json.stdout) == [] and as_json.stderr == ""


def test_no_lake_says_how_to_find_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGI_LAKE_URL", raising=False)
    result = digi(tmp_path, "query", "l1")
    assert result.exit_code == 1 and "--lake-url" in result.output


def test_lake_status_lists_branches_with_counts(url: str, tmp_path: Path) -> None:
    result = digi(tmp_path, "lake", "status", "-o", "json", "--lake-url", url)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    counts = {(b["pool"], b["branch"]): b["records"] for b in report["branches"]}
    assert counts == {("x", "main"): 1, (EVIL, "main"): 3, ("home_l1", "main"): 1, ("home_l1", "energy"): 0}
    assert report["pipelines"] is None
    table = digi(tmp_path, "lake", "status", "--lake-url", url)
    assert "manager not reachable" in table.output and "home_l1" in table.output
