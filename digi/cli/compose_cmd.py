"""`digi mount|unmount|yield|activate|graph|pipe|unpipe`: compose digis (§5, §6).

Data flow: each verb resolves names like `digi check` does, reads the stored
digis, checks the request with the same `controllers.graph` code the admission
webhook runs (so the CLI and `kubectl apply` give the same answer, also when
the manager is down), and writes the parent's `spec.mount` entry with a
resourceVersion-guarded merge patch (retried on 409). The manager's mounter
does the propagation. `pipe` creates a `match` Sync binding named after both
ends; `unpipe` deletes it, which clears the input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
import networkx as nx

from controllers.graph import (
    ACTIVE,
    EXPOSE,
    HIDE,
    INACTIVE,
    CompositionError,
    CompositionGraph,
    Mount,
    entry_key_of,
    label,
)
from controllers.syncer import SYNC_GVR
from digi.cli.context import CliContext, pass_cli
from digi.cli.digis_cmd import Digi, _client, _digis, _kinds, resolve
from digi.errors import Conflict, NotFound
from manager.cache import CRD_GVR
from manager.kube import AlreadyExists, Client
from manager.types import GVR, ObjectKey

JSON = dict[str, Any]
_NS = click.option("-n", "--namespace", default=None, help="Namespace of the digis (default: any).")


def _key(d: Digi) -> ObjectKey:
    return ObjectKey(d.kind.gvr, d.namespace, d.name)


def _graph(client: Client) -> tuple[CompositionGraph, dict[GVR, str]]:
    kinds = _kinds(client)
    digis = _digis(client, kinds)
    return CompositionGraph.build((d.kind.gvr, d.obj) for d in digis), {
        k.gvr: k.kind for k in kinds
    }


def _patch_entry(
    client: Client, parent: Digi, child: Digi, edit: Callable[[JSON | None], JSON | None]
) -> None:
    """Set the parent's mount entry for `child` to `edit(current entry)`, retrying on 409."""
    gvr_text, entry_key = str(child.kind.gvr), entry_key_of(_key(child))
    for _ in range(5):
        obj = client.get(parent.kind.gvr, parent.namespace, parent.name)
        entries = ((obj.get("spec") or {}).get("mount") or {}).get(gvr_text) or {}
        current_key = next(
            (k for k in entries if k in (entry_key, child.name) and _same_child(parent, k, child)),
            entry_key,
        )
        new = edit(entries.get(current_key))
        patch = {"spec": {"mount": {gvr_text: {current_key: new}}}}
        try:
            client.patch(
                parent.kind.gvr,
                parent.namespace,
                parent.name,
                patch,
                resource_version=obj["metadata"]["resourceVersion"],
            )
            return
        except Conflict:
            continue
    raise click.ClickException(f"{parent.ref} kept changing; try again")


def _same_child(parent: Digi, entry_key: str, child: Digi) -> bool:
    ns, _, name = entry_key.rpartition("/")
    return (ns or parent.namespace, name) == (child.namespace, child.name)


def _pair(
    cli: CliContext, child: str, parent: str, namespace: str | None
) -> tuple[Client, Digi, Digi]:
    client = _client(cli)
    return client, resolve(client, child, namespace), resolve(client, parent, namespace)


def _require_mounted(graph: CompositionGraph, child: Digi, parent: Digi) -> Mount:
    mount = graph.mount(_key(parent), _key(child))
    if mount is None:
        raise click.ClickException(
            f"{child.name} is not mounted under {parent.name}; mount it first: "
            f"digi mount {child.name} {parent.name}"
        )
    return mount


@click.command("mount")
@click.argument("child")
@click.argument("parent")
@click.option(
    "--mode",
    type=click.Choice([HIDE, EXPOSE]),
    default=HIDE,
    show_default=True,
    help="hide: the child's own mounts are not copied up; expose: they are.",
)
@_NS
@pass_cli
def mount_cmd(cli: CliContext, child: str, parent: str, mode: str, namespace: str | None) -> None:
    """Mount CHILD under PARENT: the parent gets a replica of the child and writes its intents.

    A mount that would close a loop or make a diamond is refused with the path.
    If CHILD already has an active parent, the new mount is inactive (yielded):
    the parent reads the child but does not write it, until 'digi activate'.

    \b
    Examples:
      digi mount l1 room-1
      digi mount lamp/l1 room/room-1 --mode expose
      digi mount room-1 home -n office
    """
    client, c, p = _pair(cli, child, parent, namespace)
    graph, _ = _graph(client)
    pk, ck = _key(p), _key(c)
    existing = [m for m in graph.children(pk) if m.child != ck]
    try:
        graph.check_update(pk, [*existing, Mount(pk, ck, entry_key_of(ck), mode)])
    except CompositionError as err:
        raise click.ClickException(str(err)) from None
    writer = graph.writer(ck)
    status = ACTIVE if writer in (None, pk) else INACTIVE
    _patch_entry(client, p, c, lambda e: {**(e or {}), "mode": mode, "status": status})
    if status == INACTIVE and writer is not None:
        click.echo(
            f"mounted {c.name} under {p.name} inactive: {writer.name} already writes it "
            f"(hand it over with 'digi activate {c.name} {p.name}')"
        )
    else:
        click.echo(f"mounted {c.name} under {p.name} ({mode}, active)")


@click.command("unmount")
@click.argument("child")
@click.argument("parent")
@_NS
@pass_cli
def unmount_cmd(cli: CliContext, child: str, parent: str, namespace: str | None) -> None:
    """Unmount CHILD from PARENT: the replica disappears; the child is left as it is.

    \b
    Example:
      digi unmount l1 room-1
    """
    client, c, p = _pair(cli, child, parent, namespace)
    graph, _ = _graph(client)
    _require_mounted(graph, c, p)
    _patch_entry(client, p, c, lambda _e: None)
    click.echo(f"unmounted {c.name} from {p.name}")


def _set_status(
    cli: CliContext, child: str, parent: str, namespace: str | None, status: str
) -> None:
    client, c, p = _pair(cli, child, parent, namespace)
    graph, _ = _graph(client)
    _require_mounted(graph, c, p)
    if status == ACTIVE:
        # Hand over: yield under the current writer first, so there is never a second one.
        for other in graph.parents(_key(c)):
            if other.parent != _key(p) and other.status == ACTIVE:
                holder = resolve(client, f"{other.parent.namespace}/{other.parent.name}")
                _patch_entry(client, holder, c, lambda e: {**(e or {}), "status": INACTIVE})
                click.echo(f"yielded {c.name} under {holder.name}")
    _patch_entry(client, p, c, lambda e: {**(e or {}), "status": status})
    verb = "activated" if status == ACTIVE else "yielded"
    click.echo(f"{verb} {c.name} under {p.name}")


@click.command("yield")
@click.argument("child")
@click.argument("parent")
@_NS
@pass_cli
def yield_cmd(cli: CliContext, child: str, parent: str, namespace: str | None) -> None:
    """Yield CHILD under PARENT: the parent keeps reading it but no longer writes its intents.

    \b
    Example:
      digi yield l1 room-1
    """
    _set_status(cli, child, parent, namespace, INACTIVE)


@click.command("activate")
@click.argument("child")
@click.argument("parent")
@_NS
@pass_cli
def activate_cmd(cli: CliContext, child: str, parent: str, namespace: str | None) -> None:
    """Activate CHILD under PARENT: its intents flow down again.

    If another parent holds CHILD actively, that mount is yielded first (a hand-over).

    \b
    Example:
      digi activate l1 room-1
    """
    _set_status(cli, child, parent, namespace, ACTIVE)


def render_tree(graph: CompositionGraph, kinds: dict[GVR, str], root: ObjectKey | None) -> str:
    """The hierarchy as an indented tree; inactive and rejected mounts are marked."""
    rejected = {m.edge for m, _ in graph.violations()}
    g = graph.g
    namespaces = {k.namespace for k in g.nodes}
    # Names alone when every digi shown is in one namespace, else namespace/name.
    ns = next(iter(namespaces)) if len(namespaces) == 1 else None
    roots = [root] if root is not None else sorted(n for n in g.nodes if g.in_degree(n) == 0)
    if root is None and not roots and g.nodes:
        roots = sorted(g.nodes)[:1]  # only loops (stored while the webhook was down)
    lines: list[str] = []

    def node_text(key: ObjectKey) -> str:
        missing = "" if graph.exists(key) else " [missing]"
        return f"{label(key, ns)} ({kinds.get(key.gvr, key.gvr.plural)}){missing}"

    def walk(key: ObjectKey, prefix: str, seen: frozenset[ObjectKey]) -> None:
        children = sorted(graph.children(key), key=lambda m: m.child)
        for i, m in enumerate(children):
            last = i == len(children) - 1
            marks = []
            if m.edge in rejected:
                marks.append("rejected")
            elif graph.effective_status(m.parent, m.child) == INACTIVE:
                marks.append(INACTIVE)
            if m.mode == EXPOSE:
                marks.append(EXPOSE)
            tag = f" [{', '.join(marks)}]" if marks else ""
            lines.append(f"{prefix}{'└── ' if last else '├── '}{node_text(m.child)}{tag}")
            if m.child not in seen:
                walk(m.child, prefix + ("    " if last else "│   "), seen | {m.child})

    for r in roots:
        lines.append(node_text(r))
        walk(r, "", frozenset({r}))
    return "\n".join(lines)


def render_dot(graph: CompositionGraph) -> str:
    lines = ["digraph digi {", "  rankdir=TB;"]
    for key in sorted(graph.g.nodes):
        lines.append(f'  "{label(key)}";')
    for m in sorted(graph.mounts(), key=lambda m: m.edge):
        style = (
            "" if graph.effective_status(*m.edge) == ACTIVE else ' [style=dashed, label="inactive"]'
        )
        lines.append(f'  "{label(m.parent)}" -> "{label(m.child)}"{style};')
    lines.append("}")
    return "\n".join(lines)


def _subgraph(graph: CompositionGraph, root: ObjectKey) -> CompositionGraph:
    keep = {root} | nx.descendants(graph.g, root)
    sub = CompositionGraph()
    sub.g = graph.g.subgraph(keep).copy()
    return sub


@click.command("graph")
@click.argument("name", required=False)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["tree", "json", "dot"]),
    default="tree",
    show_default=True,
    help="tree for the terminal, json (as GET /api/v1/graph), dot for graphviz.",
)
@_NS
@pass_cli
def graph_cmd(cli: CliContext, name: str | None, output: str, namespace: str | None) -> None:
    """Print the composition hierarchy: of NAME and below, of -n NAMESPACE, or of every digi.

    Inactive (yielded) mounts are marked [inactive]; mounts that break the
    multitree (stored while the webhook was down) are marked [rejected].

    \b
    Examples:
      digi graph
      digi graph hq
      digi graph -o dot | dot -Tsvg > graph.svg
    """
    client = _client(cli)
    graph, kinds = _graph(client)
    root = _key(resolve(client, name, namespace)) if name else None
    if namespace and root is None:
        sub = CompositionGraph()
        sub.g = graph.g.subgraph([k for k in graph.g.nodes if k.namespace == namespace]).copy()
        graph = sub
    if root is not None and output != "tree":
        graph = _subgraph(graph, root)
    if output == "json":
        click.echo(json.dumps(graph.to_json(), indent=2))
    elif output == "dot":
        click.echo(render_dot(graph))
    else:
        text = render_tree(graph, kinds, root)
        click.echo(text or "no digis")


def _port(text: str, side: str) -> tuple[str, str, str]:
    """`A.output.x` → (digi, "output", attribute path)."""
    m = re.fullmatch(r"([^.]+)\.(output|input)\.(.+)", text)
    if m is None or m.group(2) != side:
        raise click.ClickException(
            f"{text!r} is not DIGI.{side}.ATTR, e.g. "
            + ("cam.output.objects" if side == "output" else "detector.input.url")
        )
    return m.group(1), m.group(2), m.group(3)


def pipe_name(source: Digi, out_attr: str, target: Digi, in_attr: str) -> str:
    raw = f"pipe-{source.name}-{out_attr}-{target.name}-{in_attr}".lower()
    return re.sub(r"[^a-z0-9-]+", "-", raw)[:253].strip("-")


def declares(crd: JSON, version: str, path: list[str]) -> bool:
    """Whether the kind's schema of `version` has `spec.<path>`, or keeps unknown fields
    (`x-kubernetes-preserve-unknown-fields`, as a free-form kind does) where the path leaves it."""
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    node = ((versions.get(version) or {}).get("schema") or {}).get("openAPIV3Schema") or {}
    for part in ["spec", *path]:
        props = node.get("properties") or {}
        if part not in props:
            return bool(node.get("x-kubernetes-preserve-unknown-fields"))
        node = props[part]
    return True


def _check_port(client: Client, end: Digi, side: str, attr: str) -> None:
    """Refuse a pipe end whose kind has no such port: the Sync would report it synced forever."""
    gvr = end.kind.gvr
    crd = client.get(CRD_GVR, None, f"{gvr.plural}.{gvr.group}")
    if not declares(crd, gvr.version, ["data", side, attr]):
        raise click.ClickException(
            f"{end.ref} ({end.kind.kind}) has no data.{side}.{attr}: its kind does not declare it. "
            f"Pipes connect data ports: declare it in the kind's model.yaml "
            f"(data: {{{side}: {{{attr}: <type>}}}}) and 'digi gen' it, or pipe a digi whose kind has it"
        )


@dataclass(frozen=True)
class Pipe:
    client: Client
    sync: JSON  # the Sync object that binds the two ports
    ends: tuple[tuple[Digi, str, str], tuple[Digi, str, str]]  # (digi, side, attribute) each


def _pipe_ends(cli: CliContext, src: str, dst: str, namespace: str | None) -> Pipe:
    a_name, _, a_attr = _port(src, "output")
    b_name, _, b_attr = _port(dst, "input")
    client = _client(cli)
    a, b = resolve(client, a_name, namespace), resolve(client, b_name, namespace)
    if a.namespace != b.namespace:
        raise click.ClickException(
            f"{a.ref} and {b.ref} are in different namespaces; pipes stay in one"
        )
    body = {
        "apiVersion": "digi.dev/v1",
        "kind": "Sync",
        "metadata": {"name": pipe_name(a, a_attr, b, b_attr), "namespace": a.namespace},
        "spec": {
            "source": f"{a.kind.kind}/{a.namespace}/{a.name}.spec.data.output.{a_attr}",
            "target": f"{b.kind.kind}/{b.namespace}/{b.name}.spec.data.input.{b_attr}",
            "mode": "match",
        },
    }
    return Pipe(client, body, ((a, "output", a_attr), (b, "input", b_attr)))


@click.command("pipe")
@click.argument("source")
@click.argument("target")
@_NS
@pass_cli
def pipe_cmd(cli: CliContext, source: str, target: str, namespace: str | None) -> None:
    """Pipe SOURCE (A.output.x) into TARGET (B.input.y): B's input follows A's output.

    One output may feed many inputs; an input has one writer. Both kinds must
    declare the ports (data.output.x in A's model.yaml, data.input.y in B's);
    a kind that keeps unknown fields accepts any.

    \b
    Example:
      digi pipe cam.output.objects detector.input.objects
    """
    pipe = _pipe_ends(cli, source, target, namespace)
    client, body = pipe.client, pipe.sync
    for end, side, attr in pipe.ends:
        _check_port(client, end, side, attr)
    try:
        client.create(SYNC_GVR, body["metadata"]["namespace"], body)
    except AlreadyExists:
        raise click.ClickException(f"{source} already feeds {target}") from None
    click.echo(f"piped {source} → {target} (sync {body['metadata']['name']})")


@click.command("unpipe")
@click.argument("source")
@click.argument("target")
@_NS
@pass_cli
def unpipe_cmd(cli: CliContext, source: str, target: str, namespace: str | None) -> None:
    """Remove the pipe SOURCE → TARGET; TARGET's input is cleared.

    \b
    Example:
      digi unpipe cam.output.objects detector.input.objects
    """
    pipe = _pipe_ends(cli, source, target, namespace)
    client, body = pipe.client, pipe.sync
    try:
        client.delete(SYNC_GVR, body["metadata"]["namespace"], body["metadata"]["name"])
    except NotFound:
        raise click.ClickException(f"there is no pipe {source} → {target}") from None
    click.echo(f"unpiped {source} → {target}")


commands: list[click.Command] = [
    mount_cmd,
    unmount_cmd,
    yield_cmd,
    activate_cmd,
    graph_cmd,
    pipe_cmd,
    unpipe_cmd,
]
