"""``ui``: the MLflow UI over the same store, on 127.0.0.1 unless told otherwise; prints the
URL that opens each experiment's runs in the model-training view."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from digitexp.cli.output import EXIT_OK, port_int
from digitexp.errors import ConfigError, TrackingError


def _check_address(host: str, port: int) -> None:
    """The UI can listen on host:port (one line now, not a server traceback later)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--host {host!r}: not an address of this machine ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise ConfigError(
                f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); "
                "pick another --port"
            ) from None


def cmd_ui(args: argparse.Namespace) -> int:
    from digitexp.tracking import TrackingStore, default_uri, local_ui_url, mask_uri, runs_url

    uri = default_uri()
    if uri.startswith(("http://", "https://")):
        raise TrackingError(
            f"MLFLOW_TRACKING_URI is the tracking server {mask_uri(uri)}: it serves its own UI, "
            "open that address in a browser (`ui` serves an embedded sqlite store)"
        )
    # the store exists and is MLflow's (its schema created) before the server starts on it
    store = TrackingStore(uri)
    _check_address(args.host, args.port)
    base = local_ui_url(args.host, args.port)
    print(f"MLflow UI on {base} over {mask_uri(uri)} (Ctrl-C stops it)")
    experiments = store.experiments_with_runs()
    for name, exp_id in experiments.items():
        print(f"  experiment {name}: {runs_url(base, exp_id)}")
    if not experiments:
        print("  no runs yet: python -m digitexp run ablations/anchors.py --preset demo")
    sys.stdout.flush()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    # digitexp never uses the server's job runner: without it the UI starts in half the time
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(sys.executable, command)
    return EXIT_OK  # pragma: no cover - execv does not return


def register(sub: Any) -> None:
    from digitexp.tracking.ui import UI_HOST, UI_PORT

    p = sub.add_parser("ui", help="the MLflow UI over the same store (127.0.0.1)")
    p.add_argument("--host", default=UI_HOST)
    p.add_argument("--port", type=port_int, default=UI_PORT)
    p.set_defaults(func=cmd_ui)
