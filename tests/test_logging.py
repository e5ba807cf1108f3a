"""durapod logs like a library: through the standard ``logging`` module, silent unless configured."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from durapod import DurableAgent, JobContext, MemoryStore, NonRetryableError

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import logging
    import sys

    from durapod import DurableAgent, JobContext, MemoryStore, NonRetryableError


    async def agent(text: str, ctx: JobContext) -> str:
        await ctx.step("a", str.upper, text)
        if text == "fail":
            raise NonRetryableError("boom")  # a job failure logs an error
        return text


    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)


    async def main() -> None:
        collect = Collect()
        if sys.argv[1] == "configured":
            logging.getLogger("durapod").addHandler(collect)
            logging.getLogger("durapod").setLevel(logging.DEBUG)
        async with DurableAgent(agent, MemoryStore(), worker_id="w-7") as durable:
            await durable.run("ok", "x")
            await durable.run("bad", "fail")
        if sys.argv[1] == "configured":
            failed = [r for r in collect.records if r.durapod_event == "job failed"]
            assert failed, [r.getMessage() for r in collect.records]
            assert (failed[0].job_id, failed[0].worker_id, failed[0].attempt) == ("bad", "w-7", 1)
            assert all(hasattr(r, "job_id") and hasattr(r, "worker_id") for r in collect.records)
            print(len(collect.records))


    asyncio.run(main())
    """
)


def _run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60, check=False)


def test_a_program_that_configures_no_logging_sees_nothing_from_durapod() -> None:
    result = _run("plain")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""


def test_an_application_that_configures_logging_gets_records_with_job_and_worker_ids() -> None:
    result = _run("configured")
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 0
    assert result.stderr == ""


async def test_the_library_never_configures_logging_itself() -> None:
    async def agent(text: str, ctx: JobContext) -> str:
        raise NonRetryableError("boom")

    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger("durapod").level)
    async with DurableAgent(agent, MemoryStore()) as durable:
        await durable.run("j", "x")
    assert (list(root.handlers), root.level, logging.getLogger("durapod").level) == before


def test_logs_render_the_event_and_its_fields(caplog: pytest.LogCaptureFixture) -> None:
    from durapod._log import get_logger

    caplog.set_level(logging.INFO, logger="durapod")
    get_logger("durapod.test", worker_id="w-1").bind(job_id="j").info("hello", n=3)
    (record,) = [r for r in caplog.records if r.name == "durapod.test"]
    assert record.getMessage() == "hello worker_id='w-1' job_id='j' n=3"
    assert (record.job_id, record.worker_id, record.attempt) == ("j", "w-1", None)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="under 'durapod'"):
        get_logger("other")
