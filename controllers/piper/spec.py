"""What the piper runs, derived from digis and Pipelets (spec §7).

Data flow: the controller hands a digi object or a `Pipelet` object to
`digi_pipelines` / `pipelet_pipelines`; they return `Pipeline` descriptions
(`PipelineConfig` + a `resolve()` callable giving the current sources). The
engine never looks at Kubernetes objects.

- egress `<e>` of digi D: source `D@main`, destination `D@<e>`, the egress `flow`
  (none when `driver_managed: true`: the driver loads that branch itself).
- ingress `<i>` of digi D: sources from `sources` (strings) and `source`
  (objects, the original's form), destination `D@main`:
  - `name@egress` / `namespace/name@egress`: that digi's pool, branch `egress`;
  - `kind:<kind>@egress`: every child mounted in D whose kind matches (`lamp`,
    `lamps`, `Lamp` or `mock.digi.dev/v1/lamps`);
  - `kind:any@egress`: every child mounted in D.
  Mounts are read from D's `spec.mount` each time the sources are resolved, so
  mounting or unmounting a child changes the sources at the next batch.
- Pipelet `ns/p`: `src[]` and `dst[]` as `pool@branch` (branch defaults to
  `main`); one pipeline per destination.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controllers.graph import parse_entry_key
from digi.errors import DigiError
from digi.lake import pool_name

JSON = dict[str, Any]


class SpecError(DigiError):
    """A pipeline description that cannot be run; the message names the field and the fix."""


@dataclass(frozen=True, order=True)
class Source:
    """A branch of a pool: where records come from or go to."""

    pool: str
    branch: str = "main"

    def __str__(self) -> str:
        return f"{self.pool}@{self.branch}"

    @classmethod
    def parse(cls, text: str, field: str) -> Source:
        pool, sep, branch = text.rpartition("@")
        if not sep:
            pool, branch = text, "main"
        if not pool or not branch:
            raise SpecError(
                f"{field}: {text!r} is not pool@branch (e.g. l1@energy, or l1 for l1@main)"
            )
        return cls(pool, branch)


@dataclass(frozen=True)
class PipelineConfig:
    """The comparable part of a pipeline: a change here restarts it (and clears a flow error)."""

    id: str
    dst: Source
    flow: str = ""
    flow_agg: str = ""
    patch_source: bool = False
    skip_history: bool = False
    pause: bool = False
    eoio: bool = True


Resolve = Callable[[], Sequence[Source]]


@dataclass(frozen=True)
class Pipeline:
    config: PipelineConfig
    resolve: Resolve
    owner: tuple[str, str, str]  # (kind, namespace, name) of the object whose Events report it


def fixed(sources: Sequence[Source]) -> Resolve:
    """A resolver for sources that do not depend on mounts."""
    frozen = tuple(sources)
    return lambda: frozen


def _flag(entry: Mapping[str, Any], key: str, default: bool) -> bool:
    value = entry.get(key, default)
    return default if value is None else bool(value)


def _text(entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key) or ""
    return str(value).strip()


def mounted_children(obj: JSON, namespace: str) -> list[tuple[str, str, str]]:
    """(gvr, namespace, name) of every child mounted in `obj` (a digi in `namespace`), active or not.

    A bare entry key (`l1`) is read as the composition graph reads it (the parent's
    namespace), so the piper reads the pool of the child the mounter actually mounted."""
    children = []
    mounts = (obj.get("spec") or {}).get("mount") or {}
    for gvr, entries in mounts.items():
        for key in entries or {}:
            child_namespace, name = parse_entry_key(key, namespace)
            children.append((gvr, child_namespace, name))
    return sorted(children)


def kind_matches(selector: str, gvr: str) -> bool:
    """`kind:<selector>` against a mount's `group/version/plural`."""
    sel = selector.lower()
    if sel == "any":
        return True
    plural = gvr.rsplit("/", 1)[-1].lower()
    singulars = {plural.removesuffix("s"), plural.removesuffix("es")}
    if plural.endswith("ies"):
        singulars.add(plural[:-3] + "y")
    return sel in {gvr.lower(), plural, *singulars}


def ingress_resolver(
    obj: JSON, entry: Mapping[str, Any], field: str, current: Callable[[], JSON | None]
) -> Resolve:
    """A resolver for one ingress; `current()` returns the digi's latest object (for mounts)."""
    namespace = obj["metadata"].get("namespace", "default")
    selectors: list[tuple[str, str, str]] = []  # (form, value, egress) with form in name|kind
    for i, text in enumerate(entry.get("sources") or []):
        target, sep, egress = str(text).rpartition("@")
        if not sep or not target or not egress:
            raise SpecError(
                f"{field}.sources[{i}]: {text!r} is not name@egress, kind:<kind>@egress "
                "or kind:any@egress"
            )
        if target.startswith("kind:"):
            selectors.append(("kind", target[5:], egress))
        else:
            selectors.append(("name", target if "/" in target else f"{namespace}/{target}", egress))
    for i, ref in enumerate(entry.get("source") or []):
        egress = str(ref.get("egress") or "")
        if not egress:
            raise SpecError(
                f"{field}.source[{i}]: set egress (the branch of the source pool to read)"
            )
        if ref.get("name"):
            selectors.append(("name", f"{ref.get('namespace') or namespace}/{ref['name']}", egress))
        else:
            selectors.append(("kind", str(ref.get("kind") or "any"), egress))
    if not selectors:
        raise SpecError(f"{field}: no sources; set sources: [kind:any@<egress>] or [name@<egress>]")

    def resolve() -> list[Source]:
        latest = current() or obj
        found: set[Source] = set()
        children = mounted_children(latest, namespace)
        for form, value, egress in selectors:
            if form == "name":
                ns, _, name = value.partition("/")
                found.add(Source(pool_name(name, ns), egress))
            else:
                found.update(
                    Source(pool_name(n, ns), egress)
                    for gvr, ns, n in children
                    if kind_matches(value, gvr)
                )
        return sorted(found)

    return resolve


def digi_pipelines(
    kind: str, obj: JSON, current: Callable[[], JSON | None]
) -> tuple[list[Pipeline], list[SpecError]]:
    """The egress and ingress pipelines of one digi, and an error for each malformed entry
    (a bad entry does not stop the digi's other pipelines)."""
    meta = obj["metadata"]
    namespace, name = meta.get("namespace", "default"), meta["name"]
    spec = obj.get("spec") or {}
    pool = pool_name(name, namespace)
    owner = (kind, namespace, name)
    pipelines, errors = [], []
    for egress, entry in sorted((spec.get("egress") or {}).items()):
        entry = entry or {}
        if _flag(entry, "driver_managed", False):
            continue  # the driver loads this branch itself (digi.pool.load(..., branch=...))
        if egress == "main":
            errors.append(
                SpecError(
                    f"{kind} {namespace}/{name} spec.egress.main: 'main' is the branch "
                    "egress reads from; give the egress another name (e.g. energy)"
                )
            )
            continue
        config = PipelineConfig(
            id=f"egress:{namespace}/{name}/{egress}",
            dst=Source(pool, egress),
            flow=_text(entry, "flow"),
            pause=_flag(entry, "pause", False),
            eoio=_flag(entry, "eoio", True),
        )
        pipelines.append(Pipeline(config, fixed((Source(pool, "main"),)), owner))
    for ingress, entry in sorted((spec.get("ingress") or {}).items()):
        entry = entry or {}
        field = f"{kind} {namespace}/{name} spec.ingress.{ingress}"
        config = PipelineConfig(
            id=f"ingress:{namespace}/{name}/{ingress}",
            dst=Source(pool, "main"),
            flow=_text(entry, "flow"),
            flow_agg=_text(entry, "flow_agg"),
            patch_source=_flag(entry, "patch_source", False),
            skip_history=_flag(entry, "skip_history", False),
            pause=_flag(entry, "pause", False),
            eoio=_flag(entry, "eoio", True),
        )
        try:
            pipelines.append(Pipeline(config, ingress_resolver(obj, entry, field, current), owner))
        except SpecError as exc:
            errors.append(exc)
    return pipelines, errors


def pipelet_pipelines(obj: JSON) -> list[Pipeline]:
    """One pipeline per destination of a `digi.dev/v1 Pipelet`."""
    meta = obj["metadata"]
    namespace, name = meta.get("namespace", "default"), meta["name"]
    spec = obj.get("spec") or {}
    where = f"Pipelet {namespace}/{name} spec"
    sources = tuple(
        sorted(
            {Source.parse(str(s), f"{where}.src[{i}]") for i, s in enumerate(spec.get("src") or [])}
        )
    )
    dsts = [Source.parse(str(d), f"{where}.dst[{i}]") for i, d in enumerate(spec.get("dst") or [])]
    if not sources or not dsts:
        raise SpecError(f"{where}: set both src and dst (lists of pool@branch)")
    pipelines = []
    for dst in dsts:
        if dst in sources:
            raise SpecError(f"{where}.dst: {dst} is also a source; a pipelet cannot feed itself")
        config = PipelineConfig(
            id=f"pipelet:{namespace}/{name}/{dst}",
            dst=dst,
            flow=_text(spec, "flow"),
            flow_agg=_text(spec, "flow_agg"),
            patch_source=_flag(spec, "patch_source", False),
            skip_history=_flag(spec, "skip_history", False),
            pause=_flag(spec, "pause", False),
            eoio=_flag(spec, "eoio", True),
        )
        pipelines.append(Pipeline(config, fixed(sources), ("Pipelet", namespace, name)))
    return pipelines
