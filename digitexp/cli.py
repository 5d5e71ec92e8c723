"""``digitexp`` / ``python -m digitexp``: the command line.

The only module that prints errors and chooses exit codes: 0 success, 1 a run failed
(diverged), 2 bad input (one line naming the file and what is wrong), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from digitexp.errors import ConfigError, DigitexpError

log = logging.getLogger("digitexp")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


# --------------------------------------------------------------------------- helpers


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("mlflow", "alembic", "urllib3", "matplotlib", "PIL", "optuna", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="mlflow")
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _sets(args: argparse.Namespace) -> dict[str, Any]:
    from digitexp.config import parse_sets

    sets = parse_sets(args.set or [])
    if getattr(args, "data", None):
        sets["data.root"] = args.data
    if getattr(args, "device", None):
        sets["train.device"] = args.device
    return sets


# --------------------------------------------------------------------------- show


def cmd_show(args: argparse.Namespace) -> int:
    from digitexp.config import flatten
    from digitexp.spec import load_spec, resolve

    spec = load_spec(args.spec)
    sets = _sets(args)
    print(f"{spec.name}: {spec.question}")
    print(f"file {spec.path} · seeds {', '.join(map(str, spec.seeds))} · preset {args.preset}")
    for name, overrides in spec.variants.items():
        cfg = resolve(spec, name, preset=args.preset, sets=sets)
        report = spec.report_runs.get(name)
        print(f"\nvariant {name}" + (f"   (report: {report})" if report else ""))
        if args.resolved:
            for key, value in flatten(cfg).items():
                print(f"  {key} = {value!r}")
        else:
            for key in overrides:
                print(f"  {key} = {flatten(cfg)[key]!r}")
            if not overrides:
                print("  (BASE as is)")
        published = spec.published.get(name)
        if published:
            parts = [f"{k} {_fmt(v)}" for k, v in published.items()]
            print(f"  published: {' · '.join(parts)}")
    return EXIT_OK


# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from digitexp.config import flatten
    from digitexp.runner import plan_runs
    from digitexp.spec import load_spec

    spec = load_spec(args.spec)
    plans = plan_runs(
        spec, variants=args.variant, seeds=args.seed, preset=args.preset, sets=_sets(args)
    )
    experiment = args.experiment or spec.name
    if args.dry_run:
        from digitexp.tracking import default_uri, mask_uri

        print(f"would run {len(plans)} run(s) of {spec.path} into experiment {experiment!r}")
        print(f"store: {mask_uri(default_uri())}")
        if args.preset:
            print(f"preset {args.preset} applies before each variant's overrides")
        sets = _sets(args)
        if sets:
            print("--set: " + ", ".join(f"{k}={v!r}" for k, v in sets.items()))
        for plan in plans:
            flat = flatten(plan.cfg)
            keys = spec.variants[plan.variant]
            shown = ", ".join(f"{k}={flat[k]!r}" for k in keys) or "BASE as is"
            print(f"  {plan.name}: {shown}")
        return EXIT_OK
    from digitexp import distributed

    ctx = distributed.from_env()
    try:
        if ctx is not None and (args.resume is not None or args.queue):
            raise ConfigError("--resume and --queue under torchrun: use one process per worker")
        if args.queue and args.resume is not None:
            raise ConfigError("--queue resumes by itself: drop --resume")
        if ctx is not None and not ctx.is_main:
            from digitexp.runner import follow

            follow(plans, ctx)
            return EXIT_OK
        return _run_main(args, spec, plans, experiment, ctx)
    finally:
        distributed.shutdown()


def _run_main(args: argparse.Namespace, spec: Any, plans: Any, experiment: str, ctx: Any) -> int:
    from digitexp.runner import execute
    from digitexp.tracking import TrackingStore

    store = TrackingStore()
    if args.queue:
        from digitexp.workqueue import work

        outcomes = work(
            args.queue,
            plans,
            store,
            experiment=experiment,
            preset=args.preset,
            heartbeat=args.heartbeat,
            poll=min(5.0, args.heartbeat),
        )
    elif args.resume is not None:
        from digitexp.runner import resume

        outcomes = resume(
            spec,
            store,
            experiment=experiment,
            run_ids=args.resume,
            plans=plans,
            preset=args.preset,
        )
    else:
        outcomes = execute(plans, store, experiment=experiment, preset=args.preset, ctx=ctx)
    rows = []
    for o in outcomes:
        r = o.result
        rows.append(
            [
                o.plan.variant,
                o.plan.seed,
                _fmt(r.best_val_map if r else None),
                _fmt(r.val["number_acc"] if r else None),
                r.epochs if r else "–",
                f"{o.minutes:.1f}",
                o.status,
                o.run_id[:8],
            ]
        )
    header = ["variant", "seed", "best val mAP", "val Task-2", "epochs", "min", "status", "run"]
    print(_table(rows, header))
    print(f"\nstore: {store.masked_uri} · experiment: {experiment}")
    print("browse the runs: make ui   (or: python -m digitexp ui, then http://127.0.0.1:5000)")
    failed = [o for o in outcomes if o.status != "FINISHED"]
    for o in failed:
        print(f"error: {o.plan.name} ({o.run_id}): {o.error}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


# --------------------------------------------------------------------------- runs


def cmd_runs(args: argparse.Namespace) -> int:
    from digitexp.tracking import TAG_EPOCH, TAG_KIND, TAG_SPEC_PATH, TrackingStore, run_state

    store = TrackingStore()
    experiments = [args.experiment] if args.experiment else None
    runs = [
        r for r in store.runs(experiments) if r.tag(TAG_KIND, "train") == "train" and r.parent_id
    ]
    if not runs:
        where = f"experiment {args.experiment!r}" if args.experiment else store.masked_uri
        print(f"no training runs in {where}")
        return EXIT_OK
    rows, resumable = [], []
    for run in runs:
        state = run_state(run)
        text = state.name + (f": {state.reason[:60]}" if state.reason else "")
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.start_time / 1000))
        rows.append(
            [run.run_id, run.experiment, run.name, text, run.tag(TAG_EPOCH) or "–", started]
        )
        if state.name in ("failed", "killed", "stale"):
            spec = run.tag("digitexp.spec") or run.experiment
            spec_path = run.tag(TAG_SPEC_PATH) or f"ablations/{spec}.py"
            where = "" if run.experiment == spec else f" --experiment {run.experiment}"
            resumable.append(f"python -m digitexp run {spec_path}{where} --resume {run.run_id}")
    print(_table(rows, ["run id", "experiment", "name", "state", "epochs", "started"]))
    if resumable:
        print("\nto resume:")
        for line in resumable:
            print(f"  {line}")
    return EXIT_OK


# --------------------------------------------------------------------------- data


def _triple(t: tuple[float, float, float], fmt: str = ".0f") -> str:
    return " / ".join(format(v, fmt) for v in t)


def cmd_data_check(args: argparse.Namespace) -> int:
    from digitexp.data.coco import check_split, split_stats

    root = Path(args.root)
    problems: list[str] = []
    stats = []
    for name in args.splits:
        optional = name == "test"
        if optional and not (root / name).is_dir():
            continue
        split, found = check_split(
            root, name, require_annotations=not optional, clip_boxes=args.clip_boxes
        )
        problems.extend(found)
        if split is not None and not found:
            stats.append(split_stats(split))
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        print(f"{len(problems)} problem(s) in {root}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for s in stats:
        print(
            f"{s.name}: {s.images} images, {s.boxes} boxes"
            + ("" if s.annotated else " (no annotations)")
        )
        if s.clipped_boxes:
            print(f"  {s.clipped_boxes} boxes clipped to their image")
        print(f"  image width  min/median/max: {_triple(s.image_width)} px")
        print(f"  image height min/median/max: {_triple(s.image_height)} px")
        if s.annotated:
            per = ", ".join(f"{n}: {c}" for n, c in s.digits_per_image.items())
            print(f"  digits per image: {per}")
            counts = " ".join(f"{d}:{c}" for d, c in s.digit_counts.items())
            print(f"  boxes per digit: {counts}")
            print(f"  box height min/median/max: {_triple(s.box_height)} px")
            print(f"  box h/w 5%/median/95%: {_triple(s.box_aspect_hw, '.2f')}")
    print(f"ok: {root}")
    return EXIT_OK


def cmd_data_synth(args: argparse.Namespace) -> int:
    from digitexp.data.synth import SynthOptions, generate

    counts = {"train": args.train, "valid": args.valid, "test": args.test}
    options = SynthOptions(min_height=args.min_height, max_height=args.max_height)
    summary = generate(
        Path(args.out), counts, seed=args.seed, options=options, workers=args.workers
    )
    for s in summary.splits:
        print(f"{s.name}: {s.images} images, {s.boxes} boxes")
    print(
        f"wrote {summary.out} in {summary.seconds:.1f} s ({summary.images_per_second:.0f} images/s)"
    )
    return EXIT_OK


def cmd_data_svhn(args: argparse.Namespace) -> int:
    from digitexp.data.svhn import convert

    result = convert(Path(args.mat), Path(args.images), Path(args.out))
    print(
        f"wrote {result.out}: {result.images} images, {result.boxes} boxes "
        f"({result.clamped} clamped to the image, {result.dropped} dropped)"
    )
    return EXIT_OK


# --------------------------------------------------------------------------- predict


def cmd_predict(args: argparse.Namespace) -> int:
    from digitexp.config import apply_overrides
    from digitexp.data.coco import DigitDataset, image_folder_split
    from digitexp.model import build_model
    from digitexp.predict import infer, write_submission
    from digitexp.tracking import TrackingStore
    from digitexp.train import amp_dtype, checkpoint_config, load_checkpoint, resolve_device

    store = TrackingStore()
    store.get_run(args.run_id)
    split = image_folder_split(Path(args.images))
    with tempfile.TemporaryDirectory() as tmp:
        path = store.download_artifact(args.run_id, "checkpoints/best.pt", Path(tmp))
        state = load_checkpoint(path)
    cfg = checkpoint_config(state, path)
    cfg = apply_overrides(cfg, {"model.weights": "none", **_sets(args)})
    device = resolve_device(cfg.train.device)
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    model.to(device)
    dataset = DigitDataset(split, cfg.data, train=False)
    dets = infer(
        model,
        dataset,
        device=device,
        batch_size=cfg.train.eval_batch_size,
        pre_normalize=cfg.data.pre_normalize,
        amp_dtype=amp_dtype(cfg.train, device),
    )
    json_path, csv_path = write_submission(
        dets, [r.id for r in split.images], Path(args.out), cfg.eval
    )
    print(f"wrote {json_path} and {csv_path} ({len(split.images)} images)")
    return EXIT_OK


# --------------------------------------------------------------------------- report


def cmd_report(args: argparse.Namespace) -> int:
    from digitexp.report import generate
    from digitexp.tracking import TrackingStore

    summary = generate(
        TrackingStore(),
        Path(args.out),
        ablations=Path(args.ablations),
        specs=args.spec,
        preset=args.preset,
    )
    print(
        f"wrote {summary.out / 'README.md'}: {len(summary.specs)} spec(s), {summary.runs} run(s)"
        f" counted, {summary.left_out} left out, in {summary.seconds:.1f} s"
    )
    return EXIT_OK


# --------------------------------------------------------------------------- search


def cmd_search(args: argparse.Namespace) -> int:
    from digitexp.search import SearchRequest, parse_space, run_search
    from digitexp.tracking import TrackingStore, mask_uri

    request = SearchRequest(
        run_id=args.run_id,
        trials=args.trials,
        objective=args.objective,
        sampler=args.sampler,
        seed=args.seed,
        space=parse_space(args.space),
        storage=args.storage,
        study=args.study,
        split=args.split,
        cap=args.cap,
        device=args.device,
        batch_size=args.batch_size,
        data_root=args.data,
    )
    outcome = run_search(request, TrackingStore())
    how = (
        f"reused from search run {outcome.reused_cache}"
        if outcome.reused_cache
        else (f"one inference pass, {outcome.inference_seconds:.1f} s")
    )
    print(
        f"study {outcome.study} in {mask_uri(outcome.storage)}: {outcome.trials_new} new trial(s),"
        f" {outcome.trials_total} in all; candidates: {how}; "
        f"{outcome.trial_seconds * 1000:.1f} ms per trial"
    )
    d = outcome.defaults
    print(f"spec's thresholds: val mAP {d['map']:.4f}, val Task-2 {d['number_acc']:.4f}")
    for choice in outcome.choices:
        m = choice.metrics
        print(
            f"{choice.label} (trial {choice.number}): val mAP {m['map']:.4f}, val Task-2 "
            f"{m['number_acc']:.4f}\n  {choice.set_line()}"
        )
    print(f"MLflow run {outcome.run_id}")
    print(f"watch the study: optuna-dashboard {mask_uri(outcome.storage)}")
    return EXIT_OK


# --------------------------------------------------------------------------- ui


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


# --------------------------------------------------------------------------- parser


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="named override set: demo | smoke")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        metavar="KEY=VALUE",
        help="overrides, e.g. --set model.box_nms_thresh=0.4 train.epochs=3",
    )
    p.add_argument("--data", metavar="ROOT", help="data root (same as --set data.root=ROOT)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digitexp",
        description="Ablation suite for digit detection: specs, one trainer, MLflow, Optuna.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="train a spec's variants x seeds, logged to MLflow")
    p.add_argument("spec", help="spec file, e.g. ablations/anchors.py (spec files are code)")
    p.add_argument("--variant", action="append", help="only this variant (repeatable)")
    p.add_argument("--seed", action="append", type=int, help="only this seed (repeatable)")
    _add_config_args(p)
    p.add_argument("--experiment", help="MLflow experiment (default: the spec's name)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    p.add_argument(
        "--resume",
        nargs="*",
        metavar="RUN_ID",
        help="continue these unfinished runs from their last checkpoint (no id: every "
        "unfinished run of the spec's latest invocation)",
    )
    p.add_argument(
        "--queue",
        metavar="STORAGE_URL",
        help="work through the variants x seeds as a shared Optuna queue (e.g. "
        "postgresql://user@host/db); start this on any number of machines",
    )
    p.add_argument(
        "--heartbeat",
        type=float,
        default=60.0,
        help="queue: seconds between heartbeats; a worker silent for 3x this is retried",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("runs", help="list training runs with their true state (stale, failed...)")
    p.add_argument("--experiment", help="only this MLflow experiment")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("show", help="print a spec's question, variants and published numbers")
    p.add_argument("spec")
    _add_config_args(p)
    p.add_argument("--resolved", action="store_true", help="each variant's full config")
    p.set_defaults(func=cmd_show)

    data = sub.add_parser("data", help="check, generate or convert datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("check", help="validate a dataset root and summarise it")
    p.add_argument("root")
    p.add_argument("--splits", nargs="+", default=["train", "valid", "test"])
    p.add_argument("--clip-boxes", action="store_true", help="clip boxes outside the image")
    p.set_defaults(func=cmd_data_check)
    p = dsub.add_parser("synth", help="generate synthetic house numbers in the HW2 layout")
    p.add_argument("--out", default="data/synth")
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--valid", type=int, default=300)
    p.add_argument("--test", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--min-height", type=int, default=32)
    p.add_argument("--max-height", type=int, default=160)
    p.set_defaults(func=cmd_data_synth)
    p = dsub.add_parser("svhn", help="convert SVHN digitStruct.mat (format 1) to COCO JSON")
    p.add_argument("--mat", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_data_svhn)

    p = sub.add_parser("predict", help="pred.json + pred.csv for a folder with a run's best.pt")
    p.add_argument("run_id")
    p.add_argument("--images", required=True, help="folder of images named by id (17.png)")
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE")
    p.add_argument("--device")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("report", help="rebuild reports/: tables and curves from MLflow")
    p.add_argument("--out", default="reports")
    p.add_argument("--spec", action="append", help="only this spec (repeatable)")
    p.add_argument("--preset", help="only runs made with this preset")
    p.add_argument("--ablations", default="ablations", help="folder of spec files")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("search", help="Optuna search of NMS / score thresholds on a trained run")
    p.add_argument("run_id", help="a training run (child run) with checkpoints/best.pt")
    p.add_argument("--trials", type=int, default=200, help="new trials to run (default 200)")
    p.add_argument("--objective", choices=["map", "number_acc", "both"], default="both")
    p.add_argument("--sampler", choices=["tpe", "grid", "qmc"], default="tpe")
    p.add_argument("--seed", type=int, help="sampler seed (repeatable single-process search)")
    p.add_argument(
        "--space",
        nargs="*",
        metavar="KEY=LOW:HIGH[:STEP]",
        help="e.g. box_nms_thresh=0.1:0.9 box_score_thresh=0.0:0.95 (step 0.01)",
    )
    p.add_argument("--storage", help="Optuna storage URL (default: optuna.db beside the store)")
    p.add_argument("--study", help="study name (default: thresholds-RUN-SPLIT-OBJECTIVE)")
    p.add_argument("--split", help="default: the run's validation split")
    p.add_argument("--cap", type=int, default=300, help="candidates kept per image (default 300)")
    p.add_argument("--device", help="device for the one inference pass")
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--data", help="data root, if it moved since training")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("ui", help="the MLflow UI over the same store (127.0.0.1)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)
    return parser


def _sigterm_interrupts() -> None:
    """SIGTERM (torchrun's teardown, a scheduler's preemption) ends a run like Ctrl-C: it is
    marked KILLED and its last checkpoint stays, instead of being left RUNNING."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def one_line(exc: BaseException) -> str:
    """The error's message on one line. An error re-raised from a loader worker carries the
    worker's traceback: its last line holds the original message."""
    text = str(exc).strip()
    if "\n" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1].strip()
    prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
    return last.removeprefix(prefix).removeprefix(f"{type(exc).__name__}: ")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    _sigterm_interrupts()
    try:
        return int(args.func(args))
    except DigitexpError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # an output folder that cannot be written, a full disk, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
