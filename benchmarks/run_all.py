"""`make bench`: every benchmark at CPU-friendly sizes, one JSON line each, then a summary.

Each benchmark runs in its own process (from the repository root; a dotted name runs as a
module) and prints, as its last line, one JSON object of its figures; this script collects
those lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# (name in the results, script in benchmarks/ or a module, arguments)
BENCHMARKS: list[tuple[str, str, list[str]]] = [
    ("synth_rate.py", "synth_rate.py", ["--images", "2000"]),
    ("data_verify.py", "data_verify.py", ["--images", "3000"]),
    ("report_speed.py", "report_speed.py", ["--runs", "100", "--epochs", "20"]),
    ("search_speed.py", "search_speed.py", []),
    ("eval_speed.py", "eval_speed.py", []),
    ("bootstrap_speed.py", "bootstrap_speed.py", []),
    ("train_throughput.py", "train_throughput.py", []),
    # the CPU allotment (train.threads): 1 run alone vs 2 side by side, torch's own threads
    # (every core in every run) against auto (digitexp/engine/cpus.py)
    (
        "cpu_allotment",
        "benchmarks.gpu.packing",
        [
            *("--device", "cpu", "--model", "demo", "--runs", "1,2", "--threads", "torch,auto"),
            *("--images", "600", "--seconds", "20", "--rounds", "2"),
        ],
    ),
    ("run_figures.py", "run_figures.py", []),
]


def main() -> int:
    results: dict[str, object] = {}
    failed = []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    for name, target, args in BENCHMARKS:
        if target.endswith(".py"):
            command = [sys.executable, str(HERE / target)]
        else:
            command = [sys.executable, "-m", target]
        print(f"== {name}: {' '.join(command[1:] + args)}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(
            [*command, *args], capture_output=True, text=True, check=False, cwd=REPO, env=env
        )
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        for line in lines[-4:]:
            print(f"   {line}")
        if proc.returncode != 0 or not lines:
            failed.append(name)
            print(proc.stderr[-2000:], file=sys.stderr)
            continue
        results[name] = json.loads(lines[-1])
        print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)
    print(json.dumps(results))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
