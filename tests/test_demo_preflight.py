"""The demo's preflight: the shipped digis/ pass it, and a broken copy is named with its fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from digi.demo import scenario


def test_the_shipped_kinds_pass_the_preflight() -> None:
    assert scenario.missing_parts() == []
    scenario.preflight()


def test_a_missing_driver_and_a_missing_contract_attribute_are_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(scenario.PROJECT / "digis", tmp_path / "digis")
    (tmp_path / "digis" / "replay" / "driver" / "handler.py").unlink()
    model = tmp_path / "digis" / "lamp" / "model.yaml"
    model.write_text(model.read_text().replace("event_ts", "event_time"))
    monkeypatch.setattr(scenario, "PROJECT", tmp_path)

    with pytest.raises(scenario.DemoError) as err:
        scenario.preflight()
    message = str(err.value)
    assert "digis/replay/{driver/handler.py}: restore it (git checkout -- digis/replay)" in message
    assert "digis/lamp/model.yaml has no meta.event_ts" in message
