"""A small typed client for the Zed lake's HTTP API (`zed serve`).

Data flow: callers hand in names and Python values; this module builds the
URL (names percent-encoded as one path segment each), the body (JSON, ZSON
or ZJSON) and the `Zed-Commit` header, and turns the lake's answers back into
Python values or raises `LakeError` subclasses.

- Pools: `create_pool`, `pools`, `delete_pool`, `ensure_pool`.
- Branches: `branches`, `create_branch` (empty by default, so an egress
  branch holds only what its flow wrote), `branch_tip`, `delete_branch`.
- Loads: `load(pool, branch, records, message=, meta=)` (Python records,
  sent as ZSON so `datetime`s stay Zed times) and `load_zjson` (pass-through
  of another query's typed output). `meta` is stored in the commit and can be
  read back with `commit_meta`.
- Queries: `query(text)` always asks for control messages (`ctrl=T`) so an
  error raised after the lake started answering is raised here as
  `QueryError`, not silently dropped. `query_zjson` returns the raw typed lines.

Pool and branch names in query text must go through `digi.lake.zed.quote`;
the helpers here that build queries (`commit_meta`, `record_count`) do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote as urlquote

import httpx

from digi.errors import DigiError
from digi.lake import zed
from digi.lake.zjson import Control, Decoder

EMPTY_COMMIT = "0x" + "0" * 40


class LakeError(DigiError):
    """The lake refused a request; `status` is the HTTP status (0 when unreachable)."""

    def __init__(self, message: str, status: int = 0, kind: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


class LakeUnavailable(LakeError):
    """The lake could not be reached or the connection broke (the outcome of a write is unknown)."""


class InvalidQuery(LakeError):
    """The lake rejected a query or a flow (syntax, unknown pool, bad operator): fix the text."""


class LakeNotFound(LakeError):
    """The pool or branch does not exist."""


class LakeConflict(LakeError):
    """The name is taken, or a concurrent commit moved the branch; retry on fresh state."""


class QueryError(LakeError):
    """The query started and then failed; the lake reported it in a control message."""


@dataclass(frozen=True)
class Pool:
    name: str
    id: str
    created: str


@dataclass(frozen=True)
class Branch:
    name: str
    commit: str


def _segment(name: str) -> str:
    return urlquote(name, safe="")


class LakeClient:
    """Synchronous client; thread-safe as far as `httpx.Client` is."""

    def __init__(self, url: str, *, timeout: float = 30.0, author: str = "digi") -> None:
        self.url = url.rstrip("/")
        self.author = author
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------

    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise LakeUnavailable(f"{what}: lake at {self.url} unreachable ({exc}); is 'zed serve' running?") from exc
        if response.status_code >= 400:
            raise _error(response, what)
        return response

    # -- pools and branches -------------------------------------------------

    def version(self) -> str:
        return str(self._request("GET", "/version", "version").json()["version"])

    def pools(self) -> list[Pool]:
        rows = self.query("from :pools")
        return [Pool(name=r["name"], id=r["id"], created=r["ts"]) for r in rows]

    def create_pool(self, name: str) -> Pool:
        """A pool ordered by `ts` ascending, so a plain `from` reads records in time order."""
        body = {"name": name, "layout": {"order": "asc", "keys": [["ts"]]}}
        pool = self._request("POST", "/pool", f"create pool {name!r}", json=body,
                             headers={"Accept": "application/json"}).json()["pool"]
        return Pool(name=pool["name"], id=pool["id"], created=pool["ts"])

    def ensure_pool(self, name: str) -> bool:
        """Create the pool unless it exists; True when it was created now."""
        try:
            self.create_pool(name)
        except LakeConflict:
            return False
        return True

    def delete_pool(self, name: str) -> None:
        self._request("DELETE", f"/pool/{_segment(name)}", f"delete pool {name!r}")

    def branches(self, pool: str) -> list[Branch]:
        rows = self.query(f"from {zed.quote(pool)}:branches")
        return [Branch(name=r["branch"]["name"], commit=r["branch"]["commit"]) for r in rows]

    def create_branch(self, pool: str, branch: str, commit: str = EMPTY_COMMIT) -> None:
        self._request("POST", f"/pool/{_segment(pool)}", f"create branch {pool}@{branch}",
                      json={"name": branch, "commit": commit}, headers={"Accept": "application/json"})

    def ensure_branch(self, pool: str, branch: str) -> bool:
        """Create an empty branch unless it exists; True when it was created now."""
        if self.branch_tip(pool, branch) is not None:
            return False
        try:
            self.create_branch(pool, branch)
        except LakeConflict:
            return False
        return True

    def branch_tip(self, pool: str, branch: str) -> str | None:
        """The branch's head commit id, or None when the pool or branch does not exist.

        A branch created empty has the tip `EMPTY_COMMIT` until its first load; the lake
        reads such a branch as if it were `main`, so callers must treat it as empty."""
        try:
            response = self._request("GET", f"/pool/{_segment(pool)}/branch/{_segment(branch)}",
                                     f"branch {pool}@{branch}", headers={"Accept": "application/json"})
        except LakeNotFound:
            return None
        return str(response.json()["commit"])

    def delete_branch(self, pool: str, branch: str) -> None:
        self._request("DELETE", f"/pool/{_segment(pool)}/branch/{_segment(branch)}",
                      f"delete branch {pool}@{branch}")

    # -- loads ---------------------------------------------------------------

    def load(self, pool: str, branch: str, records: Iterable[Mapping[str, Any]], *,
             message: str = "", meta: Mapping[str, Any] | None = None) -> str:
        """Load records (as ZSON) in one commit; returns the commit id."""
        body = "".join(zed.zson(r) + "\n" for r in records)
        return self._load(pool, branch, body, "application/x-zson", message, meta)

    def load_zjson(self, pool: str, branch: str, lines: Iterable[str], *,
                   message: str = "", meta: Mapping[str, Any] | None = None) -> str:
        """Load typed ZJSON lines (e.g. a query's output) in one commit, keeping their types."""
        body = "".join(line + "\n" for line in lines)
        return self._load(pool, branch, body, "application/x-zjson", message, meta)

    def _load(self, pool: str, branch: str, body: str, content_type: str,
              message: str, meta: Mapping[str, Any] | None) -> str:
        commit = {"author": self.author, "body": message, "meta": zed.zson(meta) if meta is not None else ""}
        headers = {
            "Accept": "application/json",
            "Content-Type": content_type,
            # ensure_ascii: header values must be ASCII; the lake's JSON decoder undoes the escapes.
            "Zed-Commit": json.dumps(commit, ensure_ascii=True),
        }
        response = self._request("POST", f"/pool/{_segment(pool)}/branch/{_segment(branch)}",
                                 f"load into {pool}@{branch}", content=body.encode(), headers=headers)
        return str(response.json()["commit"])

    def commit_meta(self, pool: str, branch: str, where: str) -> Any | None:
        """The `meta` of the newest commit on `pool@branch` whose meta satisfies the Zed
        expression `where` (over `meta`), or None. Callers quote values inside `where`."""
        rows = self.query(f"from {zed.pool_ref(pool, branch)}:log | {where} | head 1 | yield meta")
        return rows[0] if rows else None

    def record_count(self, pool: str, branch: str = "main") -> int:
        rows = self.query(f"from {zed.pool_ref(pool, branch)} | count()")
        return int(rows[0]) if rows else 0

    # -- queries ---------------------------------------------------------------

    def query_zjson(self, text: str) -> list[str]:
        """The typed ZJSON value lines of a query, control messages removed.

        Raises `InvalidQuery` for text the lake will not run and `QueryError`
        when it fails after starting."""
        return [line for line, _ in self._stream(text, decode=False)]

    def query(self, text: str) -> list[Any]:
        """A query's values as Python values (see `digi.lake.zjson` for the mapping)."""
        return [value for _, value in self._stream(text, decode=True)]

    def _stream(self, text: str, *, decode: bool) -> Iterator[tuple[str, Any]]:
        headers = {"Accept": "application/x-zjson", "Content-Type": "application/json"}
        what = f"query {text!r}"
        decoder = Decoder()
        try:
            with self._http.stream("POST", "/query", params={"ctrl": "T"}, json={"query": text},
                                   headers=headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response, what)
                rows = []
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    if decode or line.startswith('{"type":"'):
                        item = decoder.line(line)
                        if isinstance(item, Control):
                            if item.type == "QueryError":
                                raise QueryError(f"{what} failed: {item.value.get('error')}", 200, "query")
                            continue
                    else:
                        item = None
                    rows.append((line, item))
        except httpx.TransportError as exc:
            raise LakeUnavailable(f"{what}: lake at {self.url} unreachable ({exc})") from exc
        yield from rows


def _error(response: httpx.Response, what: str) -> LakeError:
    try:
        body = response.json()
        message, kind = str(body.get("error", body)), str(body.get("kind", ""))
    except ValueError:
        message, kind = response.text.strip(), ""
    status = response.status_code
    text = f"{what}: {message}"
    if status == 404:
        return LakeNotFound(text, status, kind)
    if status == 409 or "exceeded max update attempts" in message:
        # The second form is the lake giving up on its own optimistic-commit retries.
        return LakeConflict(text, status, kind)
    if status == 400:
        return InvalidQuery(text, status, kind)
    if status >= 500:
        return LakeUnavailable(text, status, kind)
    return LakeError(text, status, kind)
