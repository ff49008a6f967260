"""Profiling a benchmark section with py-spy: where the manager (and workers) spend CPU.

`python -m bench --profile DIR` wraps the Room→Lamp trials in `py-spy record
--subprocesses --format raw` on the manager (workers are its children), then
summarises the collapsed stacks into DIR/<name>.top.txt: the functions with the
most samples *on CPU* (py-spy drops idle stacks by default), self and
inclusive. The latencies of a profiled run are slowed by the sampling, so
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

PY_SPY = Path(sys.executable).with_name("py-spy")


@contextlib.contextmanager
def recording(pid: int, out_dir: Path, name: str) -> Iterator[None]:
    """Record `pid` and its subprocesses while the block runs; summarise afterwards."""
    exe = str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")
    if exe is None:
        raise FileNotFoundError("py-spy: not installed; run '.venv/bin/pip install py-spy'")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / f"{name}.raw.txt"
    proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--subprocesses", "--format",
                             "raw", "--rate", "200", "--output", str(raw)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    if raw.exists():
        (out_dir / f"{name}.top.txt").write_text(summarise(raw.read_text()))


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
    lines = [f"{total} samples on CPU", "", "self %  frame"]
    lines += [f"{100 * c / total:5.1f}  {f}" for f, c in self_count.most_common(top)]
    lines += ["", "incl %  frame"]
    lines += [f"{100 * c / total:5.1f}  {f}" for f, c in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"
