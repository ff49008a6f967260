"""Digi kinds: `model.yaml` -> CustomResourceDefinition, and kind scaffolding.

`load_kind(dir)` returns a validated `Kind` (group, version, kind, plural,
`crd()`); `generate(dir)` writes `crd.yaml`; `render_cr(template, name)` fills a
`deploy/cr.yaml` template; `scaffold(dir, kind, group)` creates a new kind.
Errors are `KindError`s naming the file, the attribute path and the fix.
"""

from digi.kinds.errors import KindError
from digi.kinds.model import (
    CR_TEMPLATE,
    CRD_FILE,
    KIND_LABEL,
    MODEL_FILE,
    Kind,
    generate,
    load_kind,
    parse_model,
    render_cr,
    write_crd,
)
from digi.kinds.plural import plural
from digi.kinds.scaffold import scaffold

__all__ = [
    "CRD_FILE",
    "CR_TEMPLATE",
    "KIND_LABEL",
    "MODEL_FILE",
    "Kind",
    "KindError",
    "generate",
    "load_kind",
    "parse_model",
    "plural",
    "render_cr",
    "scaffold",
    "write_crd",
]
