"""``durapod demo``: a support-ticket agent whose every step is journaled, so a crash loses nothing.

Each ticket is a job of four steps — ``classify`` (an LLM), ``lookup_customer`` (a tool),
``draft_reply`` (an LLM), a human approval (``ctx.interrupt``) and ``send`` (a tool). Every step prints
a "working" line from inside the step function (its side effect) and a line once it is journaled.
Interrupt the demo (Ctrl-C, or kill it) and run it again on the same store: the worker, restarted with
the same ``worker_id``, reclaims the job at once and the agent replays its journal — the steps already
recorded return their results without running, so their side effects do not happen again.

The LLM is :class:`durapod.testing.ScriptedLLM`: the demo runs offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO, cast

from pydantic import JsonValue

from durapod.agent import DurableAgent
from durapod.context import JobContext
from durapod.models import Job, JobStatus, StepRecord
from durapod.stores import open_store
from durapod.stores.base import Store
from durapod.testing import ScriptedLLM

__all__ = ["DEMO_AGENT_NAME", "DEMO_WORKER_ID", "TICKETS", "Ticket", "run_demo"]

#: The demo's worker id: a restarted demo reclaims its own jobs at once, without waiting for a lease.
DEMO_WORKER_ID = "demo-worker"
#: The agent name on the demo's jobs.
DEMO_AGENT_NAME = "support-demo"


@dataclass(frozen=True, slots=True)
class Ticket:
    """One support ticket of the demo (its job id and input)."""

    job_id: str
    customer: str
    subject: str
    body: str

    @property
    def input(self) -> dict[str, JsonValue]:
        """The job's input."""
        return {"customer": self.customer, "subject": self.subject, "body": self.body}


TICKETS: tuple[Ticket, ...] = (
    Ticket(
        "demo-ticket-1",
        "alice@example.com",
        "Charged twice this month",
        "Hi, my card was charged twice for my Pro subscription in March. Please refund one of them.",
    ),
    Ticket(
        "demo-ticket-2",
        "bob@example.com",
        "Can't log in after password reset",
        "I reset my password yesterday and now the login page says my account is locked.",
    ),
    Ticket(
        "demo-ticket-3",
        "carol@example.com",
        "Dark mode, please",
        "Love the product! Any plans for a dark mode? My eyes would thank you.",
    ),
)

_CRM: dict[str, dict[str, JsonValue]] = {
    "alice@example.com": {"name": "Alice Martin", "plan": "Pro", "customer_since": 2021, "open_tickets": 1},
    "bob@example.com": {"name": "Bob Okafor", "plan": "Team", "customer_since": 2023, "open_tickets": 2},
    "carol@example.com": {"name": "Carol Nguyen", "plan": "Free", "customer_since": 2024, "open_tickets": 0},
}


# -- the agent's tools and "LLM" -------------------------------------------------------------------


def _classify_reply(prompt: str) -> str:
    text = prompt.lower()
    if "charged" in text or "refund" in text:
        return "billing/high"
    if "log in" in text or "password" in text:
        return "account/high"
    return "feedback/low"


def _draft_reply(prompt: str) -> str:
    first_name, category = prompt.split("|")[:2]
    replies = {
        "billing": "sorry about the double charge. I have refunded the duplicate payment; it will show within 5 days.",
        "account": "your account was locked by our security checks after the reset. I have unlocked it: "
        "please try again.",
        "feedback": "thank you for the kind words! Dark mode is on our roadmap for this quarter.",
    }
    return f"Hi {first_name}, {replies.get(category, 'thanks for reaching out.')} — The Support Team"


def lookup_customer(email: str) -> dict[str, JsonValue]:
    """A tool: the customer's CRM record (a plain function)."""
    record = _CRM.get(email)
    if record is None:
        return {"name": email, "plan": "unknown", "customer_since": None, "open_tickets": 0}
    return dict(record)


def send_reply(email: str, reply: str) -> dict[str, JsonValue]:
    """A tool: send the reply (here: make up a deterministic message id)."""
    digest = hashlib.sha256(f"{email}\n{reply}".encode()).hexdigest()[:8]
    return {"message_id": f"msg-{digest}", "to": email}


# -- output ----------------------------------------------------------------------------------------


class _Console:
    """Lines on the demo's output, flushed at once (the output may be a pipe that a test reads)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.ran = 0
        self.replayed = 0
        self.is_closed = False

    def line(self, text: str = "", end: str = "\n") -> None:
        if self.is_closed:
            return
        try:
            self.out.write(text + end)
            self.out.flush()
        except (OSError, ValueError):
            # the reader went away (`durapod demo | head`): finish the demo without output rather than
            # make its steps fail on a print
            self.is_closed = True


_WORKING = {
    "classify": "asking the LLM to classify the ticket",
    "lookup_customer": "looking the customer up in the CRM",
    "draft_reply": "asking the LLM to draft a reply",
    "send": "sending the reply",
}


def _describe(name: str, result: Any) -> str:
    if name == "classify":
        return f"{result['category']} ({result['priority']} priority)"
    if name == "lookup_customer":
        return f"{result['name']}, {result['plan']} plan, customer since {result['customer_since']}"
    if name == "draft_reply":
        text = str(result)
        return f'"{text[:60]}…"' if len(text) > 60 else f'"{text}"'
    if name == "send":
        return f"sent as {result['message_id']}"
    return str(result)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- the agent -------------------------------------------------------------------------------------


def make_support_agent(console: _Console, step_delay: float) -> Callable[[JsonValue, JobContext], Any]:
    """Build the demo's agent. It reports each step on ``console``: "ran" or "replayed" from the journal."""
    classifier = ScriptedLLM(_classify_reply)
    writer = ScriptedLLM(_draft_reply)
    shown: set[tuple[str, int]] = set()  # steps already reported by this process

    async def classify(ticket: dict[str, Any]) -> dict[str, JsonValue]:
        label = await classifier.complete(f"Classify as category/priority: {ticket['subject']}\n{ticket['body']}")
        category, priority = label.split("/")
        return {"category": category, "priority": priority}

    async def draft_reply(ticket: dict[str, Any], triage: dict[str, Any], customer: dict[str, Any]) -> str:
        first_name = str(customer["name"]).split()[0]
        return await writer.complete(f"{first_name}|{triage['category']}|{ticket['body']}")

    async def support_agent(ticket_input: JsonValue, ctx: JobContext) -> JsonValue:
        ticket = cast(dict[str, Any], ticket_input)
        index = 0

        async def step(name: str, fn: Callable[..., Any], *args: Any) -> Any:
            nonlocal index
            number = index = index + 1
            replaying = ctx.is_replaying

            async def paced() -> Any:
                # the step's side effect: this line is printed only when the step really runs
                console.line(f"      · {_WORKING.get(name, name)}…")
                await asyncio.sleep(step_delay)  # demo pacing, so that Ctrl-C can land mid-way
                result = fn(*args)
                return await result if asyncio.iscoroutine(result) else result

            result = await ctx.step(name, paced)
            key = (ctx.job_id, number)
            if replaying:
                if key not in shown:
                    console.replayed += 1
                    console.line(f"  ↺ step {number} {name:<16} replayed from the journal: {_describe(name, result)}")
            else:
                console.ran += 1
                console.line(f"  ✓ step {number} {name:<16} ran and journaled: {_describe(name, result)}")
            shown.add(key)
            return result

        triage = await step("classify", classify, ticket)
        customer = await step("lookup_customer", lookup_customer, ticket["customer"])
        reply = await step("draft_reply", draft_reply, ticket, triage, customer)
        approved = await ctx.interrupt(f"Send this reply to {customer['name']} <{ticket['customer']}>? “{reply}”")
        if approved is not True:
            return {"sent": False, "category": triage["category"], "reply": reply}
        receipt = await step("send", send_reply, ticket["customer"], reply)
        return {
            "sent": True,
            "category": triage["category"],
            "reply": reply,
            "message_id": receipt["message_id"],
        }

    return support_agent


# -- the driver ------------------------------------------------------------------------------------


async def _read_line() -> str | None:
    """One line from stdin without blocking the event loop (None at end of input)."""
    loop = asyncio.get_running_loop()
    try:
        fd = sys.stdin.fileno()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, lambda: None if ready.done() else ready.set_result(None))
    except (NotImplementedError, OSError, ValueError):  # no add_reader (e.g. Windows' proactor loop)
        line = await asyncio.to_thread(sys.stdin.readline)
        return line or None
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    line = sys.stdin.readline()
    return line or None


async def _approve(console: _Console, job: Job, *, interactive: bool) -> bool | None:
    """Ask whether to send the drafted reply. None: no answer (end of input)."""
    console.line(f"  ? {job.waiting_for}")
    if not interactive:
        console.line("    approved automatically (--yes, or stdin is not a terminal)")
        return True
    while True:
        console.line("    approve and send? [y/n] ", end="")
        line = await _read_line()
        if line is None:
            console.line()
            return None
        answer = line.strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no"):
            return False


def _announce(console: _Console, ticket: Ticket, job: Job | None, steps: list[StepRecord]) -> bool:
    """Say where a ticket stands before the worker starts. True if it was announced (it resumes)."""
    if job is None or job.status.is_terminal:
        return False
    done = len(steps)
    if job.status in (JobStatus.PENDING, JobStatus.RUNNING):
        console.line(
            f"↻ resuming {ticket.job_id} from step {done + 1} ({_plural(done, 'step')} already journaled)"
            f" — {ticket.subject}"
        )
        return True
    if job.status is JobStatus.PAUSED:
        waiting = "waiting for approval" if job.waiting_for is not None else "paused"
        console.line(f"⏸ {ticket.job_id} is {waiting} ({_plural(done, 'step')} already journaled) — {ticket.subject}")
        return True
    if job.status is JobStatus.FAILED:
        console.line(f"↻ {ticket.job_id} failed last time ({job.error}); running it again from its journal")
        return True
    return False


def _outcome(job: Job) -> str:
    if job.status is JobStatus.COMPLETED and isinstance(job.result, dict):
        if job.result.get("sent"):
            return f"reply sent ({job.result.get('category')}, {job.result.get('message_id')})"
        return f"reply not sent ({job.result.get('category')})"
    if job.status is JobStatus.FAILED:
        return f"failed: {job.error_type}: {job.error}"
    if job.status is JobStatus.PAUSED:
        return "waiting for approval" if job.waiting_for is not None else "paused"
    return str(job.status)


def _summary(console: _Console, jobs: list[Job], store_url: str) -> None:
    rows = [("JOB", "STATUS", "ATTEMPTS", "RECOVERIES", "STEPS", "OUTCOME")]
    rows += [
        (job.id, job.status.value, str(job.attempts), str(job.recoveries), str(job.steps), _outcome(job))
        for job in jobs
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        console.line("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    console.line()
    console.line("See the jobs and their journaled steps:")
    console.line(f"  durapod --store {store_url} ls")
    console.line(f"  durapod --store {store_url} show {TICKETS[0].job_id}")
    console.line(f"  durapod --store {store_url} ui      (a dashboard in the browser; needs durapod[web]: make ui)")
    console.line(f"Start over: durapod --store {store_url} demo --fresh  (or delete the database file)")


async def run_demo(
    store_url: str,
    *,
    assume_yes: bool = False,
    fresh: bool = False,
    step_delay: float = 0.4,
    out: TextIO | None = None,
) -> int:
    """Run the demo on the store ``store_url`` names and return the exit code.

    Args:
        store_url: a store URL (the demo is meant for ``sqlite:///durapod-demo.db``).
        assume_yes: approve every reply without asking (also when stdin is not a terminal).
        fresh: delete the demo's jobs first.
        step_delay: seconds each step takes, so that the demo can be interrupted mid-way.
        out: where to write (default: stdout).
    """
    console = _Console(out if out is not None else sys.stdout)
    store = open_store(store_url)
    try:
        return await _run(console, store, store_url, assume_yes=assume_yes, fresh=fresh, step_delay=step_delay)
    finally:
        with contextlib.suppress(Exception):
            await store.close()


async def _run(
    console: _Console, store: Store, store_url: str, *, assume_yes: bool, fresh: bool, step_delay: float
) -> int:
    if fresh:
        removed = [ticket.job_id for ticket in TICKETS if await store.delete(ticket.job_id)]
        console.line(f"--fresh: forgot {_plural(len(removed), 'demo job')}")
    before = {ticket.job_id: await store.get(ticket.job_id) for ticket in TICKETS}
    if all(job is not None and job.status.is_terminal for job in before.values()):
        console.line(f"The demo already finished: its {len(TICKETS)} tickets are settled in {store_url}.")
        console.line("Nothing runs again — a settled job returns its stored result. The results:")
        console.line()
        _summary(console, [job for job in before.values() if job is not None], store_url)
        return 0

    console.line(f"durapod demo: a support-ticket agent whose every step is journaled in {store_url}")
    console.line("Press Ctrl-C at any moment (or kill it) and run the demo again: it resumes where it stopped.")
    console.line()
    announced: set[str] = set()
    for ticket in TICKETS:
        job = before[ticket.job_id]
        steps = await store.read_steps(ticket.job_id) if job is not None else []
        if _announce(console, ticket, job, steps):
            announced.add(ticket.job_id)

    interactive = not assume_yes and sys.stdin is not None and sys.stdin.isatty()
    durable = DurableAgent(
        make_support_agent(console, step_delay),
        store,
        name=DEMO_AGENT_NAME,
        worker_id=DEMO_WORKER_ID,
        max_retries=2,
        retry_delay=0.5,
        metadata={"source": "durapod demo"},
    )
    finished: list[Job] = []
    try:
        # open() reclaims at once the jobs a killed demo left running (same worker id) and continues them
        await durable.open()
        for ticket in TICKETS:
            job = before[ticket.job_id]
            if job is not None and job.status.is_terminal:
                console.line(f"✓ {ticket.job_id} was finished earlier: {_outcome(job)}")
                finished.append(job)
                continue
            if ticket.job_id not in announced:
                console.line(f"▶ {ticket.job_id} — {ticket.customer}: “{ticket.subject}”")
            # run() joins a job that is already running and returns a paused one as it is
            job = await durable.run(ticket.job_id, ticket.input)
            while job.status is JobStatus.PAUSED:
                if job.waiting_for is None:
                    console.line(f"  {ticket.job_id} was paused (durapod pause): resuming it")
                    job = await durable.resume(ticket.job_id)
                    continue
                answer = await _approve(console, job, interactive=interactive)
                if answer is None:
                    console.line(f"no answer: {ticket.job_id} stays paused; run the demo again to answer it")
                    return 1
                job = await durable.resume(ticket.job_id, answer)
            mark = "■" if job.status is JobStatus.COMPLETED else "✗"
            console.line(f"{mark} {ticket.job_id} {job.status}: {_outcome(job)}")
            console.line()
            finished.append(job)
    finally:
        await durable.aclose()

    console.line(
        f"Done. This run: {_plural(console.ran, 'step')} ran, "
        f"{_plural(console.replayed, 'step')} replayed from the journal (not run again)."
    )
    _summary(console, finished, store_url)
    return 0 if all(job.status is JobStatus.COMPLETED for job in finished) else 1
