"""Starting, identifying and stopping the dSpace's OS processes.

A started process is remembered as a `ProcessRef` (pid + start time) in
`space.json`; the start time guards against a recycled pid being mistaken
for ours. On Linux the start time is the kernel's, in clock ticks since boot
(`/proc/PID/stat`): psutil's `create_time` is derived from the wall clock's
boot time, which moves when the clock is stepped (NTP, a VM resumed), and a
moved value made a running space look stopped. Each component runs in its own session (process group), so it
outlives the `digi space up` that started it and can be stopped as a group,
children included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

_POLL = 0.1


def start_ticks(pid: int) -> int | None:
    """The kernel's start time of `pid` in clock ticks since boot, where /proc has it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may itself hold spaces
    # or parentheses; starttime is field 22 of stat(5), the 20th after the name.
    return int(stat[stat.rindex(")") + 2 :].split()[19])


@dataclass(frozen=True)
class ProcessRef:
    """A process we started, identified by pid and start time (see the module docstring)."""

    pid: int
    create_time: float
    start_ticks: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "create_time": self.create_time, "start_ticks": self.start_ticks}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRef:
        ticks = data.get("start_ticks")
        return cls(
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            start_ticks=None if ticks is None else int(ticks),
        )

    def _same_start(self, proc: psutil.Process) -> bool:
        if self.start_ticks is not None:
            return start_ticks(self.pid) == self.start_ticks
        return abs(proc.create_time() - self.create_time) <= 0.01

    def process(self) -> psutil.Process | None:
        """The live process, or None when it exited (zombies count as exited)."""
        _reap(self.pid)
        try:
            proc = psutil.Process(self.pid)
            if not self._same_start(proc) or proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.NoSuchProcess:
            return None
        return proc

    def alive(self) -> bool:
        return self.process() is not None


def _reap(pid: int) -> None:
    """Collect the exit status of `pid` if it is our exited child, so it leaves no zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def log_header(log: Path, argv: Sequence[str]) -> None:
    """Mark the start of a run in `log`, so `log_tail` shows only the latest run."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting: {' '.join(argv)}\n")


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path
) -> tuple[subprocess.Popen[bytes], ProcessRef]:
    """Start `argv` in a new session with stdout+stderr appended to `log`."""
    log_header(log, argv)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    try:
        created = psutil.Process(popen.pid).create_time()
    except psutil.NoSuchProcess:
        # Exited already: the caller sees it via popen.poll(); the ref never matches a live process.
        created = 0.0
    return popen, ProcessRef(popen.pid, created, start_ticks(popen.pid))


def _running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `procs` that still run."""
    left = []
    for proc in procs:
        _reap(proc.pid)
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
        except psutil.NoSuchProcess:
            pass
    return left


def _signal_all(procs: list[psutil.Process], sig: signal.Signals) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


def _wait(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    left = _running(procs)
    while left and time.monotonic() < deadline:
        time.sleep(_POLL)
        left = _running(left)
    return left


def stop(ref: ProcessRef, timeout: float) -> bool:
    """Stop the process and its descendants: SIGTERM, then SIGKILL after `timeout` seconds.

    Returns True when something was running.
    """
    leader = ref.process()
    if leader is None:
        return False
    try:
        procs = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = [leader]
    _signal_all(procs, signal.SIGTERM)
    left = _wait(procs, timeout)
    if left:
        _signal_all(left, signal.SIGKILL)
        _wait(left, timeout)
    return True


def log_tail(log: Path, lines: int = 15) -> str:
    """The last `lines` lines of the latest run recorded in `log`."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    run = text.rsplit("\n=== ", 1)[-1]
    return "\n".join(run.splitlines()[1:][-lines:]) or "(log is empty)"
