"""Loopback TCP ports for the dSpace's components.

Ports are chosen once (`free_ports`) and then reused across `up`s, so URLs in
kubeconfigs and scripts stay valid; `port_owner` explains who holds a port
that turned out to be taken.
"""

from __future__ import annotations

import contextlib
import socket

import psutil

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on the loopback right now."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def is_free(port: int) -> bool:
    """True when nothing listens on (or holds) `HOST:port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port in TIME_WAIT from our own previous run is usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str:
    """A human description of the process listening on `port`, if it can be found."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, PermissionError):
        return "another process"
    for conn in conns:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if conn.pid is None:
                return "another process"
            try:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({' '.join(proc.cmdline())[:120]})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return "another process"
