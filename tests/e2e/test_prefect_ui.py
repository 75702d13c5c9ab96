"""The Prefect UI in a real (headless) browser: what an operator sees after deploying.

Screenshots go to ``test-output/e2e/`` so a reviewer can look at them; every
claim is also checked on the page's visible text, so a blank or error page
fails the test instead of producing a misleading picture.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import yaml
from headless_chromium import Browser, ensure_chromium
from prefect_stack import PREFECT_YAML, Stack

REQUIRE_BROWSER_ENV = "STOCKTREND_REQUIRE_BROWSER"
WIDTH, HEIGHT = 1920, 1080
"""Wide enough for the deployments table to spell schedules out instead of a "+1" chip."""

SCHEDULE_TEXT = {
    "daily-scoring": "At 05:30 PM, Monday through Friday",
    "evaluate-drift": "At 07:00 AM, only on Saturday",
}
"""How the UI renders the crons of deployments/prefect.yaml (checked against it below)."""


@pytest.fixture(scope="module")
def browser(prefect_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    executable = ensure_chromium(prefect_stack.output / "logs" / "apt-chromium.log")
    if executable is None:
        reason = "chromium is not installed and cannot be installed here (needs root and apt)"
        if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_BROWSER_ENV}=1 requires it")
        pytest.skip(reason)
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = prefect_stack.output / "logs" / "chromium.log"
    with Browser(executable, profile, log, size=(WIDTH, HEIGHT)) as opened:
        yield opened


def test_schedule_texts_match_prefect_yaml() -> None:
    """Guard for the expected texts above: they must describe the crons actually declared."""
    crons = {
        spec["name"]: spec["schedules"][0]["cron"]
        for spec in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
        if spec.get("schedules")
    }
    assert crons == {"daily-scoring": "30 17 * * 1-5", "evaluate-drift": "0 7 * * 6"}


def test_deployments_page_lists_deployments_with_schedules(
    prefect_stack: Stack, browser: Browser
) -> None:
    browser.goto(f"{prefect_stack.server.ui_url}/deployments")
    expected = [*prefect_stack.deployed]
    expected += [SCHEDULE_TEXT[name] for name in prefect_stack.deployed if name in SCHEDULE_TEXT]
    text = browser.wait_for_text(f"{len(prefect_stack.deployed)} Deployments", *expected)
    shot = browser.screenshot(prefect_stack.output / "deployments.png")
    assert "Can't connect to Server API" not in text
    assert shot.stat().st_size > 10_000


def test_daily_scoring_deployment_page_shows_schedule_and_pool(
    prefect_stack: Stack, browser: Browser
) -> None:
    deployment = prefect_stack.api.deployment("daily-scoring", "daily-scoring")
    browser.goto(f"{prefect_stack.server.ui_url}/deployments/deployment/{deployment['id']}")
    # (its concurrency limit of 1 is checked through the API in test_deployed_flows)
    browser.wait_for_text("daily-scoring", SCHEDULE_TEXT["daily-scoring"], "stocktrend-process")
    browser.screenshot(prefect_stack.output / "deployment-daily-scoring.png")


def test_completed_daily_run_shows_its_artifacts(
    prefect_stack: Stack, browser: Browser, completed_daily_run: str
) -> None:
    ui = prefect_stack.server.ui_url
    browser.goto(f"{ui}/runs/flow-run/{completed_daily_run}")
    browser.wait_for_text("Completed", "daily-scoring", "Artifacts")
    assert browser.click_text("Artifacts"), "no Artifacts tab on the flow run page"
    browser.wait_for_text(
        "daily-scoring-summary", "daily-scoring-extremes", "daily-scoring-failures"
    )
    browser.screenshot(prefect_stack.output / "flow-run-artifacts.png")

    summary = next(
        a
        for a in prefect_stack.api.artifacts(completed_daily_run)
        if a["key"] == "daily-scoring-summary"
    )
    browser.goto(f"{ui}/artifacts/artifact/{summary['id']}")
    browser.wait_for_text("daily-scoring-summary", "2013-03-01")
    browser.screenshot(prefect_stack.output / "artifact-summary.png")
