"""The dashboard's screenshots in docs/, taken from a live deployment (as the e2e tests run one).

    uv run python -m tests.e2e.screenshots [--out docs]

Needs PostgreSQL, RabbitMQ (the test defaults, or OPSCORE_TEST_POSTGRES_URL / OPSCORE_TEST_AMQP_URL)
and Chromium at /usr/bin/chromium. Starts the API and two workers with the fake model server, submits
a mix of tasks (tool calls, failures, retries, slow runs, one waiting for approval), and saves
dashboard-tasks.png, dashboard-task.png, dashboard-overview.png, dashboard-workers.png and
dashboard-approval.png.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect, sync_playwright

from tests.e2e.stack import TERMINAL, Deployment, launch
from tests.support import services
from tests.support.processes import REPO_ROOT
from tests.support.waiting import wait_for_sync

MODEL = "openai:fake"
ENV = {"OPSCORE_AGENTS": "tests.support.agents", "PYTHONPATH": str(REPO_ROOT)}
VIEWPORT = {"width": 1280, "height": 860}
WAIT_MS = 30_000

# What the fake model does with each goal: tests/support/fake_openai.py.
FINISHING = [
    {"goal": "[[tool_stall=0]] What is 6 * 7?"},
    {"goal": "[[tool_stall=0]] Add up this month's invoices", "input": {"month": "2026-11"}},
    {"goal": "[[delay=0.5]] Summarise the incident report"},
    {"goal": "[[fail_first=1]] Draft the release notes", "max_retries": 2},
    {"goal": "[[status=400]] Translate the contract", "max_retries": 0},
    {"goal": "[[status=503]] Classify the support tickets", "max_retries": 1},
    {"goal": "[[tool_stall=0]] Check the quarterly totals", "model": "openai:fake-large"},
    {"goal": "[[delay=1]] Reply to the customer", "model": "openai:fake-large"},
]
RUNNING = [{"goal": "[[delay=120]] Research competitors' pricing"}, {"goal": "[[delay=120]] Audit the access logs"}]
WAITING = {"goal": "[[tool_stall=0]] Refund order 1042", "agent": "gated"}


def submit(deployment: Deployment, body: dict[str, Any]) -> str:
    response = httpx.post(
        f"{deployment.api_url}/v1/tasks", json={"model": MODEL, **body}, headers=deployment.headers, timeout=30
    )
    response.raise_for_status()
    return str(response.json()["id"])


def status(deployment: Deployment, task_id: str) -> str:
    response = httpx.get(f"{deployment.api_url}/v1/tasks/{task_id}", headers=deployment.headers, timeout=30)
    return str(response.json()["status"])


def shoot(page: Page, path: Path, *, full_page: bool = False) -> None:
    page.screenshot(path=str(path), full_page=full_page)
    print(f"wrote {path}")  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as logs,
        launch(services.postgres_admin_url(), services.amqp_url(), Path(logs), workers=2, env=ENV) as deployment,
    ):
        finishing = [submit(deployment, body) for body in FINISHING]
        for task_id in finishing:
            wait_for_sync(lambda t=task_id: status(deployment, t), TERMINAL.__contains__, timeout=60, what=task_id)
        running = [submit(deployment, body) for body in RUNNING]
        waiting = submit(deployment, WAITING)
        for task_id in running:
            wait_for_sync(lambda t=task_id: status(deployment, t), "running".__eq__, timeout=60, what=task_id)
        wait_for_sync(lambda: status(deployment, waiting), "waiting".__eq__, timeout=60, what="the approval")

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-background-networking"]
            )
            context = browser.new_context(viewport=VIEWPORT)
            key = json.dumps(deployment.env["OPSCORE_API_KEY"])
            context.add_init_script(f"sessionStorage.setItem('opscore.api-key', {key})")
            page = context.new_page()
            ui = f"{deployment.api_url}/ui/"

            page.goto(f"{ui}#/tasks")
            expect(page.locator(".live")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
            shoot(page, args.out / "dashboard-tasks.png")

            page.goto(f"{ui}#/task/{finishing[1]}")
            expect(page.locator(".step-answer")).to_be_visible(timeout=WAIT_MS)
            shoot(page, args.out / "dashboard-task.png", full_page=True)

            page.goto(f"{ui}#/task/{waiting}")
            expect(page.get_by_role("button", name="Approve")).to_be_visible(timeout=WAIT_MS)
            shoot(page, args.out / "dashboard-approval.png", full_page=True)

            page.goto(f"{ui}#/overview")
            expect(page.locator("[data-stat=submitted] .tile-value")).to_have_text(str(len(FINISHING) + 3))
            shoot(page, args.out / "dashboard-overview.png")

            page.goto(f"{ui}#/workers")
            expect(page.locator(".runs li")).to_have_count(len(RUNNING), timeout=WAIT_MS)
            shoot(page, args.out / "dashboard-workers.png")
            browser.close()


if __name__ == "__main__":
    main()
