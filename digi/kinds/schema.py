"""`model.yaml` sections -> the OpenAPI v3 schema of a digi's `spec` (spec §3).

Data flow: `spec_schema(doc, file)` walks the parsed `model.yaml` once, section
by section, validating as it goes and returning the structural schema the CRD
embeds under `spec`. Every problem raises `KindError` naming the file, the
dotted attribute path and the fix; nothing is returned for a bad model.

Free-form parts (plain `object` attributes, `mount.*.*.spec`, object nodes of
`openapi:` pass-through schemas) carry `x-kubernetes-preserve-unknown-fields`
so a real API server keeps what drivers and the mounter write there instead of
pruning it.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from digi.kinds.errors import KindError

Schema = dict[str, Any]

PRESERVE = "x-kubernetes-preserve-unknown-fields"
LEAF_TYPES = ("string", "number", "integer", "boolean", "object", "array")

# Sections with their own rules; any other top-level attribute is a generic attribute.
GVK_KEYS = ("group", "version", "kind")
OPENAPI_KEY = "openapi"

_GVR = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/v[0-9]+((alpha|beta)[0-9]+)?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ATTR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")

# The reason the driver engine reports a failing handler under (spec §4.3).
REASON_ATTR = "reason"


def _free_object() -> Schema:
    return {"type": "object", PRESERVE: True}


def _leaf(type_name: str) -> Schema:
    if type_name == "object":
        return _free_object()
    if type_name == "array":
        return {"type": "array", "items": {PRESERVE: True}}
    return {"type": type_name}


def ingress_schema() -> Schema:
    """Schema of one `ingress.<name>` entry (spec §3, §7)."""
    source_ref = {
        "type": "object",
        "properties": {
            k: {"type": "string"} for k in ("group", "version", "kind", "name", "namespace", "egress")
        },
        PRESERVE: True,
    }
    return {
        "type": "object",
        "properties": {
            "source": {"type": "array", "items": source_ref},
            "sources": {"type": "array", "items": {"type": "string"}},
            "flow": {"type": "string"},
            "flow_agg": {"type": "string"},
            "eoio": {"type": "boolean"},
            "patch_source": {"type": "boolean"},
            "pause": {"type": "boolean"},
            "use_sourcer": {"type": "boolean"},
            "offload": {"type": "boolean"},
            "skip_history": {"type": "boolean"},
        },
    }


def egress_schema() -> Schema:
    """Schema of one `egress.<name>` entry (spec §3, §7)."""
    return {
        "type": "object",
        "properties": {
            "flow": {"type": "string"},
            "eoio": {"type": "boolean"},
            "driver_managed": {"type": "boolean"},
            "pause": {"type": "boolean"},
            "desc": {"type": "string"},
            # The original never fixed the shape of these two; keep whatever is written.
            "de_id": {PRESERVE: True},
            "offload": {"type": "boolean"},
            "link": {PRESERVE: True},
        },
    }


def mount_entry_schema() -> Schema:
    """Schema of one replica `mount.<gvr>.<namespace>/<name>` (spec §5.1)."""
    return {
        "type": "object",
        "properties": {
            "mode": {"type": "string"},
            "status": {"type": "string"},
            "generation": {"type": "number"},
            "spec": _free_object(),
        },
    }


def reflex_schema() -> Schema:
    """`reflex`: a map from name to `{policy, processor, priority}` (spec §4.6)."""
    return {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "properties": {
                "policy": {"type": "string"},
                "processor": {"type": "string"},
                "priority": {"type": "number"},
            },
        },
    }


class _Walker:
    """Validates one parsed `model.yaml` and builds its schema; knows the file for errors."""

    def __init__(self, file: Path | str) -> None:
        self.file = file

    def fail(self, path: str, problem: str, fix: str) -> KindError:
        return KindError(self.file, path, problem, fix)

    def mapping(self, value: object, path: str, what: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping of {what}, got {_show(value)}",
                            f"write `{path}:` followed by indented `name: type` lines")
        for key in value:
            if not isinstance(key, str) or not _ATTR_NAME.match(key):
                raise self.fail(f"{path}.{key}", f"{_show(key)} is not a valid attribute name",
                                "use letters, digits, '_' or '-', starting with a letter or '_'")
        return value

    def leaf_type(self, value: object, path: str) -> Schema:
        if isinstance(value, str) and value in LEAF_TYPES:
            return _leaf(value)
        guess = difflib.get_close_matches(str(value), LEAF_TYPES, n=1)
        hint = f"did you mean `{guess[0]}`? " if guess else ""
        raise self.fail(path, f"unknown type {_show(value)}",
                        f"{hint}use one of {', '.join(LEAF_TYPES)}, "
                        f"or `{OPENAPI_KEY}: <schema>` for a full OpenAPI schema")

    def openapi(self, value: Mapping[str, Any], path: str) -> Schema:
        extra = sorted(set(value) - {OPENAPI_KEY})
        if extra:
            raise self.fail(f"{path}.{extra[0]}", f"unexpected key next to `{OPENAPI_KEY}`",
                            f"put the whole schema under `{path}.{OPENAPI_KEY}`")
        schema = value[OPENAPI_KEY]
        if not isinstance(schema, Mapping):
            raise self.fail(f"{path}.{OPENAPI_KEY}", f"expected an OpenAPI schema mapping, got {_show(schema)}",
                            "write e.g. `type: array` and `items: {type: string}` under it")
        return _keep_unknown(copy.deepcopy(dict(schema)), f"{path}.{OPENAPI_KEY}", self)

    def typed(self, value: object, path: str) -> Schema:
        """A leaf type name or an `openapi:` mapping (control attributes, mount kinds)."""
        if isinstance(value, Mapping) and OPENAPI_KEY in value:
            return self.openapi(value, path)
        return self.leaf_type(value, path)

    def attribute(self, value: object, path: str) -> Schema:
        """A generic attribute: a type, an `openapi:` schema, or a mapping of sub-attributes."""
        if isinstance(value, Mapping) and OPENAPI_KEY not in value:
            return self.group(value, path)
        return self.typed(value, path)

    def group(self, value: object, path: str) -> Schema:
        attrs = self.mapping(value, path, "attributes")
        return {"type": "object", "properties": {k: self.attribute(v, f"{path}.{k}") for k, v in attrs.items()}}

    def control(self, value: object) -> Schema:
        attrs = self.mapping(value, "control", "control attributes")
        props: dict[str, Schema] = {}
        for name, typ in attrs.items():
            path = f"control.{name}"
            if isinstance(typ, Mapping) and OPENAPI_KEY not in typ:
                raise self.fail(path, "a control attribute is one value with an intent and a status, not a group",
                                f"give it a type (`{name}: string`) or `{OPENAPI_KEY}: <schema>`")
            leaf = self.typed(typ, path)
            props[name] = {"type": "object", "properties": {"intent": leaf, "status": copy.deepcopy(leaf)}}
        return {"type": "object", "properties": props}

    def data(self, value: object) -> Schema:
        ports = self.mapping(value, "data", "ports (input, output)")
        props: dict[str, Schema] = {}
        for port, attrs in ports.items():
            if port not in ("input", "output"):
                raise self.fail(f"data.{port}", "a digilake has only `data.input` and `data.output`",
                                f"move `{port}` under `data.input` or `data.output`")
            props[port] = self.group(attrs, f"data.{port}")
        return {"type": "object", "properties": props}

    def named_entries(self, value: object, section: str, entry: Schema) -> Schema:
        names = self.mapping(value, section, f"{section} names")
        props: dict[str, Schema] = {}
        for name, typ in names.items():
            if typ != "object":
                raise self.fail(f"{section}.{name}", f"expected `object`, got {_show(typ)}",
                                f"write `{name}: object`; the {section} schema is fixed by Digi")
            props[name] = copy.deepcopy(entry)
        return {"type": "object", "properties": props}

    def mount(self, value: object) -> Schema:
        if not isinstance(value, Mapping):
            raise self.fail("mount", f"expected a mapping of child kinds, got {_show(value)}",
                            "write `mount:` followed by lines like `mock.digi.dev/v1/lamps: object`")
        props: dict[str, Schema] = {}
        for gvr, typ in value.items():
            path = f"mount.{gvr}"
            if not isinstance(gvr, str) or not _GVR.match(gvr):
                raise self.fail(path, "a mount key must be a child kind as group/version/plural",
                                "write it like `mock.digi.dev/v1/lamps`")
            if typ != "object":
                raise self.fail(path, f"expected `object`, got {_show(typ)}",
                                f"write `{gvr}: object`; a replica's schema is fixed by Digi")
            props[gvr] = {"type": "object", "additionalProperties": mount_entry_schema()}
        return {"type": "object", "properties": props}

    def reflex(self, value: object) -> Schema:
        names = self.mapping(value, "reflex", "reflex names")
        for name, typ in names.items():
            if typ != "object":
                raise self.fail(f"reflex.{name}", f"expected `object`, got {_show(typ)}",
                                "write `name: object` or leave `reflex` out: every kind accepts reflexes")
        return reflex_schema()

    def obs_with_reason(self, schema: Schema) -> Schema:
        props = schema.setdefault("properties", {})
        declared = props.get(REASON_ATTR)
        if declared is not None and declared.get("type") != "string":
            raise self.fail(f"obs.{REASON_ATTR}", "obs.reason is where the driver reports a failing handler",
                            "declare it as `reason: string` or leave it out")
        props[REASON_ATTR] = {"type": "string"}
        return schema

    def spec(self, doc: Mapping[str, Any]) -> Schema:
        if "control" in doc and "data" in doc:
            raise self.fail("data", "a kind has control attributes or data attributes, never both",
                            "make a digivice (`control`) and a separate digilake (`data`), and pipe or mount them")
        props: dict[str, Schema] = {}
        for section, value in doc.items():
            if section in GVK_KEYS:
                continue
            if not isinstance(section, str) or not _ATTR_NAME.match(section):
                raise self.fail(str(section), f"{_show(section)} is not a valid attribute name",
                                "use letters, digits, '_' or '-', starting with a letter or '_'")
            props[section] = self.section(section, value)
        props["obs"] = self.obs_with_reason(props.get("obs", {"type": "object", "properties": {}}))
        props.setdefault("reflex", reflex_schema())
        return {"type": "object", "properties": props}

    def section(self, section: str, value: object) -> Schema:
        if section == "control":
            return self.control(value)
        if section == "data":
            return self.data(value)
        if section == "mount":
            return self.mount(value)
        if section == "ingress":
            return self.named_entries(value, "ingress", ingress_schema())
        if section == "egress":
            return self.named_entries(value, "egress", egress_schema())
        if section == "reflex":
            return self.reflex(value)
        if section in ("meta", "obs"):
            return self.group(value, section)
        return self.attribute(value, section)


def _keep_unknown(node: Schema, path: str, walker: _Walker) -> Schema:
    """Mark every object node of a pass-through schema that would prune unknown fields."""
    if not node.get(PRESERVE) and "x-kubernetes-int-or-string" not in node and "type" not in node:
        raise walker.fail(path, "an OpenAPI schema node without `type`",
                          "add `type:` (object, array, string, number, integer or boolean)")
    if node.get("type") == "object" and "additionalProperties" not in node:
        node[PRESERVE] = True
    for name, child in (node.get("properties") or {}).items():
        if isinstance(child, dict):
            _keep_unknown(child, f"{path}.properties.{name}", walker)
    for key in ("items", "additionalProperties"):
        child = node.get(key)
        if isinstance(child, dict):
            _keep_unknown(child, f"{path}.{key}", walker)
    return node


def _show(value: object) -> str:
    return f"`{value}`" if isinstance(value, str | int | float | bool) or value is None else type(value).__name__


def spec_schema(doc: Mapping[str, Any], file: Path | str) -> Schema:
    """The `spec` schema for a parsed `model.yaml` (group/version/kind already checked)."""
    return _Walker(file).spec(doc)
