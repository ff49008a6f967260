"""Moving records for one pipeline, exactly once and in order (spec §7, eoio).

`PipelineRun.step()` moves at most one batch from the pipeline's sources to
its destination:

1. resolve the sources (mounts may have changed) and read each branch tip;
   a missing or still-empty branch is skipped (the lake reads an empty branch
   as `main`, so it must not be queried). Every read below is pinned to that
   tip commit, so a batch holds exactly what the source had at it;
2. know the marks: per source a `Mark(ts, commit)` (every record of the source
   at `commit` with `ts <= ts` was moved, nothing else). With eoio they live in
   the destination's commit metadata (`{pipelet, watermarks: [{pool, branch,
   ts, commit}]}`); they are read from the lake at start and whenever a write's
   outcome is unknown, otherwise kept in memory;
3. late records first: when a tip moved past its mark's commit, records at the
   tip within `late_window` seconds below the mark that the mark's commit did
   not hold (another writer committed them after a later-stamped record) are
   moved as one batch;
4. otherwise, per source with a new tip, find the batch's upper bound: the `ts`
   of the `batch_size`-th record after the mark (all records sharing that `ts`
   go into the same batch, so a batch boundary never splits equal times), and
   run one Zed query: per source `ts > mark and ts <= upper | flow`, tag the
   source when `patch_source`, then `flow_agg` over the union;
   (when the config is new, the same query first runs over an empty range, so
   a broken flow is reported at once rather than with the next record);
5. stamp the output: `event_ts` keeps the source's time (the record's own, else
   its `ts`, else the batch's upper bound) and `ts` becomes the load time from
   `Stamps` plus the record's rank in the batch (in nanoseconds, in the sources'
   `ts` order), so the destination's `ts` order is the piper's commit order, a
   source's records keep their order, and the next hop's marks hold;
6. load the typed output into the destination in ONE commit whose metadata
   carries the new marks. The records and the marks move together, so a crash
   before the commit repeats the batch and a crash after it does not.

Without eoio (`eoio: false`) the watermarks live in memory only, so each
start of the manager begins at the sources' current end: nothing is moved
twice, but records loaded while no manager ran are not moved.

Only records whose `ts` is a Zed `time` are moved (what `digi.pool.load`
writes). A batch whose output is empty (a flow that filtered everything) advances the
watermark in memory only; replaying it after a restart again yields nothing.

Errors: a flow the lake rejects (`InvalidQuery`) puts the run in `error` with
the lake's message and stops it until its config changes; an unreachable lake,
a commit conflict or a query that failed while being answered
(`LakeUnavailable`, `LakeConflict`, `QueryError`) is raised to the scheduler,
which retries with backoff. Nothing is ever deleted
from a source.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from controllers.piper.spec import Pipeline, PipelineConfig, Source
from digi.lake import (
    EMPTY_COMMIT,
    InvalidQuery,
    LakeClient,
    LakeConflict,
    LakeError,
    LakeNotFound,
    LakeUnavailable,
    QueryError,
    zed,
)

log = logging.getLogger(__name__)

_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z")

_EPOCH = "1970-01-01T00:00:00Z"

RUNNING, PAUSED, ERROR, WAITING = "running", "paused", "error", "waiting"


@dataclass
class Status:
    state: str = WAITING
    message: str = ""
    lag_seconds: float = 0.0
    records_total: int = 0
    errors_total: int = 0
    sources: list[str] = field(default_factory=list)
    watermarks: dict[str, str] = field(default_factory=dict)


def _parse(ts: str) -> datetime | None:
    """A lake time (RFC 3339, up to nanoseconds, `Z`) as a datetime (microseconds)."""
    match = _RFC3339.fullmatch(ts)
    if match is None:
        return None
    return datetime.fromisoformat(f"{match[1]}.{(match[2] or '0')[:6]:0<6}+00:00")


def _seconds_since(ts: str) -> float:
    """Seconds from a lake time to now."""
    moment = _parse(ts)
    return 0.0 if moment is None else max(0.0, time.time() - moment.timestamp())


def _before(ts: str, seconds: float) -> str:
    """The lake time `seconds` before `ts` (rounded down to microseconds)."""
    moment = _parse(ts)
    if moment is None:
        return _EPOCH
    return zed.format_time(max(moment - timedelta(seconds=seconds), datetime(1970, 1, 1, tzinfo=UTC)))


@dataclass(frozen=True)
class Mark:
    """How far a source has been moved: every record of the source at commit `commit` with
    `ts <= ts` has been moved, none with a later `ts`, and nothing committed after `commit`.

    The commit is what makes late records visible: a record committed after `commit` with a
    `ts` at or below the mark (another writer's slower commit) is in the source at its new tip
    but not at `commit`. `commit` is empty for watermarks written before it was recorded."""

    ts: str
    commit: str = ""


# Between two stamps of one destination. A batch's records take stamp + 1 ns … stamp + n ns
# (`_finish`), so batches stay apart up to a million records each (sources times batch_size).
STAMP_SPACING = timedelta(milliseconds=1)


class Stamps:
    """The `ts` the piper gives its output: per destination, strictly increasing, and taken
    under that destination's lock, which `take` holds until the caller has committed. So the
    piper's own writes into a branch (several pipelines may feed one `main`) are in `ts` order =
    commit order, which is what the next hop's watermark relies on."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Source, threading.Lock] = {}
        self._last: dict[Source, datetime] = {}

    @contextlib.contextmanager
    def take(self, dst: Source) -> Iterator[str]:
        with self._guard:
            lock = self._locks.setdefault(dst, threading.Lock())
        with lock:
            now = datetime.now(UTC)
            last = self._last.get(dst)
            if last is not None and now < last + STAMP_SPACING:
                now = last + STAMP_SPACING  # the clock did not move far enough (or went back)
            self._last[dst] = now
            yield zed.format_time(now)


class PipelineRun:
    """The moving state of one pipeline; `step()` is called by one thread at a time.

    `stamps` is shared by every run of one piper (so two pipelines into one branch stamp in
    commit order); `late_window` is how far (seconds of `ts`) below a source's watermark a record
    that another writer committed late is still looked for."""

    def __init__(self, pipeline: Pipeline, lake: LakeClient, *, batch_size: int = 1000,
                 late_window: float = 10.0, stamps: Stamps | None = None) -> None:
        self.pipeline = pipeline
        self.lake = lake
        self.batch_size = batch_size
        self.late_window = late_window
        self.stamps = stamps or Stamps()
        self.status = Status()
        self._watermarks: dict[Source, Mark] | None = None
        self._tips: dict[Source, str] = {}
        self._failed: PipelineConfig | None = None
        self._dst_ready = False
        self._forget = False
        self._validated: PipelineConfig | None = None

    @property
    def config(self) -> PipelineConfig:
        return self.pipeline.config

    def update(self, pipeline: Pipeline) -> None:
        """Take a new description; a changed config clears a flow error and re-reads state."""
        if pipeline.config != self.config:
            self._failed = None
            self._tips.clear()
            if pipeline.config.dst != self.config.dst or pipeline.config.eoio != self.config.eoio:
                self._watermarks = None
                self._dst_ready = False
        self.pipeline = pipeline

    def forget_state(self) -> None:
        """After a reconnect: re-read tips and watermarks from the lake (the stream has no replay).

        Safe to call from another thread: the next step does the forgetting."""
        self._forget = True

    def step(self) -> bool:
        """Move at most one batch; True when more may be waiting.

        Raises `LakeUnavailable`/`LakeConflict` for the caller to retry later."""
        if self.config.pause:
            self._set(PAUSED, "paused (pause: true)")
            self._measure_lag()
            return False
        if self._failed == self.config:
            self._measure_lag()
            return False
        try:
            return self._step()
        except InvalidQuery as exc:
            self.status.errors_total += 1
            if "pool not found" in str(exc) or "branch not found" in str(exc):
                # A source or destination vanished between the tip check and the query:
                # not the flow's fault; the next check resolves the sources again.
                self._set(ERROR, str(exc))
                return False
            self._failed = self.config
            self._set(ERROR, f"{exc} (the pipeline is paused until its flow is fixed)")
            return False
        except (LakeUnavailable, LakeConflict, QueryError) as exc:
            # QueryError: the lake failed while answering (e.g. it is shutting down).
            self.status.errors_total += 1
            self._set(ERROR, str(exc))
            raise

    def _measure_lag(self) -> None:
        """While stopped (paused, bad flow): lag = age of the oldest record still waiting."""
        try:
            if self._watermarks is None:
                self._watermarks = self._read_watermarks()
            oldest = []
            for src in self.pipeline.resolve():
                if self.lake.branch_tip(src.pool, src.branch) in (None, EMPTY_COMMIT):
                    continue
                rows = self.lake.query(f"from {zed.pool_ref(src.pool, src.branch)} | {self._after(src)} | min(ts)")
                if rows and rows[0] is not None:
                    oldest.append(_seconds_since(rows[0]))
        except LakeError:
            return  # keep the last figure; the lake's trouble is reported by the next step
        self.status.lag_seconds = max(oldest, default=0.0)

    def _set(self, state: str, message: str) -> None:
        self.status.state, self.status.message = state, message

    def _step(self) -> bool:
        cfg = self.config
        if self._forget:
            self._forget = False
            self._tips.clear()
            self._watermarks = None
            self._dst_ready = False
        sources = [s for s in self.pipeline.resolve() if s != cfg.dst]
        self.status.sources = [str(s) for s in sources]
        tips = {}
        for src in sources:
            tip = self.lake.branch_tip(src.pool, src.branch)
            if tip is not None and tip != EMPTY_COMMIT:
                tips[src] = tip
        if not self._dst_ready:
            self.lake.ensure_pool(cfg.dst.pool)
            if cfg.dst.branch != "main":
                self.lake.ensure_branch(cfg.dst.pool, cfg.dst.branch)
            self._dst_ready = True
        if self._watermarks is None:
            self._watermarks = self._read_watermarks()
        marks = self._watermarks
        if tips and self._validated != cfg:
            # Run the flow over an empty range so a broken flow shows up now, not with the next record.
            empty = {s: (tip, marks.get(s, Mark(_EPOCH)).ts) for s, tip in tips.items()}
            self.lake.query_zjson(self._batch_query(empty, zed.format_time(datetime.now(UTC))))
            self._validated = cfg
        changed = [s for s, tip in tips.items() if self._tips.get(s) != tip]
        if cfg.skip_history or not cfg.eoio:
            for src in changed:
                if src not in marks:
                    start = self._max_ts(src, tips[src])
                    if start is not None:
                        marks[src] = Mark(start, tips[src])
        # Late records first: they sit below the watermark, so no later batch would pick them up.
        for src in changed:
            mark = marks.get(src)
            if mark is not None and mark.commit and mark.commit != tips[src] and self._has_late(src, mark, tips[src]):
                return self._move(
                    functools.partial(self._late_query, src, mark, tips[src]),
                    {src: Mark(mark.ts, tips[src])},
                    mark.ts,
                )
        uppers: dict[Source, tuple[str, str]] = {}
        for src in changed:
            upper = self._upper(src, tips[src])
            if upper is not None:
                uppers[src] = (tips[src], upper)
                continue
            self._tips[src] = tips[src]
            if src in marks:
                # Nothing after the mark and nothing late: the mark holds at the new tip too.
                marks[src] = Mark(marks[src].ts, tips[src])
        if not uppers:
            waiting = [str(s) for s in sources if s not in tips]
            note = f"; waiting for {', '.join(waiting)}" if waiting else ""
            self.status.lag_seconds = 0.0
            self._set(
                RUNNING if tips else WAITING,
                f"up to date{note}" if tips else f"no source has data yet{note}",
            )
            return False
        return self._move(
            lambda stamp: self._batch_query(uppers, stamp),
            {s: Mark(upper, tip) for s, (tip, upper) in uppers.items()},
            min(upper for _, upper in uppers.values()),
        )

    def _move(self, build: Callable[[str], str], marks: dict[Source, Mark], oldest: str) -> bool:
        """Run the batch query `build(stamp)` and load its output with the new `marks` in one commit.

        The stamp is taken under the destination's lock and the lock is held until the commit,
        so no other pipeline of this piper commits a later stamp into the destination first."""
        cfg = self.config
        assert self._watermarks is not None
        moved = {**self._watermarks, **marks}
        with self.stamps.take(cfg.dst) as stamp:
            lines = self.lake.query_zjson(build(stamp))
            if lines:
                meta = {
                    "pipelet": cfg.id,
                    "watermarks": [
                        {"pool": s.pool, "branch": s.branch, "ts": zed.Time(m.ts), "commit": m.commit}
                        for s, m in sorted(moved.items())
                    ],
                }
                try:
                    self.lake.load_zjson(
                        cfg.dst.pool,
                        cfg.dst.branch,
                        lines,
                        meta=meta if cfg.eoio else None,
                        message=f"{cfg.id}: {len(lines)} records",
                    )
                except (LakeUnavailable, LakeConflict):
                    # Whether the commit landed is unknown: the destination's metadata will tell.
                    self._watermarks = None
                    raise
        self._watermarks = moved
        self.status.records_total += len(lines)
        self.status.watermarks = {str(s): m.ts for s, m in sorted(moved.items())}
        self.status.lag_seconds = _seconds_since(oldest)
        self._set(RUNNING, f"moved {len(lines)} records")
        return True

    def _read_watermarks(self) -> dict[Source, Mark]:
        dst = self.config.dst
        if not self.config.eoio or self.lake.branch_tip(dst.pool, dst.branch) in (None, EMPTY_COMMIT):
            return {}
        meta = self.lake.commit_meta(
            self.config.dst.pool,
            self.config.dst.branch,
            f"meta.pipelet=={zed.quote(self.config.id)}",
        )
        marks = {
            Source(w["pool"], w["branch"]): Mark(w["ts"], w.get("commit") or "")
            for w in (meta or {}).get("watermarks") or []
        }
        self.status.watermarks = {str(s): m.ts for s, m in sorted(marks.items())}
        return marks

    def _after(self, src: Source) -> str:
        """The filter selecting a source's records after its watermark."""
        assert self._watermarks is not None
        mark = self._watermarks.get(src)
        return f"ts > {zed.time_literal(mark.ts)}" if mark else "is(ts, <time>)"

    def _max_ts(self, src: Source, tip: str) -> str | None:
        rows = self.lake.query(f"from {zed.pool_ref(src.pool, tip)} | is(ts, <time>) | max(ts)")
        return rows[0] if rows and rows[0] is not None else None

    def _upper(self, src: Source, tip: str) -> str | None:
        # Read at the tip's commit, not the branch: the batch must hold exactly what the
        # source had at `tip`, or a record committed meanwhile would be moved again as late.
        rows = self.lake.query(
            f"from {zed.pool_ref(src.pool, tip)} | {self._after(src)} "
            f"| sort ts | head {self.batch_size} | max(ts)"
        )
        return rows[0] if rows and rows[0] is not None else None

    def _late_window(self, mark: Mark) -> str:
        return f"ts > {zed.time_literal(_before(mark.ts, self.late_window))} and ts <= {zed.time_literal(mark.ts)}"

    def _late_legs(self, src: Source, mark: Mark, tip: str) -> str:
        """Records of `src` at `tip` at or below the mark that it did not hold at `mark.commit`."""
        window = self._late_window(mark)
        return (
            f"from (\n  pool {zed.pool_ref(src.pool, tip)} => {window}\n"
            f"  pool {zed.pool_ref(src.pool, mark.commit)} => {window}\n) | anti join on this=this"
        )

    def _has_late(self, src: Source, mark: Mark, tip: str) -> bool:
        try:
            rows = self.lake.query(f"{self._late_legs(src, mark, tip)} | count()")
        except LakeNotFound:
            # The mark's commit is gone (the source pool was recreated): nothing to compare with.
            assert self._watermarks is not None
            self._watermarks[src] = Mark(mark.ts)
            return False
        return bool(rows and rows[0])

    def _late_query(self, src: Source, mark: Mark, tip: str, stamp: str) -> str:
        return self._finish(f"{self._late_legs(src, mark, tip)} | {self._tail(src)}", mark.ts, stamp)

    def _tail(self, src: Source) -> str:
        """The per-source part of a batch after the record selection: flow, then the source tag."""
        cfg = self.config
        tail = cfg.flow or "pass"
        if cfg.patch_source:
            tag = zed.quote(str(src))
            tail += f' | yield kind(this)=="record" ? {{...this, source: {tag}}} : {{value: this, source: {tag}}}'
        return tail

    def _batch_query(self, uppers: dict[Source, tuple[str, str]], stamp: str) -> str:
        """One batch over every source: `uppers` maps a source to (tip commit, upper bound)."""
        legs = [
            (zed.pool_ref(src.pool, tip), f"{self._after(src)} and ts <= {zed.time_literal(up)} | {self._tail(src)}")
            for src, (tip, up) in sorted(uppers.items())
        ]
        if len(legs) == 1:
            query = f"from {legs[0][0]} | {legs[0][1]}"
        else:
            query = "from (\n" + "\n".join(f"  pool {ref} => {leg}" for ref, leg in legs) + "\n)"
        return self._finish(query, max(up for _, up in uppers.values()), stamp)

    def _finish(self, query: str, top: str, stamp: str) -> str:
        """`flow_agg`, then the piper's stamp: `ts` is the load time, so the destination's `ts` order
        is its commit order; the source's time is kept in `event_ts` (the record's own, else its
        `ts`, else the batch's upper bound for what a flow made without either)."""
        if self.config.flow_agg:
            query += f" | {self.config.flow_agg}"
        top, stamp = zed.time_literal(top), zed.time_literal(stamp)
        # One `ts` per record, in the sources' `ts` order: the batch's stamp plus the record's
        # rank in nanoseconds (`count()` in an expression counts the values so far). A shared
        # `ts` would let the destination's `ts`-sorted pool reorder what one source loaded in order.
        at = f"{stamp} + n*1ns"
        return query + (
            " | sort ts | yield {v: this, n: count()}"
            f' | yield kind(v)=="record" ? {{...v, event_ts: coalesce(v.event_ts, v.ts, {top}), ts: {at}}}'
            f" : {{value: v, event_ts: {top}, ts: {at}}}"
        )


def describe(run: PipelineRun) -> dict[str, Any]:
    """The JSON a status listing shows for one pipeline."""
    cfg, st = run.config, run.status
    return {
        "id": cfg.id,
        "owner": "/".join(run.pipeline.owner),
        "dst": str(cfg.dst),
        "sources": st.sources,
        "state": st.state,
        "message": st.message,
        "lag_seconds": round(st.lag_seconds, 3),
        "records": st.records_total,
        "errors": st.errors_total,
        "watermarks": st.watermarks,
        "flow": cfg.flow,
        "flow_agg": cfg.flow_agg,
        "eoio": cfg.eoio,
        "pause": cfg.pause,
    }
