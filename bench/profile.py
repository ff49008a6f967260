"""Profiling a benchmark section with py-spy: where the manager (and workers) spend CPU.

`python -m bench --profile DIR` wraps the Room→Lamp trials (and the scale
throughput runs) in `py-spy record` of the manager and of each of its workers,
then summarises the collapsed stacks into DIR/<section>.<process>.top.txt: the
frames with the most samples holding the GIL, self and inclusive, with the CPU
seconds they stand for (samples ÷ rate). The latencies of a profiled run are slowed by the sampling, so
profiling is a separate run; its figures are still written, with
`machine.profiled = true`.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil

PY_SPY = Path(sys.executable).with_name("py-spy")
RATE = 250


def _label(proc: psutil.Process) -> str:
    """`manager`, or `worker-<digi name>` from the worker's NAME environment variable."""
    try:
        name = proc.environ().get("NAME")
    except psutil.Error:
        name = None
    return f"worker-{name or proc.pid}" if "digi.worker" in " ".join(proc.cmdline()) \
        else f"pid-{proc.pid}"


@contextlib.contextmanager
def recording(pid: int, out_dir: Path, name: str) -> Iterator[None]:
    """Record the manager `pid` and each of its worker processes while the block runs.

    One py-spy per process (`--subprocesses` does not follow the manager's
    workers), `--gil` so only samples holding the GIL — Python actually running —
    count, `--nonblocking` so the sampled process is not paused.
    """
    exe = str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")
    if exe is None:
        raise FileNotFoundError("py-spy: not installed; run '.venv/bin/pip install py-spy'")
    out_dir.mkdir(parents=True, exist_ok=True)
    manager = psutil.Process(pid)
    targets = {"manager": pid} | {_label(c): c.pid for c in manager.children(recursive=True)}
    spies = {}
    for label, target in targets.items():
        raw = out_dir / f"{name}.{label}.raw.txt"
        spies[raw] = subprocess.Popen(
            [exe, "record", "--pid", str(target), "--gil", "--nonblocking", "--format", "raw",
             "--rate", str(RATE), "--output", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        for spy in spies.values():
            spy.send_signal(signal.SIGINT)
        for spy in spies.values():
            spy.wait(timeout=60)
    for raw in spies:
        if raw.exists():
            raw.with_name(raw.name.replace(".raw.txt", ".top.txt")).write_text(
                summarise(raw.read_text()))


def summarise(collapsed: str, top: int = 25) -> str:
    """Self and inclusive sample counts per frame from py-spy's collapsed stacks."""
    self_count: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_count[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if total == 0:
        return "no samples holding the GIL (the process stayed idle)\n"
    lines = [f"{total} samples holding the GIL at {RATE} Hz = {total / RATE:.2f} CPU seconds",
             "", "self %  frame"]
    lines += [f"{100 * c / total:5.1f}  {f}" for f, c in self_count.most_common(top)]
    lines += ["", "incl %  frame"]
    lines += [f"{100 * c / total:5.1f}  {f}" for f, c in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"
