"""Decoding the lake's ZJSON query output into plain Python values.

A ZJSON stream is one JSON object per line: `{"type": T, "value": V}`. Types
are defined on first use with an `id` and referred to later by
`{"kind": "ref", "id": N}`, so a `Decoder` is stateful across the lines of one
response. Lines whose `type` is a string are control messages (`QueryError`,
`QueryChannelSet`, `QueryStats`…); `Decoder.line` returns them as `Control`.

Mapping to Python: records → dict, arrays/sets → list, maps → dict (keys made
hashable as str when they are not), unions → the inner value, enums → the
symbol, errors → `{"error": inner}`, integers → int, floats → float, bool →
bool, time/duration/ip/net/bytes → the lake's text (exact: a `time` keeps
its nanoseconds), type values → their ZJSON type description, null → None.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_INTS = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})
_FLOATS = frozenset({"float16", "float32", "float64"})


@dataclass(frozen=True)
class Control:
    """A control message of a `ctrl=T` query response."""

    type: str
    value: Any


class Decoder:
    """Decodes the lines of one ZJSON response; keeps its type table."""

    def __init__(self) -> None:
        self._types: dict[int, dict[str, Any]] = {}

    def line(self, text: str) -> Any | Control:
        obj = json.loads(text)
        if isinstance(obj.get("type"), str):
            return Control(obj["type"], obj.get("value"))
        return self.value(self._type(obj["type"]), obj["value"])

    def _type(self, node: dict[str, Any]) -> dict[str, Any]:
        """Resolve refs and register every nested definition carrying an id."""
        kind = node["kind"]
        if kind == "ref":
            return self._types[node["id"]]
        if kind == "record":
            node = {**node, "fields": [{**f, "type": self._type(f["type"])} for f in node["fields"]]}
        elif kind in ("array", "set", "error", "named"):
            node = {**node, "type": self._type(node["type"])}
        elif kind == "map":
            node = {**node, "key_type": self._type(node["key_type"]), "val_type": self._type(node["val_type"])}
        elif kind == "union":
            node = {**node, "types": [self._type(t) for t in node["types"]]}
        if "id" in node:
            self._types[node["id"]] = node
        return node

    def value(self, typ: dict[str, Any], body: Any) -> Any:
        if body is None:
            return None
        kind = typ["kind"]
        if kind == "primitive":
            return _primitive(typ["name"], body)
        if kind == "record":
            return {f["name"]: self.value(f["type"], v) for f, v in zip(typ["fields"], body, strict=True)}
        if kind in ("array", "set"):
            return [self.value(typ["type"], v) for v in body]
        if kind == "map":
            out = {}
            for key, val in body:
                k = self.value(typ["key_type"], key)
                out[k if isinstance(k, str | int | float | bool) else json.dumps(k)] = self.value(typ["val_type"], val)
            return out
        if kind == "union":
            tag, inner = body
            return self.value(typ["types"][int(tag)], inner)
        if kind == "enum":
            return typ["symbols"][int(body)]
        if kind == "error":
            return {"error": self.value(typ["type"], body)}
        if kind == "named":
            return self.value(typ["type"], body)
        raise ValueError(f"unknown ZJSON type kind {kind!r}")


def _primitive(name: str, text: str) -> Any:
    if name in _INTS:
        return int(text)
    if name in _FLOATS:
        return float(text)
    if name == "bool":
        return text == "true"
    return text
