"""Budgets: a job stops before the step that would go past its tokens, requests or steps."""

from __future__ import annotations

import pytest

from durapod import Budget, BudgetExceeded, DurableAgent, InvalidInput, JobContext, JobStatus, MemoryStore
from durapod.stores.base import Store

TOKENS_PER_CALL = 40


class CountingModel:
    """A fake model that reports usage; ``calls`` counts the requests it really answered."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, prompt: str) -> str:
        self.calls += 1
        return f"answer {self.calls} to {prompt}"


def make_agent(model: CountingModel, rounds: int = 5):  # type: ignore[no-untyped-def]
    async def agent(prompt: str, ctx: JobContext) -> str:
        text = prompt
        for number in range(rounds):
            text = await ctx.step(f"llm {number}", model.complete, text)
            await ctx.record_usage(tokens=TOKENS_PER_CALL, requests=1)
        return text

    return agent


async def test_a_job_fails_before_the_request_past_its_token_budget(store: Store) -> None:
    model = CountingModel()
    async with DurableAgent(make_agent(model), store, budget=Budget(tokens=100)) as durable:
        job = await durable.run("b", "hi")
    assert job.status is JobStatus.FAILED
    assert job.error_type == "BudgetExceeded"
    assert job.attempts == 1  # not retried
    # 40 + 40 < 100 allows a third request; after it (120 tokens) no fourth is made
    assert model.calls == 3
    assert job.usage == {"tokens": 120, "requests": 3}
    assert job.error is not None
    assert "120 tokens" in job.error


async def test_a_per_job_budget_replaces_the_agents_and_counts_requests() -> None:
    model = CountingModel()
    async with DurableAgent(make_agent(model), MemoryStore(), budget=Budget(tokens=10)) as durable:
        job = await durable.run("b", "hi", budget=Budget(requests=2))
    assert job.error_type == "BudgetExceeded"
    assert model.calls == 2
    assert job.budget == {"tokens": None, "requests": 2, "steps": None, "on_exceeded": "fail"}


async def test_an_assigned_agent_budget_applies_to_the_jobs_started_after_it() -> None:
    model = CountingModel()
    async with DurableAgent(make_agent(model), MemoryStore()) as durable:
        assert durable.budget is None
        assert (await durable.run("free", "hi")).status is JobStatus.COMPLETED
        durable.budget = Budget(requests=2)
        limited = await durable.run("limited", "hi")
        with pytest.raises(TypeError, match=r"durapod\.Budget"):
            durable.budget = {"requests": 2}  # type: ignore[assignment]
    assert limited.status is JobStatus.FAILED and limited.error_type == "BudgetExceeded"
    assert durable.budget == Budget(requests=2)


async def test_a_steps_budget_counts_journaled_steps() -> None:
    model = CountingModel()
    async with DurableAgent(make_agent(model, rounds=3), MemoryStore()) as durable:
        # llm, usage, llm, usage (a usage record is never refused), then the third llm step is refused
        failed = await durable.run("s", "hi", budget=Budget(steps=3))
        fits = await durable.run("t", "hi", budget=Budget(steps=6))
    assert failed.status is JobStatus.FAILED
    assert [record.name for record in await durable.steps("s")] == ["llm 0", "usage", "llm 1", "usage"]
    assert fits.status is JobStatus.COMPLETED


async def test_a_paused_budget_is_raised_on_resume_and_counts_across_the_resume(store: Store) -> None:
    model = CountingModel()
    budget = Budget(tokens=80, on_exceeded="pause")
    async with DurableAgent(make_agent(model, rounds=4), store, budget=budget) as durable:
        paused = await durable.run("p", "hi")
        assert paused.status is JobStatus.PAUSED
        assert paused.waiting_for is not None
        assert "budget exceeded" in paused.waiting_for
        assert paused.usage == {"tokens": 80, "requests": 2}
        assert model.calls == 2
        with pytest.raises(InvalidInput):
            await durable.resume("p", {"tokens": "lots"})
        still = await durable.resume("p", Budget(tokens=120, on_exceeded="pause"))  # type: ignore[arg-type]
        assert still.status is JobStatus.PAUSED  # one more request fitted, then it paused again
        assert model.calls == 3
        done = await durable.resume("p", {"tokens": 1000})
    assert done.status is JobStatus.COMPLETED
    assert model.calls == 4  # every request made once, across two resumes and their replays
    assert done.usage == {"tokens": 160, "requests": 4}


async def test_record_usage_refuses_a_negative_count() -> None:
    async def agent(prompt: str, ctx: JobContext) -> str:
        await ctx.record_usage(tokens=-1)
        return prompt

    async with DurableAgent(agent, MemoryStore(), max_retries=0) as durable:
        job = await durable.run("n", "x")
    assert job.status is JobStatus.FAILED
    assert job.error_type == "ValueError"


def test_budget_exceeded_is_not_retried_and_names_what_ran_out() -> None:
    error = BudgetExceeded("j", "tokens", 120, 100)
    assert error.limit == "tokens"
    assert "120 tokens" in str(error)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Budget(tokens=-5)
    with pytest.raises(TypeError):
        DurableAgent(make_agent(CountingModel()), MemoryStore(), budget={"tokens": 5})  # type: ignore[arg-type]
