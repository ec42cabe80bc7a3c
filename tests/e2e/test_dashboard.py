"""The dashboard live, in headless Chromium: a task appears, runs and completes on the page without a
reload; its timeline shows its tool call; the model's text shows while it is written; cancel and
approve work from the page; another tenant's key sees nothing of it.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it), driven by Playwright; every wait
is one of Playwright's auto-waiting expectations with a deadline.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.conftest import DeploymentFactory
from tests.e2e.stack import Deployment
from tests.support.processes import REPO_ROOT
from tests.support.services import in_ci
from tests.support.waiting import wait_for_sync

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM = os.environ.get("OPSCORE_TEST_CHROMIUM", "/usr/bin/chromium")
MODEL = "openai:fake"
ENV = {"OPSCORE_AGENTS": "tests.support.agents", "PYTHONPATH": str(REPO_ROOT)}
# Long enough to be seen running (and cancelled) on a loaded machine; short enough to end before teardown.
SLOW = "[[delay=6]]"
# Step 1 calls the calculator on 6 * 7 (tests/support/fake_openai.py).
TOOL = "[[tool_stall=0]]"
# A streamed answer that stops half-way for this long.
STREAM_STALL = "[[stream_stall=8]]"
LIVE_MS = 30_000
DURATION = re.compile(r"^\d+(\.\d+)? (ms|s)$")


@dataclass(frozen=True)
class Site:
    deployment: Deployment
    alice: str  # a read-write key of tenant "alice"
    bob: str  # a read-write key of tenant "bob"

    @property
    def url(self) -> str:
        return f"{self.deployment.api_url}/ui/"

    def submit(self, key: str, **body: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.deployment.api_url}/v1/tasks", json=body, headers=_bearer(key), timeout=30)
        assert response.status_code == 202, response.text
        return dict(response.json())

    def task(self, key: str, task_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.deployment.api_url}/v1/tasks/{task_id}", headers=_bearer(key), timeout=30)
        assert response.status_code == 200, response.text
        return dict(response.json())


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def site(deployments: DeploymentFactory) -> Site:
    deployment = deployments(workers=1, env=ENV)
    return Site(deployment, deployment.create_key("alice"), deployment.create_key("bob"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        message = f"no Chromium at {CHROMIUM}: apt-get install chromium"
        if in_ci():
            pytest.fail(f"{message} (CI is set, so a missing browser fails instead of skipping)")
        pytest.skip(message)
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-background-networking"]
        )
        yield launched
        launched.close()


@pytest.fixture
def pages(browser: Browser, site: Site) -> Iterator[list[Page]]:
    """Pages opened by a test, each in a context of its own (its own sessionStorage); closed after it."""
    opened: list[Page] = []
    yield opened
    for page in opened:
        page.context.close()


def sign_in(browser: Browser, site: Site, key: str, opened: list[Page], route: str = "#/tasks") -> Page:
    """A new tab on the dashboard that types ``key`` into the dialog the first 401 opens."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    opened.append(page)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(site.url + route)
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    page.fill("#key-input", key)
    page.click("#key-form button[value=save]")
    expect(dialog).to_be_hidden()
    expect(page.locator("#key-button")).to_contain_text(key[:21])
    assert not errors, errors
    return page


def row(page: Page, task_id: str) -> Any:
    return page.locator(f"tr[data-task-id='{task_id}']")


def test_a_submitted_task_appears_runs_and_completes_live_without_a_reload(
    browser: Browser, site: Site, pages: list[Page]
) -> None:
    page = sign_in(browser, site, site.alice, pages)
    expect(page.locator(".live")).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads

    task = site.submit(site.alice, goal=f"{SLOW} watched live", model=MODEL)

    shown = row(page, task["id"])
    expect(shown).to_be_visible(timeout=LIVE_MS)
    expect(shown.locator(".status [data-status]")).to_have_text("running", timeout=LIVE_MS)
    expect(shown.locator(".status [data-status]")).to_have_text("completed", timeout=LIVE_MS)
    assert page.evaluate("window.loadedOnce") is True
    assert site.task(site.alice, task["id"])["status"] == "completed"

    shown.locator("td.goal a").click()
    expect(page.locator(".task-header [data-status]")).to_have_text("completed")
    expect(page.locator(".step-answer")).to_contain_text(f"done: {SLOW} watched live")


def test_the_timeline_shows_the_tool_call_of_a_task_submitted_from_the_page(
    browser: Browser, site: Site, pages: list[Page]
) -> None:
    page = sign_in(browser, site, site.alice, pages, "#/submit")
    page.fill("textarea[name=goal]", f"{TOOL} what is 6 * 7?")
    page.fill("input[name=model]", MODEL)
    page.fill("input[name=max_retries]", "1")
    page.click("form.submit button[type=submit]")

    expect(page.locator(".task-header [data-status]")).to_have_text("completed", timeout=LIVE_MS)
    task_id = page.locator(".task-header .mono").first.inner_text()
    assert page.url.endswith(f"#/task/{task_id}")
    tool = page.locator(".step-tool[data-tool=calculator]")
    expect(tool).to_have_count(1)
    expect(tool).to_have_attribute("data-state", "ok")
    expect(tool.locator("pre.json")).to_contain_text('"expression": "6 * 7"')
    expect(tool.locator("[data-field=result]")).to_have_text("42")
    expect(tool.locator("[data-field=duration]")).to_contain_text("took")
    # Two model calls (the tool call, then the answer), each with the fake's 10 + 5 tokens and a latency.
    models = page.locator(".step-model")
    expect(models).to_have_count(2)
    expect(models.locator("[data-field=tokens]")).to_have_text(["10 in · 5 out", "10 in · 5 out"])
    expect(models.locator("[data-field=latency]").first).to_have_text(DURATION)
    assert site.task(site.alice, task_id)["max_retries"] == 1


def test_the_current_step_shows_the_models_text_while_it_is_written(
    browser: Browser, site: Site, pages: list[Page]
) -> None:
    # Live text is not stored: the page must be following the task before the model starts writing.
    # Submitted from the page, which follows the new task at once; the model waits 3 s before its first words.
    goal = f"[[delay=3]] {STREAM_STALL} written live"
    page = sign_in(browser, site, site.alice, pages, "#/submit")
    page.fill("textarea[name=goal]", goal)
    page.fill("input[name=model]", MODEL)
    page.click("form.submit button[type=submit]")

    # Half the answer, while the model still writes the rest (the fake stalls half-way).
    written = page.locator(".current [data-kind=live-text]")
    expect(written).to_contain_text("done: ", timeout=LIVE_MS)
    expect(page.locator(".task-header [data-status]")).to_have_text("running")
    assert f"done: {goal}".startswith(written.inner_text())

    # The stored response supersedes it, and the task ends.
    expect(page.locator(".task-header [data-status]")).to_have_text("completed", timeout=LIVE_MS)
    expect(written).to_have_count(0)
    expect(page.locator(".step-answer")).to_contain_text(f"done: {goal}")


def test_cancel_works_from_the_page(browser: Browser, site: Site, pages: list[Page]) -> None:
    task = site.submit(site.alice, goal=f"{SLOW} cancelled from the page", model=MODEL)
    page = sign_in(browser, site, site.alice, pages, f"#/task/{task['id']}")
    status = page.locator(".task-header [data-status]")
    expect(status).to_have_text("running", timeout=LIVE_MS)

    page.get_by_role("button", name="Cancel").click()

    expect(status).to_have_text("cancelled", timeout=LIVE_MS)
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.locator(".step-status").last).to_contain_text("running → cancelled")
    assert site.task(site.alice, task["id"])["status"] == "cancelled"


def test_a_pending_approval_is_decided_from_the_page(browser: Browser, site: Site, pages: list[Page]) -> None:
    task = site.submit(site.alice, goal=f"{TOOL} approve me", agent="gated", model=MODEL)
    page = sign_in(browser, site, site.alice, pages, f"#/task/{task['id']}")
    expect(page.locator(".task-header [data-status]")).to_have_text("waiting", timeout=LIVE_MS)

    page.locator(".step-approval").get_by_role("button", name="Approve").click()

    expect(page.locator(".task-header [data-status]")).to_have_text("completed", timeout=LIVE_MS)
    expect(page.locator(".step-approval .decision")).to_contain_text("approved")
    expect(page.locator(".step-tool[data-tool=calculator] [data-field=result]").last).to_have_text("42")


def test_another_tenants_key_sees_nothing_of_it(browser: Browser, site: Site, pages: list[Page]) -> None:
    page = sign_in(browser, site, site.bob, pages)
    expect(page.locator(".live")).to_have_attribute("data-state", "live", timeout=LIVE_MS)

    # Alice's task runs to its end while Bob's list is open; then Bob's own task appears and completes.
    theirs = site.submit(site.alice, goal=f"{TOOL} alice's secret", model=MODEL)
    wait_for_sync(
        lambda: site.task(site.alice, theirs["id"])["status"],
        lambda s: s == "completed",
        timeout=60,
        what="alice's task",
    )
    mine = site.submit(site.bob, goal=f"{TOOL} bob's own", model=MODEL)
    expect(row(page, mine["id"]).locator(".status [data-status]")).to_have_text("completed", timeout=LIVE_MS)
    expect(page.locator("tbody tr[data-task-id]")).to_have_count(1)
    expect(page.locator("body")).not_to_contain_text("alice's secret")

    # Her task's page is a 404 to him; the overview counts his task alone; workers need an admin key.
    page.goto(f"{site.url}#/task/{theirs['id']}")
    expect(page.locator(".message-error")).to_contain_text("not found")
    expect(page.locator(".step")).to_have_count(0)
    page.goto(f"{site.url}#/overview")
    expect(page.locator("[data-stat=submitted] .tile-value")).to_have_text("1", timeout=LIVE_MS)
    page.goto(f"{site.url}#/workers")
    expect(page.locator(".message-error")).to_contain_text("admin keys only")
