"""The Manager: wires the client, the cache, controllers, leader election and HTTP.

Start order in `run()`: informers start and list; HTTP servers listen
(`/readyz` turns 200 once every informer synced); leader election runs (or
leadership is immediate without `--leader-elect`); on gaining leadership the
controllers' worker pools start and `on_leading` hooks run (the dispatcher
starts digi workers there; meta controllers create their CRDs there, so a
standby never writes); a hook that raises is logged and the others still run.
`stop()` (SIGTERM) reverses it: controllers drain, `on_shutdown` hooks run
(workers stop), the lease is released, informers and HTTP stop. Losing the lease ends the process with exit code 1, as in
controller-runtime, so a manager never writes without the lease.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from manager.cache import Cache
from manager.controller import Controller
from manager.events import EventRecorder
from manager.kube import Client
from manager.leader import LeaderElector
from manager.server.app import build_app, metrics_app
from manager.server.serve import HttpServers, parse_bind

log = logging.getLogger(__name__)

_SYNC_REPORT_EVERY = 60.0  # seconds between the errors of a cache that does not sync


@dataclass
class LeaderElection:
    enabled: bool = False
    name: str = "digi-manager"
    namespace: str = "kube-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class Manager:
    def __init__(
        self, client: Client, *, lake_url: str = "", metrics_bind_address: str = "0",
        health_probe_bind_address: str = "0", bind_address: str = "",
        leader_election: LeaderElection | None = None, resync_period: float = 600.0,
        identity: str | None = None,
    ) -> None:
        self.client = client
        self.lake_url = lake_url
        self.identity = identity or f"{socket.gethostname()}_{uuid.uuid4()}"
        self.cache = Cache(client, resync_period=resync_period)
        self.leader_election = leader_election or LeaderElection()
        self.events = EventRecorder(client, host=socket.gethostname(), may_write=lambda: self.is_leader)
        self.http = build_app(self._not_ready)
        self.controllers: list[Controller] = []
        self._leading_hooks: list[Callable[[], None]] = []
        self._shutdown_hooks: list[Callable[[], None]] = []
        self._leader = threading.Event()
        self._done = threading.Event()
        self.exit_code = 0
        self._servers = HttpServers()
        self.api_address = parse_bind(bind_address or health_probe_bind_address)
        self._binds = {
            "api": self.api_address,
            "metrics": parse_bind(metrics_bind_address),
        }
        self._elector: LeaderElector | None = None
        if self.leader_election.enabled:
            le = self.leader_election
            self._elector = LeaderElector(
                client, name=le.name, namespace=le.namespace, identity=self.identity,
                lease_duration=le.lease_duration, renew_deadline=le.renew_deadline,
                retry_period=le.retry_period,
                # Off the election thread, which must keep renewing while controllers start.
                on_started_leading=lambda: threading.Thread(
                    target=self._start_leading, name="start leading", daemon=True).start(),
                on_stopped_leading=self._lost_lease,
            )

    # -- what controllers use --------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    def add_controller(self, controller: Controller) -> Controller:
        """Register a controller; its workers start when this manager leads."""
        self.controllers.append(controller)
        if self.is_leader:
            controller.start()
        return controller

    def on_leading(self, fn: Callable[[], None]) -> None:
        """Run `fn` when this manager becomes the leader (now, if it already is)."""
        self._leading_hooks.append(fn)
        if self.is_leader:
            self._run_leading_hook(fn)

    def on_shutdown(self, fn: Callable[[], None]) -> None:
        """Run `fn` on graceful shutdown, after controllers drained, before the lease is released."""
        self._shutdown_hooks.append(fn)

    # -- lifecycle -----------------------------------------------------------------
    def _not_ready(self) -> str | None:
        if not self.cache.synced:
            return "informers have not synced yet"
        return None

    def start(self) -> None:
        self.cache.start()
        api, metrics = self._binds["api"], self._binds["metrics"]
        if api:
            self._servers.add(self.http, *api)
        if metrics and metrics != api:
            self._servers.add(metrics_app(), *metrics)
        self._servers.start()
        if self._elector is not None:
            self._elector.start()
        else:
            self._start_leading()

    def run(self) -> int:
        """Start, block until `stop()` (or a lost lease), shut down; the exit code."""
        self.start()
        self._done.wait()
        self._shutdown()
        return self.exit_code

    def stop(self) -> None:
        self._done.set()

    def _start_leading(self) -> None:
        # Controllers on a partial cache would take the digis it lacks for deleted ones
        # (the dispatcher would stop their workers): never lead before every informer synced.
        # Until then /readyz answers 503 and the worker API refuses writes.
        since = reported = time.monotonic()
        # Short waits, so a SIGTERM meanwhile is noticed at once.
        while not self.cache.wait_synced(1.0):
            if self._done.is_set():
                return
            if time.monotonic() - reported >= _SYNC_REPORT_EVERY:
                reported = time.monotonic()
                log.error("manager %s: informers not synced after %.0fs; not starting controllers until they are "
                          "(are list requests to the API server failing?)", self.identity, reported - since)
        self._leader.set()
        log.info("manager %s leads: starting %d controllers", self.identity, len(self.controllers))
        for controller in self.controllers:
            controller.start()
        for hook in self._leading_hooks:
            self._run_leading_hook(hook)

    @staticmethod
    def _run_leading_hook(hook: Callable[[], None]) -> None:
        # Hooks belong to different controllers (CRD bootstrap, workers, the webhook's
        # registration): one that fails must not keep the others from running.
        try:
            hook()
        except Exception:
            log.exception("on_leading hook %r failed; the other hooks still run", hook)

    def _lost_lease(self) -> None:
        self._leader.clear()
        self.exit_code = 1
        self._done.set()

    def _shutdown(self) -> None:
        log.info("manager %s shutting down", self.identity)
        for controller in self.controllers:
            controller.stop()
        for hook in self._shutdown_hooks:
            try:
                hook()
            except Exception:
                log.exception("shutdown hook %r failed", hook)
        if self._elector is not None:
            self._elector.stop()
            self._elector.release()
        self._leader.clear()
        self.cache.stop()
        self._servers.stop()
