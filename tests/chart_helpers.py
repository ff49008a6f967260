"""Running the real `helm` and `kubectl` against the chart, for the chart tests.

`helm` and `kubectl` run as subprocesses with Helm's caches and config in a
temporary directory (never the user's ~/.config/helm), against the session's
space when a kubeconfig is given. `render` parses `helm template` output into
objects keyed by (kind, name).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from digi.space.tools import ToolNotFound, tool_path

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "digi"


def helm_path() -> Path:
    try:
        return tool_path("helm")
    except ToolNotFound as e:
        pytest.skip(f"helm is not built: {e}")


def kubectl_path() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not on PATH")
    return found


def _env(home: Path, kubeconfig: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"),
                     ("HELM_DATA_HOME", "data")):
        env[var] = str(home / sub)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return env


def run(argv: list[str], home: Path, kubeconfig: Path | None = None, stdin: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                            env=_env(home, kubeconfig), timeout=180)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def helm(home: Path, *args: str, kubeconfig: Path | None = None,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([str(helm_path()), *args], home, kubeconfig, check=check)


def kubectl(home: Path, kubeconfig: Path, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([kubectl_path(), *args], home, kubeconfig, stdin=stdin, check=check)


def set_args(values: dict[str, str]) -> list[str]:
    return [a for key, value in values.items() for a in ("--set", f"{key}={value}")]


def template(home: Path, namespace: str = "digi-system", release: str = "t",
             values: dict[str, str] | None = None) -> str:
    return helm(home, "template", release, str(CHART), "--namespace", namespace,
                *set_args(values or {})).stdout


def render(home: Path, **kwargs: Any) -> dict[tuple[str, str], dict[str, Any]]:
    objects = [o for o in yaml.safe_load_all(template(home, **kwargs)) if o]
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}
