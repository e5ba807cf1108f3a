"""Versioning: ``ctx.patched`` keeps jobs in flight on the path their journal recorded; ``version=``."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from durapod import DurableAgent, JobContext, JobStatus, MemoryStore, SQLiteStore, StepMismatch, Store

Agent = Callable[[str, JobContext], Awaitable[str]]


def versions(ran: Counter[str]) -> dict[str, Agent]:
    """The agent before the change, with the change behind ``patched``, and once the patch is deprecated."""

    def step(name: str) -> Callable[[str], str]:
        def run(text: str) -> str:
            ran[name] += 1
            return f"{text}>{name}"

        return run

    async def old(text: str, ctx: JobContext) -> str:
        text = await ctx.step("a", step("a"), text)
        text = await ctx.step("b", step("b"), text)
        answer = await ctx.interrupt("go on?")
        return await ctx.step("c", step("c"), f"{text}:{answer}")

    async def patched(text: str, ctx: JobContext) -> str:
        text = await ctx.step("a", step("a"), text)
        if ctx.patched("spam-check"):
            text = await ctx.step("spam", step("spam"), text)
        text = await ctx.step("b", step("b"), text)
        answer = await ctx.interrupt("go on?")
        return await ctx.step("c", step("c"), f"{text}:{answer}")

    async def deprecated(text: str, ctx: JobContext) -> str:
        text = await ctx.step("a", step("a"), text)
        ctx.deprecate_patch("spam-check")
        text = await ctx.step("spam", step("spam"), text)
        text = await ctx.step("b", step("b"), text)
        answer = await ctx.interrupt("go on?")
        return await ctx.step("c", step("c"), f"{text}:{answer}")

    return {"old": old, "patched": patched, "deprecated": deprecated}


async def names(store: Store, job_id: str) -> list[str]:
    return [record.name for record in await store.read_steps(job_id)]


async def test_old_jobs_keep_the_old_path_and_new_jobs_take_the_patched_one(store: Store) -> None:
    ran: Counter[str] = Counter()
    agents = versions(ran)
    async with DurableAgent(agents["old"], store, name="triage", version="1") as v1:
        assert (await v1.run("old-job", "t")).status is JobStatus.PAUSED  # a and b journaled, then paused
    async with DurableAgent(agents["patched"], store, name="triage", version="2") as v2:
        old_done = await v2.resume("old-job", "yes")
        new_paused = await v2.run("new-job", "t")
        assert new_paused.status is JobStatus.PAUSED
        new_done = await v2.resume("new-job", "yes")  # replays the marker: still the new path
    assert old_done.status is JobStatus.COMPLETED, old_done
    assert old_done.result == "t>a>b:yes>c"
    assert await names(store, "old-job") == ["a", "b", "c"]
    assert new_done.result == "t>a>spam>b:yes>c"
    assert await names(store, "new-job") == ["a", "durapod.patch", "spam", "b", "c"]
    assert ran == Counter({"a": 2, "b": 2, "c": 2, "spam": 1})  # nothing ran twice
    assert old_done.code_version == "1"
    assert new_done.code_version == "2"


async def test_without_patched_a_changed_agent_fails_old_jobs_with_a_step_mismatch_that_points_at_it() -> None:
    store = MemoryStore()
    agents = versions(Counter())

    async def unguarded(text: str, ctx: JobContext) -> str:
        text = await ctx.step("a", str.upper, text)
        return await ctx.step("spam", str.upper, text)

    async with DurableAgent(agents["old"], store, name="triage") as v1:
        await v1.run("old-job", "t")
    async with DurableAgent(unguarded, store, name="triage", max_retries=0) as v2:
        failed = await v2.resume("old-job", "yes")
    assert failed.status is JobStatus.FAILED
    assert failed.error_type == StepMismatch.__name__
    message = failed.error or ""
    for part in ("'old-job'", "#1", "'b'", "'spam'", "ctx.patched"):
        assert part in message, message


async def test_a_deprecated_patch_replays_jobs_that_recorded_the_marker_and_journals_nothing_new(
    store: Store,
) -> None:
    ran: Counter[str] = Counter()
    agents = versions(ran)
    async with DurableAgent(agents["patched"], store, name="triage") as v2:
        assert (await v2.run("marked", "t")).status is JobStatus.PAUSED
    async with DurableAgent(agents["deprecated"], store, name="triage") as v3:
        marked = await v3.resume("marked", "yes")
        fresh = await v3.run("fresh", "t")
        assert fresh.status is JobStatus.PAUSED
        fresh = await v3.resume("fresh", "yes")
    assert marked.result == fresh.result == "t>a>spam>b:yes>c"
    assert await names(store, "marked") == ["a", "durapod.patch", "spam", "b", "c"]
    assert await names(store, "fresh") == ["a", "spam", "b", "c"]


async def test_a_bad_change_id_fails_the_job() -> None:
    async def agent(text: str, ctx: JobContext) -> str:
        return "new" if ctx.patched("") else "old"

    async with DurableAgent(agent, MemoryStore(), max_retries=0) as durable:
        failed = await durable.run("j", "x")
    assert failed.error_type == "ValueError"


async def test_list_by_version_finds_the_jobs_an_old_version_started(store: Store) -> None:
    async def agent(text: str, ctx: JobContext) -> str:
        return text

    async with DurableAgent(agent, store, name="a", version="1.0") as v1:
        await v1.run("one", "x")
        await v1.run("two", "x")
    async with DurableAgent(agent, store, name="a", version="2.0", metadata={"team": "x"}) as v2:
        await v2.run("three", "x")
        old = await v2.list(version="1.0")
        new = await v2.list(version="2.0", metadata={"team": "x"})
    assert sorted(job.id for job in old) == ["one", "two"]
    assert [job.id for job in new] == ["three"]
    assert new[0].metadata == {"team": "x", "durapod.version": "2.0"}


def test_ls_version_lists_the_jobs_of_one_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from durapod.cli import main

    db = tmp_path / "jobs.db"

    async def agent(text: str, ctx: JobContext) -> str:
        return text

    async def run() -> None:
        store = SQLiteStore(db)
        for version, job_id in (("1", "old-job"), ("2", "new-job")):
            async with DurableAgent(agent, store, name="a", version=version) as durable:
                await durable.run(job_id, "x")
        await store.close()

    asyncio.run(run())
    assert main(["--store", f"sqlite:///{db}", "ls", "--version", "1"]) == 0
    shown = capsys.readouterr().out
    assert "old-job" in shown
    assert "new-job" not in shown


def test_version_must_be_a_non_empty_str() -> None:
    async def agent(text: str) -> str:
        return text

    with pytest.raises(ValueError, match="version"):
        DurableAgent(agent, MemoryStore(), version="")
