"""The MLflow UI as the front door: the URL that opens an experiment's runs in the model
training view, and the view that URL selects.

MLflow 3.17's UI opens an experiment on its GenAI overview unless the URL says
``workflowType=machine_learning``; ``viewStateShareKey=KEY`` applies the view stored in the
experiment tag ``mlflow.sharedViewState.KEY``. digitexp writes that view at every ``run``: a
Run Name column wide enough for the run names, and the chart layout of the experiment's chart
view, with the per-epoch curves first, then the summaries, then the parents' comparison. Metric
sections the layout does not name (``analysis/...``, ``search/...``, system metrics) are added
by the UI after these, because the layout is marked as reordered.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from digitexp.tracking import contract as names
from digitexp.tracking.uri import without_credentials

UI_HOST = "127.0.0.1"  # `digitexp ui` binds here unless told otherwise
UI_PORT = 5000
VIEW_TAG = f"mlflow.sharedViewState.{names.VIEW_KEY}"

RUN_NAME_COLUMN = "attributes.`Run Name`"
DATASET_COLUMN = "attributes.`Dataset`"
SELECTED_COLUMNS = (  # beside Run Name and Created (ids as MLflow's UI names them)
    f"metrics.`{names.BEST_VAL_MAP}`",
    "attributes.`Source`",
    "attributes.`Version`",
    "attributes.`Models`",
    DATASET_COLUMN,
)
COLUMN_ORDER = (RUN_NAME_COLUMN, "runDateAndNestInfo", *SELECTED_COLUMNS, "duration")
# the runs table (measured in Chromium at 1400 px): a character of a run name, a nesting level,
# the rest of the cell (expander, colour dot, padding)
CHAR_PX, NEST_PX, NAME_CELL_PX = 6.3, 24, 64
MIN_NAME_PX, MAX_NAME_PX = 190, 600
DATASET_PX = 240  # "synth (e707717c0ec1) Train" whole

CURVES = (  # the per-epoch curves, most telling first
    names.VAL_MAP,
    names.VAL_NUMBER_ACC,
    names.VAL_DIGIT_ACC,
    names.TRAIN_LOSS,
    names.VAL_MAP50,
    names.VAL_MAP75,
    *names.LOSS_PARTS,
    names.LR,
    names.EPOCH_SECONDS,
    names.TRAIN_IMAGES_PER_S,
)
SUMMARIES = (
    names.BEST_VAL_MAP,
    names.at_best_metric("number_acc"),
    names.TEST_MAP,
    names.TEST_NUMBER_ACC,
    names.BEST_EPOCH,
    names.FINAL_TRAIN_LOSS,
    names.at_best_metric("digit_acc"),
    names.at_best_metric("map50"),
    names.at_best_metric("map75"),
    names.test_metric("digit_acc"),
    names.test_metric("map50"),
    names.test_metric("map75"),
)
SECTIONS = (
    ("Per-epoch curves", "LINE", CURVES),
    ("Summaries", "BAR", SUMMARIES),
    ("Comparison (parent runs)", "BAR", names.COMPARISON_METRICS),
)


def local_ui_url(host: str = UI_HOST, port: int = UI_PORT) -> str:
    """What ``digitexp ui --host HOST --port PORT`` serves."""
    return f"http://{host}:{port}"


def ui_base_url(tracking_uri: str) -> str:
    """Where the UI over ``tracking_uri`` is served: the tracking server itself (without
    credentials), or for any other store what ``digitexp ui`` serves by default."""
    if tracking_uri.startswith(("http://", "https://")):
        plain, _, _ = without_credentials(tracking_uri)
        return plain.rstrip("/")
    return local_ui_url()


def runs_url(base_url: str, experiment_id: str) -> str:
    """The experiment's runs table in the model-training view, with digitexp's view."""
    query = f"workflowType=machine_learning&viewStateShareKey={names.VIEW_KEY}"
    return f"{base_url}/#/experiments/{experiment_id}/runs?{query}"


def artifact_markdown(run_id: str, path: str) -> str:
    """Markdown that shows a run's PNG artifact inline in its description (the URL is the
    tracking server's own, relative to the UI's page)."""
    query = f"path={quote(path, safe='')}&run_uuid={run_id}"
    return f"![{path}](get-artifact?{query})"


def run_name_width(run_names: Iterable[tuple[str, int]]) -> int:
    """Pixels of a Run Name column that shows every ``(name, nesting depth)`` whole."""
    widest = max((len(n) * CHAR_PX + depth * NEST_PX for n, depth in run_names), default=0)
    return round(max(MIN_NAME_PX, min(MAX_NAME_PX, widest + NAME_CELL_PX)))


def _uuid(kind: str, name: str) -> str:
    """Stable ids: rewriting the view at every run changes nothing that did not change."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"digitexp/{kind}/{name}"))


def _chart(key: str, kind: str, section: str) -> dict[str, Any]:
    card: dict[str, Any] = {
        "uuid": _uuid("chart", key),
        "type": kind,
        "metricKey": key,
        "displayName": key,
        "metricSectionId": section,
        "isGenerated": True,
        "deleted": False,
        "runsCountToCompare": 10,
    }
    if kind == "LINE":
        card.update(
            xAxisKey="step",
            xAxisScaleType="linear",
            scaleType="linear",
            lineSmoothness=0,
            selectedXAxisMetricKey="",
            yAxisKey="metric",
            yAxisExpressions=[],
            range={},
            ignoreOutliers=False,
            useGlobalXaxisKey=True,
            useGlobalLineSmoothing=True,
        )
    return card


def view_state(
    name_width: int, sections: Sequence[tuple[str, str, Sequence[str]]] = SECTIONS
) -> str:
    """The view (JSON) the printed URL selects: columns, and the chart sections in order."""
    section_rows, charts = [], []
    for title, kind, keys in sections:
        sid = _uuid("section", title)
        section_rows.append(
            {"uuid": sid, "name": title, "display": True, "isReordered": True, "deleted": False}
        )
        charts += [_chart(key, kind, sid) for key in keys]
    state = {
        "columnOrder": list(COLUMN_ORDER),
        "columnWidths": {RUN_NAME_COLUMN: name_width, DATASET_COLUMN: DATASET_PX},
        "selectedColumns": list(SELECTED_COLUMNS),
        "compareRunSections": section_rows,
        "compareRunCharts": charts,
        "isAccordionReordered": True,  # sections the UI finds later go after these
    }
    return json.dumps(state, separators=(",", ":"))
