"""Every script in ``examples/`` runs offline, exits 0 and prints what it shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: Lines (substrings) each example must print. A new example gets an entry here.
EXPECTED: dict[str, list[str]] = {
    "approval_with_reminder.py": [
        "1. asked, now pending, sleeping until ",
        "2. worker stopped mid-sleep",
        "3. woke up and reminded: paused, waiting for: Approve purchase order #7 (1,250 EUR)?",
        "4. completed -> 'purchase order #7 (1,250 EUR): approved'",
        "journal: ['ask', 'durapod.sleep', 'check', 'remind']",
    ],
    "research_fanout.py": [
        "report-1: completed -> 'solid-state batteries report from 5 searches: 3 sources on",
        "5 child jobs, all ['completed'], parent report-1",
        "journal: ['durapod.child', 'durapod.child', 'durapod.child', 'durapod.child', 'durapod.child', 'summarize']",
    ],
    "patched_step.py": [
        "jobs started by version 1: ['ticket-1']",
        "old job on the old path: completed -> 'reply on facts of ticket #1 [sent]'",
        "new job on the new path: completed -> 'reply on facts of ticket #2 (not spam) [sent]'",
        "ticket-2 journal: ['lookup', 'durapod.patch', 'spam_check', 'draft']",
    ],
    "basic_run.py": [
        "job job_123: completed after 1 attempt(s) -> 'Dear customer, facts about Handle ticket #456.'",
        "run again: completed, same result, steps ran lookup=1 draft=1",
        "journal #1 draft:",
    ],
    "stores.py": ["memory ", "sqlite ", "job ticket-456 completed, 2 steps journaled"],
    "pause_resume.py": [
        "1. paused at a step boundary: paused",
        "2. resumed with new input: paused, waiting for: Publish this report?",
        "3. interrupt answered: completed -> 'published: Report on Q3 (focus on EMEA)",
        "each step ran once: {'gather': 1, 'analyze': 1}",
    ],
    "retry.py": [
        "order-42: completed after attempts=3 -> 'charged 1250 for order-42'",
        "error cleared: True; load_order ran 1 time(s), charge_card 3 time(s)",
        "order-0: failed after attempts=1: NonRetryableError",
    ],
    "scheduled.py": ["digest for ", "completed -> "],
    "fastapi_service.py": [
        "ticket opened: job ticket-7",
        "step journaled: look_up",
        "streamed over SSE: Thanks for the report: a refund of 25 EUR is on its way.",
        "job ticket-7: completed (no lease or epoch shown: True)",
        "/durapod/: HTTP 200",
    ],
    "support_ticket_langchain.py": [
        "1. paused, waiting for: Refund ticket #456? A refund of 30 EUR is due.",
        "2. a typo in the answer is refused; the job is still paused",
        "3. approved: completed -> Resolution(ticket=456, reply='A refund of 30 EUR is due.', refunded=True)",
        "each model call and tool call ran once: {'customer_history': 1, 'lookup_ticket': 1, 'model': 2}",
    ],
    "support_ticket_pydantic_ai.py": [
        "1. paused, waiting for: approve refund(",
        "2. approved: completed -> Resolution(ticket=456, action='refund', refunded=30)",
        "result type: Resolution",
        "ran once: {'customer_history': 1, 'lookup_ticket': 1, 'model': 3, 'refund': 1}",
        "events: token=1 tool_call=3 tool_result=3",
    ],
    "streaming.py": [
        "job job_8: completed -> 'Invoice #42: 1,250 EUR for 5 seats, due on May 1. Approved for payment.'",
        "tokens persisted in the job's event log",
    ],
}


def test_every_example_is_checked() -> None:
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DURAPOD_REDIS_URL"}
    env["PYTHONIOENCODING"] = "utf-8"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for expected in EXPECTED[name]:
        assert expected in done.stdout, f"{name} did not print {expected!r}:\n{done.stdout}"
    assert list(tmp_path.iterdir()) == []  # examples clean up after themselves


def test_stores_example_says_redis_is_skipped_without_url(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DURAPOD_REDIS_URL"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "stores.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "redis    skipped: set DURAPOD_REDIS_URL" in done.stdout
