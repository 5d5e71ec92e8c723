"""`make bench`: every benchmark at CPU-friendly sizes, one JSON line each, then a summary.

Each benchmark runs in its own process and prints, as its last line, one JSON object of its
figures; this script collects those lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS: list[tuple[str, list[str]]] = [
    ("synth_rate.py", ["--images", "2000"]),
    ("data_verify.py", ["--images", "3000"]),
    ("report_speed.py", ["--runs", "100", "--epochs", "20"]),
    ("search_speed.py", []),
    ("eval_speed.py", []),
    ("bootstrap_speed.py", []),
    ("train_throughput.py", []),
    ("run_figures.py", []),
]


def main() -> int:
    results: dict[str, object] = {}
    failed = []
    for name, args in BENCHMARKS:
        path = HERE / name
        if not path.exists():
            continue
        print(f"== {name} {' '.join(args)}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(path), *args], capture_output=True, text=True, check=False
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
