"""Views: reshaped copies of a model whose edits flow back on exit (spec §4.4).

Every view is a context manager over a source dict (usually `proc_view`):
`__enter__` builds a reshaped deep copy and a table from view paths to source
paths; `__exit__` diffs the copy against what the driver left in it and applies
each change to the source through that table (a removal deletes the key).
Views chain: `with TypeView(pv) as tv, DotView(tv) as dv:` — the DotView
writes into `tv` first, then the TypeView writes into `pv`.

- `NameView`/`ModelView`: `{"root": model, "<child name>": child spec, ...}`;
- `KindView`/`TypeView`: `{"root": model, "<plural>": {"<child name>": spec}}`;
- `DotView`: attribute access, with `- . / \\ space` in keys mapped to `_`;
- `CleanView`: the model with each replica reduced to its spec
  (`mount.<plural>.<name>` = spec), or, with `trim_mount`, mounts replaced by
  name lists.

Child names drop a `default/` namespace; a child kind drops its group/version
when it is the digi's own (`GROUP`/`VERSION`, or the `gvr_str` given).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar

from digi import util
from digi.engine.diff import diff

logger = logging.getLogger("digi.view")

ViewPath = tuple[str, ...]
# View path prefix -> source path prefix; None marks a part of the view with no source (read-only).
Table = dict[ViewPath, ViewPath | None]


class View:
    """Base: subclasses implement `build(source) -> (view, table)`."""

    def __init__(self, root: dict[str, Any], root_key: str = "root", gvr_str: str | None = None,
                 trim_gv: bool = True, trim_mount: bool = True, trim_name: bool = True) -> None:
        self._src = root
        self._root_key = root_key
        self._trim_gv = trim_gv
        self._trim_mount = trim_mount
        self._trim_name = trim_name
        if gvr_str is None:
            self._gv_str = f"{os.environ.get('GROUP', 'digi.dev')}/{os.environ.get('VERSION', 'v1')}"
        else:
            g, v, _ = util.parse_gvr(gvr_str)
            self._gv_str = f"{g}/{v}"
        self._old: dict[str, Any] = {}
        self._new: dict[str, Any] = {}
        self._table: Table = {}

    # --- shaping helpers --------------------------------------------------------

    def _short_typ(self, typ: str) -> str:
        prefix = self._gv_str + "/"
        return typ[len(prefix):] if self._trim_gv and typ.startswith(prefix) else typ

    @staticmethod
    def _replicas(model: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """(kind, namespaced name, spec) of each mounted replica that carries a spec."""
        return [
            (typ, nsn, m["spec"])
            for typ, ms in (model.get("mount") or {}).items() if isinstance(ms, Mapping)
            for nsn, m in ms.items() if isinstance(m, Mapping) and isinstance(m.get("spec"), dict)
        ]

    def build(self, source: dict[str, Any]) -> tuple[dict[str, Any], Table]:
        raise NotImplementedError

    def materialize(self) -> Any:
        """The view without the write-back (a copy)."""
        return self.build(self._src)[0]

    def m(self) -> Any:
        return self.materialize()

    # --- context manager ------------------------------------------------------

    def __enter__(self) -> Any:
        view, self._table = self.build(self._src)
        self._old, self._new = copy.deepcopy(view), view
        return self._new

    def __exit__(self, typ: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        for op, path, _, new in diff(self._old, _plain(self._new)):
            target = self._source_path(path)
            if target is None:
                logger.warning("%s: change at %s has no place in the model; ignored",
                               type(self).__name__, ".".join(path))
            elif op == "remove":
                _delete(self._src, target)
            elif target:
                util.deep_set(self._src, list(target), copy.deepcopy(new))

    def _source_path(self, path: ViewPath) -> ViewPath | None:
        for n in range(len(path), -1, -1):
            if path[:n] in self._table:
                base = self._table[path[:n]]
                return None if base is None else base + path[n:]
        return None


class NameView(View):
    """Children keyed by (namespace-trimmed) name next to `root` (the model itself)."""

    def build(self, source: dict[str, Any]) -> tuple[dict[str, Any], Table]:
        view: dict[str, Any] = {self._root_key: copy.deepcopy(source)}
        table: Table = {(self._root_key,): ()}
        for typ, nsn, spec in self._replicas(source):
            name = util.trim_default_space(nsn)
            view[name] = copy.deepcopy(spec)
            table[(name,)] = ("mount", typ, nsn, "spec")
        return view, table


class KindView(View):
    """Children grouped by kind (`lamps`), then keyed by name, next to `root`."""

    def build(self, source: dict[str, Any]) -> tuple[dict[str, Any], Table]:
        view: dict[str, Any] = {self._root_key: copy.deepcopy(source)}
        table: Table = {(self._root_key,): ()}
        for typ in source.get("mount") or {}:
            view.setdefault(self._short_typ(typ), {})
        for typ, nsn, spec in self._replicas(source):
            short, name = self._short_typ(typ), util.trim_default_space(nsn)
            view[short][name] = copy.deepcopy(spec)
            table[(short, name)] = ("mount", typ, nsn, "spec")
        return view, table


class CleanView(View):
    """The model with replicas reduced to their specs, recursively; `trim_mount` lists names instead."""

    def build(self, source: dict[str, Any]) -> tuple[dict[str, Any], Table]:
        table: Table = {}
        return self._clean(source, (), (), table), table

    def _clean(self, model: dict[str, Any], vprefix: ViewPath, sprefix: ViewPath, table: Table) -> dict[str, Any]:
        view = {k: copy.deepcopy(v) for k, v in model.items() if k != "mount"}
        table[vprefix] = sprefix
        if "mount" not in model:
            return view
        if self._trim_mount:
            for typ, ms in (model.get("mount") or {}).items():
                key = util.trim_gv(typ) if self._trim_gv else typ
                view[key] = [util.trim_default_space(n) for n in ms]
                table[(*vprefix, key)] = None
            return view
        mounts: dict[str, Any] = {}
        for typ, nsn, spec in self._replicas(model):
            short, name = self._short_typ(typ), util.trim_default_space(nsn)
            mounts.setdefault(short, {})[name] = self._clean(
                spec, (*vprefix, "mount", short, name), (*sprefix, "mount", typ, nsn, "spec"), table)
        view["mount"] = mounts
        return view


class DotView(View):
    """Attribute access: `dv.lamps.lamp_test.control.power.intent = "off"`."""

    _char_map: ClassVar[dict[str, str]] = {"-": "_", ".": "_", "/": "_", " ": "_", "\\": "_"}

    def build(self, source: dict[str, Any]) -> tuple[dict[str, Any], Table]:
        table: Table = {}
        return self._to_dot(source, (), (), table), table

    def _to_dot(self, d: Mapping[str, Any], vprefix: ViewPath, sprefix: ViewPath, table: Table) -> DotDict:
        table[vprefix] = sprefix
        out = DotDict()
        for key, value in d.items():
            safe = self.safe_attr(key)
            if isinstance(value, Mapping):
                dict.__setitem__(out, safe, self._to_dot(value, (*vprefix, safe), (*sprefix, key), table))
            else:
                table[(*vprefix, safe)] = (*sprefix, key)
                dict.__setitem__(out, safe, _dot_items(copy.deepcopy(value)))
        return out

    @classmethod
    def safe_attr(cls, s: str) -> str:
        for k, v in cls._char_map.items():
            s = s.replace(k, v)
        return s


class DotDict(dict[str, Any]):
    """A dict whose keys are also attributes; nested dicts assigned to it become DotDicts."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, Mapping) and not isinstance(value, DotDict):
            value = _dot(value)
        super().__setitem__(key, value)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


def _dot(d: Mapping[str, Any]) -> DotDict:
    out = DotDict()
    for k, v in d.items():
        out[k] = v
    return out


def _dot_items(value: Any) -> Any:
    """Objects inside lists get attribute access too (their keys are kept as they are)."""
    if isinstance(value, list):
        return [_dot(v) if isinstance(v, Mapping) else _dot_items(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _delete(d: dict[str, Any], path: ViewPath) -> None:
    parent = util.deep_get(d, list(path[:-1])) if len(path) > 1 else d
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


def trim_mount(v: dict[str, Any], *, trim_all: bool = False, trim_gv: bool = True) -> None:
    """Replace `mount` with per-kind lists of child names (or drop it with `trim_all`)."""
    if not trim_all:
        for typ, models in (v.get("mount") or {}).items():
            v[util.trim_gv(typ) if trim_gv else typ] = [util.trim_default_space(n) for n in models]
    v.pop("mount", None)


ModelView, TypeView = NameView, KindView
