"""Per-step policies: ``StepOptions`` gives one step's function a timeout and retries of its own."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from durapod import DurableAgent, JobContext, JobStatus, MemoryStore, NonRetryableError, StepOptions, Store


def flaky(calls: Counter[str], failures: int, error: type[Exception] = ConnectionError) -> Callable[[str], str]:
    def call(text: str) -> str:
        calls["call"] += 1
        if calls["call"] <= failures:
            raise error(f"failure {calls['call']}")
        return f"{text} fetched"

    return call


async def test_a_step_retries_inside_the_step_and_journals_only_its_result(store: Store) -> None:
    calls: Counter[str] = Counter()
    fetch = StepOptions(retries=2, retry_delay=0)(flaky(calls, 2))

    async def agent(text: str, ctx: JobContext) -> str:
        return str(await ctx.step("fetch", fetch, text))

    async with DurableAgent(agent, store, max_retries=0) as durable:
        done = await durable.run("j", "page")
        journal = await durable.steps("j")
    assert done.status is JobStatus.COMPLETED
    assert done.result == "page fetched"
    assert done.attempts == 1  # the job's own retry policy was not needed
    assert calls["call"] == 3
    assert [(record.name, record.result) for record in journal] == [("fetch", "page fetched")]


async def test_a_step_that_exhausts_its_retries_raises_in_the_agent_which_may_catch_it() -> None:
    calls: Counter[str] = Counter()
    fetch = StepOptions(retries=1, retry_delay=0)(flaky(calls, 5))

    async def agent(text: str, ctx: JobContext) -> str:
        try:
            return str(await ctx.step("fetch", fetch, text))
        except ConnectionError as error:
            return f"gave up: {error}"

    async with DurableAgent(agent, MemoryStore(), max_retries=3) as durable:
        done = await durable.run("j", "page")
    assert done.result == "gave up: failure 2"
    assert done.attempts == 1
    assert calls["call"] == 2


async def test_a_step_that_times_out_raises_timeout_error_and_a_retry_may_succeed() -> None:
    never = asyncio.Event()
    tries: Counter[str] = Counter()

    @StepOptions(timeout=0.05, retries=1, retry_delay=0)
    async def slow_once(text: str) -> str:
        tries[text] += 1
        if tries[text] == 1 or text == "stuck":
            await never.wait()
        return text.upper()

    async def agent(text: str, ctx: JobContext) -> str:
        try:
            return await ctx.step("slow", slow_once, text)
        except TimeoutError as error:
            return f"timed out: {error}"

    async with DurableAgent(agent, MemoryStore(), max_retries=0) as durable:
        recovered = await durable.run("ok", "fine")
        stuck = await durable.run("stuck", "stuck")
    assert recovered.result == "FINE"
    assert tries == Counter({"fine": 2, "stuck": 2})
    assert str(stuck.result).startswith("timed out: step function")
    assert "took longer than 0.05 s" in str(stuck.result)


async def test_non_retryable_errors_and_retry_on_stop_the_retries() -> None:
    calls: Counter[str] = Counter()
    final = StepOptions(retries=5, retry_delay=0)(flaky(calls, 5, NonRetryableError))
    picky_calls: Counter[str] = Counter()
    picky = StepOptions(retries=5, retry_delay=0, retry_on=lambda error: not isinstance(error, KeyError))(
        flaky(picky_calls, 5, KeyError)
    )

    async def agent(text: str, ctx: JobContext) -> str:
        fn = final if text == "final" else picky
        return str(await ctx.step("call", fn, text))

    async with DurableAgent(agent, MemoryStore(), max_retries=0) as durable:
        first = await durable.run("final", "final")
        second = await durable.run("picky", "picky")
    assert (first.status, first.error_type, calls["call"]) == (JobStatus.FAILED, "NonRetryableError", 1)
    assert (second.status, second.error_type, picky_calls["call"]) == (JobStatus.FAILED, "KeyError", 1)


async def test_an_error_the_agent_lets_through_gets_the_jobs_own_retry_policy() -> None:
    calls: Counter[str] = Counter()
    fetch = StepOptions(retries=1, retry_delay=0)(flaky(calls, 3))

    async def agent(text: str, ctx: JobContext) -> str:
        return str(await ctx.step("fetch", fetch, text))

    async with DurableAgent(agent, MemoryStore(), max_retries=1, retry_delay=0.01, jitter=0) as durable:
        done = await durable.run("j", "page")
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 2  # the first attempt's step failed twice; the second attempt's step succeeded
    assert calls["call"] == 4


@pytest.mark.parametrize(
    "settings",
    [
        {"timeout": 0},
        {"timeout": float("nan")},
        {"retries": -1},
        {"retries": 1.5},
        {"retry_delay": -1},
        {"backoff": 0.5},
    ],
)
def test_bad_step_options_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="StepOptions"):
        StepOptions(**settings)  # type: ignore[arg-type]
