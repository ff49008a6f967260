"""`digi init`: scaffold a new kind directory (model.yaml, deploy/cr.yaml, driver/handler.py).

The files are a working digivice with one `power` control attribute whose
driver moves status to intent, so `digi init lamp && digi gen lamp` produces
something that runs before the user edits anything.
"""

from __future__ import annotations

import re
from pathlib import Path

from digi.kinds.errors import KindError
from digi.kinds.model import CR_TEMPLATE, MODEL_FILE, parse_model

DEFAULT_GROUP = "digi.dev"
DEFAULT_VERSION = "v1"

_MODEL = """\
group: {group}
version: {version}
kind: {kind}
control:
  power: string
meta:
  gen_interval: number
obs:
  reason: string
"""

_CR = """\
apiVersion: {group}/{version}
kind: {kind}
metadata:
  name: {{{{ .Values.name }}}}
spec:
  control:
    power:
      intent: "off"
"""

_HANDLER = '''\
"""Driver of the {kind} digi: move each control attribute's status to its intent."""

import digi
import digi.on as on


@on.control
def do_control(sv):
    for attr in sv.values():
        if isinstance(attr, dict) and "intent" in attr:
            attr["status"] = attr["intent"]


if __name__ == "__main__":
    digi.run()
'''


def kind_name(name: str) -> str:
    """`smart-lamp` / `smart_lamp` / `smartLamp` -> `SmartLamp`."""
    parts = [p for p in re.split(r"[-_\s]+", name) if p]
    return "".join(p[0].upper() + p[1:] for p in parts)


def scaffold(directory: Path, kind: str, group: str = DEFAULT_GROUP, version: str = DEFAULT_VERSION) -> list[Path]:
    """Create the kind directory; refuse to touch an existing one. Returns the files written."""
    values = {"group": group, "version": version, "kind": kind_name(kind)}
    model = _MODEL.format(**values)
    # Validate before writing anything: a bad --group must not leave a half-made directory.
    parse_model(model, directory / MODEL_FILE)
    if directory.exists():
        raise KindError(directory, "", "already exists",
                        "pick another name, or remove the directory if you meant to start over")
    files = {
        directory / MODEL_FILE: model,
        directory / CR_TEMPLATE: _CR.format(**values),
        directory / "driver" / "handler.py": _HANDLER.format(**values),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)
