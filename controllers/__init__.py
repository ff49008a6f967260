"""Meta controllers hosted by the controller-manager.

`setup(mgr)` is what `python -m manager` calls: it registers every meta
controller with the manager before it runs.
"""

from __future__ import annotations

from typing import Any


def setup(mgr: Any) -> None:
    from controllers import composition, piper

    composition.setup_from_env(mgr)
    piper.setup(mgr)
