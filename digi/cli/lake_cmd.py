"""`digi query` and `digi lake status`: read the Zed lake that holds every digi's pool.

Data flow: the lake URL comes from `--lake-url`, else `$DIGI_LAKE_URL`, else
the local dSpace (`digi.space.Space(root).lake_url`). `digi query NAME QUERY`
runs `from <NAME's pool> | QUERY` (the pool name is quoted, so it cannot
change the query); `--raw` runs a whole query as given. A refused query is
told apart as a missing pool, a missing branch or a bad QUERY; an empty result
says `no records` on stderr (JSON output stays `[]`). `digi lake status`
lists pools, branches, heads and record counts from the lake and, when the
manager is reachable (`--manager-url`, else the local dSpace's), every
pipeline's state from its `/api/v1/pipelines`.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import click
import httpx

from digi.cli.context import CliContext, pass_cli
from digi.errors import DigiError
from digi.lake import (
    EMPTY_COMMIT,
    InvalidQuery,
    LakeClient,
    LakeError,
    LakeNotFound,
    pool_name,
    zed,
)

_OUTPUT = click.Choice(["table", "json"])


def _lake_url(cli: CliContext, option: str | None) -> str:
    if option:
        return option
    if os.environ.get("DIGI_LAKE_URL"):
        return os.environ["DIGI_LAKE_URL"]
    from digi.space import Space

    try:
        return Space(cli.root).lake_url
    except DigiError as exc:
        raise click.ClickException(
            f"no lake: {exc}. Pass --lake-url http://HOST:PORT or set DIGI_LAKE_URL.") from exc


def _manager_url(cli: CliContext, option: str | None) -> str | None:
    if option:
        return option
    from digi.space import Space

    try:
        return Space(cli.root).manager_url
    except (DigiError, KeyError):
        return None


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Rows as an aligned text table; columns default to the union of keys in order of appearance."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[c.upper() for c in columns]] + [[_cell(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _values_table(values: list[Any]) -> str:
    if all(isinstance(v, dict) for v in values):
        return table(values)
    return table([{"value": v} for v in values])


lake_url_option = click.option("--lake-url", default=None, metavar="URL",
                               help="Zed lake to use (default: $DIGI_LAKE_URL, then the local dSpace's).")


@click.command("query")
@click.argument("name", required=False)
@click.argument("query", required=False, default="")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of the digi.")
@click.option("--raw", "raw", default=None, metavar="QUERY", help="Run this whole Zed query as given.")
@click.option("-b", "--branch", default="main", show_default=True,
              help="Branch of the pool to read (an egress name, e.g. energy).")
@click.option("-o", "--output", type=_OUTPUT, default="table", show_default=True)
@lake_url_option
@pass_cli
def query(cli: CliContext, name: str | None, query: str, namespace: str, raw: str | None, branch: str,
          output: str, lake_url: str | None) -> None:
    """Query a digi's data pool with Zed.

    Runs `from <pool of NAME> | QUERY`; without QUERY it lists the pool's records.
    NAME is `name` (with -n) or `namespace/name`; its pool is `name` in the default
    namespace, else `namespace_name`.

    \b
    Examples:
      digi query l1                          # every record of lamp l1
      digi query l1 "avg(watt)"              # runs: from "l1" | avg(watt)
      digi query room "sum(watt)" -o json
      digi query l1 -b energy "count()"      # what l1's energy egress published
      digi query -n home l1 "tail 5"         # pool home_l1
      digi query home/l1 "tail 5"            # the same
      digi query --raw 'from "l1"@"energy" | count() by event_ts'
    """
    if raw is not None:
        if name:
            raise click.UsageError("give either NAME [QUERY] or --raw QUERY, not both")
        with LakeClient(_lake_url(cli, lake_url)) as lake:
            try:
                values = lake.query(raw)
            except LakeError as exc:
                raise click.ClickException(str(exc)) from exc
    elif name:
        if "/" in name:
            namespace, _, name = name.partition("/")
        with LakeClient(_lake_url(cli, lake_url)) as lake:
            values = _query_pool(lake, name, pool_name(name, namespace), branch, query)
    else:
        raise click.UsageError("give the digi NAME (e.g. digi query l1 'avg(watt)') or --raw QUERY")
    if output == "json":
        click.echo(json.dumps(values, indent=2))
    elif values:
        click.echo(_values_table(values))
    else:
        click.echo("no records", err=True)


def _query_pool(lake: LakeClient, name: str, pool: str, branch: str, query: str) -> list[Any]:
    """Run `from <pool>@<branch> | QUERY`; a refusal says whether the pool, the branch or QUERY is at fault."""
    source = f"from {zed.pool_ref(pool, branch)}"
    text = f"{source} | {query}" if query.strip() else source
    try:
        return lake.query(text)
    except LakeError as exc:
        if isinstance(exc, InvalidQuery | LakeNotFound):
            # If the lake cannot list pools either, its refusal of the query (below) says more.
            with contextlib.suppress(LakeError):
                _raise_if_missing(lake, name, pool, branch)
        # The lake's message quotes the whole text and points at a column in it: say which part is QUERY.
        reason = str(exc).removeprefix(f"query {text!r}: ")
        raise click.ClickException(
            f"the lake rejected QUERY {query!r} on pool {pool!r}: {reason}\n"
            f"(digi query ran `{source} | QUERY`: columns count from the start of that line, "
            f"and only the text after `{source} | ` is yours to fix)") from exc


def _raise_if_missing(lake: LakeClient, name: str, pool: str, branch: str) -> None:
    """Raise a ClickException naming the fix when the pool or its branch does not exist."""
    if pool not in {p.name for p in lake.pools()}:
        raise click.ClickException(
            f"no digi or pool {name!r} (pool {pool!r} is not in the lake at {lake.url}). "
            "Run `digi list` to see the digis (add -n NAMESPACE for another namespace) and "
            "`digi lake status` to see the pools; a digi's pool appears once it has written data.")
    if branch not in {b.name for b in lake.branches(pool)}:
        raise click.ClickException(
            f"pool {pool!r} has no branch {branch!r}. Run `digi lake status` to see its branches; "
            "an egress's branch appears once the egress has published.")


def lake_status(lake: LakeClient) -> list[dict[str, Any]]:
    """One row per branch of every pool: pool, branch, head, records."""
    rows = []
    for pool in sorted(lake.pools(), key=lambda p: p.name):
        for branch in sorted(lake.branches(pool.name), key=lambda b: b.name):
            empty = branch.commit == EMPTY_COMMIT  # an empty branch reads as main: do not count it
            rows.append({"pool": pool.name, "branch": branch.name, "head": branch.commit,
                         "records": 0 if empty else lake.record_count(pool.name, branch.name)})
    return rows


def _pipelines(url: str | None) -> list[dict[str, Any]] | None:
    if not url:
        return None
    try:
        response = httpx.get(f"{url.rstrip('/')}/api/v1/pipelines", timeout=5)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    result: list[dict[str, Any]] = response.json()
    return result


@click.group("lake")
def lake() -> None:
    """The Zed lake: every digi's pool and the pipelines between them."""


@lake.command("status")
@click.option("-o", "--output", type=_OUTPUT, default="table", show_default=True)
@lake_url_option
@click.option("--manager-url", default=None, metavar="URL",
              help="Manager to ask for pipeline states (default: the local dSpace's).")
@pass_cli
def status(cli: CliContext, output: str, lake_url: str | None, manager_url: str | None) -> None:
    """List pools, branches, heads and record counts, and the pipelines' states.

    \b
    Examples:
      digi lake status
      digi lake status -o json | jq '.pipelines[] | select(.state == "error")'
    """
    url = _lake_url(cli, lake_url)
    with LakeClient(url) as client:
        try:
            branches = lake_status(client)
        except LakeError as exc:
            raise click.ClickException(str(exc)) from exc
    pipelines = _pipelines(_manager_url(cli, manager_url))
    if output == "json":
        click.echo(json.dumps({"lake": url, "branches": branches, "pipelines": pipelines}, indent=2))
        return
    click.echo(f"lake {url}\n")
    click.echo(table(branches, ["pool", "branch", "records", "head"]) if branches else "no pools")
    click.echo("")
    if pipelines is None:
        click.echo("pipelines: manager not reachable (pass --manager-url)")
    elif not pipelines:
        click.echo("no pipelines")
    else:
        click.echo(table([{**p, "lag": f"{p['lag_seconds']:.1f}s", "sources": ",".join(p["sources"])}
                          for p in pipelines],
                         ["id", "state", "dst", "sources", "records", "lag", "message"]))


commands: list[click.Command] = [query, lake]
