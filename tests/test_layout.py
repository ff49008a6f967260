"""The import names `digi`, `manager` and `controllers` are this checkout's packages.

`manager` and `controllers` are generic names; another installed distribution
providing them would silently shadow ours, so check where they resolve and
which distributions claim them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["digi", "manager", "controllers"])
def test_import_resolves_to_this_checkout(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().parent == REPO / name


@pytest.mark.parametrize("name", ["digi", "manager", "controllers"])
def test_only_the_digi_distribution_provides_the_name(name: str) -> None:
    providers = set(importlib.metadata.packages_distributions().get(name, []))
    assert providers <= {"digi"}, f"{name!r} is also provided by {providers - {'digi'}}"
