"""Every bad argument gets a ValueError, TypeError or InvalidInput naming it, the same on every store, and
nothing is written: a table of bad values, each tried on all three stores."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from durapod import Client, DurableAgent, InvalidInput, InvalidJobId, MemoryStore
from durapod.models import validate_job_id
from durapod.schedules import MAX_SCHEDULE_NAME_LENGTH, CronSchedule, fire_job_id
from durapod.stores.base import Store
from durapod.stores.sqlite import SQLiteStore
from tests.test_records import echo, nested

NAN = math.nan
INF = math.inf


async def drain(durable: DurableAgent, job_id: str, after: Any) -> list[object]:
    return [event async for event in durable.stream(job_id, after=after)]


Call = Callable[[DurableAgent], Awaitable[object]]

# (call, the exception type, a word the message must hold: the argument's name)
CALLS: list[Any] = [
    # inputs
    pytest.param(lambda d: d.start("j", nested(1_001)), InvalidInput, "input", id="input-1001-deep"),
    pytest.param(lambda d: d.start("j", nested(10_000)), InvalidInput, "input", id="input-10000-deep"),
    pytest.param(lambda d: d.start("j", nested(256)), InvalidInput, "input", id="input-256-deep"),
    pytest.param(lambda d: d.start("j", (1, 2)), InvalidInput, "input", id="input-tuple"),
    pytest.param(lambda d: d.start("j", {"a": [(1,)]}), InvalidInput, "input", id="input-nested-tuple"),
    pytest.param(lambda d: d.start("j", "\ud800"), InvalidInput, "input", id="input-lone-surrogate"),
    pytest.param(lambda d: d.start("j", ["ok", "x\udfff"]), InvalidInput, "input", id="input-surrogate-in-list"),
    pytest.param(lambda d: d.start("j", {"k\udc00": 1}), InvalidInput, "input", id="input-surrogate-key"),
    pytest.param(lambda d: d.start("j", NAN), InvalidInput, "input", id="input-nan"),
    pytest.param(lambda d: d.start("j", [INF]), InvalidInput, "input", id="input-inf"),
    pytest.param(lambda d: d.start("j", {1: "a"}), InvalidInput, "input", id="input-int-key"),
    pytest.param(lambda d: d.start("j", object()), InvalidInput, "input", id="input-object"),
    pytest.param(lambda d: d.start("j", b"bytes"), InvalidInput, "input", id="input-bytes"),
    pytest.param(lambda d: d.submit("j", nested(2_000)), InvalidInput, "input", id="submit-input-2000-deep"),
    pytest.param(lambda d: d.submit("j", ("a",)), InvalidInput, "input", id="submit-input-tuple"),
    pytest.param(lambda d: d.submit("j", "\ud800"), InvalidInput, "input", id="submit-input-surrogate"),
    pytest.param(lambda d: d.run("j", nested(300)), InvalidInput, "input", id="run-input-300-deep"),
    # metadata
    pytest.param(lambda d: d.start("j", metadata=[1, 2]), TypeError, "metadata", id="metadata-list"),
    pytest.param(lambda d: d.start("j", metadata="x"), TypeError, "metadata", id="metadata-str"),
    pytest.param(lambda d: d.start("j", metadata={"a": (1,)}), InvalidInput, "metadata", id="metadata-tuple"),
    pytest.param(lambda d: d.start("j", metadata={"a": "\ud800"}), InvalidInput, "metadata", id="metadata-surrogate"),
    pytest.param(lambda d: d.start("j", metadata={"a": nested(2_000)}), InvalidInput, "metadata", id="metadata-deep"),
    pytest.param(lambda d: d.start("j", metadata={2: "a"}), InvalidInput, "metadata", id="metadata-int-key"),
    pytest.param(lambda d: d.submit("j", metadata=[("a", 1)]), TypeError, "metadata", id="submit-metadata-pairs"),
    pytest.param(lambda d: d.submit("j", metadata={"a": NAN}), InvalidInput, "metadata", id="submit-metadata-nan"),
    # ids and agents
    pytest.param(lambda d: d.start("\ud800"), InvalidJobId, "job id", id="id-surrogate"),
    pytest.param(lambda d: d.start(("a",)), InvalidJobId, "job id", id="id-tuple"),
    pytest.param(lambda d: d.status(5), InvalidJobId, "job id", id="status-int-id"),
    pytest.param(lambda d: d.steps(""), InvalidJobId, "job id", id="steps-empty-id"),
    pytest.param(lambda d: d.submit("j", agent=5), TypeError, "agent", id="submit-agent-int"),
    pytest.param(lambda d: d.submit("j", agent="\ud800"), InvalidInput, "agent", id="submit-agent-surrogate"),
    # listing
    pytest.param(lambda d: d.list(metadata=[1, 2]), TypeError, "metadata", id="list-metadata-list"),
    pytest.param(lambda d: d.list(metadata={"a": (1,)}), InvalidInput, "metadata", id="list-metadata-tuple"),
    pytest.param(lambda d: d.list(metadata={"a": "\ud800"}), InvalidInput, "metadata", id="list-metadata-surrogate"),
    pytest.param(lambda d: d.list("bogus"), ValueError, "status", id="list-status-unknown"),
    pytest.param(lambda d: d.list(5), TypeError, "status", id="list-status-int"),
    pytest.param(lambda d: d.list(limit=-1), ValueError, "limit", id="list-limit-negative"),
    pytest.param(lambda d: d.list(limit="3"), ValueError, "limit", id="list-limit-str"),
    pytest.param(lambda d: d.list(limit=True), ValueError, "limit", id="list-limit-bool"),
    pytest.param(lambda d: d.list(agent=5), TypeError, "agent", id="list-agent-int"),
    pytest.param(lambda d: d.list(agent="\ud800"), InvalidInput, "agent", id="list-agent-surrogate"),
    pytest.param(lambda d: d.page(cursor="garbage"), ValueError, "cursor", id="page-cursor-garbage"),
    pytest.param(lambda d: d.page(cursor=5), TypeError, "cursor", id="page-cursor-int"),
    # streaming, waiting and control
    pytest.param(lambda d: drain(d, "j", "x"), TypeError, "after", id="stream-after-str"),
    pytest.param(lambda d: drain(d, "j", 1.5), TypeError, "after", id="stream-after-float"),
    pytest.param(lambda d: drain(d, "j", None), TypeError, "after", id="stream-after-none"),
    pytest.param(lambda d: drain(d, "j", -2), ValueError, "after", id="stream-after-below-minus-one"),
    pytest.param(lambda d: d.wait("j", timeout=-1), ValueError, "timeout", id="wait-timeout-negative"),
    pytest.param(lambda d: d.wait("j", timeout=NAN), ValueError, "timeout", id="wait-timeout-nan"),
    pytest.param(lambda d: d.pause("j", timeout=INF), ValueError, "timeout", id="pause-timeout-inf"),
    pytest.param(lambda d: d.cancel("j", timeout="1"), ValueError, "timeout", id="cancel-timeout-str"),
    pytest.param(lambda d: d.resume("j", nested(2_000)), InvalidInput, "resume input", id="resume-input-deep"),
    pytest.param(lambda d: d.resume("j", "\ud800"), InvalidInput, "resume input", id="resume-input-surrogate"),
]


@pytest.mark.parametrize(("call", "error", "names"), CALLS)
async def test_a_bad_argument_is_refused_naming_it_and_nothing_is_written(
    store: Store, call: Call, error: type[Exception], names: str
) -> None:
    async with DurableAgent(echo, store, name="echo") as durable:
        with pytest.raises(error) as raised:
            await call(durable)
        assert type(raised.value) is error or isinstance(raised.value, InvalidInput | InvalidJobId)
        assert names in str(raised.value)
        assert not isinstance(raised.value, RecursionError)
        assert (await store.list()).jobs == []
        assert await store.get("j") is None


# -- settings refused at construction ----------------------------------------------------------------------

BAD_SETTINGS: list[Any] = [
    pytest.param("lease_ttl", value, id=f"lease_ttl-{value!r}")
    for value in (1e-9, 0.0, -1.0, NAN, INF, -INF, "30", True)
] + [
    pytest.param("retry_delay", NAN, id="retry_delay-nan"),
    pytest.param("max_retry_delay", INF, id="max_retry_delay-inf"),
    pytest.param("pause_timeout", -1.0, id="pause_timeout-negative"),
    pytest.param("poll_interval", 0.0, id="poll_interval-zero"),
    pytest.param("store_timeout", NAN, id="store_timeout-nan"),
    pytest.param("shutdown_grace", INF, id="shutdown_grace-inf"),
    pytest.param("max_retries", -1, id="max_retries-negative"),
    pytest.param("max_recoveries", 1.5, id="max_recoveries-float"),
    pytest.param("max_concurrency", 0, id="max_concurrency-zero"),
]


@pytest.mark.parametrize(("setting", "value"), BAD_SETTINGS)
async def test_a_bad_setting_is_refused_at_construction_naming_it(store: Store, setting: str, value: Any) -> None:
    with pytest.raises(ValueError, match=setting):
        DurableAgent(echo, store, **{setting: value})


@pytest.mark.parametrize(
    ("metadata", "error"), [([1, 2], TypeError), ({"a": (1,)}, InvalidInput), ({"a": nested(100)}, InvalidInput)]
)
async def test_bad_agent_metadata_is_refused_at_construction(
    store: Store, metadata: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="metadata"):
        DurableAgent(echo, store, metadata=metadata)


@pytest.mark.parametrize(
    ("setting", "value"), [("poll_interval", NAN), ("store_timeout", -1.0), ("poll_interval", INF)]
)
async def test_a_bad_client_setting_is_refused_naming_it(store: Store, setting: str, value: Any) -> None:
    with pytest.raises(ValueError, match=setting):
        Client(store, **{setting: value})


@pytest.mark.parametrize(
    ("setting", "value"),
    [("busy_timeout", NAN), ("busy_timeout", INF), ("busy_timeout", -1.0), ("busy_timeout", "5"), ("durability", "x")],
)
def test_a_bad_sqlite_setting_is_refused_naming_it(tmp_path: Path, setting: str, value: Any) -> None:
    with pytest.raises(ValueError, match=setting):
        SQLiteStore(tmp_path / "jobs.db", **{setting: value})
    assert not (tmp_path / "jobs.db").exists()


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.submit("j", nested(5_000)), id="submit-deep"),
        pytest.param(lambda c: c.submit("j", metadata=[1, 2]), id="submit-metadata-list"),
        pytest.param(lambda c: c.list(metadata=[1, 2]), id="list-metadata-list"),
        pytest.param(lambda c: c.submit("j", {"x": "\ud800"}), id="submit-surrogate"),
    ],
)
async def test_a_plain_client_refuses_the_same(store: Store, call: Callable[[Client], Awaitable[object]]) -> None:
    client = Client(store)
    with pytest.raises((TypeError, ValueError)) as raised:
        await call(client)
    assert isinstance(raised.value, TypeError | InvalidInput)
    assert "metadata" in str(raised.value) or "input" in str(raised.value)
    assert (await store.list()).jobs == []


# -- schedules ---------------------------------------------------------------------------------------


BAD_SCHEDULES: list[Any] = [
    pytest.param({"name": "n" * 190}, ValueError, "schedule name", id="name-190-chars"),
    pytest.param({"name": "n" * (MAX_SCHEDULE_NAME_LENGTH + 1)}, ValueError, "schedule name", id="name-over-limit"),
    pytest.param({"name": ""}, ValueError, "schedule name", id="name-empty"),
    pytest.param({"name": "a b"}, ValueError, "schedule name", id="name-whitespace"),
    pytest.param({"name": "a:b"}, ValueError, "schedule name", id="name-colon"),
    pytest.param({"name": "x\ud800"}, ValueError, "schedule name", id="name-surrogate"),
    pytest.param({"name": 5}, TypeError, "schedule name", id="name-int"),
    pytest.param({"cron": "0 0 30 2 *"}, ValueError, "'0 0 30 2 *'", id="cron-february-30"),
    pytest.param({"cron": "0 0 31 4,6,9,11 *"}, ValueError, "'0 0 31 4,6,9,11 *'", id="cron-day-31-of-short-months"),
    pytest.param({"cron": "not cron"}, ValueError, "'not cron'", id="cron-garbage"),
    pytest.param({"catch_up_window": NAN}, ValueError, "catch_up_window", id="window-nan"),
    pytest.param({"catch_up_window": INF}, ValueError, "catch_up_window", id="window-inf"),
    pytest.param({"catch_up_window": -1.0}, ValueError, "catch_up_window", id="window-negative"),
    pytest.param({"catch_up_window": "60"}, ValueError, "catch_up_window", id="window-str"),
    pytest.param({"overlap": "sometimes"}, ValueError, "overlap", id="overlap-unknown"),
    pytest.param({"timezone": "Mars/Olympus"}, ValueError, "Mars/Olympus", id="timezone-unknown"),
    pytest.param({"on_schedule": 5}, TypeError, "on_schedule", id="on-schedule-not-callable"),
]


@pytest.mark.parametrize(("changes", "error", "names"), BAD_SCHEDULES)
async def test_a_schedule_that_could_never_fire_is_refused_naming_why(
    store: Store, changes: dict[str, Any], error: type[Exception], names: str
) -> None:
    arguments: dict[str, Any] = {"name": "nightly", "cron": "0 3 * * *", **changes}
    async with DurableAgent(echo, store, name="echo") as durable:
        with pytest.raises(error) as raised:
            await durable.schedule(arguments.pop("name"), arguments.pop("cron"), **arguments)
        assert names in str(raised.value)
    assert await store.list_schedules() == []


async def test_the_longest_schedule_name_makes_valid_fire_job_ids(store: Store) -> None:
    name = "n" * MAX_SCHEDULE_NAME_LENGTH
    async with DurableAgent(echo, store, name="echo") as durable:
        state = await durable.schedule(name, "0 3 * * *", catch_up_window=0)
    assert state.name == name
    fire = datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert validate_job_id(fire_job_id(name, fire)) == f"{name}:2026-12-31T23:59:59.999999Z"
    assert [stored.name for stored in await store.list_schedules()] == [name]


def test_a_never_firing_cron_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"'0 0 30 2 \*' never fires"):
        DurableAgent(echo, MemoryStore(), schedule="0 0 30 2 *")
    with pytest.raises(ValueError, match="never fires"):
        CronSchedule("0 0 30 2 *", "Europe/Paris")
    assert CronSchedule("0 0 29 2 *").next_after(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2028, 2, 29, tzinfo=UTC)
