"""The supervisor of a local dSpace: starts, checks and stops its components.

Data flow: `up` loads `$ROOT/space.json` (ports chosen at the first `up`, and
any a newer version added, pids of running components), makes the credentials
(`pki`, the manager's webhook serving cert) and the kubeconfig, then for
each component in order either adopts the running process or starts a new one
and waits until its readiness probe passes, saving the pid as it goes. If any
step fails, everything this `up` started is stopped again and a `SpaceError`
names the component, its log (with its last lines) and the fix. `down` stops
the recorded processes in reverse order; `status` probes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digi.errors import DigiError
from digi.space import process
from digi.space.component import Component
from digi.space.components import SPECS, Ports
from digi.space.kubeconfig import write_kubeconfig
from digi.space.layout import Layout
from digi.space.pki import Pki, ensure_pki
from digi.space.ports import free_ports, is_free, port_owner
from digi.space.process import ProcessRef
from digi.space.tools import FIX, ToolNotFound
from digi.space.webhook import ensure_webhook_cert

_POLL = 0.2


class SpaceError(DigiError):
    """A component could not be started or is missing; the message says which and what to do."""

    def __init__(
        self, component: str, problem: str, *, fix: str, log: Path | None = None
    ) -> None:
        self.component = component
        self.problem = problem
        self.fix = fix
        self.log = log
        self.stopped: list[str] = []
        super().__init__(component, problem)

    def __str__(self) -> str:
        lines = [f"{self.component}: {self.problem}"]
        if self.log is not None:
            lines.append(f"  log: {self.log} (last lines):")
            lines += [f"    | {line}" for line in process.log_tail(self.log).splitlines()]
        lines.append(f"  fix: {self.fix}")
        if self.stopped:
            lines.append(f"  stopped what this 'up' had started: {', '.join(self.stopped)}")
        return "\n".join(lines)


@dataclass
class _State:
    """The contents of space.json."""

    ports: Ports = field(default_factory=dict)
    processes: dict[str, ProcessRef] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> _State:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        return cls(
            ports={k: dict(v) for k, v in data.get("ports", {}).items()},
            processes={k: ProcessRef.from_json(v) for k, v in data.get("processes", {}).items()},
        )

    def save(self, path: Path) -> None:
        data = {
            "ports": self.ports,
            "processes": {k: v.to_json() for k, v in self.processes.items()},
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)


def _quiet(_: str) -> None:
    pass


def _lacks_ports(ports: Ports) -> bool:
    return any(p not in ports.get(s.name, {}) for s in SPECS for p in s.port_names)


class Space:
    """A local dSpace rooted at `root`.

    `bin_dirs` replaces the directories searched for tools (default: `$DIGI_BIN`,
    the checkout's `bin/`, `PATH`); `out` receives progress lines.
    """

    def __init__(
        self,
        root: Path,
        *,
        bin_dirs: Sequence[Path] | None = None,
        out: Callable[[str], None] = _quiet,
    ) -> None:
        self.layout = Layout(Path(root).expanduser().absolute())
        self.bin_dirs = bin_dirs
        self.out = out

    # -- addresses -------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    def _component(self, name: str) -> Component:
        ports = self._recorded_ports()
        if not ports:
            raise SpaceError(
                name, f"the dSpace at {self.root} was never started", fix="run 'digi space up'"
            )
        return self._components(ports)[name]

    @property
    def apiserver_url(self) -> str:
        return self._component("kube-apiserver").url

    @property
    def lake_url(self) -> str:
        return self._component("lake").url

    @property
    def manager_url(self) -> str:
        return self._component("manager").url

    def env(self) -> dict[str, str]:
        """This process's environment pointed at this dSpace, for subprocesses."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "DIGI_ROOT": str(self.root)}

    # -- lifecycle -------------------------------------------------------------------------

    def up(self, fresh: bool = False, manager: bool = True) -> None:
        """Start every component that is not running (the manager only if `manager`)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked():
            if fresh:
                self._stop_all()
                for data in self.layout.data_dirs:
                    shutil.rmtree(data, ignore_errors=True)
                self.out(f"wiped {', '.join(str(d) for d in self.layout.data_dirs)}")
            pki = self._init()
            state = _State.load(self.layout.state)
            components = self._components(state.ports)
            wanted = [c for c in components.values() if manager or c.name != "manager"]
            write_kubeconfig(self.kubeconfig, components["kube-apiserver"].url, pki)
            self._start(wanted, state)

    def init(self) -> Ports:
        """Choose the ports and make the credentials, starting nothing; returns the ports."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked():
            self._init()
        return _State.load(self.layout.state).ports

    def _init(self) -> Pki:
        self._ensure_ports()
        pki = ensure_pki(self.layout.pki)
        ensure_webhook_cert(pki)
        return pki

    def _ensure_ports(self) -> Ports:
        """Every port of every spec, chosen and saved in space.json (under the lock)."""
        state = _State.load(self.layout.state)
        if not state.ports or _lacks_ports(state.ports):
            state.ports = self._allocate_ports(state.ports)
            state.save(self.layout.state)
        return state.ports

    def _recorded_ports(self) -> Ports:
        """The ports of a space that was started, completed if a newer version added some."""
        ports = _State.load(self.layout.state).ports
        if ports and _lacks_ports(ports):
            with self._locked():
                ports = self._ensure_ports()
        return ports

    def _start(self, wanted: list[Component], state: _State) -> None:
        pending = [c for c in wanted if not self._running(state, c.name)]
        argvs: dict[str, list[str]] = {}
        for comp in pending:
            try:
                argvs[comp.name] = comp.argv(self.bin_dirs)
            except ToolNotFound as e:
                raise SpaceError(
                    comp.name, f"executable {e.name!r} not found (searched {e.searched})", fix=FIX
                ) from None
        started: list[str] = []
        try:
            for comp in wanted:
                if comp.name not in argvs:
                    ref = state.processes[comp.name]
                    self.out(f"{comp.name:<15} already running (pid {ref.pid})")
                    self._wait_ready(comp, None, ref)
                    continue
                self._check_ports(comp)
                self.out(f"{comp.name:<15} starting (log {comp.log})")
                popen, ref = process.spawn(
                    argvs[comp.name], env={**os.environ, **comp.env}, log=comp.log, cwd=self.root
                )
                started.append(comp.name)
                state.processes[comp.name] = ref
                state.save(self.layout.state)
                self._wait_ready(comp, popen, ref)
        except BaseException as e:
            stopped = [name for name in reversed(started) if self._stop_one(state, name)]
            state.save(self.layout.state)
            if isinstance(e, SpaceError):
                e.stopped = stopped
            raise

    def down(self) -> list[str]:
        """Stop every component (SIGTERM, then SIGKILL after its timeout); returns those stopped."""
        if not self.layout.state.exists():
            return []
        with self._locked():
            return self._stop_all()

    def _stop_all(self) -> list[str]:
        self._ensure_ports()  # stop timeouts come from the components, built from every port
        state = _State.load(self.layout.state)
        stopped = [
            name
            for name in reversed([s.name for s in SPECS])
            if name in state.processes and self._stop_one(state, name)
        ]
        state.save(self.layout.state)
        return stopped

    def _stop_one(self, state: _State, name: str) -> bool:
        ref = state.processes.pop(name)
        timeout = self._components(state.ports)[name].stop_timeout
        was_running = process.stop(ref, timeout)
        if was_running:
            self.out(f"{name:<15} stopped (pid {ref.pid})")
        return was_running

    def status(self) -> dict[str, Any]:
        """`digi space status -o json`: every recorded component with pid, url, health, log."""
        ports = self._recorded_ports()
        state = _State.load(self.layout.state)
        components = self._components(ports) if ports else {}
        entries: dict[str, Any] = {}
        for name, comp in components.items():
            ref = state.processes.get(name)
            if ref is None:
                continue
            alive = ref.alive()
            entries[name] = {
                "pid": ref.pid if alive else None,
                "url": comp.url,
                "healthy": alive and comp.probe(),
                "log": str(comp.log),
                **comp.links,
            }
        return {"root": str(self.root), "kubeconfig": str(self.kubeconfig), "components": entries}

    # -- helpers ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise `up`/`down` on one root (two terminals, or a test and a user)."""
        with self.layout.lock.open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _components(self, ports: Ports) -> dict[str, Component]:
        pki = Pki(self.layout.pki)
        return {spec.name: spec.build(self.layout, pki, ports) for spec in SPECS}

    @staticmethod
    def _allocate_ports(ports: Ports) -> Ports:
        """`ports` plus a free port for each one a spec names and `ports` lacks.

        The ports chosen before are kept (URLs stay valid); a space.json written
        before a component gained a port (the manager's webhook) gets that port.
        """
        taken = {n for named in ports.values() for n in named.values()}
        missing = sum(p not in ports.get(s.name, {}) for s in SPECS for p in s.port_names)
        # The recorded ports may be free right now (space down): never hand them out twice.
        numbers = iter([n for n in free_ports(missing + len(taken)) if n not in taken])
        return {
            s.name: {p: ports.get(s.name, {}).get(p) or next(numbers) for p in s.port_names}
            for s in SPECS
        }

    @staticmethod
    def _running(state: _State, name: str) -> bool:
        ref = state.processes.get(name)
        return ref is not None and ref.alive()

    def _check_ports(self, comp: Component) -> None:
        for purpose, port in comp.ports.items():
            if not is_free(port):
                raise SpaceError(
                    comp.name,
                    f"port {port} ({purpose}) on 127.0.0.1 is taken by {port_owner(port)}",
                    fix=(
                        "stop that process; or run 'digi space down', delete "
                        f"{self.layout.state} and run 'digi space up' again to pick new ports"
                    ),
                )

    def _wait_ready(
        self, comp: Component, popen: subprocess.Popen[bytes] | None, ref: ProcessRef
    ) -> None:
        started = time.monotonic()
        deadline = started + comp.ready_timeout
        fix = f"read the log; {comp.hint}" if comp.hint else "read the log"
        while not comp.probe():
            if popen is not None and (code := popen.poll()) is not None:
                raise SpaceError(
                    comp.name, f"exited during start with code {code}", fix=fix, log=comp.log
                )
            if popen is None and not ref.alive():
                raise SpaceError(
                    comp.name, f"pid {ref.pid} exited while waiting for it to be ready",
                    fix=f"{fix}; then run 'digi space up' again", log=comp.log,
                )
            if time.monotonic() > deadline:
                raise SpaceError(
                    comp.name,
                    f"not ready after {comp.ready_timeout:.0f}s ({comp.probe.url} does not answer 200)",
                    fix=fix,
                    log=comp.log,
                )
            time.sleep(_POLL)
        self.out(f"{comp.name:<15} ready at {comp.url} ({time.monotonic() - started:.1f}s)")
