"""`digi.pool`: the running digi's own data pool in the lake (spec §4.5, §7).

Drivers call `digi.pool.load(records)` and `digi.pool.query(q)`. The pool is
the digi's (`NAME`/`NAMESPACE` from the worker environment, mapped by
`digi.lake.pool_name`) and the lake is `DIGI_LAKE_URL`, which the manager
gives every worker, so the same driver works in a local space and in a
cluster. `load` stamps each record with `ts` (the load time, a Zed `time`)
and `event_ts` (kept if the record has one, else `ts`), and loads the batch
into `main` in one commit. Loads from one process are serialised so `ts`
order is commit order, which the piper's `ts` watermarks rely on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from digi.errors import DigiError
from digi.lake import LakeClient, LakeNotFound, pool_name, zed

_lock = threading.Lock()
_clients: dict[str, LakeClient] = {}


def lake_url() -> str:
    url = os.environ.get("DIGI_LAKE_URL", "")
    if not url:
        raise DigiError(
            "DIGI_LAKE_URL is not set: the manager sets it for workers; "
            "outside a worker, export DIGI_LAKE_URL=http://127.0.0.1:<lake port> "
            "(see 'digi space status')."
        )
    return url


def name() -> str:
    """This digi's pool: `NAME`, or `NAMESPACE_NAME` outside the default namespace."""
    digi = os.environ.get("NAME", "")
    if not digi:
        raise DigiError("NAME is not set: digi.pool works inside a digi's worker (NAME, NAMESPACE).")
    return pool_name(digi, os.environ.get("NAMESPACE", "default"))


def client() -> LakeClient:
    url = lake_url()
    with _lock:
        if url not in _clients:
            _clients[url] = LakeClient(url, author=f"digi/{name()}")
        return _clients[url]


def stamp(records: Iterable[Mapping[str, Any]], now: datetime | None = None) -> list[dict[str, Any]]:
    """Copies of `records` with `ts` = now and `event_ts` kept or set to now."""
    moment = now or datetime.now(UTC)
    return [{**r, "ts": moment, "event_ts": r.get("event_ts", moment)} for r in records]


def load(records: Iterable[Mapping[str, Any]], branch: str = "main") -> str | None:
    """Load `records` into this digi's pool in one commit; returns the commit id (None if empty)."""
    batch = list(records)
    if not batch:
        return None
    lake = client()
    pool, message = name(), f"digi.pool.load {len(batch)} records"
    with _lock:
        # Stamp under the lock: a later ts must never commit before an earlier one.
        try:
            return lake.load(pool, branch, stamp(batch), message=message)
        except LakeNotFound:
            # The piper creates the pool when the digi appears; a fast driver can get here first.
            lake.ensure_pool(pool)
            if branch != "main":
                lake.ensure_branch(pool, branch)
            return lake.load(pool, branch, stamp(batch), message=message)


def query(q: str = "", branch: str = "main") -> list[Any]:
    """Run `from <this pool> | q` and return the values (records as dicts)."""
    text = f"from {zed.pool_ref(name(), branch)}"
    return client().query(f"{text} | {q}" if q.strip() else text)
