"""`digi build KIND_DIR`: a kind's driver as a container image (see `digi.build`).

The command always writes the build context; it builds only when a container
engine answers, and otherwise says so plainly and leaves the context for any
builder (CI, a machine with docker/podman/nerdctl, kaniko, buildah).
"""

from __future__ import annotations

from pathlib import Path

import click

from digi.build import (
    BuildError,
    build_image,
    default_base_image,
    find_engine,
    kind_info,
    write_context,
)


@click.command("build")
@click.argument("kind_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-t", "--tag", "image", default=None,
              help="Image name:tag [default: <group's first label>/<kind>:<version>, e.g. mock/lamp:v1].")
@click.option("--base", "base_image", default=None,
              help="Worker base image to build on [default: digi/worker-base:<digi version>].")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the build context [default: KIND_DIR/build].")
@click.option("--context-only", is_flag=True, help="Write the context; do not look for an engine.")
def build_cmd(kind_dir: Path, image: str | None, base_image: str | None, output: Path | None,
              context_only: bool) -> None:
    """Build the container image of the kind in KIND_DIR: its driver on the worker base.

    Writes a build context (a Dockerfile FROM the worker base image, plus the
    kind's driver/ and model.yaml), then builds it with docker, podman or
    nerdctl, whichever answers first; with none, it says why and exits 1
    (the context is kept; --context-only asks for the context alone). The kubernetes worker backend runs the
    image (annotate the CRD or digi with digi.dev/image=IMAGE, or start the
    manager with --worker-image IMAGE).

    \b
    The worker base comes from the repo's Dockerfile:
      docker build --target worker-base -t digi/worker-base:0.1.0 .
    \b
    Examples:
      digi build digis/lamp                      # context in digis/lamp/build, image mock/lamp:v1
      digi build digis/lamp -t registry.example/lamp:1.2
      digi build digis/lamp -o /tmp/lamp-ctx --context-only
    """
    try:
        info = kind_info(kind_dir)
        image = image or info.default_image
        context = write_context(kind_dir, output or kind_dir / "build", base_image or default_base_image())
    except BuildError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"wrote build context {context} (Dockerfile, driver/, model.yaml)")
    if context_only:
        return
    engine, reasons = find_engine()
    if engine is None:
        click.echo("no container engine available, so the image was not built:")
        for reason in reasons:
            click.echo(f"  {reason}")
        click.echo(f"build it where one runs:  docker build -t {image} {context}")
        # The image the command is for does not exist: a script must not go on to push it.
        raise click.exceptions.Exit(1)
    click.echo(f"building {image} with {engine.name}")
    try:
        build_image(engine, context, image)
    except BuildError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"built {image}")


commands: list[click.Command] = [build_cmd]
