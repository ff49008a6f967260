"""The one error kind generation raises: a bad `model.yaml`, with where and how to fix it."""

from __future__ import annotations

from pathlib import Path

from digi.errors import DigiError


class KindError(DigiError):
    """A `model.yaml` that cannot become a CRD.

    The message names the file, the attribute path inside it (dotted, e.g.
    `control.power`) and the fix, so `digi gen` can print it as is.
    """

    def __init__(self, file: Path | str, path: str, problem: str, fix: str) -> None:
        self.file = str(file)
        self.path = path
        self.problem = problem
        self.fix = fix
        where = f"{self.file}: {path}" if path else self.file
        super().__init__(f"{where}: {problem}. Fix: {fix}")
