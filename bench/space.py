"""The benchmark's private dSpace: a fresh temp root, never ~/.digi.

`BenchSpace` brings up etcd + kube-apiserver + lake (+ the manager when asked)
through `digi.space.Space`, runs `digi` CLI verbs against that root, and
knows the manager's process so scale benchmarks can read its RSS and CPU and
restart it. Everything is torn down on exit, including the temp root.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import psutil

from digi.space.space import Space

REPO = Path(__file__).resolve().parents[1]
DIGI = Path(sys.executable).with_name("digi")


class CliError(RuntimeError):
    """A `digi` command failed; the message carries its output."""


class BenchSpace:
    def __init__(self, manager: bool, keep: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="digi-bench-"))
        self.space = Space(self.root, out=lambda line: print(f"  space: {line}", file=sys.stderr))
        self.with_manager = manager
        self.keep = keep

    def __enter__(self) -> BenchSpace:
        try:
            self.space.up(fresh=True, manager=self.with_manager)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.space.down()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def kubeconfig(self) -> Path:
        return self.space.kubeconfig

    def env(self) -> dict[str, str]:
        return self.space.env()

    def digi(self, *args: str, timeout: float = 120.0) -> str:
        """Run `digi --root ROOT ARGS…` and return its stdout."""
        argv = [str(DIGI), "--root", str(self.root), *args]
        out = subprocess.run(argv, capture_output=True, text=True, env=self.env(), cwd=REPO,
                             timeout=timeout, check=False)
        if out.returncode != 0:
            raise CliError(f"{' '.join(argv[3:])}: exit {out.returncode}: "
                           f"{(out.stderr or out.stdout).strip()[-2000:]}")
        return out.stdout

    # -- the manager process ---------------------------------------------------------------

    def manager_pid(self) -> int:
        entry = self.space.status()["components"].get("manager") or {}
        pid = entry.get("pid")
        if not pid:
            raise RuntimeError(f"the manager of {self.root} is not running; see its log "
                               f"{self.root / 'logs' / 'manager.log'}")
        return int(pid)

    def manager_process(self) -> psutil.Process:
        return psutil.Process(self.manager_pid())

    def manager_metrics_url(self) -> str:
        return str(self.space.status()["components"]["manager"]["metrics"])

    def restart_manager(self) -> None:
        """SIGTERM the manager we started, wait for it to exit, and start it again."""
        proc = self.manager_process()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        self.space.up(manager=True)

    def apiserver_pid(self) -> int:
        return int(self.space.status()["components"]["kube-apiserver"]["pid"])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll `predicate()` until true; return the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - start

