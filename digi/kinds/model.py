"""A kind: its `model.yaml` parsed and checked, and the CRD it becomes (spec §3).

Data flow: `load_kind(dir_or_file)` reads `model.yaml`, checks group/version/kind,
builds the `spec` schema (`digi.kinds.schema`) and returns an immutable `Kind`;
`Kind.crd()` wraps the schema into a CustomResourceDefinition labelled
`digi.dev/kind: "true"` (how the manager recognises digi kinds), with the
printer columns of `digi.kinds.columns` so `kubectl get` shows control
attributes. `generate(dir)` writes `crd.yaml` next to `model.yaml` only after
all of that succeeded, through a temporary file, so a bad model never leaves a
partial or stale-looking output.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from digi.kinds import plural as plurals
from digi.kinds.columns import printer_columns
from digi.kinds.errors import KindError
from digi.kinds.schema import GVK_KEYS, Schema, spec_schema

MODEL_FILE = "model.yaml"
CRD_FILE = "crd.yaml"
CR_TEMPLATE = Path("deploy") / "cr.yaml"
KIND_LABEL = "digi.dev/kind"
NAME_PLACEHOLDER = re.compile(r"\{\{\s*\.Values\.name\s*\}\}")

_GROUP = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")
_VERSION = re.compile(r"^v[1-9][0-9]*((alpha|beta)[1-9][0-9]*)?$")
_KIND = re.compile(r"^[A-Z][A-Za-z0-9]*$")

_GVK_RULES = {
    "group": (_GROUP, "a DNS subdomain with at least one dot, e.g. `mock.digi.dev`"),
    "version": (_VERSION, "a Kubernetes version, e.g. `v1` or `v1beta1`"),
    "kind": (_KIND, "CamelCase starting with an upper-case letter, e.g. `Lamp`"),
}


@dataclass(frozen=True)
class Kind:
    """A validated kind. `schema` is the OpenAPI schema of `spec`."""

    group: str
    version: str
    kind: str
    schema: Schema = field(repr=False)
    source: Path

    @property
    def plural(self) -> str:
        return plurals.plural(self.kind)

    @property
    def singular(self) -> str:
        return plurals.singular(self.kind)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def gvr(self) -> str:
        """`group/version/plural`, the mount path form."""
        return f"{self.group}/{self.version}/{self.plural}"

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    def crd(self) -> dict[str, Any]:
        """The CustomResourceDefinition of this kind, as a plain dict."""
        columns = printer_columns(self.schema)
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": self.crd_name, "labels": {KIND_LABEL: "true"}},
            "spec": {
                "group": self.group,
                "names": {
                    "kind": self.kind,
                    "listKind": f"{self.kind}List",
                    "plural": self.plural,
                    "singular": self.singular,
                },
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": self.version,
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "apiVersion": {"type": "string"},
                                    "kind": {"type": "string"},
                                    "metadata": {"type": "object"},
                                    "spec": self.schema,
                                },
                            }
                        },
                        **({"additionalPrinterColumns": columns} if columns else {}),
                    }
                ],
            },
        }


def model_path(target: Path) -> Path:
    """`target` itself if it is a file, else `target/model.yaml`."""
    return target if target.is_file() else target / MODEL_FILE


def parse_model(text: str, file: Path | str) -> Kind:
    """Parse and validate the text of a `model.yaml`."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise KindError(file, where, f"not valid YAML ({problem})",
                        "fix the indentation or quoting there; `key: value` pairs, two spaces per level") from e
    if not isinstance(doc, Mapping):
        raise KindError(file, "", "expected a mapping with group, version, kind and attribute sections",
                        "start the file with `group: <group>`, `version: v1`, `kind: <Kind>`")
    gvk: dict[str, str] = {}
    for key in GVK_KEYS:
        pattern, expected = _GVK_RULES[key]
        value = doc.get(key)
        if value is None:
            raise KindError(file, key, f"missing `{key}`", f"add `{key}: ...`, {expected}")
        if not isinstance(value, str) or not pattern.match(value):
            raise KindError(file, key, f"`{value}` is not a valid {key}", f"use {expected}")
        gvk[key] = value
    return Kind(**gvk, schema=spec_schema(doc, file), source=Path(file))


def load_kind(target: Path | str) -> Kind:
    """Load the kind in directory `target` (or the `model.yaml` file `target`)."""
    path = model_path(Path(target))
    if not path.exists():
        raise KindError(path, "", "no such file",
                        f"run `digi init <kind>` to scaffold one, or point at a directory with {MODEL_FILE}")
    return parse_model(path.read_text(), path)


class _NoAliases(yaml.SafeDumper):
    """Dump repeated sub-schemas in full: anchors make a CRD hard to read and diff."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_NoAliases, sort_keys=False, default_flow_style=False)


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_crd(kind: Kind) -> Path:
    """Write `crd.yaml` next to the kind's `model.yaml`; return its path."""
    out = kind.source.parent / CRD_FILE
    write_atomically(out, dump_yaml(kind.crd()))
    return out


def generate(kind_dir: Path | str) -> Path:
    """Write `<kind_dir>/crd.yaml` from `<kind_dir>/model.yaml`; return its path."""
    return write_crd(load_kind(kind_dir))


def render_cr(template: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    """A digi object from a `deploy/cr.yaml` template, with `{{ .Values.name }}` replaced."""
    obj = yaml.safe_load(NAME_PLACEHOLDER.sub(name, template))
    if not isinstance(obj, dict):
        raise ValueError("a CR template must be a YAML mapping with apiVersion, kind, metadata and spec")
    metadata = obj.setdefault("metadata", {})
    metadata["name"] = name
    if namespace is not None:
        metadata["namespace"] = namespace
    return obj
