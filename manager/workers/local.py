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

Shared workers (`WorkerSpec.pool` set): one process per pool — namespace,
kind and driver directory — runs `python -m digi.worker` with the pool's
environment (`DIGI_WORKER_POOL`), supervised the same way. Its log and state
are `<plural>/<pool>.log|.json`; every member digi also gets `<name>.json`
with the pool's state, pid and restarts plus `"shared": <pool>` (so `digi
list` shows it per digi) and `<name>.log` as a link to the pool's log. Pool
Events go to the pool's oldest member (one Event, not one per digi). The last
member leaving stops the process.
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
    def __init__(self, spec: WorkerSpec, root: Path, record: Record, files: str = "") -> None:
        self.spec = spec
        self.log_path, self.state_path = worker_files(root, spec.key.namespace, spec.key.gvr.plural,
                                                      files or spec.key.name)
        self.record = record
        self.state = STARTING
        self.restarts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name=f"worker {spec.key}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _set(self, state: str, **extra: Any) -> None:
        self.state = state
        self._write_state(self.state_path, self.spec.key.name, state, **extra)

    def _write_state(self, path: Path, name: str, state: str, **extra: Any) -> None:
        # A pool's file is written by its supervisor thread and by the dispatcher's threads
        # (members joining and leaving) at once: unserialised, two writers shared the temp file
        # and one's rename failed, which killed the supervisor before it started the process.
        with self._state_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({
                "kind": self.spec.kind, "gvr": str(self.spec.key.gvr), "namespace": self.spec.key.namespace,
                "name": name, "state": state, "restarts": self.restarts,
                "pid": self.proc.pid if self.proc and state == RUNNING else None,
                "driver_dir": self.spec.driver_dir, "log": str(self.log_path), "since": time.time(), **extra,
            }))
            tmp.replace(path)

    @property
    def event_obj(self) -> dict[str, Any]:
        """The object the worker's Events are recorded on."""
        return self.spec.obj

    def describe(self) -> str:
        return f"worker pid {self.proc.pid if self.proc else '?'} runs {self.spec.driver_dir}/handler.py"

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
        while not self._stop.is_set():
            obj = self.event_obj
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
            self.record(obj, NORMAL, "WorkerStarted", f"{self.describe()} (log {self.log_path})")
            code = self.proc.wait()
            if self._stop.is_set():
                break
            obj = self.event_obj
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


class _Pool(_Worker):
    """A shared worker: one process hosting every member digi; state is mirrored into each member's file."""

    def __init__(self, spec: WorkerSpec, root: Path, record: Record) -> None:
        super().__init__(spec, root, record, files=spec.pool)
        self.root = root
        self.members: dict[ObjectKey, WorkerSpec] = {}
        self._members_lock = threading.Lock()

    def _member_files(self, key: ObjectKey) -> tuple[Path, Path]:
        return worker_files(self.root, key.namespace, key.gvr.plural, key.name)

    def _set(self, state: str, **extra: Any) -> None:
        self.state = state
        self._write_pool_state(**extra)
        with self._members_lock:
            members = list(self.members)
        for key in members:
            self._write_state(self._member_files(key)[1], key.name, state, shared=self.spec.pool, **extra)

    @property
    def event_obj(self) -> dict[str, Any]:
        with self._members_lock:
            return next(iter(self.members.values()), self.spec).obj

    def describe(self) -> str:
        return (f"shared worker {self.spec.pool} pid {self.proc.pid if self.proc else '?'} runs "
                f"{self.spec.driver_dir}/handler.py for {len(self.members)} {self.spec.kind} digis "
                f"in {self.spec.key.namespace}")

    def join(self, spec: WorkerSpec) -> None:
        with self._members_lock:
            self.members[spec.key] = spec
        log_link, state_path = self._member_files(spec.key)
        log_link.parent.mkdir(parents=True, exist_ok=True)
        if log_link.is_symlink() or not log_link.exists():
            log_link.unlink(missing_ok=True)
            log_link.symlink_to(self.log_path.name)
        self._write_state(state_path, spec.key.name, self.state, shared=self.spec.pool)
        self._write_pool_state()

    def _write_pool_state(self, **extra: Any) -> None:
        self._write_state(self.state_path, self.spec.pool, self.state, members=len(self.members), **extra)

    def leave(self, key: ObjectKey) -> bool:
        """Drop a member; True if none is left."""
        with self._members_lock:
            self.members.pop(key, None)
            empty = not self.members
        self._write_state(self._member_files(key)[1], key.name, STOPPED, shared=self.spec.pool)
        self._write_pool_state()
        return empty


PoolKey = tuple[str, str, str]  # namespace, gvr, pool


class LocalBackend:
    shared_workers = True

    def __init__(self, root: Path, record: Record) -> None:
        self.root = root
        self.record = record
        self._workers: dict[ObjectKey, _Worker] = {}
        self._pools: dict[PoolKey, _Pool] = {}
        self._pool_of: dict[ObjectKey, PoolKey] = {}
        self._missing: dict[ObjectKey, str] = {}
        self._lock = threading.Lock()

    def ensure(self, spec: WorkerSpec) -> None:
        pool_key = (spec.key.namespace, str(spec.key.gvr), spec.pool)
        with self._lock:
            current = self._workers.get(spec.key)
            if current is not None and current.spec == spec:
                return
            if spec.pool and self._pool_of.get(spec.key) == pool_key:
                return  # a pool's environment is fixed by its key and the manager's settings
            moving = current is not None or spec.key in self._pool_of
        if moving:
            self.remove(spec.key)
        if not spec.driver_dir or not (Path(spec.driver_dir) / "handler.py").is_file():
            self._no_driver(spec)
        elif spec.pool:
            self._join(spec, pool_key)
        else:
            worker = _Worker(spec, self.root, self.record)
            with self._lock:
                self._workers[spec.key] = worker
            worker.start()

    def _join(self, spec: WorkerSpec, pool_key: PoolKey) -> None:
        with self._lock:
            pool = self._pools.get(pool_key)
            new = pool is None
            if pool is None:
                pool = self._pools[pool_key] = _Pool(spec, self.root, self.record)
            self._pool_of[spec.key] = pool_key
            pool.join(spec)  # under the lock: a concurrent last leave must see this member
        if new:
            pool.start()

    def _leave(self, key: ObjectKey) -> None:
        with self._lock:
            pool_key = self._pool_of.pop(key, None)
            if pool_key is None or not self._pools[pool_key].leave(key):
                return
            pool = self._pools.pop(pool_key)
        pool.stop()

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
        """Stop the digi's own worker, or take it out of its shared worker (stopped when left empty)."""
        with self._lock:
            worker = self._workers.pop(key, None)
            self._missing.pop(key, None)
        if worker is not None:
            worker.stop()
        self._leave(key)

    def states(self) -> dict[ObjectKey, str]:
        with self._lock:
            states = {key: w.state for key, w in self._workers.items()}
            states.update({key: self._pools[pool].state for key, pool in self._pool_of.items()})
            states.update({key: NO_DRIVER for key in self._missing})
            return states

    def shutdown(self) -> None:
        with self._lock:
            workers: list[_Worker] = [*self._workers.values(), *self._pools.values()]
            self._workers.clear()
            self._pools.clear()
            self._pool_of.clear()
        for worker in workers:
            worker.request_stop()
        for worker in workers:
            worker.stop()
