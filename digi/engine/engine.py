"""The reconcile cycle of one digi (spec §4.3), independent of how events arrive.

Data flow: the transport (`digi.worker`) calls `Engine.handle(obj, old)` for
each model event, in order, or `Engine.handle_batch(events)` with the events
that queued up while a cycle ran: only the newest is reconciled (kopf batches
an object's events the same way), diffed against the last model the engine
saw, so no change in between goes unnoticed. The engine skips events it caused itself and
events that bring no new generation (unless handlers are pending), computes the diff, (re)installs
reflexes, runs the handlers in ascending priority on a copy of the model, and
writes the result back once as a JSON merge patch through its `ModelClient`,
guarded by the event's `resourceVersion`. A lost write (409) keeps the
handlers that ran "pending" and runs them again at once on the newer model,
read back through the client: waiting for the next event instead lost
intents when the write that won was already delivered (the room's write
losing to the mounter's, say). Only if that re-read fails do pending
handlers wait for the next event. A handler
that raises is logged with its traceback, the cycle stops there and the
reason is written to `obs.reason`; the engine itself never raises from
`handle`.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from digi import util
from digi.engine import current
from digi.engine.diff import DiffEntry, back_prop, spec_diff
from digi.engine.handlers import Handler, Registry
from digi.engine.reflex import compile_reflexes
from digi.errors import Conflict, DigiError

logger = logging.getLogger("digi.engine")

REASON_PATH = ("obs", "reason")
# Immediate re-runs after lost writes before waiting for the next event instead; bounded so a
# model that another writer keeps changing cannot spin the driver.
_CONFLICT_RETRIES = 5


class ModelClient(Protocol):
    """How the engine reads and writes its digi's object (the transport's seam)."""

    def get(self) -> dict[str, Any]:
        """The whole object (apiVersion, kind, metadata, spec)."""
        ...

    def patch(self, patch: dict[str, Any], *, resource_version: str | None = None) -> dict[str, Any]:
        """JSON merge patch of the object; with `resource_version`, raise `digi.errors.Conflict`
        if the object moved on. Returns the new object."""
        ...


class _Sub:
    """A subtree handed to a handler; attached to the model afterwards if it was missing and got filled."""

    def __init__(self, model: dict[str, Any], path: tuple[str, ...]) -> None:
        self.path = path
        found = util.deep_get(model, list(path)) if path else model
        self.missing = found is None
        self.value = {} if found is None else found

    def attach(self, model: dict[str, Any]) -> None:
        if self.missing and isinstance(self.value, dict) and self.value:
            util.deep_set(model, list(self.path), self.value)


class Engine:
    """Runs a registry's handlers for one digi; see the module docstring for the cycle."""

    def __init__(self, registry: Registry, client: ModelClient, *, name: str = "") -> None:
        self.registry = registry
        self.client = client
        self.name = name
        self.reconcile_count = 0
        self._started = False
        self._lock = threading.Lock()
        self._view: dict[str, Any] = {}
        self._last_generation: int | None = None
        self._own_rv: str | None = None
        self._do_not_skip = False
        self._pending: set[int] = set()
        self._reflex_errors: list[str] = []
        self._compiled_from: tuple[Any, int] | None = None
        self._handlers = self._order(registry.handlers())
        self._reason_written: str | None = None
        current.set_latest(self)

    # --- what drivers reach through digi.rc -------------------------------------------

    def view(self) -> dict[str, Any]:
        """The latest model (spec) this engine saw or wrote, as a copy."""
        with self._lock:
            return copy.deepcopy(self._view)

    def do_not_skip(self) -> None:
        """Process the event caused by this cycle's write instead of skipping it."""
        self._do_not_skip = True

    @property
    def pending(self) -> list[str]:
        """Names of the handlers that ran but whose write has not landed yet."""
        return [h.name for h in self._handlers if h.order in self._pending]

    def handlers(self) -> list[Handler]:
        """The handlers that run, in order (coded, reflex-adjusted, negative priority dropped)."""
        return list(self._handlers)

    # --- the cycle ------------------------------------------------------------

    def handle(self, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        """Run one reconcile cycle for the model event `obj` (with the previous model `old`)."""
        with current.active(self):
            try:
                self._handle(obj, old)
            except Exception:
                logger.exception("%s: reconcile failed; waiting for the next event", self.name or "digi")

    def handle_batch(self, events: Sequence[tuple[Mapping[str, Any], Mapping[str, Any] | None]]) -> None:
        """One cycle for the newest of `events` ((object, old) pairs in watch order).

        Intents are levels: a cycle on the newest model serves every earlier one, and a
        driver that fell behind catches up in one write instead of one per event. The
        diff base is the model before the batch, or this engine's own write when that is
        among them, so the driver's own changes do not re-trigger its handlers.
        """
        obj, old = events[-1][0], events[0][1]
        for seen, _ in events[:-1]:
            if self._own_rv is not None and (seen.get("metadata") or {}).get("resourceVersion") == self._own_rv:
                old = seen
        self.handle(obj, old)

    def _handle(self, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        lost, rereads = self._cycle(obj, old), 0
        while lost and rereads < _CONFLICT_RETRIES:
            try:
                fresh = self.client.get()
            except DigiError as e:
                logger.info("%s: cannot re-read the model (%s); %d handler(s) pending for the next event",
                            self.name, e, len(self._pending))
                return
            obj, old, rereads = fresh, obj, rereads + 1
            lost = self._cycle(obj, old)
        if lost:
            logger.info("%s: still conflicting after %d re-reads; %d handler(s) pending for the next event",
                        self.name, rereads, len(self._pending))

    def _cycle(self, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
        """One cycle on `obj`; True when its write was lost to a newer model (409)."""
        meta = obj.get("metadata") or {}
        rv, generation = meta.get("resourceVersion"), meta.get("generation")
        spec: dict[str, Any] = copy.deepcopy(dict(obj.get("spec") or {}))
        with self._lock:
            self._view = copy.deepcopy(spec)
        if rv is not None and rv == self._own_rv:
            logger.debug("%s: skip generation %s, the driver's own write", self.name, generation)
            self._last_generation = generation
            return False
        if generation is not None and generation == self._last_generation and not self._pending:
            # With handlers pending, a model of the same generation still runs them: the write
            # they lost to may have changed metadata only, which leaves the generation alone.
            logger.debug("%s: skip generation %s, already reconciled", self.name, generation)
            return False
        self._last_generation = generation
        self.reconcile_count += 1

        # The first event a (new) engine sees is its start: every handler runs, as on the
        # original's resume, even if the transport knows an older model to diff against.
        old_spec = None if old is None or not self._started else dict(old.get("spec") or {})
        self._started = True
        diff = spec_diff(old_spec, spec)
        self._sync_reflexes(spec)
        proc = copy.deepcopy(spec)
        failure = self._run_handlers(proc, spec, old_spec or {}, diff)
        self._report(proc, failure or "; ".join(self._reflex_errors) or None)
        return self._write(spec, proc, rv)

    def _run_handlers(self, proc: dict[str, Any], spec: dict[str, Any], old_spec: dict[str, Any],
                      diff: list[DiffEntry]) -> str | None:
        """Run due handlers on `proc` in order; on a failure, undo that handler's edits and say why."""
        view = copy.deepcopy(spec)
        bp = back_prop(diff)
        for handler in self._handlers:
            snapshot = None  # taken only for a handler that runs: a copy per handler per cycle was costly
            try:
                if not (handler.order in self._pending or handler.holds(proc, diff)):
                    continue
                snapshot = copy.deepcopy(proc)
                self._pending.add(handler.order)
                # One _Sub per path, so `sv` and `mounts` of an @on.mount handler are the same dict.
                subs = {path: _Sub(proc, path) for path in {handler.path, ("mount",), ("obs",), ("meta",)}}
                handler.call({
                    "subview": subs[handler.path].value, "mount": subs[("mount",)].value,
                    "obs": subs[("obs",)].value, "meta": subs[("meta",)].value,
                    "proc_view": proc, "view": view, "old_view": old_spec,
                    "diff": diff, "back_prop": bp, "typ": handler.child_typ,
                })
                for sub in subs.values():
                    sub.attach(proc)
            except Exception as e:
                logger.exception("%s: handler %s failed; cycle stopped", self.name or "digi", handler.name)
                if snapshot is not None:
                    proc.clear()
                    proc.update(snapshot)
                return f"handler {handler.name} failed: {type(e).__name__}: {e}"
        return None

    def _report(self, proc: dict[str, Any], reason: str | None) -> None:
        """Show a failure on `obs.reason`; clear a reason this engine wrote once things work again."""
        if reason is not None:
            util.deep_set(proc, list(REASON_PATH), reason)
            self._reason_written = reason
        elif self._reason_written is not None:
            obs = proc.get("obs")
            if isinstance(obs, dict) and obs.get("reason") == self._reason_written:
                del obs["reason"]
            self._reason_written = None

    def _write(self, spec: dict[str, Any], proc: dict[str, Any], rv: str | None) -> bool:
        """Write the cycle's changes; True when the model moved on first (409)."""
        patch = util.merge_patch(spec, proc)
        do_not_skip, self._do_not_skip = self._do_not_skip, False
        if not patch:
            self._pending.clear()
            return False
        try:
            new = self.client.patch({"spec": patch}, resource_version=rv)
        except Conflict:
            logger.info("%s: model moved on past %s; re-running %d handler(s) on the newer model",
                        self.name, rv, len(self._pending))
            return True
        self._pending.clear()
        with self._lock:
            self._view = copy.deepcopy(new.get("spec") or {})
        self._own_rv = None if do_not_skip else (new.get("metadata") or {}).get("resourceVersion")
        return False

    # --- reflexes -------------------------------------------------------------

    def _sync_reflexes(self, spec: Mapping[str, Any]) -> None:
        """Recompute the handler list when the model's reflexes or the registry changed."""
        source = spec.get("reflex") or {}
        key = (source, len(self.registry.handlers()))
        if key == self._compiled_from:
            return
        self._compiled_from = copy.deepcopy(key)
        compiled = compile_reflexes(source if isinstance(source, Mapping) else {}, self.registry.handlers())
        for error in compiled.errors:
            logger.warning("%s: %s", self.name, error)
        self._reflex_errors = compiled.errors
        self._handlers = self._order(compiled.handlers)

    @staticmethod
    def _order(handlers: list[Handler]) -> list[Handler]:
        """Ascending priority, registration order among equals; negative priority is disabled."""
        return sorted((h for h in handlers if h.priority >= 0), key=lambda h: (h.priority, h.order))
