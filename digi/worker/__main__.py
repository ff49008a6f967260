"""`python -m digi.worker`: run the driver `handler.py` of the working directory.

The manager starts workers this way with the kind's driver directory as
working directory and first PYTHONPATH entry; the driver registers handlers
and ends with `digi.run()`, which serves until the digi is gone.

With `DIGI_WORKER_POOL` set (a shared worker), `handler.py` is run as a
module named `handler` instead of `__main__`, so its
`if __name__ == "__main__": digi.run()` does not start a one-digi worker; it
only registers the handlers, which `digi.worker.shared.serve_shared` then runs
for every digi the manager assigns to this process.
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
    if not os.environ.get("DIGI_WORKER_POOL"):
        runpy.run_path(str(handler), run_name="__main__")
        return
    from digi.worker.shared import serve_shared

    runpy.run_path(str(handler), run_name="handler")
    serve_shared()


if __name__ == "__main__":
    main()
