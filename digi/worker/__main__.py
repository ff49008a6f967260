"""`python -m digi.worker`: run the driver `handler.py` of the working directory.

The manager starts workers this way with the kind's driver directory as
working directory and first PYTHONPATH entry; the driver registers handlers
and ends with `digi.run()`, which serves until the digi is gone.
"""

from __future__ import annotations

import logging
import os
import runpy
import sys
from pathlib import Path


def main() -> None:
    logging.basicConfig(level=os.environ.get("DIGI_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per request to the manager would drown the driver's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    handler = Path.cwd() / "handler.py"
    if not handler.is_file():
        sys.exit(f"digi.worker: no handler.py in {Path.cwd()}; run the worker from the kind's driver directory")
    sys.path.insert(0, str(Path.cwd()))
    runpy.run_path(str(handler), run_name="__main__")


if __name__ == "__main__":
    main()
