"""The `additionalPrinterColumns` of a kind's CRD: what `kubectl get <plural>` shows.

Data flow: `Kind.crd()` passes the kind's `spec` schema to `printer_columns`,
which reads `spec.control` and returns, per control attribute, a column with
its status (`POWER`) and one with its intent (`POWER-INTENT`), then `Age`.
Only scalar attributes get columns (an object or array cell is unreadable);
the first `SHOWN_ATTRIBUTES` of them are shown by plain `kubectl get`, the rest
only with `-o wide`, so a wide kind keeps a narrow default table. A kind
without scalar control attributes (a digilake) gets no columns, so kubectl
keeps its default NAME and AGE.
"""

from __future__ import annotations

from typing import Any

from digi.kinds.schema import Schema

# Printer column types that have a scalar schema type of the same name.
_SCALAR_TYPES = ("string", "number", "integer", "boolean")
SHOWN_ATTRIBUTES = 3

AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def _column(attr: str, field: str, type_name: str, wide_only: bool, what: str) -> dict[str, Any]:
    suffix = "" if field == "status" else f"-{field.capitalize()}"
    column = {
        "name": f"{attr.replace('_', '-').title()}{suffix}",
        "type": type_name,
        "jsonPath": f".spec.control.{attr}.{field}",
        "description": f"{what} of control attribute `{attr}`",
    }
    # Priority 0 (the default, left out) is shown by plain `kubectl get`; above 0 only with `-o wide`.
    return {**column, "priority": 1} if wide_only else column


def printer_columns(spec: Schema) -> list[dict[str, Any]]:
    """Status and intent columns for the scalar control attributes of `spec`, then Age; [] if none."""
    control = spec.get("properties", {}).get("control", {}).get("properties", {})
    columns: list[dict[str, Any]] = []
    for attr, schema in control.items():
        type_name = schema.get("properties", {}).get("status", {}).get("type")
        if type_name not in _SCALAR_TYPES:
            continue
        wide_only = len(columns) >= 2 * SHOWN_ATTRIBUTES
        columns.append(_column(attr, "status", type_name, wide_only, "the reported status"))
        columns.append(_column(attr, "intent", type_name, wide_only, "the desired intent"))
    return [*columns, dict(AGE_COLUMN)] if columns else []
