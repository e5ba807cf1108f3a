"""The dashboard in headless Chromium (Debian's ``chromium``, driven by Playwright), as a person uses it.

Each test saves screenshots under ``.artifacts/``. Without ``/usr/bin/chromium`` these tests skip, or fail
when ``DURAPOD_REQUIRE_BROWSER=1`` (as ``.ci/run`` sets it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web_fixtures import WAIT, LiveServer, Options

ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / ".artifacts"
CHROMIUM = Path(os.environ.get("DURAPOD_CHROMIUM", "/usr/bin/chromium"))
TIMEOUT_MS = WAIT * 1000

if not CHROMIUM.exists():
    reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("DURAPOD_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"DURAPOD_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    started: list[LiveServer] = []

    def run(**options: Any) -> LiveServer:
        server = LiveServer(tmp_path / f"dash{len(started)}.db", Options(**options)).start()
        started.append(server)
        return server

    yield run
    for server in started:
        server.stop()


def new_page(browser: Browser, *, phone: bool = False) -> Page:
    size: ViewportSize = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 860}
    page = browser.new_page(viewport=size)
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    return page


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def submit(server: LiveServer, job_id: str, headers: dict[str, str] | None = None, **input: Any) -> None:
    body = {"id": job_id, "input": {"topic": job_id, **input}, "metadata": {"team": "support"}}
    response = httpx.post(f"{server.url}/api/jobs", json=body, headers=headers or {}, timeout=WAIT)
    assert response.status_code == 201, response.text


def test_the_jobs_table_shows_a_started_job_and_updates_live(browser: Browser, start: Any) -> None:
    server = start()
    submit(server, "done-1")
    page = new_page(browser)
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(server.url)
    expect(page.locator('tr[data-job="done-1"] .badge')).to_have_text("completed")
    submit(server, "ticket-42", gate=True)  # started after the page loaded: the table picks it up by itself
    row = page.locator('tr[data-job="ticket-42"]')
    expect(row.locator(".badge")).to_have_text("running")
    expect(page.locator("#health")).to_contain_text("1 worker busy")
    shot(page, "jobs")
    page.select_option("#filter-status", "running")
    expect(page.locator("#jobs-body tr")).to_have_count(1)
    page.select_option("#filter-status", "")
    page.fill("#filter-metadata", "team=nobody")
    expect(page.locator("#jobs-empty")).to_be_visible()
    page.fill("#filter-metadata", "team=support")
    expect(page.locator("#jobs-body tr")).to_have_count(2)
    server.open_gate("ticket-42")
    expect(row.locator(".badge")).to_have_text("completed")
    assert all(url.startswith(server.url) for url in requested), requested  # nothing from elsewhere
    assert problems == []  # no script error, no refused content (the page runs under a strict CSP)
    phone = new_page(browser, phone=True)
    phone.goto(server.url)
    expect(phone.locator('tr[data-job="ticket-42"] .badge')).to_have_text("completed")
    shot(phone, "jobs-phone")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling


def test_the_job_page_streams_tokens_live_and_its_buttons_pause_resume_and_cancel(browser: Browser, start: Any) -> None:
    server = start()
    submit(server, "live-1", gate=True)
    page = new_page(browser)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{server.url}/#job/live-1")
    tokens = page.locator("#job-tokens")
    expect(tokens).to_have_text("Hello durable world")
    expect(page.locator("#job-status")).to_have_text("running")
    server.open_gate("live-1")  # the agent emits one more token now, while the page is open
    expect(tokens).to_have_text("Hello durable world after-gate")
    expect(page.locator("#job-status")).to_have_text("completed")
    expect(page.locator("#job-result")).to_contain_text("plan for live-1")
    expect(page.locator("#job-steps li")).to_have_count(1)
    expect(page.locator("#job-steps .step-name")).to_have_text("0. plan")
    shot(page, "job-completed")

    submit(server, "held-1", hold=True)
    page.goto(f"{server.url}/#job/held-1")
    status = page.locator("#job-status")
    expect(status).to_have_text("running")
    expect(page.locator("#btn-resume")).to_be_disabled()
    page.click("#btn-pause")
    expect(status).to_have_text("paused")
    expect(page.locator("#btn-pause")).to_be_disabled()
    shot(page, "job-paused")
    page.fill("#resume-input", '{"note": "go on"}')
    page.click("#btn-resume")
    expect(status).to_have_text("running")
    expect(page.locator("#job-details")).to_contain_text('[{"note":"go on"}]')
    page.click("#btn-cancel")
    expect(status).to_have_text("cancelled")
    expect(page.locator("#btn-cancel")).to_be_disabled()
    shot(page, "job-cancelled")
    job = httpx.get(f"{server.url}/api/jobs/held-1", timeout=WAIT).json()
    assert job["status"] == "cancelled"
    assert job["inputs"] == [{"note": "go on"}]
    assert problems == []


def test_an_interrupted_job_shows_its_question_and_resumes_with_the_answer(browser: Browser, start: Any) -> None:
    server = start()
    submit(server, "ask-1", ask=True)
    page = new_page(browser, phone=True)
    page.goto(f"{server.url}/#job/ask-1")
    expect(page.locator("#job-waiting")).to_have_text("Waiting for an answer: Approve?")
    shot(page, "job-waiting-phone")
    page.fill("#resume-input", "yes")
    page.click("#btn-resume")
    expect(page.locator("#job-status")).to_have_text("completed")
    expect(page.locator("#job-result")).to_have_text("plan for ask-1; answer=yes")


def test_with_a_token_the_dashboard_asks_once_and_streams_with_it(browser: Browser, start: Any) -> None:
    server = start(token="s3cret")
    headers = {"Authorization": "Bearer s3cret"}
    submit(server, "secret-1", headers=headers, gate=True)
    page = new_page(browser)
    page.goto(server.url)
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    page.fill("#token-input", "wrong")
    page.click("#token-form button")
    expect(page.locator("#token-error")).to_be_visible()
    shot(page, "token")
    page.fill("#token-input", "s3cret")
    page.click("#token-form button")
    expect(page.locator('tr[data-job="secret-1"] .badge')).to_have_text("running")
    page.click('tr[data-job="secret-1"]')
    expect(page.locator("#job-tokens")).to_have_text("Hello durable world")
    server.open_gate("secret-1")
    expect(page.locator("#job-tokens")).to_have_text("Hello durable world after-gate")  # fetch-based stream
    expect(page.locator("#job-status")).to_have_text("completed")
    assert page.evaluate("sessionStorage.getItem('durapod.token')") == "s3cret"


def test_the_schedules_page_lists_next_fire_times(browser: Browser, start: Any) -> None:
    from durapod import DurableAgent, SQLiteStore

    server = start()

    async def add_schedule() -> None:
        async def digest(request: object) -> str:
            return "digest"

        scheduled = DurableAgent(digest, SQLiteStore(server.db), name="digest", schedule="0 8 * * 1-5")
        await scheduled.open()
        await scheduled.aclose()
        await scheduled.store.close()

    server.call(add_schedule)
    page = new_page(browser)
    page.goto(f"{server.url}/#schedules")
    row = page.locator("#schedules-body tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("digest")
    expect(row).to_contain_text("0 8 * * 1-5 (UTC)")
    expect(row).to_contain_text("in ")
    shot(page, "schedules")
