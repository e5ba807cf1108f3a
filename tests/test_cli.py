"""The ``durapod`` command: in-process through ``main()``, and as real ``python -m durapod`` processes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from durapod import DurableAgent, JobContext, JobStatus, open_store
from durapod.cli import main

# -- helpers ---------------------------------------------------------------------------------------


async def triage(ticket: str, ctx: JobContext) -> str:
    facts = await ctx.step("lookup", lambda: f"facts about {ticket}")
    return await ctx.step("draft", lambda: f"Dear customer, {facts}.")


async def approval(ticket: str, ctx: JobContext) -> str:
    draft = await ctx.step("draft", lambda: f"reply to {ticket}")
    answer = await ctx.interrupt(f"Send {draft!r}?")
    return f"{draft}: {answer}"


def run_worker(url: str, job_id: str, agent: object = triage, name: str = "triage") -> JobStatus:
    """Run a worker on the store until ``job_id`` settles (its open() claims the queued job)."""

    async def go() -> JobStatus:
        store = open_store(url)
        try:
            async with DurableAgent(agent, store, name=name) as durable:
                job = await asyncio.wait_for(durable.wait(job_id), timeout=30)
                return job.status
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("durapod: error: ")
    return lines[0]


# -- in process ------------------------------------------------------------------------------------


def test_help_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for command in ("worker", "submit", "ls", "show", "pause", "cancel", "resume", "wait", "demo"):
        assert command in out
    code, _, err = cli(capsys)
    assert code == 2
    assert "required" in err


def test_submit_then_ls_shows_it_pending(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, _ = cli(capsys, "--store", url, "submit", "job-1", "Handle ticket #456", "--agent", "triage")
    assert code == 0
    assert "submitted job job-1: pending" in out
    code, out, _ = cli(capsys, "--store", url, "ls")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "AGENT", "STATUS", "ATTEMPTS", "STEPS", "UPDATED", "RESULT/ERROR"]
    assert row.split()[:5] == ["job-1", "triage", "pending", "0", "0"]
    # the same id and input again: nothing new
    code, out, _ = cli(capsys, "--store", url, "submit", "job-1", "Handle ticket #456", "--agent", "triage")
    assert code == 0
    assert "already exists" in out


def test_submit_parses_json_input_and_metadata(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, _ = cli(
        capsys, "--store", url, "submit", "job-j", '{"ticket": 456}', "--metadata", '{"team": "support"}', "--json"
    )
    assert code == 0
    job = json.loads(out)
    assert job["input"] == {"ticket": 456}
    assert job["metadata"] == {"team": "support"}
    assert job["agent"] == ""
    code, out, _ = cli(capsys, "--store", url, "submit", "job-s", "not json {", "--json")
    assert json.loads(out)["input"] == "not json {"


def test_ls_filters_and_json(capsys: pytest.CaptureFixture[str], url: str) -> None:
    for index in range(3):
        assert main(["--store", url, "submit", f"job-{index}", "x"]) == 0
    assert main(["--store", url, "pause", "job-1"]) == 0
    capsys.readouterr()
    code, out, _ = cli(capsys, "--store", url, "ls", "--json")
    assert code == 0
    assert [job["id"] for job in json.loads(out)] == ["job-2", "job-1", "job-0"]  # newest first
    code, out, _ = cli(capsys, "--store", url, "ls", "--status", "paused", "--json")
    assert [job["id"] for job in json.loads(out)] == ["job-1"]
    code, out, _ = cli(capsys, "--store", url, "ls", "--status", "paused,completed", "--status", "pending", "--json")
    assert len(json.loads(out)) == 3
    code, out, _ = cli(capsys, "--store", url, "ls", "--limit", "1")
    assert "job-2" in out
    assert "job-1" not in out
    assert "--limit" in out  # says there are more
    code, out, _ = cli(capsys, "--store", url, "ls", "--status", "completed")
    assert (code, out.strip()) == (0, "no jobs")


def test_worker_completes_submitted_job_then_show_and_errors(capsys: pytest.CaptureFixture[str], url: str) -> None:
    assert main(["--store", url, "submit", "job-1", "Handle ticket #456", "--agent", "triage"]) == 0
    assert run_worker(url, "job-1") is JobStatus.COMPLETED
    capsys.readouterr()

    code, out, _ = cli(capsys, "--store", url, "show", "job-1")
    assert code == 0
    assert re.search(r"^status\s+completed$", out, re.MULTILINE)
    assert "Dear customer, facts about Handle ticket #456." in out
    assert "steps (2 journaled)" in out
    assert re.search(r"^\s+1\s+lookup\s+1\s+\S+\s+facts about Handle ticket #456$", out, re.MULTILINE)
    assert re.search(r"^\s+2\s+draft\s+1\s", out, re.MULTILINE)

    code, out, _ = cli(capsys, "--store", url, "show", "job-1", "--json")
    shown = json.loads(out)
    assert shown["job"]["status"] == "completed"
    assert [step["name"] for step in shown["steps"]] == ["lookup", "draft"]

    code, out, _ = cli(capsys, "--store", url, "wait", "job-1")
    assert code == 0
    assert "job job-1: completed: Dear customer" in out

    code, _, err = cli(capsys, "--store", url, "pause", "job-1")
    assert code == 1
    assert "cannot pause job 'job-1': it is completed" in one_error_line(err)
    code, _, err = cli(capsys, "--store", url, "cancel", "job-1")
    assert code == 1
    one_error_line(err)
    code, _, err = cli(capsys, "--store", url, "resume", "job-1")
    assert code == 1
    one_error_line(err)


def test_pause_resume_cancel_a_queued_job(capsys: pytest.CaptureFixture[str], url: str) -> None:
    assert main(["--store", url, "submit", "job-1", "x", "--agent", "triage"]) == 0
    capsys.readouterr()
    code, out, _ = cli(capsys, "--store", url, "pause", "job-1")
    assert (code, out.strip()) == (0, "job job-1: paused (durapod resume job-1 continues it)")
    code, out, _ = cli(capsys, "--store", url, "wait", "job-1")  # paused is settled
    assert (code, out.strip()) == (0, "job job-1: paused")
    code, out, _ = cli(capsys, "--store", url, "resume", "job-1", "more context")
    assert code == 0
    assert "queued for a worker" in out
    assert "pending" in out
    code, out, _ = cli(capsys, "--store", url, "cancel", "job-1")
    assert (code, out.strip()) == (0, "job job-1: cancelled")
    code, out, _ = cli(capsys, "--store", url, "wait", "job-1")
    assert (code, out.strip()) == (1, "job job-1: cancelled")


def test_resume_answers_an_interrupt(capsys: pytest.CaptureFixture[str], url: str) -> None:
    assert main(["--store", url, "submit", "job-1", "ticket 9", "--agent", "approval"]) == 0
    assert run_worker(url, "job-1", approval, "approval") is JobStatus.PAUSED
    capsys.readouterr()
    code, out, _ = cli(capsys, "--store", url, "show", "job-1")
    assert re.search(r"^waiting for\s+Send 'reply to ticket 9'\?", out, re.MULTILINE)
    code, out, _ = cli(capsys, "--store", url, "ls")
    assert "waiting for: Send" in out
    code, out, _ = cli(capsys, "--store", url, "resume", "job-1", "yes")
    assert code == 0
    assert "resumed with answer yes: pending, queued for a worker" in out
    assert run_worker(url, "job-1", approval, "approval") is JobStatus.COMPLETED
    capsys.readouterr()
    code, out, _ = cli(capsys, "--store", url, "wait", "job-1")
    assert out.strip() == "job job-1: completed: reply to ticket 9: yes"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["show", "bad id"], "invalid job id 'bad id'"),
        (["submit", "bad id", "x"], "invalid job id"),
        (["pause", ""], "invalid job id"),
        (["ls", "--status", "bogus"], "invalid job status 'bogus'"),
        (["ls", "--status", "pending,nope"], "invalid job status 'nope'"),
        (["ls", "--limit", "-1"], "invalid --limit"),
        (["submit", "job-1", "x", "--metadata", "[1]"], "expected a JSON object"),
        (["submit", "job-1", "x", "--metadata", "{"], "not JSON"),
        (["worker", "no_such_module_here:durable"], "cannot import 'no_such_module_here'"),
        (["worker", "os.path"], "expected MODULE:ATTR"),
        (["worker", "os:sep"], "is not a DurableAgent"),
        (["worker", "tests.test_cli:triage"], "is not a DurableAgent"),
        (["demo", "--step-delay", "-1"], "invalid --step-delay"),
        (["submit", "job-1", "[" * 10_000 + "]" * 10_000], "nested more than 64 deep"),
        (["submit", "job-1", "[" * 100 + "]" * 100], "nested more than 64 deep"),
        (["submit", "job-1", "x", "--metadata", '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}"], "nested more than 64"),
        (["submit", "job-1", "x\udcff"], "lone surrogate"),  # invalid UTF-8 in argv arrives as a surrogate
        (["resume", "job-1", "[" * 10_000 + "]" * 10_000], "nested more than 64 deep"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], url: str, argv: list[str], expected: str
) -> None:
    code, out, err = cli(capsys, "--store", url, *argv)
    assert code == 2
    assert out == ""
    assert expected in one_error_line(err)


@pytest.mark.parametrize(
    "argv",
    [["show", "nope"], ["pause", "nope"], ["cancel", "nope"], ["resume", "nope"], ["wait", "nope"]],
)
def test_unknown_job_exits_1_with_one_line(capsys: pytest.CaptureFixture[str], url: str, argv: list[str]) -> None:
    code, _, err = cli(capsys, "--store", url, *argv)
    assert code == 1
    assert "'nope' not found" in one_error_line(err)


def test_submit_conflict_and_wait_timeout_exit_1(capsys: pytest.CaptureFixture[str], url: str) -> None:
    assert main(["--store", url, "submit", "job-1", "x"]) == 0
    capsys.readouterr()
    code, _, err = cli(capsys, "--store", url, "submit", "job-1", "y")
    assert code == 1
    assert "already exists with a different input" in one_error_line(err)
    code, _, err = cli(capsys, "--store", url, "wait", "job-1", "--timeout", "0.05")
    assert code == 1
    assert "timed out after 0.05s" in one_error_line(err)


def test_store_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(capsys, "--store", "nope", "ls")
    assert code == 2
    assert "invalid store URL 'nope'" in one_error_line(err)
    code, _, err = cli(capsys, "--store", f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}", "ls")
    assert code == 1
    assert "cannot open SQLite store" in one_error_line(err)


def test_store_comes_from_env_or_after_the_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str, tmp_path: Path
) -> None:
    monkeypatch.setenv("DURAPOD_STORE", url)
    assert main(["submit", "job-env", "x"]) == 0
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert main(["submit", "job-other", "x", "--store", other]) == 0
    capsys.readouterr()
    _, out, _ = cli(capsys, "ls", "--json")
    assert [job["id"] for job in json.loads(out)] == ["job-env"]
    _, out, _ = cli(capsys, "ls", "--json", "--store", other)
    assert [job["id"] for job in json.loads(out)] == ["job-other"]


def test_main_restores_the_logging_configuration(capsys: pytest.CaptureFixture[str], url: str) -> None:
    logger = logging.getLogger("durapod")
    before = (list(logger.handlers), logger.level, logger.propagate)
    assert main(["--store", url, "ls"]) == 0
    assert (list(logger.handlers), logger.level, logger.propagate) == before


# -- real processes --------------------------------------------------------------------------------

WORKER_MODULE = """
import os

from durapod import DurableAgent, JobContext, open_store


async def triage(ticket: str, ctx: JobContext) -> str:
    facts = await ctx.step("lookup", lambda: f"facts about {ticket}")
    return await ctx.step("draft", lambda: f"Dear customer, {facts}.")


def make_worker() -> DurableAgent:
    return DurableAgent(triage, open_store(os.environ["CLI_TEST_STORE"]), name="triage")
"""


def durapod_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "DURAPOD_STORE"}
    env.update(PYTHONIOENCODING="utf-8", **extra)
    return env


def durapod(cwd: Path, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "durapod", *argv],
        cwd=cwd,
        env=durapod_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


class Lines:
    """The lines a process writes, read by a thread, so that the test waits for a line with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        """Return the first new line matching ``pattern``; fail at the deadline or at end of output."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no line matching {pattern!r} within {timeout}s; got {self.seen}"
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, f"output ended without a line matching {pattern!r}; got {self.seen}"
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def rest(self) -> list[str]:
        """Every line up to the end of the output (the process must have exited)."""
        self._thread.join(timeout=30)
        while True:
            line = self._queue.get_nowait() if not self._queue.empty() else None
            if line is None:
                return self.seen
            self.seen.append(line)


@pytest.fixture
def popen_cleanup() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_subprocess_submit_worker_show_and_errors(tmp_path: Path, popen_cleanup: list[subprocess.Popen[str]]) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    (tmp_path / "cli_test_worker.py").write_text(WORKER_MODULE)

    done = durapod(tmp_path, "--store", url, "submit", "job-1", "Handle ticket #456", "--agent", "triage")
    assert (done.returncode, done.stderr) == (0, "")
    done = durapod(tmp_path, "--store", url, "ls")
    assert re.search(r"^job-1\s+triage\s+pending\s", done.stdout, re.MULTILINE), done.stdout

    worker = subprocess.Popen(
        [sys.executable, "-m", "durapod", "--store", url, "worker", "cli_test_worker:make_worker"],
        cwd=tmp_path,
        env=durapod_env(CLI_TEST_STORE=url),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    popen_cleanup.append(worker)
    assert worker.stdout is not None
    lines = Lines(worker.stdout)
    lines.wait_for(r"durapod worker \S+: running agent 'triage'")

    done = durapod(tmp_path, "--store", url, "wait", "job-1", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "job job-1: completed: Dear customer, facts about Handle ticket #456."
    # a job submitted while the worker runs is taken too
    assert durapod(tmp_path, "--store", url, "submit", "job-2", "late", "--agent", "triage").returncode == 0
    assert durapod(tmp_path, "--store", url, "wait", "job-2", "--timeout", "30").returncode == 0

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert any("stopped" in line for line in lines.rest())
    assert worker.stderr is not None
    stderr = worker.stderr.read()
    assert "warning: --store is ignored by `worker`" in stderr
    assert "Traceback" not in stderr

    done = durapod(tmp_path, "--store", url, "show", "job-1")
    assert done.returncode == 0
    assert "steps (2 journaled)" in done.stdout
    assert re.search(r"^\s+1\s+lookup\s", done.stdout, re.MULTILINE)

    for argv, code, message in [
        (["pause", "job-1"], 1, "cannot pause job 'job-1': it is completed"),
        (["cancel", "job-1"], 1, "cannot cancel job 'job-1': it is completed"),
        (["pause", "nope"], 1, "job 'nope' not found"),
        (["show", "bad\tid"], 2, "invalid job id"),
        (["ls", "--status", "bogus"], 2, "invalid job status 'bogus'"),
    ]:
        done = durapod(tmp_path, "--store", url, *argv)
        assert done.returncode == code, (argv, done.stderr)
        assert done.stdout == ""
        assert message in one_error_line(done.stderr)


def test_demo_completes_then_reports_the_finished_result(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    first = durapod(tmp_path, "--store", url, "demo", "--yes", "--step-delay", "0.01")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stderr
    assert first.stdout.count("ran and journaled") == 12  # 3 tickets, 4 steps each
    assert "approved automatically" in first.stdout
    assert f"durapod --store {url} ls" in first.stdout
    assert f"durapod --store {url} show demo-ticket-1" in first.stdout

    again = durapod(tmp_path, "--store", url, "demo", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already finished" in again.stdout
    assert "ran and journaled" not in again.stdout
    assert "asking the LLM" not in again.stdout  # no step function ran
    assert "--fresh" in again.stdout
    assert re.search(r"demo-ticket-1\s+completed\s+1\s+0\s+4\s+reply sent", again.stdout)

    fresh = durapod(tmp_path, "--store", url, "demo", "--yes", "--fresh", "--step-delay", "0")
    assert fresh.returncode == 0
    assert fresh.stdout.count("ran and journaled") == 12


def test_demo_killed_mid_run_resumes_without_rerunning_journaled_steps(
    tmp_path: Path, popen_cleanup: list[subprocess.Popen[str]]
) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    demo = subprocess.Popen(
        [sys.executable, "-m", "durapod", "--store", url, "demo", "--yes"],
        cwd=tmp_path,
        env=durapod_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
    )
    popen_cleanup.append(demo)
    assert demo.stdout is not None
    lines = Lines(demo.stdout)
    lines.wait_for(r"✓ step 1 classify\s+ran and journaled")
    lines.wait_for(r"✓ step 2 lookup_customer\s+ran and journaled")  # journaled before it is printed
    demo.kill()
    assert demo.wait(timeout=30) == -signal.SIGKILL

    rerun = durapod(tmp_path, "--store", url, "demo", "--yes", "--step-delay", "0.01")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    out = rerun.stdout
    resumed = re.search(r"resuming demo-ticket-1 from step (\d+) \((\d+) steps already journaled\)", out)
    assert resumed is not None, out
    journaled = int(resumed.group(2))
    assert journaled >= 2  # the kill came right after step 2's line: step 3 had barely started
    assert int(resumed.group(1)) == journaled + 1
    ticket_1 = out[: out.index("▶ demo-ticket-2")]
    assert "replayed from the journal: billing (high priority)" in ticket_1
    assert "replayed from the journal: Alice Martin" in ticket_1
    # the journaled steps' side effects did not happen again
    assert "asking the LLM to classify the ticket" not in ticket_1
    assert "looking the customer up in the CRM" not in ticket_1
    assert "✓ step 1 classify" not in ticket_1
    assert "✓ step 4 send" in ticket_1
    assert "■ demo-ticket-1 completed: reply sent" in ticket_1
    assert "Traceback" not in rerun.stderr

    done = durapod(tmp_path, "--store", url, "show", "demo-ticket-1", "--json")
    shown = json.loads(done.stdout)
    assert shown["job"]["status"] == "completed"
    assert shown["job"]["recoveries"] == 1  # reclaimed at once by the same worker id
    assert [step["name"] for step in shown["steps"]] == ["classify", "lookup_customer", "draft_reply", "send"]


def test_demo_interrupted_by_sigint_exits_cleanly_and_resumes(
    tmp_path: Path, popen_cleanup: list[subprocess.Popen[str]]
) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    demo = subprocess.Popen(
        [sys.executable, "-m", "durapod", "--store", url, "demo", "--yes"],
        cwd=tmp_path,
        env=durapod_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    popen_cleanup.append(demo)
    assert demo.stdout is not None
    lines = Lines(demo.stdout)
    lines.wait_for(r"✓ step 1 classify\s+ran and journaled")
    demo.send_signal(signal.SIGINT)
    assert demo.wait(timeout=30) == 130
    assert any("interrupted — run `make demo` again to resume" in line for line in lines.rest())
    assert demo.stderr is not None
    assert "Traceback" not in demo.stderr.read()

    rerun = durapod(tmp_path, "--store", url, "demo", "--yes", "--step-delay", "0.01")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert re.search(r"resuming demo-ticket-1 from step \d+ \(\d+ steps? already journaled\)", rerun.stdout)
    assert "asking the LLM to classify the ticket" not in rerun.stdout[: rerun.stdout.index("▶ demo-ticket-2")]


# -- watch and schedules ---------------------------------------------------------------------------


async def chatty(prompt: str, ctx: JobContext) -> str:
    await ctx.emit_token("Hello ")
    await ctx.emit_token("there")
    return await ctx.step("sign", lambda: "signed")


def test_watch_prints_the_stream_with_tokens_inline(capsys: pytest.CaptureFixture[str], url: str) -> None:
    async def go() -> None:
        store = open_store(url)
        try:
            async with DurableAgent(chatty, store, name="chatty") as durable:
                await durable.run("talk", "hi")
        finally:
            await store.close()

    asyncio.run(go())
    capsys.readouterr()  # the worker's own log lines
    code, out, _ = cli(capsys, "--store", url, "watch", "talk")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "[0] status running attempt 1"
    assert "Hello there" in lines
    assert lines[-2] == "[4] done: signed"
    assert lines[-1].endswith("status completed attempt 1")
    code, out, _ = cli(capsys, "--store", url, "watch", "talk", "--after", "3", "--json")
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [event["seq"] for event in events] == list(range(4, 4 + len(events)))
    code, _, err = cli(capsys, "--store", url, "watch", "missing")
    assert code == 1
    assert "missing" in one_error_line(err)


def test_schedules_lists_them_with_their_next_fire(capsys: pytest.CaptureFixture[str], url: str) -> None:
    async def go() -> None:
        store = open_store(url)
        try:
            async with DurableAgent(triage, store, name="triage", schedule="0 9 * * MON") as durable:
                await durable.schedule("nightly", "30 2 * * *", timezone="Europe/Paris")
        finally:
            await store.close()

    code, out, _ = cli(capsys, "--store", url, "schedules")
    assert code == 0
    assert out.strip() == "no schedules"
    asyncio.run(go())
    capsys.readouterr()  # the worker's own log lines
    code, out, _ = cli(capsys, "--store", url, "schedules")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["AGENT", "NAME", "CRON"]
    assert [row.split()[1] for row in rows] == ["default", "nightly"]
    code, out, _ = cli(capsys, "--store", url, "schedules", "--json")
    states = json.loads(out)
    assert {state["name"]: state["cron"] for state in states} == {"default": "0 9 * * MON", "nightly": "30 2 * * *"}
    assert all(state["next_fire"] for state in states)


def test_submit_with_an_idempotency_key_queues_the_job_once(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, _ = cli(capsys, "--store", url, "submit", "-", "refund #456", "--idempotency-key", "req-81")
    assert code == 0 and "submitted job key-" in out
    job_id = out.split("submitted job ")[1].split(":")[0]
    code, out, _ = cli(capsys, "--store", url, "submit", "-", "refund #456", "--idempotency-key", "req-81")
    assert code == 0 and f"job {job_id} already exists" in out
    code, _, err = cli(capsys, "--store", url, "submit", "job-9", "x", "--idempotency-key", "req-81")
    assert code == 2 and "pass - as ID" in one_error_line(err)
