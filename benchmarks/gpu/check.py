"""The GPU check: every claim about digitexp's GPU path, measured in one command.

``python -m benchmarks.gpu.check`` (``bash benchmarks/gpu_check.sh`` on a lent machine installs
the carried wheels first) generates a synthetic HW2-sized set, then runs each part of the kit
as its own process with its own time limit, inside one overall budget (``--budget``, 520 s by
default: the whole command stays under 9 minutes on 16 cores and one H200):

  env         the machine (device, driver, CUDA, torch...) and the carried dependencies
  throughput  ours vs the torchvision-reference-style loop, final config, peak memory; targets
  numerics    bf16 autocast vs fp32 on the same batches, 200 steps
  e2e         run + search + predict + register through the CLI into sqlite, the contract,
              the epoch time at HW2 size (-> the whole suite's projected time)
  ddp         torchrun with one process (NCCL): one finished run
  packing     1, 2, 4 concurrent runs on the one GPU: aggregate images/s
  compile     torch.compile of the backbone, on and off
  hotspots    host syncs per step and the busiest operations of ours (torch.profiler)

A part that fails (an error, its time limit, a check that does not hold) is recorded with its
reason and the others go on. Whatever happens, one JSON file of results is written to
``--out`` (``$OUT``), named for the device and the date, with every part's output in
``gpu-check.log`` beside it. ``--dry-run`` runs every part at tiny sizes (on the CPU: the
test suite does this, so the kit cannot rot between GPU sessions). Exit status: 0 when every
part passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.gpu import common, suite
from digitexp.errors import DigitexpError

DEFAULT_BUDGET = 520.0
MIN_PART_SECONDS = 20.0


@dataclass(frozen=True)
class Part:
    name: str
    module: str
    timeout: float  # seconds at full size
    args: str = ""  # its flags at full size (a GPU)
    dry_args: str = ""  # its flags at tiny sizes (the CPU dry run)
    uses_data: bool = True
    what: str = ""


PARTS = (
    Part("env", "env", 60, uses_data=False, what="machine and dependencies"),
    Part(
        "throughput",
        "throughput",
        110,
        "--batch-sizes 8,4",
        "--model tiny --images 32 --steps 2 --warmup 1 --rounds 1",
        what="ours vs reference",
    ),
    Part(
        "numerics",
        "numerics",
        80,
        "",
        "--model tiny --images 32 --steps 4 --window 2",
        what="bf16 vs fp32",
    ),
    Part(
        "e2e",
        "e2e",
        185,
        "",
        "--model tiny --steps 3 --trials 3 --predict-images 4",
        what="run + search + predict + register",
    ),
    Part(
        "ddp",
        "ddp",
        60,
        "",
        "--model tiny --steps 2 --images 16 --valid 8",
        what="torchrun, one process",
    ),
    Part(
        "packing",
        "packing",
        100,
        "--runs 1,2,4 --seconds 15",
        "--model tiny --images 32 --runs 1,2 --seconds 1 --warmup 1",
        what="concurrent runs",
    ),
    Part(
        "compile",
        "compile_backbone",
        100,
        "",
        "--model tiny --images 32 --warmup 1 --steps 2 --rounds 1",
        what="torch.compile on/off",
    ),
    Part(
        "hotspots",
        "hotspots",
        60,
        "",
        "--model tiny --images 32 --sync-steps 1 --profile-steps 2",
        what="host syncs and busiest operations",
    ),
)
NAMES = tuple(p.name for p in PARTS)

DATA_FULL = dict(common.HW2)
DATA_DRY = {"train": 32, "valid": 8, "test": 8}


@dataclass
class Outcome:
    ok: bool
    seconds: float
    reason: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "reason": self.reason,
            "figures": self.figures,
        }


def last_json(lines: list[str]) -> dict[str, Any] | None:
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def run_part(
    cmd: list[str], timeout: float, log: Path, env: dict[str, str], figures: bool = True
) -> Outcome:
    """Run one part as a process group; kill the group at its time limit. ``figures``: the
    part must print its JSON figures last."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=common.REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
            timed_out = True
    seconds = time.perf_counter() - start
    lines = log.read_text(errors="replace").splitlines()
    found = last_json(lines) or {}
    if timed_out:
        return Outcome(False, seconds, f"time limit: killed after {timeout:.0f} s", found)
    if code != 0:
        tail = [line for line in lines if line.strip() and not line.startswith("{")]
        last = tail[-1].strip() if tail else ""
        return Outcome(False, seconds, f"exit {code}: {last[:400]}", found)
    if figures and not found:
        return Outcome(False, seconds, "no JSON figures on the last lines", found)
    return Outcome(True, seconds, None, found)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def git_commit() -> str | None:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=common.REPO,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def summary(checks: dict[str, Outcome]) -> dict[str, Any]:
    """The figures a reader wants first, and the suite's projected time."""

    def fig(part: str, key: str) -> Any:
        outcome = checks.get(part)
        return outcome.figures.get(key) if outcome is not None else None

    out: dict[str, Any] = {
        "images_per_s": fig("throughput", "ours"),
        "reference_images_per_s": fig("throughput", "reference"),
        "ratio_vs_reference": fig("throughput", "ratio"),
        "targets": fig("throughput", "targets"),
        "peak_gpu_mb": {
            "ours": fig("throughput", "peak_gpu_mb_ours"),
            "reference": fig("throughput", "peak_gpu_mb_reference"),
        },
        "numerics_agree": fig("numerics", "agree"),
        "hw2_epoch_seconds": fig("e2e", "hw2_epoch_seconds"),
        "packing": fig("packing", "threads_auto"),
        "compile_speedup": fig("compile", "speedup"),
        "ddp_process_group": fig("ddp", "process_group"),
        "host_syncs_per_step": fig("hotspots", "host_syncs_per_step"),
    }
    rates: dict[int, float] = {}
    by_batch = fig("throughput", "ours_by_batch_size") or {}
    for batch, rate in by_batch.items():
        if rate:
            rates[int(batch)] = float(rate)
    valid = fig("e2e", "valid_seconds_hw2")
    fixed = fig("e2e", "run_fixed_seconds")
    if rates and valid is not None and fixed is not None:
        projection = suite.project(rates, float(valid), float(fixed))
        packing = fig("packing", "threads_auto") or {}
        factors = {n: v.get("vs_one_run") for n, v in packing.items() if v.get("vs_one_run")}
        if factors:
            n, factor = max(factors.items(), key=lambda kv: kv[1])
            projection["best_packing"] = {"runs_per_gpu": int(n), "aggregate_vs_one_run": factor}
            projection["hours_packed"] = round(
                projection["hours_one_run_at_a_time"] / max(1.0, factor), 2
            )
        out["suite"] = projection
    else:
        out["suite"] = "not projected: needs the throughput and e2e figures"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cuda | cpu")
    parser.add_argument("--dry-run", action="store_true", help="every part at tiny sizes")
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT") or "/tmp/digitexp-gpu-check")
    )
    parser.add_argument("--work", type=Path, help="data and stores (default: a temp dir)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds in all")
    parser.add_argument("--parts", default=",".join(NAMES), help=f"some of {','.join(NAMES)}")
    args = parser.parse_args()
    unknown = set(args.parts.split(",")) - set(NAMES)
    if unknown:
        raise SystemExit(f"--parts: unknown part(s) {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    try:  # an unusable device is every part's failure (each says why), not the kit's
        device = common.device_name(common.device_of(args.device))
    except DigitexpError as exc:
        device = f"{args.device} (unavailable: {exc})"
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "gpu-check.log"
    log.write_text("")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        checks = run_parts(args, work, log, deadline=started + args.budget)
    env_figures = checks["env"].figures if "env" in checks else {}
    results = {
        "kit": "digitexp GPU check (benchmarks/gpu)",
        "dry_run": args.dry_run,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "commit": git_commit(),
        "device": device,
        "machine": {k: v for k, v in env_figures.items() if k != "dependencies"},
        "dependencies": env_figures.get("dependencies"),
        "budget_seconds": args.budget,
        "total_seconds": round(time.perf_counter() - started, 1),
        "summary": summary(checks),
        "checks": {k: v.as_json() for k, v in checks.items()},
    }
    stem = f"{slug(device.split(' (')[0])}-{time.strftime('%Y-%m-%d')}"
    path = args.out / f"{stem}{'-dry-run' if args.dry_run else ''}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    failed = [k for k, v in checks.items() if not v.ok]
    print(f"\nresults: {path}\nlogs: {log}")
    print(json.dumps(results["summary"]))
    passed = f"{len(checks) - len(failed)} of {len(checks)} parts passed"
    print(passed + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def run_parts(
    args: argparse.Namespace, work: Path, log: Path, deadline: float
) -> dict[str, Outcome]:
    """The synthetic set, then each chosen part in order, within the deadline."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(common.REPO)) if p)
    chosen = [p for p in PARTS if p.name in args.parts.split(",")]
    checks: dict[str, Outcome] = {}
    data = work / "data"
    if any(p.uses_data for p in chosen):
        counts = DATA_DRY if args.dry_run else DATA_FULL
        cmd = [sys.executable, "-m", "digitexp", "data", "synth", "--out", str(data)]
        cmd += ["--seed", "3", *(f"--{split}={n}" for split, n in counts.items())]
        left = max(1.0, deadline - time.perf_counter())
        checks["data"] = run_part(cmd, left, work / "data.log", env, figures=False)
        checks["data"].figures = {"images": sum(counts.values()), **counts}
        append(log, "data", cmd, work / "data.log")
        report("data", checks["data"])
    for part in chosen:
        left = deadline - time.perf_counter()
        if part.uses_data and not checks["data"].ok:
            checks[part.name] = Outcome(False, 0.0, "no data: the synthetic set failed")
        elif left < MIN_PART_SECONDS:
            checks[part.name] = Outcome(False, 0.0, f"not run: {left:.0f} s left of the budget")
        else:
            cmd = [sys.executable, "-m", f"benchmarks.gpu.{part.module}", "--device", args.device]
            if part.uses_data:
                cmd += ["--data", str(data)]
            cmd += shlex.split(part.dry_args if args.dry_run else part.args)
            timeout = left - 5 if args.dry_run else min(part.timeout, left - 5)
            part_log = work / f"{part.name}.log"
            checks[part.name] = run_part(cmd, timeout, part_log, env)
            append(log, part.name, cmd, part_log)
        report(part.name, checks[part.name])
    return checks


def append(log: Path, name: str, cmd: list[str], part_log: Path) -> None:
    with open(log, "a") as out:
        out.write(f"\n===== {name}: {' '.join(cmd)}\n")
        out.write(part_log.read_text(errors="replace") if part_log.exists() else "(no output)\n")


def report(name: str, outcome: Outcome) -> None:
    state = "ok" if outcome.ok else f"FAILED ({outcome.reason})"
    print(f"[{time.strftime('%H:%M:%S')}] {name:<11} {outcome.seconds:6.1f} s  {state}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
