"""Where the dSpace finds its executables (etcd, kube-apiserver, zed, helm).

`tool_path(name)` looks in `$DIGI_BIN`, then in the source checkout's `bin/`
(where `make tools` puts them), then on `PATH`, and raises `ToolNotFound`
telling the user to run `make tools` when none has it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from digi.errors import DigiError

# digi/space/tools.py -> the checkout root is three levels up.
CHECKOUT_BIN = Path(__file__).resolve().parents[2] / "bin"


FIX = "run 'make tools' in the digi checkout, or set DIGI_BIN to a directory holding it"


class ToolNotFound(DigiError):
    """A required executable is in none of the searched places."""

    def __init__(self, name: str, searched: str) -> None:
        self.name = name
        self.searched = searched
        super().__init__(f"executable {name!r} not found (searched {searched}); {FIX}")


def search_dirs() -> list[Path]:
    """The directories `tool_path` searches before `PATH`, in order."""
    dirs = [Path(p) for p in os.environ.get("DIGI_BIN", "").split(os.pathsep) if p]
    dirs.append(CHECKOUT_BIN)
    return dirs


def tool_path(name: str, dirs: Sequence[Path] | None = None) -> Path:
    """The executable `name`, from `dirs` (default: `search_dirs()` then `PATH`)."""
    candidates = list(search_dirs() if dirs is None else dirs)
    for directory in candidates:
        path = directory / name
        if path.is_file() and os.access(path, os.X_OK):
            return path
    if dirs is None:
        found = shutil.which(name)
        if found:
            return Path(found)
    searched = ", ".join(str(d) for d in candidates) + (", PATH" if dirs is None else "")
    raise ToolNotFound(name, searched)
