"""`digi run|stop|list|check|watch|edit|log`: start digis and look at them.

Data flow: commands talk to the API server with `manager.kube.Client` (dicts);
the manager does the rest (it sees a new digi through its informers and starts
its worker). `run` registers the driver by setting the annotation
`digi.dev/driver-dir` on the digi to the kind's `driver/` directory. Worker
state comes from the local worker's state file under `$ROOT/workers/`, else
from the newest worker Event on the digi (clusters, kubernetes backend).

Names: `name`, `namespace/name` or `kind/name` (kind as `Lamp`, `lamp` or
`lamps`); an unknown name gets an error suggesting close matches.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import psutil
import urllib3
import yaml

from digi.cli.context import CliContext, pass_cli
from digi.errors import Conflict, DigiError, Forbidden, NotFound
from digi.kinds.model import load_kind, render_cr
from digi.util import merge_patch
from manager.cache import CRD_GVR, DIGI_KIND_LABEL, crd_gvr
from manager.events import EVENT_GVR
from manager.kube import AlreadyExists, ApiError, Client, Unreachable
from manager.types import GVR
from manager.workers.base import DRIVER_DIR_ANNOTATION
from manager.workers.local import worker_files

JSON = dict[str, Any]
_WORKER_EVENTS = {"WorkerStarted": "running", "WorkerCrashed": "backoff", "WorkerExited": "backoff", "WorkerFailed": "backoff",
                  "WorkerDeployed": "deployed", "NoDriver": "no-driver", "NoImage": "no-driver"}
_OUTPUT = click.Choice(["yaml", "json"])


@dataclass(frozen=True)
class Kind:
    gvr: GVR
    kind: str
    singular: str

    def matches(self, text: str) -> bool:
        return text.lower() in (self.kind.lower(), self.singular.lower(), self.gvr.plural.lower())


@dataclass
class Digi:
    kind: Kind
    obj: JSON

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace", "default"))

    @property
    def ref(self) -> str:
        return f"{self.kind.kind.lower()}/{self.namespace}/{self.name}"


def _client(cli: CliContext) -> Client:
    try:
        return Client.from_kubeconfig(cli.kubeconfig, user_agent="digi-cli")
    except DigiError as e:
        raise click.ClickException(str(e)) from None


def _kinds(client: Client) -> list[Kind]:
    items, _ = client.list_all(CRD_GVR, label_selector=f"{DIGI_KIND_LABEL}=true")
    kinds = []
    for crd in items:
        gvr = crd_gvr(crd)
        if gvr is not None:
            names = crd["spec"]["names"]
            kinds.append(Kind(gvr, names["kind"], names.get("singular") or names["kind"].lower()))
    return kinds


def _digis(client: Client, kinds: list[Kind], namespace: str | None = None) -> list[Digi]:
    found = []
    for kind in kinds:
        items, _ = client.list_all(kind.gvr, namespace)
        found += [Digi(kind, obj) for obj in items]
    return found


def resolve(client: Client, text: str, namespace: str | None = None) -> Digi:
    """The one digi that `text` (name, namespace/name or kind/name) names."""
    kinds = _kinds(client)
    parts = text.split("/")
    if len(parts) > 2 or not all(parts):
        raise click.ClickException(f"{text!r} is not a digi name: use name, namespace/name or kind/name")
    if len(parts) == 2 and any(k.matches(parts[0]) for k in kinds):
        candidates = [d for d in _digis(client, [k for k in kinds if k.matches(parts[0])], namespace)
                      if d.name == parts[1]]
    elif len(parts) == 2:
        candidates = [d for d in _digis(client, kinds, parts[0]) if d.name == parts[1]]
    else:
        candidates = [d for d in _digis(client, kinds, namespace) if d.name == parts[0]]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise click.ClickException(
            f"{text!r} names {len(candidates)} digis: {', '.join(d.ref for d in candidates)}; "
            "say which with kind/name or namespace/name (and -n NAMESPACE)"
        )
    everything = _digis(client, kinds, namespace)
    spellings = {form: d for d in everything
                 for form in (d.name, f"{d.namespace}/{d.name}", f"{d.kind.kind.lower()}/{d.name}")}
    close = difflib.get_close_matches(text, list(spellings), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else (
        "; 'digi list' shows the digis there are" if everything else
        "; there are no digis yet: start one with 'digi run KIND_DIR NAME'")
    where = f" in namespace {namespace}" if namespace else ""
    raise click.ClickException(f"no digi {text!r}{where}{hint}")


def _dump(obj: Any, output: str) -> str:
    if output == "json":
        return json.dumps(obj, indent=2)
    return yaml.safe_dump(obj, sort_keys=False).rstrip("\n")


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _worker_state(cli: CliContext, digi: Digi, events: list[JSON]) -> str:
    _, state_file = worker_files(cli.root, digi.namespace, digi.kind.gvr.plural, digi.name)
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = None
    # A "running" file whose process is gone was left by a manager that was killed.
    if state is not None and (state.get("state") != "running" or (bool(state.get("pid")) and psutil.pid_exists(state["pid"]))):
        restarts = state.get("restarts") or 0
        return f"{state['state']} ({restarts} restarts)" if restarts else str(state["state"])
    uid = digi.obj["metadata"].get("uid")
    mine = [e for e in events if e.get("involvedObject", {}).get("uid") == uid and e.get("reason") in _WORKER_EVENTS]
    if not mine:
        return "-"
    newest = max(mine, key=lambda e: e.get("lastTimestamp") or "")
    return _WORKER_EVENTS[newest["reason"]]


# -- commands ------------------------------------------------------------------------

@click.command()
@click.argument("kind_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("names", nargs=-1, required=True)
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of the new digis.")
@pass_cli
def run(cli: CliContext, kind_dir: Path, names: tuple[str, ...], namespace: str) -> None:
    """Start digis of the kind in KIND_DIR: apply its CRD, create one CR per NAME.

    The CRD is created if missing and updated if its schema differs from KIND_DIR's
    (the command says so), so new digis are never pruned to an older schema.

    \b
    KIND_DIR holds model.yaml (or crd.yaml), deploy/cr.yaml and driver/handler.py.
    The manager sees each new digi and starts its worker from driver/.
    \b
      digi run digis/lamp l1
      digi run digis/lamp l2 l3 -n office
      digi list
    """
    client = _client(cli)
    kind_dir = kind_dir.resolve()
    crd = _kind_crd(kind_dir)
    _ensure_crd(client, crd, kind_dir)
    gvr = crd_gvr(client.get(CRD_GVR, None, crd["metadata"]["name"]))
    assert gvr is not None
    template_path = kind_dir / "deploy" / "cr.yaml"
    if not template_path.is_file():
        raise click.ClickException(f"{template_path} does not exist: a kind needs deploy/cr.yaml, "
                                   "the template of a digi ('digi init' writes one)")
    driver = kind_dir / "driver"
    kind = crd["spec"]["names"]["kind"].lower()
    existing = []
    for name in names:
        obj = render_cr(template_path.read_text(), name, namespace)
        if (driver / "handler.py").is_file():
            obj["metadata"].setdefault("annotations", {})[DRIVER_DIR_ANNOTATION] = str(driver)
        try:
            client.create(gvr, namespace, obj)
        except AlreadyExists:
            existing.append(name)  # the other NAMES are still created; the error comes after them
            continue
        except DigiError as e:
            raise click.ClickException(f"cannot create {name}: {e}") from None
        click.echo(f"{kind}/{name} created in {namespace}")
    if existing:
        stop = " ".join(["digi stop", *(["-n", namespace] if namespace != "default" else []), *existing])
        verb, them = ("exists", "it") if len(existing) == 1 else ("exist", "them")
        raise click.ClickException(f"{', '.join(f'{kind}/{n}' for n in existing)} already {verb} in "
                                   f"{namespace}; '{stop}' first to restart {them}")


def _kind_crd(kind_dir: Path) -> JSON:
    if (kind_dir / "model.yaml").is_file():
        try:
            crd: JSON = load_kind(kind_dir).crd()
        except DigiError as e:
            raise click.ClickException(str(e)) from None
    elif (kind_dir / "crd.yaml").is_file():
        crd = yaml.safe_load((kind_dir / "crd.yaml").read_text())
    else:
        raise click.ClickException(f"{kind_dir} has neither model.yaml nor crd.yaml: it is not a kind directory")
    crd["metadata"].setdefault("labels", {})[DIGI_KIND_LABEL] = "true"
    return crd


def _schemas(crd: JSON) -> dict[str, Any]:
    return {v["name"]: (v.get("schema"), v.get("additionalPrinterColumns")) for v in crd["spec"]["versions"]}


def _ensure_crd(client: Client, crd: JSON, kind_dir: Path) -> None:
    """Create the kind's CRD, or bring an installed one's versions up to the kind directory's.

    A CRD left from another copy of the kind (an older model.yaml, the same group and kind
    elsewhere) would make the API server prune every field it does not declare from the new
    digis, silently. Its labels and annotations (a worker mode set on it) are kept."""
    name = crd["metadata"]["name"]
    current = client.get_or_none(CRD_GVR, None, name)
    try:
        if current is None:
            with contextlib.suppress(AlreadyExists):  # someone else created it meanwhile
                client.create(CRD_GVR, None, crd)
        elif _schemas(current) != _schemas(crd):
            client.patch(CRD_GVR, None, name, {"metadata": {"labels": crd["metadata"]["labels"]},
                                               "spec": {"versions": crd["spec"]["versions"]}})
            click.echo(f"updated CRD {name}: its schema differed from {kind_dir}")
    except DigiError as e:
        raise click.ClickException(f"cannot create or update CRD {name}: {e}") from None
    deadline = time.monotonic() + 30
    while crd_gvr(client.get(CRD_GVR, None, name)) is None:
        if time.monotonic() > deadline:
            raise click.ClickException(f"CRD {name} was not established within 30s; "
                                       f"'kubectl describe crd {name}' shows why")
        time.sleep(0.2)


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("-n", "--namespace", default=None, help="Only look in this namespace.")
@pass_cli
def stop(cli: CliContext, names: tuple[str, ...], namespace: str | None) -> None:
    """Stop digis: delete them; the manager stops their workers.

    \b
      digi stop l1
      digi stop lamp/l2 office/l3
    """
    client = _client(cli)
    for text in names:
        digi = resolve(client, text, namespace)
        with contextlib.suppress(NotFound):
            client.delete(digi.kind.gvr, digi.namespace, digi.name)
        click.echo(f"{digi.ref} stopped")


@click.command("list")
@click.option("-n", "--namespace", default=None, help="Only this namespace (default: all).")
@click.option("-o", "--output", type=click.Choice(["table", "yaml", "json"]), default="table", show_default=True)
@pass_cli
def list_(cli: CliContext, namespace: str | None, output: str) -> None:
    """List digis: kind, name, namespace, worker state and age.

    \b
      digi list
      digi list -n office -o json
    """
    client = _client(cli)
    digis = sorted(_digis(client, _kinds(client), namespace), key=lambda d: (d.kind.kind, d.namespace, d.name))
    events, _ = client.list_all(EVENT_GVR, namespace)
    rows = [{"kind": d.kind.kind, "name": d.name, "namespace": d.namespace,
             "worker": _worker_state(cli, d, events), "age": _age(d.obj["metadata"].get("creationTimestamp"))}
            for d in digis]
    if output != "table":
        click.echo(_dump(rows, output))
        return
    if not rows:
        click.echo("No digis. Start one with 'digi run KIND_DIR NAME'.")
        return
    headers = ["KIND", "NAME", "NAMESPACE", "WORKER", "AGE"]
    table = [headers] + [[r["kind"], r["name"], r["namespace"], r["worker"], r["age"]] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@click.command()
@click.argument("name")
@click.option("-n", "--namespace", default=None, help="Only look in this namespace.")
@click.option("-o", "--output", type=_OUTPUT, default="yaml", show_default=True)
@pass_cli
def check(cli: CliContext, name: str, namespace: str | None, output: str) -> None:
    """Print a digi's model (its spec).

    \b
      digi check l1
      digi check lamp/l1 -o json | jq .control.power
    """
    digi = resolve(_client(cli), name, namespace)
    click.echo(_dump(digi.obj.get("spec") or {}, output))


@click.command()
@click.argument("name")
@click.option("-n", "--namespace", default=None, help="Only look in this namespace.")
@click.option("-o", "--output", type=_OUTPUT, default="yaml", show_default=True)
@click.option("--timeout", type=float, default=None, help="Stop after this many seconds (default: until Ctrl-C).")
@pass_cli
def watch(cli: CliContext, name: str, namespace: str | None, output: str, timeout: float | None) -> None:
    """Print a digi's model now and after every change; end when it is deleted.

    \b
    Each version starts with a '# HH:MM:SS generation G resourceVersion RV' line.
    The watch survives the API server ending or expiring it (it re-reads the
    digi and goes on) and short outages (it retries, saying so on stderr); it
    gives up when the API server stays unreachable for 30 seconds.
    \b
      digi watch l1
      digi watch l1 -o json --timeout 60
    """
    client = _client(cli)
    digi = resolve(client, name, namespace)
    _Watcher(client, digi, output, None if timeout is None else time.monotonic() + timeout).run()


# Pauses before re-watching after an error: the first, doubled up to the last. A stream the
# server ends on its own timeout is re-opened at once; a pause never loses events, since the
# next watch starts from the last resourceVersion seen.
_FIRST_PAUSE, _LAST_PAUSE = 0.5, 8.0
# How long `digi watch` keeps retrying an API server it cannot reach before it gives up.
_UNREACHABLE_GRACE = 30.0
# The longest single watch request (the server ends it then; it is re-opened from where it was).
_WATCH_SECONDS = 300


class _Gone(Exception):
    """The watch's resourceVersion is older than the API server keeps (HTTP 410)."""


class _Watcher:
    """One `digi watch`: follows a digi across watch restarts, expiries and outages."""

    def __init__(self, client: Client, digi: Digi, output: str, deadline: float | None) -> None:
        self.client, self.digi, self.output, self.deadline = client, digi, output, deadline
        self.shown = str(digi.obj["metadata"]["resourceVersion"])  # the version printed last
        # Where the next watch starts: the newest resourceVersion seen in the namespace's
        # stream, bookmarks included, so a re-watch after a quiet hour is not already too old.
        self.rv = self.shown
        self.pause = 0.0
        self.unreachable_since: float | None = None

    def left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def run(self) -> None:
        _print_version(self.digi.obj, self.output)
        while self.left() > 0:
            if self.pause:
                time.sleep(max(0.0, min(self.pause, self.left())))
            try:
                if self._step():
                    return
                self.pause = 0.0
            except Unreachable as e:
                self._unreachable(e)
            except ApiError as e:
                self._retry(f"the API server ended the watch: {e}")
            except (urllib3.exceptions.HTTPError, OSError) as e:
                self._retry(f"the watch stream broke: {e}")
            except (NotFound, Forbidden) as e:
                raise click.ClickException(f"cannot watch {self.digi.ref}: {e}") from None

    def _step(self) -> bool:
        """Watch from `rv` until the server ends the stream; True once the digi is deleted."""
        try:
            return self._stream()
        except _Gone:
            return self._reread()

    def _stream(self) -> bool:
        try:
            stream = self.client.watch(self.digi.kind.gvr, self.digi.namespace, resource_version=self.rv,
                                       timeout_seconds=max(1, int(min(_WATCH_SECONDS, self.left()))))
        except ApiError as e:
            if e.status == 410:
                raise _Gone() from e
            raise
        self.unreachable_since = None
        for event in stream:
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                # The server reports a watch it cannot serve in the stream, as a Status.
                if obj.get("code") == 410:
                    raise _Gone()
                raise ApiError(int(obj.get("code") or 500), str(obj.get("message") or obj))
            self.rv = str(obj.get("metadata", {}).get("resourceVersion") or self.rv)
            if kind == "BOOKMARK" or obj.get("metadata", {}).get("name") != self.digi.name:
                continue
            if kind == "DELETED":
                click.echo(f"# {self.digi.ref} was deleted")
                return True
            self._show(obj)
        return False

    def _reread(self) -> bool:
        """After a 410: the digi as it is now (printed if it changed) and a fresh place to watch from."""
        found = self.client.list(self.digi.kind.gvr, self.digi.namespace,
                                 field_selector=f"metadata.name={self.digi.name}")
        self.rv = str(found["metadata"]["resourceVersion"])
        items = found.get("items") or []
        if not items:
            click.echo(f"# {self.digi.ref} was deleted")
            return True
        self._show(items[0])
        # A watch from a list's version cannot be too old at once; should it be anyway, pause.
        self._backoff()
        return False

    def _show(self, obj: JSON) -> None:
        version = str(obj["metadata"]["resourceVersion"])
        if version != self.shown:
            self.shown = version
            _print_version(obj, self.output)

    def _backoff(self) -> None:
        self.pause = min(max(self.pause * 2, _FIRST_PAUSE), _LAST_PAUSE)

    def _retry(self, why: str) -> None:
        self._backoff()
        click.echo(f"# {why}; watching again in {self.pause:g}s", err=True)

    def _unreachable(self, error: Unreachable) -> None:
        now = time.monotonic()
        if self.unreachable_since is None:
            self.unreachable_since = now
        if now - self.unreachable_since >= _UNREACHABLE_GRACE:
            raise error  # `digi` turns it into an error naming the API server and what to do
        self._retry(f"cannot reach the API server at {self.client.host}")


def _print_version(obj: JSON, output: str) -> None:
    meta = obj["metadata"]
    click.echo(f"# {datetime.now(UTC).strftime('%H:%M:%S')} generation {meta.get('generation')} "
               f"resourceVersion {meta.get('resourceVersion')}")
    click.echo(_dump(obj.get("spec") or {}, output))


@click.command()
@click.argument("name")
@click.option("-n", "--namespace", default=None, help="Only look in this namespace.")
@pass_cli
def edit(cli: CliContext, name: str, namespace: str | None) -> None:
    """Edit a digi's model in $EDITOR; the change is applied as one guarded patch.

    \b
      digi edit l1
      EDITOR=nano digi edit lamp/l1
    """
    client = _client(cli)
    digi = resolve(client, name, namespace)
    before = digi.obj.get("spec") or {}
    text = click.edit(yaml.safe_dump(before, sort_keys=False), extension=".yaml")
    if text is None:
        click.echo("Edit cancelled, no changes made.")
        return
    try:
        after = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise click.ClickException(f"the edited model is not valid YAML: {e}; nothing was changed") from None
    if not isinstance(after, dict):
        raise click.ClickException("the edited model must be a mapping (the digi's spec); nothing was changed")
    patch = merge_patch(before, after)
    if not patch:
        click.echo("No changes.")
        return
    try:
        client.patch(digi.kind.gvr, digi.namespace, digi.name, {"spec": patch},
                     resource_version=digi.obj["metadata"]["resourceVersion"])
    except Conflict:
        raise click.ClickException(f"{digi.ref} changed while you edited it; nothing was written. "
                                   "Run 'digi edit' again to edit the new model.") from None
    except DigiError as e:
        raise click.ClickException(f"cannot update {digi.ref}: {e}") from None
    click.echo(f"{digi.ref} edited")


@click.command()
@click.argument("name")
@click.option("-n", "--namespace", default=None, help="Only look in this namespace.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@pass_cli
def log(cli: CliContext, name: str, namespace: str | None, follow: bool) -> None:
    """Print the log of a digi's local worker.

    \b
      digi log l1
      digi log -f lamp/l1
    """
    digi = resolve(_client(cli), name, namespace)
    path, _ = worker_files(cli.root, digi.namespace, digi.kind.gvr.plural, digi.name)
    if not path.exists():
        raise click.ClickException(
            f"no worker log for {digi.ref} at {path}: its worker has not started here. "
            "Local workers log under $ROOT/workers; with the kubernetes backend use "
            f"'kubectl logs deploy/{digi.kind.kind.lower()}-{digi.name} -n {digi.namespace}'")
    with open(path, errors="replace") as f:
        while True:
            chunk = f.read()
            if chunk:
                click.echo(chunk, nl=False)
            if not follow:
                return
            time.sleep(0.3)


commands: list[click.Command] = [run, stop, list_, check, watch, edit, log]
