"""``register RUN_ID --name NAME``: a run's best checkpoint as a registered MLflow model."""

from __future__ import annotations

import argparse
from typing import Any

from digitexp.cli.output import EXIT_OK, runs_url_line


def cmd_register(args: argparse.Namespace) -> int:
    from digitexp.engine.serving import register_run
    from digitexp.errors import ConfigError
    from digitexp.tracking import TrackingStore
    from digitexp.tracking.models import model_name_problem

    problem = model_name_problem(args.name)
    if problem:
        raise ConfigError(f"--name {args.name!r}: {problem}")
    store = TrackingStore()
    registered = register_run(store, args.run_id, args.name)
    print(f"registered run {registered.run_id} as {registered.model_uri}")
    print(f"load it: mlflow.pyfunc.load_model({registered.model_uri!r}).predict([image paths])")
    print(runs_url_line(store, store.get_run(args.run_id).experiment))
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "register", help="register a training run's best checkpoint as an MLflow model"
    )
    p.add_argument("run_id", help="a training run (child run) with checkpoints/best.pt")
    p.add_argument("--name", required=True, help="the registered model (a new version each time)")
    p.set_defaults(func=cmd_register)
