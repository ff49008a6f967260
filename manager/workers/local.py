"""The local backend: one supervised `python -m digi.worker` process per digi.

Each worker runs with its driver directory as working directory and first
`PYTHONPATH` entry, the worker environment of the protocol (no Kubernetes
credentials: no KUBECONFIG is passed), stdout/stderr appended to
`$ROOT/workers/<namespace>/<plural>/<name>.log`. A supervisor thread per
worker restarts it when it exits, with exponential backoff (1 s doubling to
60 s, back to 1 s after 30 s of healthy running), writes its state to
`<name>.json` next to the log (what `digi list` shows) and records Events on
the digi (WorkerStarted, WorkerCrashed, WorkerExited). Workers get SIGTERM
when the manager process dies (Linux parent-death signal), so a killed
manager leaves no orphans that would double-drive a digi after its restart.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from manager.events import NORMAL, WARNING
from manager.types import ObjectKey
from manager.workers.base import BACKOFF, NO_DRIVER, RUNNING, STARTING, STOPPED, WorkerSpec

log = logging.getLogger(__name__)

INITIAL_BACKOFF, MAX_BACKOFF, HEALTHY_AFTER = 1.0, 60.0, 30.0
Record = Callable[[dict[str, Any], str, str, str], None]
_PR_SET_PDEATHSIG = 1


def worker_files(root: Path, namespace: str, plural: str, name: str) -> tuple[Path, Path]:
    """(log, state) files of a local worker."""
    base = root / "workers" / namespace / plural
    return base / f"{name}.log", base / f"{name}.json"


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _Worker:
    def __init__(self, spec: WorkerSpec, root: Path, record: Record) -> None:
        self.spec = spec
        self.log_path, self.state_path = worker_files(root, spec.key.namespace, spec.key.gvr.plural, spec.key.name)
        self.record = record
        self.state = STARTING
        self.restarts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name=f"worker {spec.key}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _set(self, state: str, **extra: Any) -> None:
        self.state = state
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({
            "kind": self.spec.kind, "gvr": str(self.spec.key.gvr), "namespace": self.spec.key.namespace,
            "name": self.spec.key.name, "state": state, "restarts": self.restarts,
            "pid": self.proc.pid if self.proc and state == RUNNING else None,
            "driver_dir": self.spec.driver_dir, "log": str(self.log_path), "since": time.time(), **extra,
        }))
        tmp.replace(self.state_path)

    def _spawn(self) -> subprocess.Popen[bytes]:
        driver_dir = str(self.spec.driver_dir)
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "DIGI_ROOT")}
        env.update(self.spec.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (driver_dir, env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "digi.worker"], cwd=driver_dir, env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent, start_new_session=True,
            )

    def _supervise(self) -> None:
        backoff = INITIAL_BACKOFF
        obj = self.spec.obj
        while not self._stop.is_set():
            try:
                self.proc = self._spawn()
            except OSError as e:
                self.record(obj, WARNING, "WorkerFailed", f"cannot start the worker in {self.spec.driver_dir}: {e}")
                self._set(BACKOFF, error=str(e))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            started = time.monotonic()
            self._set(RUNNING)
            self.record(obj, NORMAL, "WorkerStarted",
                        f"worker pid {self.proc.pid} runs {self.spec.driver_dir}/handler.py (log {self.log_path})")
            code = self.proc.wait()
            if self._stop.is_set():
                break
            if time.monotonic() - started >= HEALTHY_AFTER:
                backoff = INITIAL_BACKOFF
            self.restarts += 1
            if code == 0:
                # The driver returned: the manager said the digi is gone (a removal is on its way)
                # or a newer worker took over; restarting is right only if the digi stays.
                self.record(obj, NORMAL, "WorkerExited", f"worker exited; restart {self.restarts} in {backoff:.0f}s")
            else:
                self.record(obj, WARNING, "WorkerCrashed",
                            f"worker exited with code {code}; restart {self.restarts} in {backoff:.0f}s "
                            f"(log {self.log_path})")
            self._set(BACKOFF, exit_code=code)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
        self._set(STOPPED)

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._thread.join(timeout)


class LocalBackend:
    def __init__(self, root: Path, record: Record) -> None:
        self.root = root
        self.record = record
        self._workers: dict[ObjectKey, _Worker] = {}
        self._missing: dict[ObjectKey, str] = {}
        self._lock = threading.Lock()

    def ensure(self, spec: WorkerSpec) -> None:
        with self._lock:
            current = self._workers.get(spec.key)
            if current is not None and current.spec == spec:
                return
        if current is not None:
            current.stop()
        if not spec.driver_dir or not (Path(spec.driver_dir) / "handler.py").is_file():
            self._no_driver(spec)
            return
        worker = _Worker(spec, self.root, self.record)
        with self._lock:
            self._missing.pop(spec.key, None)
            self._workers[spec.key] = worker
        worker.start()

    def _no_driver(self, spec: WorkerSpec) -> None:
        with self._lock:
            self._workers.pop(spec.key, None)
            first = self._missing.get(spec.key) != spec.driver_dir
            self._missing[spec.key] = spec.driver_dir or ""
        if first:
            where = f"{spec.driver_dir}/handler.py does not exist" if spec.driver_dir else \
                "neither the digi nor its CRD has the annotation digi.dev/driver-dir"
            self.record(spec.obj, WARNING, "NoDriver",
                        f"cannot start a worker: {where}; start the digi with 'digi run KIND_DIR NAME' "
                        "or set the annotation to the directory holding handler.py")

    def remove(self, key: ObjectKey) -> None:
        with self._lock:
            worker = self._workers.pop(key, None)
            self._missing.pop(key, None)
        if worker is not None:
            worker.stop()

    def states(self) -> dict[ObjectKey, str]:
        with self._lock:
            states = {key: w.state for key, w in self._workers.items()}
            states.update({key: NO_DRIVER for key in self._missing})
            return states

    def shutdown(self) -> None:
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            worker.request_stop()
        for worker in workers:
            worker.stop()
