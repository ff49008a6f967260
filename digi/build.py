"""Container images of digi kinds: the build context `digi build KIND_DIR` writes and builds.

Data flow: a kind directory (`model.yaml` or `crd.yaml`, `driver/handler.py`,
optional `driver/requirements.txt`) → `write_context` copies the driver and the
model into a fresh context directory and writes a Dockerfile `FROM` the worker
base image (the repo Dockerfile's `worker-base` target) → `find_engine` looks
for a container engine that really answers (docker, podman or nerdctl: a client
binary without a running daemon does not count) → `build_image` runs
`<engine> build`. Without an engine the context stays on disk, ready for any
builder, and the caller says so.

In the image the driver lives in /kind/driver, the worker's working directory,
and runs as `python -m digi.worker` with the non-root user of the base image.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from digi.errors import DigiError

ENGINES = ("docker", "podman", "nerdctl")
# The user the worker-base image runs as (see the repo's Dockerfile).
WORKER_USER = "65532:65532"
# In every Dockerfile write_context writes, so a rebuild knows which directory it may replace.
MARKER = "written by `digi build`"


class BuildError(DigiError):
    """The kind directory cannot be built, or the engine's build failed."""


@dataclass(frozen=True)
class KindInfo:
    group: str
    version: str
    kind: str

    @property
    def default_image(self) -> str:
        return f"{self.group.split('.')[0]}/{self.kind.lower()}:{self.version}"


@dataclass(frozen=True)
class Engine:
    name: str
    path: Path


def default_base_image() -> str:
    """The worker base built from this version of Digi (`docker build --target worker-base`)."""
    try:
        tag = version("digi")
    except PackageNotFoundError:
        tag = "latest"
    return f"digi/worker-base:{tag}"


def kind_info(kind_dir: Path) -> KindInfo:
    """Group, version and kind from `model.yaml`, else from the generated `crd.yaml`."""
    model, crd = kind_dir / "model.yaml", kind_dir / "crd.yaml"
    if model.is_file():
        data = yaml.safe_load(model.read_text()) or {}
        missing = [k for k in ("group", "version", "kind") if not data.get(k)]
        if missing:
            raise BuildError(f"{model}: missing {', '.join(missing)}; a model.yaml starts with "
                             "group, version and kind")
        return KindInfo(str(data["group"]), str(data["version"]), str(data["kind"]))
    if crd.is_file():
        spec = (yaml.safe_load(crd.read_text()) or {}).get("spec") or {}
        versions = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
        if spec.get("group") and versions and (spec.get("names") or {}).get("kind"):
            return KindInfo(spec["group"], versions[0], spec["names"]["kind"])
        raise BuildError(f"{crd}: not a CRD with spec.group, spec.names.kind and a storage version")
    raise BuildError(f"{kind_dir} has neither model.yaml nor crd.yaml: is it a kind directory "
                     "('digi init' writes one)?")


def dockerfile(info: KindInfo, base_image: str, has_requirements: bool) -> str:
    lines = [
        "# syntax=docker/dockerfile:1",
        f"# The driver of {info.kind} ({info.group}/{info.version}), {MARKER}.",
        f"ARG WORKER_BASE={base_image}",
        "FROM ${WORKER_BASE}",
        f'LABEL dev.digi.kind="{info.kind}" dev.digi.group="{info.group}" dev.digi.version="{info.version}"',
    ]
    if has_requirements:
        lines += [
            "COPY driver/requirements.txt /kind/driver/requirements.txt",
            "# The base image's pip installs into the worker's venv, then the image drops back to non-root.",
            "USER root",
            "RUN python3 -m pip --python /opt/digi/bin/python install --no-cache-dir "
            "-r /kind/driver/requirements.txt",
            f"USER {WORKER_USER}",
        ]
    lines += [
        "COPY model.yaml /kind/model.yaml",
        "COPY driver/ /kind/driver/",
        "",
    ]
    return "\n".join(lines)


def write_context(kind_dir: Path, out: Path, base_image: str) -> Path:
    """Write the build context of `kind_dir` into `out` (replaced if it exists); returns `out`."""
    kind_dir = kind_dir.resolve()
    info = kind_info(kind_dir)
    driver = kind_dir / "driver"
    if not (driver / "handler.py").is_file():
        raise BuildError(f"{driver / 'handler.py'} does not exist: the image runs the kind's driver, "
                         "driver/handler.py")
    out = out.resolve()
    if out in (kind_dir, driver) or out in kind_dir.parents or driver in out.parents:
        raise BuildError(f"--output {out} would overwrite the kind's own files; pick a directory "
                         f"such as {kind_dir / 'build'}")
    if out.exists() and any(out.iterdir()):
        # Only a context this function wrote is replaced; anything else is left alone.
        previous = out / "Dockerfile"
        if not (previous.is_file() and MARKER in previous.read_text()):
            raise BuildError(f"--output {out} exists and is not a build context from 'digi build'; "
                             "remove it or pick another directory")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(driver, out / "driver", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    model = kind_dir / "model.yaml"
    (out / "model.yaml").write_text(model.read_text() if model.is_file() else
                                    yaml.safe_dump({"group": info.group, "version": info.version,
                                                    "kind": info.kind}))
    has_requirements = (driver / "requirements.txt").is_file()
    (out / "Dockerfile").write_text(dockerfile(info, base_image, has_requirements))
    (out / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
    return out


def find_engine(candidates: tuple[str, ...] = ENGINES) -> tuple[Engine | None, list[str]]:
    """The first engine whose `info` succeeds, and why each one before it was passed over."""
    reasons: list[str] = []
    for name in candidates:
        found = shutil.which(name)
        if found is None:
            reasons.append(f"{name}: not installed")
            continue
        try:
            probe = subprocess.run([found, "info"], capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            reasons.append(f"{name}: '{name} info' did not answer within 20s")
            continue
        if probe.returncode == 0:
            return Engine(name, Path(found)), reasons
        detail = (probe.stderr.strip() or probe.stdout.strip()).splitlines()
        reasons.append(f"{name}: installed, but '{name} info' failed"
                       + (f": {detail[-1]}" if detail else ""))
    return None, reasons


def build_image(engine: Engine, context: Path, image: str) -> None:
    """`<engine> build -t image context`, its output going to this process's terminal."""
    result = subprocess.run([str(engine.path), "build", "-t", image, str(context)])
    if result.returncode != 0:
        raise BuildError(f"{engine.name} build of {image} failed (exit {result.returncode}); "
                         f"the context is in {context}")
