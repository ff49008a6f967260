"""How the space recognises the processes it started, on a real child process.

The wall-clock boot time that psutil's `create_time` derives from can move
(an NTP step, a VM resumed); a space must still know its own processes then.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from digi.space.process import ProcessRef, spawn, start_ticks, stop


@pytest.fixture
def child(tmp_path: Path) -> Iterator[ProcessRef]:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    _, ref = spawn(argv, env={}, log=tmp_path / "child.log", cwd=tmp_path)
    try:
        yield ref
    finally:
        stop(ref, timeout=5)


def test_a_started_process_is_recognised_and_round_trips_through_json(child: ProcessRef) -> None:
    assert child.start_ticks is not None and child.start_ticks == start_ticks(child.pid)
    assert child.alive()
    assert ProcessRef.from_json(child.to_json()) == child


def test_a_stepped_wall_clock_does_not_hide_a_running_process(child: ProcessRef) -> None:
    stepped = dataclasses.replace(child, create_time=child.create_time + 3.0)
    assert stepped.alive(), "a running component looked stopped after the clock moved"


def test_a_recycled_pid_is_not_taken_for_ours(child: ProcessRef) -> None:
    assert child.start_ticks is not None
    other = dataclasses.replace(child, start_ticks=child.start_ticks - 1)
    assert not other.alive()


def test_state_written_before_start_ticks_falls_back_to_create_time(child: ProcessRef) -> None:
    old = {"pid": child.pid, "create_time": child.create_time}
    assert ProcessRef.from_json(old).alive()
    assert not ProcessRef.from_json({**old, "create_time": child.create_time + 3.0}).alive()


def test_a_stopped_process_is_gone(child: ProcessRef) -> None:
    stop(child, timeout=5)
    assert not child.alive()
