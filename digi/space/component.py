"""What a dSpace component is: how to run it and how to tell it is ready.

A `Component` is plain data (name, tool or argv, env, ports, URL, readiness
probe, log path), so the supervisor in `digi.space.space` treats etcd, the
API server, the lake and the manager alike.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from digi.space.tools import tool_path

_PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class HttpProbe:
    """Ready when GET `url` answers 200 (over TLS with `ca`, as the client `cert`/`key`)."""

    url: str
    ca: Path | None = None
    cert: tuple[Path, Path] | None = None

    def _verify(self) -> ssl.SSLContext | bool:
        if self.ca is None:
            return True
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if self.cert is not None:
            ctx.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
        return ctx

    def __call__(self) -> bool:
        try:
            resp = httpx.get(self.url, verify=self._verify(), timeout=_PROBE_TIMEOUT)
        except (httpx.HTTPError, OSError, ssl.SSLError):
            return False
        return resp.status_code == 200


@dataclass(frozen=True)
class Component:
    """One process of the dSpace.

    `tool` names an executable found with `tool_path` (argv[0]); components that
    are not tools (the manager, run by this Python) leave it None and give the
    full command in `args`.
    """

    name: str
    args: Sequence[str]
    url: str
    probe: HttpProbe
    log: Path
    ports: dict[str, int]
    tool: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 90.0
    stop_timeout: float = 15.0
    hint: str = ""

    def argv(self, bin_dirs: Sequence[Path] | None = None) -> list[str]:
        """The command line; raises `ToolNotFound` when the tool is missing."""
        if self.tool is None:
            return list(self.args)
        return [str(tool_path(self.tool, bin_dirs)), *self.args]
