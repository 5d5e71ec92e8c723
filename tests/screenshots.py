"""The README's two screenshots of the MLflow UI, taken in Debian's headless Chromium:

    python tests/screenshots.py mlruns/mlflow.db docs/ [--experiment anchors]

``ui_runs.png``: the URL `digitexp ui` prints for the experiment, its newest parent expanded
(and the run a search searched, when there is one); ``ui_run_artifacts.png``: the best
training run's ``figures/val_predictions.png`` in its Artifacts tab. Run it after
``python -m digitexp run ablations/anchors.py --preset smoke`` (or any run of your own).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import Browser
from mlflow_ui import EXPANDER, NAME_CELLS, NO_ASSISTANT, ROWS, digitexp_ui

from digitexp.tracking import contract

WIDTH, HEIGHT = 1400, 820


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path, help="the MLflow sqlite database")
    parser.add_argument("out", type=Path, help="folder for the two PNGs")
    parser.add_argument("--experiment", default="anchors")
    parser.add_argument("--run", help="the training run whose artifacts to show (default: best)")
    args = parser.parse_args()
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{args.db.resolve()}"
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(args.experiment)
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    trained = [r for r in runs if r.data.tags.get(contract.TAG_KIND) == contract.KIND_TRAIN]
    if args.run:
        best = next(r for r in trained if r.info.run_id == args.run)
    else:  # the best val mAP; on a tie, the lowest training loss
        best = max(
            trained,
            key=lambda r: (
                r.data.metrics.get(contract.BEST_VAL_MAP, -1),
                -r.data.metrics.get(contract.FINAL_TRAIN_LOSS, 1e9),
            ),
        )
    searched = {
        r.data.tags[contract.TAG_SOURCE_RUN]
        for r in runs
        if r.data.tags.get(contract.TAG_KIND) == contract.KIND_SEARCH
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        digitexp_ui(uri, Path(tmp)) as server,
        Browser(WIDTH, HEIGHT) as browser,
    ):
        browser.seed_local_storage(server.base, NO_ASSISTANT)
        browser.goto(server.urls[args.experiment])
        browser.wait_for(f"document.querySelectorAll('{ROWS}').length >= 1", timeout=60)
        browser.click(EXPANDER)  # the newest parent
        browser.wait_for(f"document.querySelectorAll('{ROWS}').length >= 2")
        names = {r.info.run_id: r.info.run_name for r in trained if r.info.run_id in searched}
        for name in names.values():  # expand the searched run too: its search under it
            browser.eval(
                "Array.from(document.querySelectorAll('.ag-row')).filter(r => "
                f"r.innerText.includes({name!r})).forEach(r => {{"
                f" const b = r.querySelector(\"{NAME_CELLS} button\".replace('.ag-row ', ''));"
                " if (b) b.click(); })"
            )
        time.sleep(1.5)  # the rows settle (no event tells)
        browser.screenshot(args.out / "ui_runs.png")
        browser.goto(
            f"{server.base}/#/experiments/{exp.experiment_id}/runs/{best.info.run_id}"
            f"/artifacts/{contract.PREDICTIONS_FIGURE}?workflowType=machine_learning"
        )
        browser.wait_for(
            "Array.from(document.images).some(i => i.src.startsWith('blob:') && i.complete"
            " && i.naturalWidth > 0)",
            timeout=60,
        )
        time.sleep(0.5)
        browser.screenshot(args.out / "ui_run_artifacts.png")
    print(f"wrote {args.out / 'ui_runs.png'} and {args.out / 'ui_run_artifacts.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
