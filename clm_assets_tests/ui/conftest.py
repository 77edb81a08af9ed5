"""Fixtures of the UI tests: Chromium (or a skip, or under CI a failure), the filled
deployment served by ``dagster dev``, pages, and screenshots.

The served settings are written out as the ``CLM_*`` variables the code location reads,
and read back before anything starts (``deployment.settings_env``): what the browser shows
must be the deployment the test filled, not one built from a developer's environment.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pytest

from clm_assets.settings import PROJECT_ROOT
from clm_assets_tests.monitoring.world import GATES, SYMBOL, live_settings
from clm_assets_tests.ui.deployment import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NEW_SYMBOL,
    Deployment,
    dagster_dev,
    fill,
    find_chromium,
    free_port,
    open_page,
    settings_env,
    stored_backtests,
    wait_until_served,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium and the playwright client, or a skip naming what is missing; under CI
    (``CI`` set) a failure instead, since a skipped UI test there would pass silently.
    Checked before anything is built, so a skip costs nothing."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dev]')")
    path = find_chromium()
    if path is None:
        where = os.environ.get("CLM_CHROMIUM") or "chromium on the PATH or " + CHROMIUM
        missing.append(f"Chromium at {where} (apt-get install chromium; .ci/run installs it)")
    if missing:
        message = f"the UI tests need {' and '.join(missing)}"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{message}; CI must run them", pytrace=False)
        pytest.skip(message)
    assert path is not None
    return path


@pytest.fixture(scope="module")
def deployment(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """``dagster dev`` (webserver + daemon) on a free loopback port over an instance filled
    in this process. The server starts first and loads its code location while the fill
    runs; both need a few tens of seconds of the same two cores."""
    root = tmp_path_factory.mktemp("deployment")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(PROJECT_ROOT / "dagster.yaml")
    filled = live_settings(root / "clm.duckdb", root / "reports")
    served = dataclasses.replace(filled, symbols=(SYMBOL, NEW_SYMBOL))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLM_", "DAGSTER_"))}
    env.update({**settings_env(served), **GATES, "DAGSTER_HOME": str(home)})
    port = free_port()
    with (
        dg.DagsterInstance.from_config(str(home)) as instance,  # storage exists before the server
        dagster_dev(env, root, port) as proc,
        pytest.MonkeyPatch.context() as patch,
    ):
        for name, value in GATES.items():  # the promotion gates the world is judged by
            patch.setenv(name, value)
        fill(filled, instance)
        deployment = Deployment(port, served, instance, stored_backtests(filled, instance))
        wait_until_served(deployment, proc, root)
        yield deployment


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # two shared cores: pages can take seconds to settle
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = open_page(browser)
    try:
        yield page
    finally:
        page.context.close()


@pytest.fixture(scope="module")
def screenshot(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Page, str], Path]:
    """``screenshot(page, name)`` saves ``ui-<name>.png`` in the test's tmp dir, and copies
    it into ``$CLM_UI_SCREENSHOTS`` when that names a folder (how docs/ gets them)."""
    folder = tmp_path_factory.mktemp("screenshots")
    publish = os.environ.get("CLM_UI_SCREENSHOTS")

    def take(page: Page, name: str) -> Path:
        path = folder / f"ui-{name}.png"
        page.screenshot(path=str(path))
        if publish:
            Path(publish).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(publish) / path.name)
        return path

    return take
