"""Writing Zed text safely: quoted names, ZSON values and time literals.

Everything the digi code puts into a Zed query or a ZSON payload goes through
here, so that a name a user chose (a pool called `a" | drop`) is always one
quoted string literal and never changes what a query means.

- `quote(name)` renders a pool or branch name as a Zed string literal;
  `pool_ref(pool, branch)` renders `"pool"@"branch"` for `from`.
- `zson(value)` renders a Python value (dict, list, str, int, float, bool,
  None, datetime, `Time`) as ZSON; datetimes and `Time` strings become Zed
  `time` values.
- `time_literal(text)` checks that a lake-supplied time (RFC 3339, as the lake
  prints it) is exactly that before it is pasted into a query.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
# Words that parse as something other than a field name when left unquoted.
_RESERVED = frozenset({"true", "false", "null", "NaN", "Inf", "type", "error"})


def quote(text: str) -> str:
    """`text` as a double-quoted Zed string literal (JSON escaping, which Zed reads)."""
    return json.dumps(text, ensure_ascii=True)


def pool_ref(pool: str, branch: str | None = None) -> str:
    """`"pool"@"branch"`, the operand of `from`/`pool`, with both names quoted."""
    return quote(pool) if branch is None else f"{quote(pool)}@{quote(branch)}"


def time_literal(text: str) -> str:
    """A Zed time literal from the lake's RFC 3339 text; anything else is refused."""
    if not _TIME.fullmatch(text):
        raise ValueError(f"{text!r} is not an RFC 3339 time such as 2026-01-02T03:04:05.123Z")
    return text


def format_time(moment: datetime) -> str:
    """`moment` (naive = UTC) as a Zed time literal with microseconds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Time(str):
    """A string that `zson` writes as a Zed `time` (checked by `time_literal`), not as a string."""


def _field(name: str) -> str:
    return name if _IDENTIFIER.fullmatch(name) and name not in _RESERVED else quote(name)


def zson(value: Any) -> str:
    """`value` as one ZSON value (no newlines, so it can be a line of a load body)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        text = repr(value)
        return text if any(c in text for c in ".eE") else text + "."
    if isinstance(value, Time):
        return time_literal(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_field(str(k))}:{zson(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(zson(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as ZSON: {value!r}")
