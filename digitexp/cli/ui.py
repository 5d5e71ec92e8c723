"""``ui``: the MLflow UI over the same store, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from digitexp.cli.output import EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    from digitexp.tracking import default_uri, mask_uri

    uri = default_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
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
    print(f"MLflow UI on http://{args.host}:{args.port} over {mask_uri(uri)} (Ctrl-C stops it)")
    sys.stdout.flush()
    os.execv(sys.executable, command)
    return EXIT_OK  # pragma: no cover - execv does not return


def register(sub: Any) -> None:
    p = sub.add_parser("ui", help="the MLflow UI over the same store (127.0.0.1)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)
