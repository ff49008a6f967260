"""`python -m manager` / `digi-manager`: parse flags, build the manager, run until SIGTERM.

Flags follow controller-runtime's (`--kubeconfig`, `--metrics-bind-address`,
`--health-probe-bind-address`, `--leader-elect` and its timings) plus Digi's
(`--worker-backend`, `--lake-url`, `--root`, `--worker-image`, `--manager-url`).
The manager API (worker API, probes, `/metrics`, controllers' routes) listens on
`--bind-address`, by default the health probe address; `/metrics` is also
served on `--metrics-bind-address`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from manager.dispatcher import Dispatcher
from manager.kube import Client
from manager.runtime import LeaderElection, Manager
from manager.server.serve import parse_bind
from manager.server.tokens import TokenIssuer
from manager.server.workers_api import add_worker_api
from manager.workers.base import Backend
from manager.workers.kubernetes import KubernetesBackend
from manager.workers.local import LocalBackend

log = logging.getLogger("manager")

EXAMPLES = """\
examples:
  # what 'digi space up' runs
  python -m manager --kubeconfig ~/.digi/kubeconfig --root ~/.digi \\
      --metrics-bind-address 127.0.0.1:8080 --health-probe-bind-address 127.0.0.1:8081 \\
      --lake-url http://127.0.0.1:9867 --worker-backend local

  # in a cluster, two replicas, workers as Deployments
  digi-manager --leader-elect --worker-backend kubernetes \\
      --worker-image registry.example/lamp-driver:1 --manager-url http://digi-manager.digi-system:8081
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="digi-manager", description="The Digi controller-manager: meta controllers and digi workers.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config, then ~/.kube/config)")
    p.add_argument("--metrics-bind-address", default=":8080", help="address of /metrics; 0 disables (default :8080)")
    p.add_argument("--health-probe-bind-address", default=":8081",
                   help="address of /healthz, /readyz and, unless --bind-address, the manager API (default :8081)")
    p.add_argument("--bind-address", default="", help="address of the manager API (default: the health probe address)")
    p.add_argument("--leader-elect", action="store_true", help="elect a leader through a Lease; only it writes")
    p.add_argument("--leader-election-id", default="digi-manager", help="name of the Lease (default digi-manager)")
    p.add_argument("--leader-election-namespace", default="kube-system", help="namespace of the Lease (default kube-system)")
    p.add_argument("--leader-elect-lease-duration", type=float, default=15.0, help="seconds (default 15)")
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10.0, help="seconds (default 10)")
    p.add_argument("--leader-elect-retry-period", type=float, default=2.0, help="seconds (default 2)")
    p.add_argument("--worker-backend", choices=("local", "kubernetes"), default="local",
                   help="run each digi's driver as a local process or as a Deployment (default local)")
    p.add_argument("--worker-image", default=None, help="kubernetes backend: image when the kind names none")
    p.add_argument("--manager-url", default=None,
                   help="URL workers use to reach the manager API (default http://<API address>)")
    p.add_argument("--lake-url", default=os.environ.get("DIGI_LAKE_URL", ""), help="URL of the Zed lake")
    p.add_argument("--root", type=Path, default=Path(os.environ.get("DIGI_ROOT") or Path.home() / ".digi"),
                   help="directory for local workers' logs and state, and the token secret (default $DIGI_ROOT or ~/.digi)")
    p.add_argument("--sync-period", type=float, default=600.0, help="informer resync period in seconds (default 600)")
    p.add_argument("--worker-token-secret-file", type=Path, default=None,
                   help="file with the secret worker tokens are derived from; all replicas need the same one "
                        "(in a cluster, mount a Secret here). Created if missing (default ROOT/manager/worker-token.secret)")
    p.add_argument("--no-meta-controllers", action="store_true",
                   help="run only the dispatcher and workers (no mounter/syncer/policer/piper)")
    p.add_argument("--identity", default=None, help="leader election identity (default <hostname>_<uuid>)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> Manager:
    """A manager with the dispatcher and worker API wired, from parsed flags."""
    client = Client.from_kubeconfig(args.kubeconfig)
    mgr = Manager(
        client, lake_url=args.lake_url, metrics_bind_address=args.metrics_bind_address,
        health_probe_bind_address=args.health_probe_bind_address, bind_address=args.bind_address,
        resync_period=args.sync_period, identity=args.identity,
        leader_election=LeaderElection(
            enabled=args.leader_elect, name=args.leader_election_id, namespace=args.leader_election_namespace,
            lease_duration=args.leader_elect_lease_duration, renew_deadline=args.leader_elect_renew_deadline,
            retry_period=args.leader_elect_retry_period,
        ),
    )
    backend: Backend
    if args.worker_backend == "local":
        backend = LocalBackend(args.root, mgr.events.record)
    else:
        backend = KubernetesBackend(client, mgr.events.record, args.worker_image)
    api = parse_bind(args.bind_address or args.health_probe_bind_address)
    if args.manager_url:
        manager_url = args.manager_url
    elif api is not None:
        host = "127.0.0.1" if api[0] in ("0.0.0.0", "::", "") else api[0]
        manager_url = f"http://{host}:{api[1]}"
    else:
        raise SystemExit("digi-manager: workers need the manager API; give --bind-address or --health-probe-bind-address")
    secret = args.worker_token_secret_file or args.root / "manager" / "worker-token.secret"
    dispatcher = Dispatcher(mgr.cache, backend, TokenIssuer.from_file(secret),
                            manager_url=manager_url, lake_url=args.lake_url)
    mgr.add_controller(dispatcher.controller)
    mgr.on_shutdown(backend.shutdown)
    add_worker_api(mgr.http, dispatcher, client, lambda: mgr.is_leader)
    if not args.no_meta_controllers:
        _add_meta_controllers(mgr)
    return mgr


def _add_meta_controllers(mgr: Manager) -> None:
    """The meta controllers register themselves through `controllers.setup(mgr)`."""
    import controllers

    controllers.setup(mgr)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Controllers talk to the lake through httpx; a line per request would bury the manager's own log.
    logging.getLogger("httpx").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    mgr = build(args)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        mgr.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.exit(mgr.run())


if __name__ == "__main__":
    main()
