"""Helpers drivers call as `digi.util.*`, with the original project's names (spec §4.4).

Pure dict helpers (`get`/`update`, gvr and name parsing, `mount_size`,
`merge_patch`) and two small thread helpers (`Loop`, `Loader`). The
`get_spec`/`patch_spec`/`check_gen_and_patch_spec` functions of the original
talked to the API server; here a worker holds no credentials, so they go
through the running engine's ModelClient and only reach the digi's own model.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from digi.errors import Conflict, DigiError
from digi.kinds.plural import plural

logger = logging.getLogger("digi.util")

Path = str | Iterable[str]


class DriverError:
    """Status codes the original returned from `check_gen_and_patch_spec`."""

    GEN_OUTDATED = 41


# --- paths into models -------------------------------------------------------

def _keys(path: Path) -> list[str]:
    """`a.b.c` -> [a, b, c]; quoted segments keep their dots: `mount.'mock.digi.dev/v1/lamps'.x`."""
    if not isinstance(path, str):
        return list(path)
    if "'" not in path and '"' not in path:
        return [k for k in path.split(".") if k]
    keys: list[str] = []
    for i, seg in enumerate(path.replace('"', "'").split("'")):
        if i % 2:
            keys.append(seg)
        else:
            keys.extend(k for k in seg.split(".") if k)
    return keys


def deep_get(d: Any, path: Path, default: Any = None) -> Any:
    """The value at `path` in nested dicts, or `default` if any step is missing."""
    for key in _keys(path):
        if not isinstance(d, Mapping) or key not in d:
            return default
        d = d[key]
    return d


def deep_set(d: Any, path: Path, val: Any, create: bool = True) -> None:
    """Set the value at `path`, creating intermediate dicts unless `create=False`."""
    if not isinstance(d, dict):
        return
    keys = _keys(path)
    if not keys:
        return
    for key in keys[:-1]:
        if not isinstance(d.get(key), dict):
            if not create:
                return
            d[key] = {}
        d = d[key]
    d[keys[-1]] = val


get = deep_get
update = deep_set


def deep_set_all(ds: Mapping[str, Any] | list[Any], path: Path, val: Any) -> None:
    """`deep_set` on every value of a dict (e.g. all replicas of one kind) or list."""
    for d in ds if isinstance(ds, list) else ds.values():
        deep_set(d, path, val)


def first_attr(attr: str, d: Any) -> Any:
    """The first value of key `attr` found depth-first in nested dicts."""
    if not isinstance(d, Mapping):
        return None
    if attr in d:
        return d[attr]
    for v in d.values():
        found = first_attr(attr, v)
        if found is not None:
            return found
    return None


def first_type(mounts: Mapping[str, Any]) -> str | None:
    return next(iter(mounts), None) if isinstance(mounts, Mapping) else None


def get_inst(mounts: Mapping[str, Any], gvr_str: str) -> dict[str, Any]:
    """name -> spec of the replicas of one child kind that carry a spec."""
    return {n: b["spec"] for n, b in mounts.get(gvr_str, {}).items() if b.get("spec") is not None}


def mount_size(mounts: Mapping[str, Any], gvr_set: set[str] | None = None, has_spec: bool = False,
               cond: Callable[[Any], bool] = lambda _: True) -> int:
    """How many replicas are mounted (of the kinds in `gvr_set`, with a spec, matching `cond`)."""
    return sum(
        1
        for typ, models in mounts.items() if gvr_set is None or typ in gvr_set
        for m in models.values() if cond(m) and (not has_spec or "spec" in m)
    )


# --- kinds and names ---------------------------------------------------------

def _self_gv() -> tuple[str, str]:
    return os.environ.get("GROUP", "digi.dev"), os.environ.get("VERSION", "v1")


def gvr(g: str, v: str, r: str) -> str:
    return f"{g}/{v}/{r}"


def parse_gvr(s: str) -> tuple[str, str, str]:
    """`group/version/plural` (or a bare plural, in the digi's own group/version) -> parts."""
    parts = tuple(s.lstrip("/").split("/"))
    if len(parts) == 1:
        return (*_self_gv(), parts[0])
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise DigiError(f"{s!r} is not a kind: write it as group/version/plural, e.g. mock.digi.dev/v1/lamps")


parse_kind = parse_gvr


def gvr_of(kind: str) -> str:
    """`lamp`/`Lamp`/`lamps` or a full gvr -> `group/version/plural` (own group/version if short)."""
    if "/" in kind:
        return gvr(*parse_gvr(kind))
    g, v = _self_gv()
    name = kind.lower()
    return gvr(g, v, name if name.endswith("s") else plural(name))


def full_gvr(a: str) -> str:
    return gvr(*parse_gvr(a))


def gvr_equal(a: str, b: str) -> bool:
    return full_gvr(a) == full_gvr(b)


def normalized_gvr(s: str, g: str, v: str) -> str:
    return gvr(g, v, s.split("/")[-1])


def trim_gv(gvr_str: str) -> str:
    return gvr_str.split("/")[-1]


def is_gvr(s: str) -> bool:
    return len(s.split("/")) == 3


def spaced_name(n: str, ns: str) -> str:
    return f"{ns}/{n}"


def parse_spaced_name(nsn: str) -> tuple[str, str]:
    """`ns/name` -> (name, ns); a bare name is in `default`."""
    ns, _, name = nsn.rpartition("/")
    return name, ns or "default"


def trim_default_space(n: str) -> str:
    return n[len("default/"):] if n.startswith("default/") else n


simple_name = trim_default_space


def normalized_nsn(s: str) -> str:
    return s if "/" in s else f"default/{s}"


def model_id(g: str, v: str, r: str, n: str, ns: str) -> str:
    return f"{g}/{v}/{r}/{spaced_name(n, ns)}"


def uuid_str(length: int = 4) -> str:
    return str(uuid.uuid4())[:length]


def get_ts(raw: bool = True) -> datetime.datetime | str:
    t = datetime.datetime.now(datetime.UTC)
    return t if raw else t.isoformat().replace("+00:00", "Z")


# --- JSON merge patches (RFC 7386) --------------------------------------------

def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch turning `old` into `new`: changed keys, and `None` for deleted ones."""
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif isinstance(value, Mapping) and isinstance(old[key], Mapping):
            sub = merge_patch(old[key], value)
            if sub:
                patch[key] = sub
        elif not _same(value, old[key]):
            patch[key] = value
    return patch


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0 (the API server does not keep the difference) but True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """`target` with `patch` applied (RFC 7386); returns a new value, inputs are not modified."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


# --- the digi's own model, through the engine ----------------------------------

def _own_client(g: str, v: str, r: str, n: str, ns: str) -> Any:
    from digi.engine.current import current_engine

    own = (*_self_gv(), os.environ.get("PLURAL", ""), os.environ.get("NAME", ""),
           os.environ.get("NAMESPACE", "default"))
    if (g, v, r, n, ns) != own:
        raise DigiError(f"{model_id(g, v, r, n, ns)}: a driver reaches only its own model "
                        f"({model_id(*own)}); mount the other digi and write its replica instead")
    return current_engine().client


def get_spec(g: str, v: str, r: str, n: str, ns: str) -> tuple[dict[str, Any], str, int] | None:
    """(spec, resourceVersion, generation) of the digi's own model, or None if unreadable."""
    try:
        obj = _own_client(g, v, r, n, ns).get()
    except DigiError as e:
        logger.warning("unable to get model %s: %s", n, e)
        return None
    return obj.get("spec", {}), obj["metadata"]["resourceVersion"], obj["metadata"]["generation"]


def patch_spec(g: str, v: str, r: str, n: str, ns: str, spec: Mapping[str, Any],
               rv: str | None = None) -> tuple[dict[str, Any] | None, Exception | None]:
    """Merge-patch the own model's spec (guarded by `rv` if given) -> (object, None) or (None, error)."""
    try:
        return _own_client(g, v, r, n, ns).patch({"spec": dict(spec)}, resource_version=rv), None
    except DigiError as e:
        return None, e


class GenerationOutdated(DigiError):
    status = DriverError.GEN_OUTDATED


def check_gen_and_patch_spec(g: str, v: str, r: str, n: str, ns: str, spec: Mapping[str, Any],
                             gen: int) -> tuple[int, dict[str, Any] | None, Exception | None]:
    """Patch the spec unless the model's generation moved past `gen`; retry on conflicts.

    Returns (current generation, new object or None, error or None) like the original.
    """
    try:
        _own_client(g, v, r, n, ns)
    except DigiError as e:
        return -1, None, e
    while True:
        got = get_spec(g, v, r, n, ns)
        if got is None:
            return -1, None, DigiError(f"model {n} is not readable")
        _, rv, cur_gen = got
        if gen < cur_gen:
            return cur_gen, None, GenerationOutdated(f"generation outdated {gen} < {cur_gen}")
        resp, err = patch_spec(g, v, r, n, ns, spec, rv=rv)
        if not isinstance(err, Conflict):
            return cur_gen, resp, err
        logger.info("unable to patch %s due to conflict; retry", n)


# --- background loops -----------------------------------------------------------

class Loop:
    """Call `loop_fn` every `loop_interval` seconds in a thread; `start/stop/reset`, restartable.

    Unlike the original (a `threading.Thread` subclass that could start only
    once), `start()` after `stop()` starts a fresh thread; an exception in
    `loop_fn` is logged and the loop goes on.
    """

    def __init__(self, loop_fn: Callable[[], Any], loop_interval: float = 1) -> None:
        self.loop_fn = loop_fn
        self.loop_interval = loop_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.loop_fn()
            except Exception:
                logger.exception("loop %s failed", getattr(self.loop_fn, "__name__", self.loop_fn))
            stop.wait(self.loop_interval)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), daemon=True,
                                            name=f"digi-loop-{getattr(self.loop_fn, '__name__', 'fn')}")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def reset(self, loop_interval: float | None = None) -> None:
        """Stop, and change the interval for the next `start()`."""
        if loop_interval is not None:
            self.loop_interval = loop_interval
        self.stop()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()


class Loader(Loop):
    """A `Loop` under the original's loader names: `Loader(load_fn, load_interval)`."""

    def __init__(self, load_fn: Callable[[], Any], load_interval: float = 1) -> None:
        super().__init__(load_fn, load_interval)

    @property
    def load_interval(self) -> float:
        return self.loop_interval

    @load_interval.setter
    def load_interval(self, value: float) -> None:
        self.loop_interval = value
