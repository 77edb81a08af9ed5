"""What a person sees in the Dagster UI of a filled deployment, in headless Chromium.

The deployment (``conftest.py``) is the synthetic live world of ``monitoring/world.py``
(raw bars and features of BTC-USDT 2024-01-01..2024-03-09, xgboost trained, backtested
and judged as of 2024-02-14 and 2024-02-21), served with a second symbol, ETH-USDT, that
nothing has materialized yet. Every check compares what the page renders with what the
definitions, the instance or the DuckDB registry hold, never with the page's own numbers.

The backfill is launched from the UI first and runs while the other pages are checked:
Dagster's backfill daemon looks at backfills every 30 s, which is most of its wall time.
It backfills raw_ohlcv alone: a features backfill also targets every later day whose
warm-up window reads the backfilled days (two runs, so 30 s more) and its partitions would
be materializing while ``test_partitions_show_materialized_and_missing`` counts them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg
import pytest

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError as exc:  # before a bare collection error; the fixtures check Chromium
    message = "the UI tests need the playwright package (pip install -e '.[dev]')"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        raise ImportError(f"{message}; CI must run them") from exc
    pytest.skip(message, allow_module_level=True)

from clm_assets.assets.evaluation.assets import SHOWN
from clm_assets.backtest.report import metrics_markdown
from clm_assets.definitions import build_definitions
from clm_assets_tests.monitoring.world import SYMBOL
from clm_assets_tests.ui.deployment import (
    BACKFILL_DAYS,
    NEW_SYMBOL,
    Deployment,
    open_page,
    wait_for,
)

Screenshot = Callable[[Page, str], Path]
RAW = "market_data/raw_ohlcv"
FEATURES = "features/features"
BACKTEST = "evaluation/backtest_xgboost"
IN_PROCESS = "execution: {config: {in_process: {}}}"
"""Typed into the launch dialog's run config: each run computes in its own process instead
of starting one more Python per step (the sensors' runs do the same, for the same reason)."""
GROUPS = {"market_data", "features", "training", "evaluation", "promotion", "monitoring"}
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
    __typename ... on PartitionBackfill { id status partitionNames assetSelection { path }
    runs(limit: 100) { runId status runConfigYaml } } } }"""
AUTOMATION = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
    schedules { name }
    sensors { name sensorState { status ticks(limit: 1) { status skipReason error { message } } } }
} } } }"""
GRAPH = """() => {
    const box = (fo) => ({
        x: +fo.getAttribute('x'), y: +fo.getAttribute('y'),
        w: +fo.getAttribute('width'), h: +fo.getAttribute('height'),
        label: (fo.querySelector('div')?.innerText ?? '').trim().split('\\n')[0].trim(),
    });
    const groups = [...document.querySelectorAll('svg foreignObject.group')].map(box);
    const same = (a, b) => a.x === b.x && a.y === b.y && a.w === b.w && a.h === b.h;
    const nodes = [...document.querySelectorAll('svg foreignObject:not(.group)')].map(box)
        .filter((n) => !groups.some((g) => same(g, n)));
    const edges = [...document.querySelectorAll('svg path[marker-end]')]
        .filter((p) => p.getAttribute('stroke') === 'var(--color-lineage-edge)')
        .map((p) => p.getAttribute('d').match(/-?[0-9.]+/g).map(Number));
    return {groups, nodes, edges};
}"""
"""Group and asset boxes and edges (start and end points) of the rendered lineage graph;
group labels also sit in unclassed boxes of the group's size, left out of the nodes."""
METADATA = """() => {
    const own = [...document.querySelectorAll('table')].find((t) =>
        [...t.rows].some((r) => r.cells[0] && r.cells[0].innerText.trim() === 'eval_window'));
    if (!own) return null;
    const out = {};
    for (const row of own.rows) {
        if (row.cells.length < 2) continue;
        const cell = row.cells[1];
        const table = cell.querySelector('table');
        out[row.cells[0].innerText.trim()] = {
            text: cell.innerText.trim(),
            rows: table ? [...table.rows].map((r) => [...r.cells].map((c) => c.innerText.trim()))
                        : null,
        };
    }
    return out;
}"""
"""The partition's metadata table as ``{label: {text, rows of a table inside}}``."""
STATUS_DOTS = """(label) => {
    const item = document.querySelector(`[data-tooltip="${label}"]`);
    return item ? [...item.parentElement.children].slice(1).map((dot) => dot.style.background)
                : null;
}"""
"""The status dots the partition lists draw right of a date or a symbol: one per status
among the partitions it covers."""
GREEN, GRAY = "var(--color-accent-green)", "var(--color-accent-gray)"


def _key(asset: dg.AssetKey) -> str:
    return asset.to_user_string()


def _connections(edges: list[list[float]], boxes: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Each drawn edge as (label of the box it leaves, label of the box it enters): edges
    leave a box's right side and end, arrow-head first, a few pixels before the next."""

    def at(x: float, y: float, side: str) -> str:
        hits = [
            b["label"]
            for b in boxes
            if abs((b["x"] + b["w"] if side == "right" else b["x"]) - x) <= 12
            and b["y"] <= y <= b["y"] + b["h"]
        ]
        assert len(hits) == 1, f"edge end ({x}, {y}) is on the {side} of {hits or 'no box'}"
        return hits[0]

    return {(at(e[0], e[1], "right"), at(e[-2], e[-1], "left")) for e in edges}


def _launch_raw_backfill(page: Page, deployment: Deployment, screenshot: Screenshot) -> str:
    """Catalog → tick raw_ohlcv → Materialize selected → three days × the first symbol →
    run config → Launch backfill → the toast's View link. Returns the backfill's id."""
    page.goto(f"{deployment.url}/assets")
    page.locator("label").filter(has=page.get_by_test_id(f"checkbox-{RAW}")).click()
    page.get_by_role("button", name=re.compile(r"Materialize selected")).click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
    dates = dialog.get_by_placeholder(re.compile(r"^ex: "))
    dates.fill(f"[{BACKFILL_DAYS[0]}...{BACKFILL_DAYS[-1]}]")
    dates.press("Enter")
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem", name=SYMBOL).first.click()  # its name and a tooltip copy
    page.keyboard.press("Escape")  # closes the symbol list, not the dialog
    expect(dialog.get_by_text(f"{len(BACKFILL_DAYS)} partitions", exact=True)).to_be_visible()
    dialog.get_by_text("Config", exact=True).click()
    dialog.get_by_role("button", name="Add config").click()
    editor = page.get_by_role("dialog").filter(has_text="Config Editor")
    editor.locator(".CodeMirror.cm-s-config-editor").click()
    page.keyboard.insert_text(IN_PROCESS)  # as a paste inserts it
    expect(editor.get_by_text("No errors")).to_be_visible()
    editor.get_by_role("button", name="Save config").click()
    expect(editor).to_have_count(0)
    expect(dialog.get_by_text("Config saved", exact=True)).to_be_visible()
    screenshot(page, "backfill-launch")
    dialog.get_by_role("button", name="Launch backfill").click()
    page.get_by_role("link", name="View", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/b/[a-z0-9]+$"))
    return page.url.rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def launched_backfill(
    deployment: Deployment, browser: Browser, screenshot: Screenshot
) -> tuple[str, str]:
    """(backfill id, the text of its page right after the launch)."""
    page = open_page(browser)
    try:
        backfill_id = _launch_raw_backfill(page, deployment, screenshot)
        expect(page.get_by_text("Partition selection")).to_be_visible()
        return backfill_id, page.inner_text("body")
    finally:
        page.context.close()


@pytest.fixture(scope="module")
def finished_backfill(deployment: Deployment, launched_backfill: tuple[str, str]) -> dict[str, Any]:
    """The backfill once the daemon no longer calls it requested (its runs ended and the
    daemon's next 30-second pass saw them)."""
    backfill_id, _ = launched_backfill

    def finished() -> dict[str, Any] | None:
        backfill = deployment.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        return backfill if backfill["status"] != "REQUESTED" else None

    return wait_for(finished, 240, f"backfill {backfill_id} to finish")


def test_backfill_launched_from_the_ui_targets_the_chosen_days(
    deployment: Deployment, launched_backfill: tuple[str, str]
) -> None:
    """The dialog's choices became the backfill: its page lists the three chosen days of
    the chosen symbol, and the webserver holds exactly those partitions of raw_ohlcv."""
    backfill_id, page_text = launched_backfill
    keys = [f"{day}|{SYMBOL}" for day in BACKFILL_DAYS]
    for key in keys:
        assert key in page_text
    backfill = deployment.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
    assert backfill["__typename"] == "PartitionBackfill", backfill
    assert sorted(backfill["partitionNames"]) == keys
    assert ["/".join(a["path"]) for a in backfill["assetSelection"]] == [RAW]


def test_sensors_are_listed_and_run_once_started(
    deployment: Deployment, page: Page, screenshot: Screenshot
) -> None:
    """Select all → Actions → Start: the bulk path. Clicking one switch is racy in Dagster
    1.13: the list re-renders every few seconds with new checkbox ids, and a click on the
    switch's label can land on the row's selection box instead.

    The deployment is up to date for the filled symbol, has nothing stored for the new one
    (a backfill's job), no paper record to judge and no as-of left to train, so each
    sensor's first tick is a skip: the sensors run, and no run competes with the test."""
    defs = build_definitions(deployment.settings)
    sensors = sorted(s.name for s in defs.sensors or [])
    schedules = sorted(s.name for s in defs.schedules or [])  # none: retraining is a sensor
    assert sensors == ["data_freshness", "performance_degradation", "scheduled_retraining"]
    automations = len(sensors) + len(schedules)

    page.goto(f"{deployment.url}/automation")
    rows = page.locator("[data-index]").filter(has=page.get_by_role("link"))
    expect(rows).to_have_count(automations)
    for name in sensors + schedules:
        row = rows.filter(has=page.get_by_text(name, exact=True))
        expect(row.get_by_role("checkbox")).to_have_count(2)  # selection box, then switch
        expect(row.get_by_role("checkbox").last).not_to_be_checked()  # CLM_SENSORS_RUNNING=0
    page.get_by_text("Select all", exact=True).click()
    page.get_by_role("button", name="Actions").click()
    page.get_by_role("menuitem", name=f"Start {automations} automations").click()
    confirm = page.get_by_role("dialog").filter(has_text="Start automations")
    confirm.get_by_role("button", name=f"Start {automations} automations").click()
    expect(confirm).to_contain_text(f"Successfully started {automations} automations.")
    confirm.get_by_role("button", name="Done").click()

    def ticked() -> list[dict[str, Any]] | None:
        repos = deployment.graphql(AUTOMATION)["repositoriesOrError"]["nodes"]
        found = [s for repo in repos for s in repo["sensors"]]
        ticks = [s["sensorState"]["ticks"] for s in found]
        return found if all(t and t[0]["status"] != "STARTED" for t in ticks) else None

    states = wait_for(ticked, 90, "a first finished tick of every sensor")
    assert sorted(s["name"] for s in states) == sensors
    for sensor in states:
        assert sensor["sensorState"]["status"] == "RUNNING", sensor
        assert sensor["sensorState"]["ticks"][0]["status"] == "SKIPPED", sensor
    page.reload()  # what a person coming back sees: every switch on, each with its tick
    reasons = {s["name"]: s["sensorState"]["ticks"][0]["skipReason"] for s in states}
    for name in sorted(sensors, reverse=True):  # data_freshness last: its tooltip is shown
        row = rows.filter(has=page.get_by_text(name, exact=True))
        expect(row.get_by_role("checkbox")).to_have_count(2)
        expect(row.get_by_role("checkbox").last).to_be_checked()
        tooltip = page.locator(".bp5-popover").filter(has_text="Latest tick skipped")
        page.mouse.move(0, 0)  # the previous row's tooltip would cover this row's icon
        expect(tooltip).to_have_count(0)
        row.get_by_role("img", name="status").hover()
        expect(tooltip).to_contain_text(reasons[name].split(";")[0])
    screenshot(page, "automation")


def test_lineage_shows_every_group_and_the_edges_between_them(
    deployment: Deployment, page: Page, screenshot: Screenshot
) -> None:
    """The global lineage draws the six groups and, between them, exactly the edges the
    definitions imply; expanded, every asset sits in its group's box and the drawn
    asset-to-asset edges are exactly the definitions' dependencies (edges are matched to
    boxes by where they start and end on the rendered SVG)."""
    graph = build_definitions(deployment.settings).resolve_asset_graph()
    keys = list(graph.get_all_asset_keys())
    group = {_key(k): graph.get(k).group_name for k in keys}
    assert set(group.values()) == GROUPS
    asset_edges = {(_key(p), _key(k)) for k in keys for p in graph.get(k).parent_keys}
    name = {_key(k): k.path[-1] for k in keys}  # a node shows the last part of its key
    assert len(set(name.values())) == len(keys)

    group_edges = {(group[a], group[b]) for a, b in asset_edges if group[a] != group[b]}

    def drawn(groups: int, nodes: int, edges: int) -> Callable[[], dict[str, Any] | None]:
        """The graph once that many boxes and edges are on the page (drawn after load)."""

        def graph() -> dict[str, Any] | None:
            found = page.evaluate(GRAPH)
            sizes = (len(found["groups"]), len(found["nodes"]), len(found["edges"]))
            return found if sizes >= (groups, nodes, edges) else None

        return graph

    page.goto(f"{deployment.url}/asset-groups")
    collapsed = wait_for(drawn(len(GROUPS), 0, len(group_edges)), 30, "the group graph")
    assert sorted(g["label"] for g in collapsed["groups"]) == sorted(GROUPS)
    assert _connections(collapsed["edges"], collapsed["groups"]) == group_edges

    page.get_by_role("button", name="Hide navigation").click()
    viewport = page.locator("[data-svg-viewport]")
    height = (viewport.bounding_box() or {"height": 0})["height"]  # bottom left: no node, no bar
    viewport.click(button="right", position={"x": 30, "y": height - 30})
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.reload()  # the graph is fitted to the window when a page loads

    expanded = wait_for(drawn(len(GROUPS), len(keys), len(asset_edges)), 30, "the asset graph")
    assert sorted(n["label"] for n in expanded["nodes"]) == sorted(name.values())
    for node in expanded["nodes"]:  # inside the box of its own group
        key = next(k for k, n in name.items() if n == node["label"])
        box = next(g for g in expanded["groups"] if g["label"] == group[key])
        assert box["x"] <= node["x"] and node["x"] + node["w"] <= box["x"] + box["w"], key
        assert box["y"] <= node["y"] and node["y"] + node["h"] <= box["y"] + box["h"], key
    connected = _connections(expanded["edges"], expanded["nodes"])
    assert connected == {(name[a], name[b]) for a, b in asset_edges}
    screenshot(page, "lineage")


def test_partitions_show_materialized_and_missing(
    deployment: Deployment, page: Page, screenshot: Screenshot
) -> None:
    """features' date × symbol view counts what the instance holds (the filled symbol
    materialized every day, the new one never) and colours each symbol and date so: one
    green symbol, one grey, and both colours on each date."""
    key = dg.AssetKey.from_user_string(FEATURES)
    partitions = build_definitions(deployment.settings).resolve_assets_def(key).partitions_def
    assert partitions is not None
    every = set(partitions.get_partition_keys())
    materialized = deployment.instance.get_materialized_partitions(key)
    missing = every - materialized
    assert {k.split("|")[1] for k in materialized} == {SYMBOL}  # what the test set up
    assert {k.split("|")[1] for k in missing} == {NEW_SYMBOL}

    last_filled = f"{BACKFILL_DAYS[-1]}|{SYMBOL}"
    page.goto(f"{deployment.url}/assets/{FEATURES}?view=partitions&partition={quote(last_filled)}")
    expect(page.get_by_text(f"Materialized ({len(materialized)})", exact=True)).to_be_visible()
    expect(page.get_by_text(f"Missing ({len(missing)})", exact=True)).to_be_visible()
    expect(page.get_by_text(last_filled, exact=True).first).to_be_visible()  # its details
    expect(page.get_by_text("Materialized", exact=True)).to_be_visible()  # ... once loaded
    expect(page.get_by_role("row").filter(has_text="label_horizon")).to_be_visible()
    assert page.evaluate(STATUS_DOTS, SYMBOL) == [GREEN]
    assert page.evaluate(STATUS_DOTS, NEW_SYMBOL) == [GRAY]
    for day in ("2024-03-09", "2024-03-08", "2024-03-01"):  # rendered rows: one each way
        assert sorted(page.evaluate(STATUS_DOTS, day)) == sorted([GREEN, GRAY]), day
    screenshot(page, "partitions")


def test_backtest_partition_shows_its_own_metrics_and_equity_curve(
    deployment: Deployment, page: Page, screenshot: Screenshot
) -> None:
    """Each backtest partition's page shows that partition's numbers: its metrics table
    equals the one built from the registry row of that (family, symbol, as-of), its
    headline values are the registry's, and its equity curve is the PNG its own
    materialization carries; the two as-ofs show different values and curves."""
    shown: dict[str, tuple[str, str]] = {}
    for i, (partition, stored) in enumerate(deployment.backtests.items()):
        page.goto(
            f"{deployment.url}/assets/{BACKTEST}?view=partitions&partition={quote(partition)}"
        )
        expect(page.get_by_text(partition, exact=True).first).to_be_visible()

        def rendered() -> dict[str, Any] | None:
            found = page.evaluate(METADATA)  # markdown tables render after the rest
            return found if found and found.get("metrics", {}).get("rows") else None

        metadata = wait_for(rendered, 30, f"the metrics table of {partition}")
        expected_rows = [
            [cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in metrics_markdown(stored.metrics, SHOWN).splitlines()
            if not set(line) <= set("|-: ")
        ]
        assert metadata["metrics"]["rows"] == expected_rows, partition
        for headline in ("sharpe", "max_drawdown", "profit_factor", "trade_count", "psr"):
            assert float(metadata[headline]["text"]) == stored.metrics[headline], headline

        if i == 0:
            page.get_by_role("row").filter(has_text="sortino").first.scroll_into_view_if_needed()
            screenshot(page, "backtest")
        page.get_by_role("row").filter(has_text="equity_curve").get_by_text(
            "[Show Markdown]"
        ).click()
        curve = page.get_by_role("dialog").filter(has_text="equity_curve").locator("img")
        expect(curve).to_have_attribute("src", stored.equity_png_uri)
        assert curve.evaluate("img => img.complete && img.naturalWidth > 0")  # it decoded
        if i == 0:
            screenshot(page, "backtest-equity")
        page.get_by_role("button", name="Close").click()
        shown[partition] = (metadata["sharpe"]["text"], stored.equity_png_uri)

    assert len(shown) == 2
    first, second = shown.values()
    assert first[0] != second[0] and first[1] != second[1]  # each page shows its own


def test_backfill_launched_from_the_ui_completes(
    deployment: Deployment,
    finished_backfill: dict[str, Any],
    page: Page,
    screenshot: Screenshot,
) -> None:
    """The backfill ends succeeded, its runs succeeded with the config typed in the dialog,
    each chosen partition has a new materialization by one of those runs, and the
    backfill's page says so: succeeded, 3 of 3 partitions, none failed."""
    backfill = finished_backfill
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    assert backfill["runs"] and all(r["status"] == "SUCCESS" for r in backfill["runs"]), backfill
    for run in backfill["runs"]:  # the config entered in the dialog reached every run
        assert "in_process" in run["runConfigYaml"], run
    raw = dg.AssetKey.from_user_string(RAW)
    for day in BACKFILL_DAYS:  # a second materialization, by the backfill's run
        records = deployment.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=raw, asset_partitions=[f"{day}|{SYMBOL}"]), limit=2
        ).records
        assert len(records) == 2, day
        assert records[0].run_id in {r["runId"] for r in backfill["runs"]}, day

    page.goto(f"{deployment.url}/runs/b/{backfill['id']}")
    expect(page.locator("body")).to_contain_text(re.compile(r"Status\s*Succeeded"))
    n = len(BACKFILL_DAYS)  # targeted, in progress, succeeded, failed
    expect(page.locator("body")).to_contain_text(
        re.compile(rf"raw_ohlcv\s*100% completed\s*{n}\s*0\s*{n}\s*0")
    )
    screenshot(page, "backfill")
