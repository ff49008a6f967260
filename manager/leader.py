"""Leader election through a `coordination.k8s.io/v1` Lease, as client-go does it.

Candidates try to acquire or renew the Lease every `retry_period`. A Lease held
by someone else can be taken once its record has not changed for
`lease_duration` as observed on *our* clock (no clock comparison between
hosts). The leader renews every `retry_period`; if it cannot renew for
`renew_deadline` it stops leading (`is_leader` turns False first, then
`on_stopped_leading` runs; the manager exits, like controller-runtime). Because
`renew_deadline < lease_duration`, a leader stops writing before anyone else
may start. `release()` on graceful shutdown empties the holder so a standby
takes over at its next retry instead of after a full lease duration.

Defaults are controller-runtime's: 15 s lease, 10 s renew deadline, 2 s retry.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from digi.errors import Conflict, DigiError, NotFound
from manager import metrics
from manager.kube import AlreadyExists, Client
from manager.types import GVR

log = logging.getLogger(__name__)

LEASE_GVR = GVR("coordination.k8s.io", "v1", "leases")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self, client: Client, *, name: str, namespace: str, identity: str,
        lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
        on_started_leading: Callable[[], None] = lambda: None,
        on_stopped_leading: Callable[[], None] = lambda: None,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError(
                f"leader election needs retry period ({retry_period}s) < renew deadline "
                f"({renew_deadline}s) < lease duration ({lease_duration}s); adjust the --leader-elect-* flags"
            )
        self.client = client
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.on_started_leading, self.on_stopped_leading = on_started_leading, on_stopped_leading
        self._leader = threading.Event()
        self._stop = threading.Event()
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._status = metrics.leader_election_master_status.labels(name)
        self._status.set(0)
        self._thread = threading.Thread(target=self._run, name="leader election", daemon=True)

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.retry_period + 5)

    def _run(self) -> None:
        log.info("leader election: %s is a candidate for lease %s/%s", self.identity, self.namespace, self.name)
        while not self._stop.is_set():
            if self._try_acquire_or_renew():
                break
            self._stop.wait(self.retry_period)
        if self._stop.is_set():
            return
        self._set_leader(True)
        log.info("leader election: %s acquired lease %s/%s", self.identity, self.namespace, self.name)
        self.on_started_leading()
        last_renew = time.monotonic()
        while not self._stop.wait(self.retry_period):
            if self._try_acquire_or_renew():
                last_renew = time.monotonic()
            elif time.monotonic() - last_renew >= self.renew_deadline:
                self._set_leader(False)
                log.error("leader election: %s lost lease %s/%s (no renewal for %.0fs)",
                          self.identity, self.namespace, self.name, self.renew_deadline)
                self.on_stopped_leading()
                return

    def _set_leader(self, leader: bool) -> None:
        if leader:
            self._leader.set()
        else:
            self._leader.clear()
        self._status.set(1 if leader else 0)

    def _try_acquire_or_renew(self) -> bool:
        now = _now()
        duration = math.ceil(self.lease_duration)
        try:
            lease = self.client.get_or_none(LEASE_GVR, self.namespace, self.name)
            if lease is None:
                self.client.create(LEASE_GVR, self.namespace, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": duration,
                             "acquireTime": now, "renewTime": now, "leaseTransitions": 0},
                })
                return True
            spec = lease.get("spec") or {}
            record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("acquireTime"))
            if record != self._observed:
                self._observed, self._observed_at = record, time.monotonic()
            holder = spec.get("holderIdentity")
            held_by_other = bool(holder) and holder != self.identity
            if held_by_other and time.monotonic() < self._observed_at + float(spec.get("leaseDurationSeconds") or duration):
                return False
            if holder != self.identity:
                spec["acquireTime"] = now
                spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
            spec.update(holderIdentity=self.identity, leaseDurationSeconds=duration, renewTime=now)
            lease["spec"] = spec
            self.client.update(LEASE_GVR, self.namespace, lease)
            return True
        except (Conflict, AlreadyExists, NotFound):
            return False
        except DigiError as e:
            log.warning("leader election: cannot acquire or renew %s/%s: %s", self.namespace, self.name, e)
            return False

    def release(self) -> None:
        """Give the lease up (holder emptied) if we hold it; called on graceful shutdown."""
        if not self.is_leader:
            return
        self._set_leader(False)
        try:
            lease = self.client.get(LEASE_GVR, self.namespace, self.name)
            if lease.get("spec", {}).get("holderIdentity") != self.identity:
                return
            lease["spec"].update(holderIdentity=None, leaseDurationSeconds=1, renewTime=_now())
            self.client.update(LEASE_GVR, self.namespace, lease)
            log.info("leader election: %s released lease %s/%s", self.identity, self.namespace, self.name)
        except DigiError as e:
            log.warning("leader election: could not release %s/%s: %s", self.namespace, self.name, e)
