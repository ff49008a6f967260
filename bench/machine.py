"""What the figures were measured on: cores, memory, CPU, tool versions, date.

Absolute times on a shared machine drift, so every results.json carries the
machine it came from; the versions are read from the very binaries the space
runs (found the same way the space finds them).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

from digi.space.tools import ToolNotFound, tool_path

_VERSION_ARGS = {
    "kube-apiserver": ["--version"],
    "etcd": ["--version"],
    "zed": ["--version"],
    "go": ["version"],
}


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else f"unavailable (exit {out.returncode})"


def tool_version(name: str) -> str:
    try:
        path: Path = tool_path(name)
    except ToolNotFound:
        return "not found"
    return _first_line([str(path), *_VERSION_ARGS[name]])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def source_revision() -> str:
    """The commit the figures were measured at, `+dirty` when the tree had changes."""
    root = Path(__file__).resolve().parents[1]
    head = _first_line(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return head + ("+dirty" if dirty else "")


def describe() -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {name: tool_version(name) for name in _VERSION_ARGS},
        "revision": source_revision(),
    }
