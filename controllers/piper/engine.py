"""Moving records for one pipeline, exactly once and in order (spec §7, eoio).

`PipelineRun.step()` moves at most one batch from the pipeline's sources to
its destination:

1. resolve the sources (mounts may have changed) and read each branch tip;
   a missing or still-empty branch is skipped (the lake reads an empty branch
   as `main`, so it must not be queried);
2. know the watermarks: the newest `ts` already moved from each source. With
   eoio they live in the destination's commit metadata
   (`{pipelet, watermarks: [{pool, branch, ts}]}`); they are read from the lake
   at start and whenever a write's outcome is unknown, otherwise kept in memory;
3. per source with a new tip, find the batch's upper bound: the `ts` of the
   `batch_size`-th record after the watermark (all records sharing that `ts`
   go into the same batch, so a batch boundary never splits equal times);
4. run one Zed query: per source `ts > wm and ts <= upper | flow`, tag the
   source when `patch_source`, then `flow_agg` over the union, then give every
   output a `ts` (kept if the flow kept one, else the batch's upper bound);
   (when the config is new, the same query first runs over an empty range, so
   a broken flow is reported at once rather than with the next record);
5. load the typed output into the destination in ONE commit whose metadata
   carries the new watermarks. The records and the watermark move together, so
   a crash before the commit repeats the batch and a crash after it does not.

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

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controllers.piper.spec import Pipeline, PipelineConfig, Source
from digi.lake import (
    EMPTY_COMMIT,
    InvalidQuery,
    LakeClient,
    LakeConflict,
    LakeError,
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


def _seconds_since(ts: str) -> float:
    """Seconds from a lake time (RFC 3339, up to nanoseconds, `Z`) to now."""
    match = _RFC3339.fullmatch(ts)
    if match is None:
        return 0.0
    moment = datetime.fromisoformat(f"{match[1]}.{(match[2] or '0')[:6]:0<6}+00:00")
    return max(0.0, time.time() - moment.timestamp())


class PipelineRun:
    """The moving state of one pipeline; `step()` is called by one thread at a time."""

    def __init__(self, pipeline: Pipeline, lake: LakeClient, *, batch_size: int = 1000) -> None:
        self.pipeline = pipeline
        self.lake = lake
        self.batch_size = batch_size
        self.status = Status()
        self._watermarks: dict[Source, str] | None = None
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
        if tips and self._validated != cfg:
            # Run the flow over an empty range so a broken flow shows up now, not with the next record.
            self.lake.query_zjson(
                self._batch_query({s: self._watermarks.get(s, _EPOCH) for s in tips})
            )
            self._validated = cfg
        changed = [s for s, tip in tips.items() if self._tips.get(s) != tip]
        if cfg.skip_history or not cfg.eoio:
            for src in changed:
                if src not in self._watermarks:
                    start = self._max_ts(src)
                    if start is not None:
                        self._watermarks[src] = start
        uppers: dict[Source, str] = {}
        for src in changed:
            upper = self._upper(src)
            if upper is None:
                self._tips[src] = tips[src]
            else:
                uppers[src] = upper
        if not uppers:
            waiting = [str(s) for s in sources if s not in tips]
            note = f"; waiting for {', '.join(waiting)}" if waiting else ""
            self.status.lag_seconds = 0.0
            self._set(
                RUNNING if tips else WAITING,
                f"up to date{note}" if tips else f"no source has data yet{note}",
            )
            return False
        lines = self.lake.query_zjson(self._batch_query(uppers))
        moved = {**self._watermarks, **uppers}
        if lines:
            meta = {
                "pipelet": cfg.id,
                "watermarks": [
                    {"pool": s.pool, "branch": s.branch, "ts": zed.Time(ts)}
                    for s, ts in sorted(moved.items())
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
        self.status.watermarks = {str(s): ts for s, ts in sorted(moved.items())}
        self.status.lag_seconds = min(_seconds_since(ts) for ts in uppers.values())
        self._set(RUNNING, f"moved {len(lines)} records")
        return True

    def _read_watermarks(self) -> dict[Source, str]:
        dst = self.config.dst
        if not self.config.eoio or self.lake.branch_tip(dst.pool, dst.branch) in (None, EMPTY_COMMIT):
            return {}
        meta = self.lake.commit_meta(
            self.config.dst.pool,
            self.config.dst.branch,
            f"meta.pipelet=={zed.quote(self.config.id)}",
        )
        marks = {
            Source(w["pool"], w["branch"]): w["ts"] for w in (meta or {}).get("watermarks") or []
        }
        self.status.watermarks = {str(s): ts for s, ts in sorted(marks.items())}
        return marks

    def _after(self, src: Source) -> str:
        """The filter selecting a source's records after its watermark."""
        assert self._watermarks is not None
        mark = self._watermarks.get(src)
        return f"ts > {zed.time_literal(mark)}" if mark else "is(ts, <time>)"

    def _max_ts(self, src: Source) -> str | None:
        rows = self.lake.query(
            f"from {zed.pool_ref(src.pool, src.branch)} | is(ts, <time>) | max(ts)"
        )
        return rows[0] if rows and rows[0] is not None else None

    def _upper(self, src: Source) -> str | None:
        rows = self.lake.query(
            f"from {zed.pool_ref(src.pool, src.branch)} | {self._after(src)} "
            f"| sort ts | head {self.batch_size} | max(ts)"
        )
        return rows[0] if rows and rows[0] is not None else None

    def _leg(self, src: Source, upper: str) -> str:
        """The per-source part of the batch query (what follows `from <src> |`)."""
        cfg = self.config
        leg = f"{self._after(src)} and ts <= {zed.time_literal(upper)}"
        if cfg.flow:
            leg += f" | {cfg.flow}"
        if cfg.patch_source:
            tag = zed.quote(str(src))
            leg += f' | yield kind(this)=="record" ? {{...this, source: {tag}}} : {{value: this, source: {tag}}}'
        return leg

    def _batch_query(self, uppers: dict[Source, str]) -> str:
        cfg = self.config
        legs = [
            (zed.pool_ref(src.pool, src.branch), self._leg(src, up))
            for src, up in sorted(uppers.items())
        ]
        if len(legs) == 1:
            query = f"from {legs[0][0]} | {legs[0][1]}"
        else:
            query = "from (\n" + "\n".join(f"  pool {ref} => {leg}" for ref, leg in legs) + "\n)"
        if cfg.flow_agg:
            query += f" | {cfg.flow_agg}"
        top = zed.time_literal(max(uppers.values()))
        return query + (
            f' | yield kind(this)=="record" ? {{...this, ts: coalesce(ts, {top})}}'
            f" : {{value: this, ts: {top}}}"
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
