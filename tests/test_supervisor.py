"""Supervisor: backoff, restart types and limits, on_exit, intensity and escalation, shutdown, strategies."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import pytest

from durapod.errors import RestartIntensityExceeded
from durapod.lowlevel import (
    Actor,
    ActorRef,
    Backoff,
    ChildInfo,
    ChildSpec,
    FakeClock,
    RestartDecision,
    RestartType,
    Strategy,
    Supervisor,
    spawn,
)

T = TypeVar("T")

pytestmark = pytest.mark.timeout(10)  # a hang fails fast instead of after the global 120 s

WAIT_TIMEOUT = 2.0  # a safety net for waits on events, never a synchronisation delay

NO_DELAY = Backoff(initial_delay=0.0, max_delay=0.0, jitter=0.0)
STEADY = Backoff(initial_delay=1.0, max_delay=1.0, jitter=0.0)


class Boom(Exception):
    """What the probes raise."""


# -- helpers -------------------------------------------------------------------------------------


class Journal(Generic[T]):
    """A list whose growth can be awaited."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def append(self, item: T) -> None:
        self.items.append(item)
        for count, future in self._waiters:
            if len(self.items) >= count and not future.done():
                future.set_result(None)

    def __len__(self) -> int:
        return len(self.items)

    async def wait_for(self, count: int) -> list[T]:
        """Wait until at least ``count`` items were appended; returns them all."""
        if len(self.items) < count:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((count, future))
            async with asyncio.timeout(WAIT_TIMEOUT):
                await future
        return self.items


@dataclass(frozen=True)
class Exit:
    name: str
    error: BaseException | None
    decision: RestartDecision
    sleeps_before: int  # how many clock sleeps had been requested when on_exit ran


@dataclass
class Log:
    started: Journal[Probe] = field(default_factory=Journal)
    restarted: Journal[tuple[str, BaseException | None]] = field(default_factory=Journal)
    stopped: Journal[tuple[str, BaseException | None]] = field(default_factory=Journal)
    exits: Journal[Exit] = field(default_factory=Journal)

    def stopped_names(self) -> list[str]:
        return [name for name, _ in self.stopped.items]

    def started_names(self) -> list[str]:
        return [probe.name for probe in self.started.items]


class Probe(Actor[str]):
    """``"crash"`` raises Boom; ``"hang"`` blocks for ever (ignoring stop); hooks are logged."""

    def __init__(self, name: str, log: Log, start_error: BaseException | None = None) -> None:
        self.name = name
        self.log = log
        self.start_error = start_error
        self.hanging = asyncio.Event()

    async def on_restart(self, error: BaseException | None) -> None:
        self.log.restarted.append((self.name, error))

    async def on_start(self) -> None:
        if self.start_error is not None:
            raise self.start_error
        self.log.started.append(self)

    async def receive(self, message: str) -> Any:
        if message == "crash":
            raise Boom(f"{self.name} crashed")
        if message == "hang":
            self.hanging.set()
            await asyncio.Event().wait()
        return message

    async def on_stop(self, error: BaseException | None) -> None:
        self.log.stopped.append((self.name, error))


def recorder(
    name: str, log: Log, clock: FakeClock
) -> Callable[[BaseException | None, RestartDecision], Awaitable[None]]:
    async def on_exit(error: BaseException | None, decision: RestartDecision) -> None:
        log.exits.append(Exit(name, error, decision, len(clock.sleeps)))

    return on_exit


class Tree:
    """Starts supervisors on one fake clock and stops them all at the end of the test."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.log = Log()
        self.refs: list[ActorRef[Any]] = []
        self._markers = itertools.count()

    async def start(self, name: str = "root", **options: Any) -> tuple[Supervisor, ActorRef[Any]]:
        options.setdefault("random", lambda: 0.5)
        options.setdefault("max_restarts", None)
        supervisor = Supervisor(name, clock=self.clock, **options)
        ref = await spawn(supervisor, name=name)
        self.refs.append(ref)
        return supervisor, ref

    def spec(self, name: str, **options: Any) -> ChildSpec:
        options.setdefault("backoff", STEADY)
        options.setdefault("on_exit", recorder(name, self.log, self.clock))
        return ChildSpec(name, factory=lambda: Probe(name, self.log), **options)

    async def ready(self, count: int) -> list[Probe]:
        """Wait until ``count`` probes have started and the supervisor holds the last one's ref.

        A probe logs its start inside ``on_start``; the supervisor resumes (and stores the ref) as soon
        as ``on_start`` returns, before the probe can answer anything, so one ask round trip to the
        probe is enough to know the supervisor has caught up.
        """
        probes = await self.log.started.wait_for(count)
        assert await probes[-1].ref.ask("ping", timeout=WAIT_TIMEOUT) == "ping"
        return probes

    async def sync(self, supervisor: Supervisor) -> None:
        """Return once ``supervisor`` has handled every child exit queued so far.

        A temporary marker child crashes; its on_exit runs only after the supervisor has handled the
        exits ahead of it in its mailbox.
        """
        handled = asyncio.Event()

        async def on_exit(error: BaseException | None, decision: RestartDecision) -> None:
            handled.set()

        name = f"marker-{next(self._markers)}"
        marker = await supervisor.start_child(
            ChildSpec(name, factory=lambda: Probe(name, Log()), restart=RestartType.TEMPORARY, on_exit=on_exit)
        )
        marker.tell("crash")
        async with asyncio.timeout(WAIT_TIMEOUT):
            await handled.wait()

    async def crash(self, supervisor: Supervisor, name: str) -> Exit:
        """Crash child ``name`` and return the on_exit record of that crash."""
        ref = supervisor.child(name)
        assert ref is not None, f"{name} is not running"
        seen = len(self.log.exits)
        ref.tell("crash")
        exits = await self.log.exits.wait_for(seen + 1)
        assert exits[seen].name == name
        return exits[seen]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def tree(clock: FakeClock) -> AsyncIterator[Tree]:
    tree = Tree(clock)
    yield tree
    for ref in reversed(tree.refs):
        ref.stop()
        await ref.join()


def info(supervisor: Supervisor, name: str) -> ChildInfo:
    (found,) = [child for child in supervisor.which_children() if child.name == name]
    return found


# -- Backoff -------------------------------------------------------------------------------------


def test_backoff_exact_delays() -> None:
    backoff = Backoff(initial_delay=1, multiplier=2, max_delay=10, jitter=0.1)
    delays = [backoff.delay(n, 0.5) for n in range(1, 7)]
    assert delays == pytest.approx([1.05, 2.1, 4.2, 8.4, 10.5, 10.5])


def test_backoff_without_jitter_and_jitter_bounds() -> None:
    backoff = Backoff(initial_delay=0.5, multiplier=3, max_delay=100, jitter=0.2)
    assert [backoff.delay(n) for n in (1, 2, 3)] == pytest.approx([0.5, 1.5, 4.5])
    assert backoff.delay(2, 0.0) == pytest.approx(1.5)
    assert backoff.delay(2, 0.999) == pytest.approx(1.5 * (1 + 0.2 * 0.999))
    assert Backoff(jitter=0.0).delay(3, 0.9) == pytest.approx(4.0)


def test_backoff_constant_when_multiplier_is_one() -> None:
    backoff = Backoff(initial_delay=2, multiplier=1, max_delay=2, jitter=0)
    assert {backoff.delay(n) for n in range(1, 50)} == {2.0}


@pytest.mark.parametrize(
    ("field_name", "kwargs"),
    [
        ("initial_delay", {"initial_delay": -1}),
        ("initial_delay", {"initial_delay": float("nan")}),
        ("initial_delay", {"initial_delay": float("inf")}),
        ("initial_delay", {"initial_delay": "1"}),
        ("max_delay", {"max_delay": -0.5}),
        ("max_delay", {"max_delay": float("inf")}),
        ("max_delay", {"initial_delay": 10, "max_delay": 5}),
        ("jitter", {"jitter": -0.1}),
        ("jitter", {"jitter": float("nan")}),
        ("multiplier", {"multiplier": 0.5}),
        ("multiplier", {"multiplier": float("inf")}),
        ("multiplier", {"multiplier": None}),
        ("reset_after", {"reset_after": 0}),
        ("reset_after", {"reset_after": -3}),
    ],
)
def test_backoff_invalid_arguments_name_the_field(field_name: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=field_name):
        Backoff(**kwargs)


@pytest.mark.parametrize("restart", [0, -1])
def test_backoff_restart_numbers_start_at_one(restart: int) -> None:
    with pytest.raises(ValueError, match="start at 1"):
        Backoff().delay(restart)


@pytest.mark.parametrize("restart", [1025, 10_000, 10**9, 10**30])
@pytest.mark.parametrize("multiplier", [1.5, 2, 2.0, 10, 1e300])
def test_backoff_huge_restart_numbers_do_not_overflow(restart: int, multiplier: float) -> None:
    backoff = Backoff(initial_delay=1, multiplier=multiplier, max_delay=30, jitter=0.1)
    assert backoff.delay(restart, 0.5) == pytest.approx(31.5)


@pytest.mark.parametrize("multiplier", [2, 2.0, 1e300])
def test_backoff_zero_initial_delay_stays_zero_for_huge_restart_numbers(multiplier: float) -> None:
    backoff = Backoff(initial_delay=0, multiplier=multiplier, max_delay=30, jitter=0)
    assert backoff.delay(5) == 0.0
    assert backoff.delay(10**6) == 0.0


# -- FakeClock -------------------------------------------------------------------------------------


async def test_fake_clock_records_sleeps_and_wakes_them_in_deadline_order() -> None:
    clock = FakeClock()
    woke: list[str] = []

    async def sleeper(name: str, delay: float) -> None:
        await clock.sleep(delay)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper(name, delay)) for name, delay in (("c", 3.0), ("a", 1.0), ("b", 2.0))]
    await clock.advance(0)
    assert clock.sleeps == [3.0, 1.0, 2.0]
    assert clock.pending == 3
    await clock.advance(1.5)
    assert woke == ["a"]
    assert clock.monotonic() == 1.5
    await clock.advance(10)
    assert woke == ["a", "b", "c"]
    assert clock.pending == 0
    await asyncio.gather(*tasks)


async def test_fake_clock_chained_sleeps_play_out_in_one_advance() -> None:
    clock = FakeClock()
    times: list[float] = []

    async def ticker() -> None:
        for _ in range(3):
            await clock.sleep(1.0)
            times.append(clock.monotonic())

    task = asyncio.create_task(ticker())
    await clock.advance(5)
    assert times == [1.0, 2.0, 3.0]
    await task


async def test_fake_clock_zero_sleep_returns_at_once() -> None:
    clock = FakeClock()
    await clock.sleep(0)
    await clock.sleep(-1)
    assert clock.sleeps == [0, -1]
    assert clock.pending == 0


def test_fake_clock_utcnow_and_validation() -> None:
    start = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    clock = FakeClock(start)
    assert clock.utcnow() == start
    assert clock.monotonic() == 0.0
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2030, 5, 1))


async def test_fake_clock_cannot_go_backwards() -> None:
    clock = FakeClock()
    await clock.advance(90)
    assert clock.utcnow() == datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="backwards"):
        await clock.advance(-1)
    assert clock.monotonic() == 90


# -- Supervisor construction ---------------------------------------------------------------------


def test_supervisor_rejects_bad_intensity() -> None:
    with pytest.raises(ValueError, match="max_restarts"):
        Supervisor(max_restarts=-1)
    with pytest.raises(ValueError, match="within"):
        Supervisor(within=0)


# -- restart delays ------------------------------------------------------------------------------


async def test_restarts_after_exactly_the_backoff_delays(tree: Tree, clock: FakeClock) -> None:
    backoff = Backoff(initial_delay=1, multiplier=2, max_delay=10, jitter=0.1)
    supervisor, _ = await tree.start()
    await supervisor.start_child(tree.spec("worker", backoff=backoff))
    expected = [1.05, 2.1, 4.2, 8.4, 10.5, 10.5]
    for number, delay in enumerate(expected, start=1):
        old = supervisor.child("worker")
        exit_ = await tree.crash(supervisor, "worker")
        assert isinstance(exit_.error, Boom)
        assert exit_.decision.restart is True
        assert exit_.decision.restart_count == number
        assert exit_.decision.delay == pytest.approx(delay)
        assert exit_.sleeps_before == number - 1  # on_exit ran before the delay began
        # not restarted before the delay has passed
        await clock.advance(delay - 0.01)
        assert supervisor.child("worker") is None
        child = info(supervisor, "worker")
        assert child.is_restarting
        assert child.ref is None
        assert child.restarts == number
        assert len(tree.log.started) == number
        # restarted once it has
        await clock.advance(0.02)
        await tree.ready(number + 1)
        new = supervisor.child("worker")
        assert new is not None
        assert new is not old
        assert new.is_alive
        assert not info(supervisor, "worker").is_restarting
    assert clock.sleeps == pytest.approx(expected)
    # every restarted instance was told what ended its predecessor
    assert [type(error) for _, error in tree.log.restarted.items] == [Boom] * len(expected)


async def test_jitter_comes_from_the_random_source(tree: Tree, clock: FakeClock) -> None:
    supervisor, _ = await tree.start(random=lambda: 0.0)
    await supervisor.start_child(tree.spec("w", backoff=Backoff(initial_delay=2, max_delay=10, jitter=0.5)))
    exit_ = await tree.crash(supervisor, "w")
    assert exit_.decision.delay == 2.0
    await clock.advance(2.0)
    await tree.ready(2)
    assert clock.sleeps == [2.0]


# -- restart types -------------------------------------------------------------------------------


async def test_permanent_child_restarts_after_crash_and_after_normal_stop(tree: Tree, clock: FakeClock) -> None:
    supervisor, _ = await tree.start()
    await supervisor.start_child(tree.spec("p", restart=RestartType.PERMANENT))
    crash = await tree.crash(supervisor, "p")
    assert crash.decision.restart
    await clock.advance(1)
    await tree.ready(2)

    ref = supervisor.child("p")
    assert ref is not None
    ref.stop()
    (normal,) = (await tree.log.exits.wait_for(2))[1:]
    assert normal.error is None
    assert normal.decision.restart is True
    assert normal.decision.restart_count == 2
    await clock.advance(1)
    await tree.ready(3)
    assert supervisor.child("p") is not None
    assert clock.sleeps == [1.0, 1.0]


async def test_transient_child_restarts_only_after_crash(tree: Tree, clock: FakeClock) -> None:
    supervisor, _ = await tree.start()
    await supervisor.start_child(tree.spec("t", restart=RestartType.TRANSIENT))
    crash = await tree.crash(supervisor, "t")
    assert crash.decision.restart
    await clock.advance(1)
    await tree.ready(2)

    ref = supervisor.child("t")
    assert ref is not None
    ref.stop()
    assert await ref.join() is None
    await tree.sync(supervisor)
    assert not supervisor.has_child("t")
    assert supervisor.child("t") is None
    assert supervisor.which_children() == []
    assert len(tree.log.exits) == 1  # a normal stop that ends the child does not call on_exit
    await clock.advance(100)
    assert len(tree.log.started) == 2
    assert clock.sleeps == [1.0]


async def test_temporary_child_is_never_restarted_after_a_crash(tree: Tree, clock: FakeClock) -> None:
    supervisor, _ = await tree.start()
    await supervisor.start_child(tree.spec("tmp", restart=RestartType.TEMPORARY))
    exit_ = await tree.crash(supervisor, "tmp")
    assert isinstance(exit_.error, Boom)
    assert exit_.decision == RestartDecision(False, 0.0, 0, "temporary")
    assert not supervisor.has_child("tmp")
    await clock.advance(100)
    assert len(tree.log.started) == 1
    assert clock.sleeps == []


async def test_temporary_child_is_never_restarted_after_a_normal_stop(tree: Tree, clock: FakeClock) -> None:
    supervisor, ref = await tree.start()
    child = await supervisor.start_child(tree.spec("tmp", restart=RestartType.TEMPORARY))
    child.stop()
    assert await child.join() is None
    await tree.sync(supervisor)
    assert not supervisor.has_child("tmp")
    assert tree.log.exits.items == []
    await clock.advance(100)
    assert len(tree.log.started) == 1
    assert clock.sleeps == []
    assert ref.is_alive


# -- per-child limits ----------------------------------------------------------------------------


async def test_max_restarts_removes_the_child(tree: Tree, clock: FakeClock) -> None:
    supervisor, ref = await tree.start()
    await supervisor.start_child(tree.spec("w", max_restarts=2))
    for number in (1, 2):
        exit_ = await tree.crash(supervisor, "w")
        assert exit_.decision.restart
        assert exit_.decision.restart_count == number
        await clock.advance(1)
        await tree.ready(number + 1)
    last = await tree.crash(supervisor, "w")
    assert isinstance(last.error, Boom)
    assert last.decision == RestartDecision(False, 0.0, 2, "max restarts")
    assert not supervisor.has_child("w")
    await clock.advance(100)
    assert len(tree.log.started) == 3
    assert clock.sleeps == [1.0, 1.0]
    assert ref.is_alive  # a child giving up does not take its supervisor down


async def test_initial_restart_count_is_honoured(tree: Tree, clock: FakeClock) -> None:
    backoff = Backoff(initial_delay=1, multiplier=2, max_delay=100, jitter=0)
    supervisor, _ = await tree.start()
    await supervisor.start_child(tree.spec("w", backoff=backoff, max_restarts=3, restarts=2))
    assert info(supervisor, "w").restarts == 2
    exit_ = await tree.crash(supervisor, "w")
    assert exit_.decision.restart_count == 3
    assert exit_.decision.delay == 4.0  # the delay of restart 3, not restart 1
    await clock.advance(4)
    await tree.ready(2)
    last = await tree.crash(supervisor, "w")
    assert last.decision == RestartDecision(False, 0.0, 3, "max restarts")
    assert clock.sleeps == [4.0]


async def test_max_restarts_zero_never_restarts(tree: Tree, clock: FakeClock) -> None:
    supervisor, _ = await tree.start()
    await supervisor.start_child(tree.spec("w", max_restarts=0))
    exit_ = await tree.crash(supervisor, "w")
    assert exit_.decision == RestartDecision(False, 0.0, 0, "max restarts")
    assert not supervisor.has_child("w")


async def test_should_restart_false_means_not_retryable(tree: Tree, clock: FakeClock) -> None:
    seen: list[BaseException] = []

    def should_restart(error: BaseException) -> bool:
        seen.append(error)
        return False

    supervisor, _ = await tree.start()
    await supervisor.start_child(tree.spec("w", should_restart=should_restart))
    exit_ = await tree.crash(supervisor, "w")
    assert exit_.decision == RestartDecision(False, 0.0, 0, "not retryable")
    assert seen == [exit_.error]
    assert not supervisor.has_child("w")
    await clock.advance(100)
    assert len(tree.log.started) == 1
    assert clock.sleeps == []


async def test_should_restart_true_restarts(tree: Tree, clock: FakeClock) -> None:
    supervisor, _ = await tree.start()
    await supervisor.start_child(tree.spec("w", should_restart=lambda error: isinstance(error, Boom)))
    exit_ = await tree.crash(supervisor, "w")
    assert exit_.decision.restart
    await clock.advance(1)
    await tree.ready(2)


async def test_should_restart_is_not_asked_about_normal_stops(tree: Tree, clock: FakeClock) -> None:
    asked: list[BaseException] = []

    def should_restart(error: BaseException) -> bool:
        asked.append(error)
        return False

    supervisor, _ = await tree.start()
    await supervisor.start_child(tree.spec("w", should_restart=should_restart))
    ref = supervisor.child("w")
    assert ref is not None
    ref.stop()
    (exit_,) = await tree.log.exits.wait_for(1)
    assert exit_.decision.restart  # permanent: a normal stop restarts
    assert asked == []


# -- on_exit ------------------------------------------------------------------------------------


async def test_on_exit_sees_every_crash_with_its_error_and_decision(tree: Tree, clock: FakeClock) -> None:
    supervisor, _ = await tree.start()
    await supervisor.start_child(tree.spec("w", restart=RestartType.TRANSIENT, max_restarts=2))
    first = await tree.crash(supervisor, "w")
    await clock.advance(1)
    await tree.ready(2)
    second = await tree.crash(supervisor, "w")
    await clock.advance(1)
    await tree.ready(3)
    third = await tree.crash(supervisor, "w")
    exits = tree.log.exits.items
    assert [(e.decision.restart, e.decision.reason) for e in exits] == [
        (True, "crashed"),
        (True, "crashed"),
        (False, "max restarts"),
    ]
    # each call got the error of its own crash
    errors = [e.error for e in exits]
    assert errors == [first.error, second.error, third.error]
    assert all(isinstance(error, Boom) for error in errors)
    assert len({id(error) for error in errors}) == 3
    # and ran before the delay of its restart began
    assert [e.sleeps_before for e in exits] == [0, 1, 2]


async def test_on_exit_of_a_permanent_child_stopping_normally(tree: Tree, clock: FakeClock) -> None:
    supervisor, _ = await tree.start()
    child = await supervisor.start_child(tree.spec("w", restart=RestartType.PERMANENT))
    child.stop()
    (exit_,) = await tree.log.exits.wait_for(1)
    assert exit_.error is None
    assert exit_.decision.restart is True
    assert exit_.decision.restart_count == 1
    assert exit_.sleeps_before == 0
    assert supervisor.child("w") is None  # still waiting for the delay


async def test_failing_on_exit_does_not_break_the_supervisor(tree: Tree, clock: FakeClock) -> None:
    calls: Journal[tuple[str, RestartDecision]] = Journal()

    def broken(name: str) -> Callable[[BaseException | None, RestartDecision], Awaitable[None]]:
        async def on_exit(error: BaseException | None, decision: RestartDecision) -> None:
            calls.append((name, decision))
            raise RuntimeError("hook failed")

        return on_exit

    supervisor, ref = await tree.start()
    await supervisor.start_child(tree.spec("w", on_exit=broken("w")))
    await supervisor.start_child(tree.spec("tmp", restart=RestartType.TEMPORARY, on_exit=broken("tmp")))

    child = supervisor.child("w")
    assert child is not None
    child.tell("crash")
    await calls.wait_for(1)  # the hook failed on the restart path
    await clock.advance(1)
    await tree.ready(3)  # "w" came back all the same
    assert supervisor.child("w") is not None

    temporary = supervisor.child("tmp")
    assert temporary is not None
    temporary.tell("crash")
    await calls.wait_for(2)  # and on the give-up path
    assert calls.items[1] == ("tmp", RestartDecision(False, 0.0, 0, "temporary"))
    assert not supervisor.has_child("tmp")

    # the supervisor still handles exits after both failures
    again = supervisor.child("w")
    assert again is not None
    again.tell("crash")
    await calls.wait_for(3)
    await clock.advance(2)
    await tree.ready(4)
    assert supervisor.child("w") is not None
    assert ref.is_alive
    assert [name for name, _ in calls.items] == ["w", "tmp", "w"]


# -- reset_after ---------------------------------------------------------------------------------


async def test_a_child_that_ran_long_enough_starts_again_from_restart_one(tree: Tree, clock: FakeClock) -> None:
    backoff = Backoff(initial_delay=1, multiplier=2, max_delay=100, jitter=0, reset_after=10)
    supervisor, _ = await tree.start()
    await supervisor.start_child(tree.spec("w", backoff=backoff))
    assert (await tree.crash(supervisor, "w")).decision.delay == 1.0
    await clock.advance(1)
    await tree.ready(2)
    assert (await tree.crash(supervisor, "w")).decision.delay == 2.0
    await clock.advance(2)
    await tree.ready(3)
    await clock.advance(9.5)  # not long enough
    assert (await tree.crash(supervisor, "w")).decision.delay == 4.0
    await clock.advance(4)
    await tree.ready(4)
    await clock.advance(10)  # long enough: the count starts over
    exit_ = await tree.crash(supervisor, "w")
    assert exit_.decision.restart_count == 1
    assert exit_.decision.delay == 1.0
    await clock.advance(1)
    await tree.ready(5)
    assert (await tree.crash(supervisor, "w")).decision.delay == 2.0
    assert clock.sleeps == [1.0, 2.0, 4.0, 1.0, 2.0]
    assert info(supervisor, "w").restarts == 2


# -- restart intensity ---------------------------------------------------------------------------


async def test_intensity_exceeded_stops_children_and_crashes_the_supervisor(tree: Tree, clock: FakeClock) -> None:
    supervisor, ref = await tree.start(max_restarts=3, within=5)
    await supervisor.start_child(tree.spec("bystander"))
    await supervisor.start_child(tree.spec("flappy", backoff=NO_DELAY))
    bystander = supervisor.child("bystander")
    assert bystander is not None
    for number in (1, 2, 3):
        await tree.crash(supervisor, "flappy")
        await clock.advance(1)  # 3 s in all: within the window
        await tree.ready(2 + number)
    flappy = supervisor.child("flappy")
    assert flappy is not None
    flappy.tell("crash")
    error = await ref.join()
    assert isinstance(error, RestartIntensityExceeded)
    assert error.supervisor == "root"
    assert error.restarts == 4
    assert error.within == 5
    assert not bystander.is_alive
    assert ("bystander", None) in tree.log.stopped.items
    assert supervisor.which_children() == []
    assert len(tree.log.started) == 5  # no fourth restart
    await clock.advance(100)
    assert len(tree.log.started) == 5


async def test_restarts_spread_over_more_than_the_window_do_not_escalate(tree: Tree, clock: FakeClock) -> None:
    supervisor, ref = await tree.start(max_restarts=3, within=5)
    await supervisor.start_child(tree.spec("flappy", backoff=NO_DELAY))
    for number in range(1, 9):
        await tree.crash(supervisor, "flappy")
        await tree.ready(1 + number)
        await clock.advance(2)  # at most 3 restarts in any 5 s
    assert ref.is_alive
    assert supervisor.child("flappy") is not None
    assert info(supervisor, "flappy").restarts == 8


async def test_intensity_counts_restarts_of_all_children(tree: Tree, clock: FakeClock) -> None:
    supervisor, ref = await tree.start(max_restarts=2, within=5)
    for name in ("a", "b", "c"):
        await supervisor.start_child(tree.spec(name, backoff=NO_DELAY))
    await tree.crash(supervisor, "a")
    await tree.ready(4)
    await tree.crash(supervisor, "b")
    await tree.ready(5)
    supervisor_child = supervisor.child("c")
    assert supervisor_child is not None
    supervisor_child.tell("crash")
    assert isinstance(await ref.join(), RestartIntensityExceeded)


class SubSupervisor(Supervisor):
    """A supervisor that starts its own worker in on_start."""

    def __init__(self, tree: Tree) -> None:
        super().__init__("sub", max_restarts=1, within=5, clock=tree.clock, random=lambda: 0.5)
        self.tree = tree

    async def on_start(self) -> None:
        await self.start_child(self.tree.spec("worker", backoff=NO_DELAY))


async def test_intensity_escalates_to_the_parent_which_restarts_the_subtree(tree: Tree, clock: FakeClock) -> None:
    subs: list[SubSupervisor] = []
    parent_exits: Journal[tuple[BaseException | None, RestartDecision]] = Journal()

    def make_sub() -> SubSupervisor:
        sub = SubSupervisor(tree)
        subs.append(sub)
        return sub

    async def on_sub_exit(error: BaseException | None, decision: RestartDecision) -> None:
        parent_exits.append((error, decision))

    parent, parent_ref = await tree.start("parent")
    sub_ref = await parent.start_child(
        ChildSpec("sub", factory=make_sub, restart=RestartType.PERMANENT, backoff=STEADY, on_exit=on_sub_exit)
    )
    assert len(subs) == 1
    assert subs[0].child("worker") is not None  # the subtree was ready when start_child returned

    await tree.crash(subs[0], "worker")  # restart 1: within the sub's intensity
    await tree.ready(2)
    worker = subs[0].child("worker")
    assert worker is not None
    worker.tell("crash")  # restart 2 within 5 s: too many

    escalated = await sub_ref.join()
    assert isinstance(escalated, RestartIntensityExceeded)
    assert escalated.supervisor == "sub"
    ((error, decision),) = await parent_exits.wait_for(1)
    assert error is escalated
    assert decision.restart is True
    assert decision.restart_count == 1
    assert parent.child("sub") is None
    assert info(parent, "sub").is_restarting

    await clock.advance(1)
    await tree.ready(3)  # the new subtree's worker
    assert len(subs) == 2
    new_sub_ref = parent.child("sub")
    assert new_sub_ref is not None
    assert new_sub_ref is not sub_ref
    assert new_sub_ref.is_alive
    assert subs[1].child("worker") is not None
    assert parent_ref.is_alive


async def test_temporary_subtree_is_not_restarted_after_escalation(tree: Tree, clock: FakeClock) -> None:
    parent, parent_ref = await tree.start("parent")
    sub = SubSupervisor(tree)
    sub_ref = await parent.start_child(
        ChildSpec("sub", factory=lambda: sub, restart=RestartType.TEMPORARY, on_exit=recorder("sub", tree.log, clock))
    )
    await tree.crash(sub, "worker")
    await tree.ready(2)
    sub_worker = sub.child("worker")
    assert sub_worker is not None
    sub_worker.tell("crash")
    assert isinstance(await sub_ref.join(), RestartIntensityExceeded)
    exits = await tree.log.exits.wait_for(2)
    assert exits[-1].name == "sub"
    assert isinstance(exits[-1].error, RestartIntensityExceeded)
    assert exits[-1].decision.reason == "temporary"
    assert not parent.has_child("sub")
    assert parent_ref.is_alive


# -- shutdown -----------------------------------------------------------------------------------


async def test_stopping_the_supervisor_stops_children_in_reverse_start_order(tree: Tree) -> None:
    supervisor, ref = await tree.start()
    for name in ("a", "b", "c", "d"):
        await supervisor.start_child(tree.spec(name))
    refs = [supervisor.child(name) for name in ("a", "b", "c", "d")]
    ref.stop()
    assert await ref.join() is None
    assert tree.log.stopped.items == [("d", None), ("c", None), ("b", None), ("a", None)]
    assert all(child is not None and not child.is_alive for child in refs)
    assert supervisor.which_children() == []
    assert tree.log.exits.items == []  # shutting down is not an exit to act on


async def test_a_child_that_ignores_stop_is_killed_after_its_shutdown_timeout(tree: Tree) -> None:
    supervisor, ref = await tree.start()
    await supervisor.start_child(tree.spec("first"))
    stubborn_ref = await supervisor.start_child(tree.spec("stubborn", shutdown_timeout=0.05))
    await supervisor.start_child(tree.spec("last"))
    (stubborn,) = [p for p in tree.log.started.items if p.name == "stubborn"]
    stubborn_ref.tell("hang")
    await stubborn.hanging.wait()
    ref.stop()
    assert await ref.join() is None
    assert tree.log.stopped_names() == ["last", "stubborn", "first"]
    stop_errors = dict(tree.log.stopped.items)
    assert isinstance(stop_errors["stubborn"], asyncio.CancelledError)
    assert stop_errors["first"] is None
    assert stop_errors["last"] is None
    assert isinstance(await stubborn_ref.join(), asyncio.CancelledError)


class Barrier:
    """Every party waits until all have arrived (with a safety timeout)."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.all_here = asyncio.Event()

    async def wait(self) -> bool:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.all_here.set()
        try:
            async with asyncio.timeout(WAIT_TIMEOUT):
                await self.all_here.wait()
        except TimeoutError:
            return False
        return True


class BarrierProbe(Probe):
    def __init__(self, name: str, log: Log, barrier: Barrier, met: list[bool]) -> None:
        super().__init__(name, log)
        self.barrier = barrier
        self.met = met

    async def on_stop(self, error: BaseException | None) -> None:
        self.met.append(await self.barrier.wait())
        await super().on_stop(error)


async def test_unordered_shutdown_stops_all_children_at_once(tree: Tree) -> None:
    supervisor, ref = await tree.start(ordered_shutdown=False)
    barrier = Barrier(3)
    met: list[bool] = []
    for name in ("a", "b", "c"):
        await supervisor.start_child(
            ChildSpec(name, factory=lambda name=name: BarrierProbe(name, tree.log, barrier, met))  # type: ignore[misc]
        )
    ref.stop()
    assert await ref.join() is None
    # each child's on_stop waited for the others': only possible if all were stopping together
    assert met == [True, True, True]
    assert sorted(tree.log.stopped.items, key=lambda item: item[0]) == [("a", None), ("b", None), ("c", None)]


async def test_stop_children_keeps_the_supervisor_running_but_refuses_new_children(tree: Tree) -> None:
    supervisor, ref = await tree.start()
    await supervisor.start_child(tree.spec("a"))
    await supervisor.start_child(tree.spec("b"))
    await supervisor.stop_children()
    assert tree.log.stopped_names() == ["b", "a"]
    assert ref.is_alive
    with pytest.raises(RuntimeError, match="stopping"):
        await supervisor.start_child(tree.spec("c"))


async def test_shutdown_during_a_restart_delay_cancels_the_restart(tree: Tree, clock: FakeClock) -> None:
    supervisor, ref = await tree.start()
    await supervisor.start_child(tree.spec("w"))
    await tree.crash(supervisor, "w")
    assert info(supervisor, "w").is_restarting
    ref.stop()
    assert await ref.join() is None
    await clock.advance(100)
    assert len(tree.log.started) == 1
    assert clock.pending == 0


class GatedProbe(Probe):
    """Its on_start waits for ``gate`` (after announcing it is starting)."""

    def __init__(self, name: str, log: Log, starting: asyncio.Event, gate: asyncio.Event) -> None:
        super().__init__(name, log)
        self.starting = starting
        self.gate = gate

    async def on_start(self) -> None:
        self.starting.set()
        await self.gate.wait()
        await super().on_start()


async def test_shutdown_while_a_restart_is_starting_leaves_no_orphan(tree: Tree, clock: FakeClock) -> None:
    starting = asyncio.Event()
    gate = asyncio.Event()
    instances: list[Probe] = []

    def factory() -> Probe:
        probe = Probe("w", tree.log) if not instances else GatedProbe("w", tree.log, starting, gate)
        instances.append(probe)
        return probe

    supervisor, ref = await tree.start()
    await supervisor.start_child(ChildSpec("w", factory=factory, backoff=STEADY))
    instances[0].ref.tell("crash")
    await tree.log.stopped.wait_for(1)
    await clock.advance(1)
    await starting.wait()  # the restarted instance is inside on_start
    ref.stop()
    assert await ref.join() is None
    gate.set()  # were it still starting, it would now finish and run on, with nobody to stop it
    restarted = instances[1]
    async with asyncio.timeout(WAIT_TIMEOUT):
        await restarted.ref.join()
    assert not restarted.ref.is_alive
    assert supervisor.which_children() == []
    assert len(instances) == 2


async def test_terminate_child_while_its_restart_is_starting_leaves_no_orphan(tree: Tree, clock: FakeClock) -> None:
    starting = asyncio.Event()
    gate = asyncio.Event()
    instances: list[Probe] = []

    def factory() -> Probe:
        probe = Probe("w", tree.log) if not instances else GatedProbe("w", tree.log, starting, gate)
        instances.append(probe)
        return probe

    supervisor, ref = await tree.start()
    await supervisor.start_child(ChildSpec("w", factory=factory, backoff=STEADY))
    instances[0].ref.tell("crash")
    await tree.log.stopped.wait_for(1)
    await clock.advance(1)
    await starting.wait()
    await supervisor.terminate_child("w")
    assert not instances[1].ref.is_alive  # terminate_child returned only once it was gone
    assert not supervisor.has_child("w")
    gate.set()
    assert isinstance(await instances[1].ref.join(), asyncio.CancelledError)
    assert ref.is_alive
    await supervisor.start_child(tree.spec("w"))  # the name is free again


# -- one_for_all ---------------------------------------------------------------------------------


async def test_one_for_all_restarts_every_child_with_new_instances(tree: Tree, clock: FakeClock) -> None:
    supervisor, _ = await tree.start(strategy=Strategy.ONE_FOR_ALL)
    for name in ("a", "b", "c"):
        await supervisor.start_child(tree.spec(name))
    old_refs = {name: supervisor.child(name) for name in ("a", "b", "c")}
    old_probes = list(tree.log.started.items)

    exit_ = await tree.crash(supervisor, "b")
    assert exit_.decision.restart
    # the others were stopped (in reverse order) before the crashed child's restart was scheduled
    assert tree.log.stopped.items[0][0] == "b"
    assert isinstance(tree.log.stopped.items[0][1], Boom)
    assert tree.log.stopped.items[1:] == [("c", None), ("a", None)]
    assert all(supervisor.child(name) is None for name in ("a", "b", "c"))
    assert all(ref is not None and not ref.is_alive for ref in old_refs.values())

    await clock.advance(1)
    await tree.ready(6)
    new_probes = tree.log.started.items[3:]
    assert [p.name for p in new_probes] == ["a", "b", "c"]  # started again in order
    assert not set(map(id, new_probes)) & set(map(id, old_probes))
    for name in ("a", "b", "c"):
        ref = supervisor.child(name)
        assert ref is not None
        assert ref.is_alive
        assert ref is not old_refs[name]
    restarted = dict(tree.log.restarted.items)
    assert restarted["b"] is exit_.error
    assert restarted["a"] is None
    assert restarted["c"] is None
    assert clock.sleeps == [1.0]
    assert info(supervisor, "b").restarts == 1
    assert info(supervisor, "a").restarts == 0


async def test_one_for_one_leaves_the_other_children_alone(tree: Tree, clock: FakeClock) -> None:
    supervisor, _ = await tree.start()
    for name in ("a", "b", "c"):
        await supervisor.start_child(tree.spec(name))
    a, c = supervisor.child("a"), supervisor.child("c")
    await tree.crash(supervisor, "b")
    await clock.advance(1)
    await tree.ready(4)
    assert supervisor.child("a") is a
    assert supervisor.child("c") is c
    assert tree.log.stopped_names() == ["b"]


# -- start_child, terminate_child, which_children -----------------------------------------------


async def test_start_child_with_a_duplicate_name_is_refused(tree: Tree) -> None:
    supervisor, _ = await tree.start()
    first = await supervisor.start_child(tree.spec("w"))
    with pytest.raises(ValueError, match="'w'"):
        await supervisor.start_child(tree.spec("w"))
    assert supervisor.child("w") is first
    assert len(tree.log.started) == 1


async def test_start_child_whose_on_start_fails_raises_and_keeps_nothing(tree: Tree, clock: FakeClock) -> None:
    supervisor, ref = await tree.start()
    error = Boom("no snapshot")
    with pytest.raises(Boom) as caught:
        await supervisor.start_child(ChildSpec("bad", factory=lambda: Probe("bad", tree.log, start_error=error)))
    assert caught.value is error
    assert not supervisor.has_child("bad")
    assert supervisor.which_children() == []
    await clock.advance(100)
    assert clock.sleeps == []
    assert ref.is_alive
    # the name is free again
    await supervisor.start_child(tree.spec("bad"))
    assert supervisor.child("bad") is not None


async def test_terminate_child_stops_and_forgets_it(tree: Tree, clock: FakeClock) -> None:
    supervisor, _ = await tree.start()
    await supervisor.start_child(tree.spec("a"))
    b = await supervisor.start_child(tree.spec("b", restart=RestartType.PERMANENT))
    await supervisor.terminate_child("b")
    assert not b.is_alive
    assert tree.log.stopped.items == [("b", None)]
    assert not supervisor.has_child("b")
    assert [c.name for c in supervisor.which_children()] == ["a"]
    await clock.advance(100)
    assert len(tree.log.started) == 2  # no restart
    assert clock.sleeps == []
    assert tree.log.exits.items == []
    await supervisor.terminate_child("b")  # unknown by now: nothing happens
    await supervisor.terminate_child("never-existed")


async def test_terminate_child_during_its_restart_delay_cancels_the_restart(tree: Tree, clock: FakeClock) -> None:
    supervisor, _ = await tree.start()
    await supervisor.start_child(tree.spec("w"))
    await tree.crash(supervisor, "w")
    await supervisor.terminate_child("w")
    assert not supervisor.has_child("w")
    await clock.advance(100)
    assert len(tree.log.started) == 1


async def test_which_children_reflects_state(tree: Tree, clock: FakeClock) -> None:
    supervisor, _ = await tree.start()
    assert supervisor.which_children() == []
    a = await supervisor.start_child(tree.spec("a", restart=RestartType.PERMANENT))
    b = await supervisor.start_child(tree.spec("b", restart=RestartType.TRANSIENT, restarts=4))
    assert supervisor.which_children() == [
        ChildInfo("a", a, RestartType.PERMANENT, 0, False),
        ChildInfo("b", b, RestartType.TRANSIENT, 4, False),
    ]
    await tree.crash(supervisor, "a")
    assert supervisor.which_children() == [
        ChildInfo("a", None, RestartType.PERMANENT, 1, True),
        ChildInfo("b", b, RestartType.TRANSIENT, 4, False),
    ]
    assert supervisor.has_child("a")
    assert supervisor.child("a") is None
    await clock.advance(1)
    await tree.ready(3)
    new_a = supervisor.child("a")
    assert new_a is not None
    assert supervisor.which_children() == [
        ChildInfo("a", new_a, RestartType.PERMANENT, 1, False),
        ChildInfo("b", b, RestartType.TRANSIENT, 4, False),
    ]


# -- restart failures ----------------------------------------------------------------------------


async def test_a_restart_that_fails_in_on_start_counts_as_another_crash(tree: Tree, clock: FakeClock) -> None:
    backoff = Backoff(initial_delay=1, multiplier=2, max_delay=100, jitter=0)
    start_error = Boom("cannot load")
    count = itertools.count()

    def factory() -> Probe:
        return Probe("w", tree.log, start_error=start_error if next(count) in (1, 2) else None)

    supervisor, ref = await tree.start()
    await supervisor.start_child(
        ChildSpec("w", factory=factory, backoff=backoff, on_exit=recorder("w", tree.log, clock))
    )
    crash = await tree.crash(supervisor, "w")
    assert crash.decision.delay == 1.0
    await clock.advance(1)  # restart 1 fails in on_start
    second = (await tree.log.exits.wait_for(2))[1]
    assert second.error is start_error
    assert second.decision.restart is True
    assert second.decision.restart_count == 2
    assert second.decision.delay == 2.0
    assert supervisor.child("w") is None
    assert info(supervisor, "w").is_restarting
    await clock.advance(2)  # restart 2 fails too
    third = (await tree.log.exits.wait_for(3))[2]
    assert third.error is start_error
    assert third.decision.restart_count == 3
    assert third.decision.delay == 4.0
    await clock.advance(3.9)
    assert len(tree.log.started) == 1
    await clock.advance(0.1)  # restart 3 succeeds
    await tree.ready(2)
    assert supervisor.child("w") is not None
    assert info(supervisor, "w").restarts == 3
    assert clock.sleeps == [1.0, 2.0, 4.0]
    # each restart was told what ended the previous attempt
    assert [error for _, error in tree.log.restarted.items] == [crash.error, start_error, start_error]
    assert ref.is_alive


async def test_restarts_failing_in_on_start_still_obey_max_restarts(tree: Tree, clock: FakeClock) -> None:
    start_error = Boom("cannot load")
    count = itertools.count()

    def factory() -> Probe:
        return Probe("w", tree.log, start_error=start_error if next(count) > 0 else None)

    supervisor, _ = await tree.start()
    await supervisor.start_child(
        ChildSpec("w", factory=factory, backoff=STEADY, max_restarts=2, on_exit=recorder("w", tree.log, clock))
    )
    await tree.crash(supervisor, "w")
    await clock.advance(1)
    await tree.log.exits.wait_for(2)
    await clock.advance(1)
    exits = await tree.log.exits.wait_for(3)
    assert exits[2].error is start_error
    assert exits[2].decision == RestartDecision(False, 0.0, 2, "max restarts")
    assert not supervisor.has_child("w")


# -- decide() is pure ----------------------------------------------------------------------------


def test_decide_is_pure_and_follows_the_spec() -> None:
    supervisor = Supervisor(random=lambda: 0.5)
    spec = ChildSpec("w", factory=lambda: Probe("w", Log()), backoff=Backoff(initial_delay=1, jitter=0.1))
    error = Boom("x")
    assert supervisor.decide(spec, 0, error, 0.0) == RestartDecision(True, pytest.approx(1.05), 1, "crashed")  # type: ignore[arg-type]
    assert supervisor.decide(spec, 0, error, 0.0) == supervisor.decide(spec, 0, error, 0.0)
    assert supervisor.decide(spec, 2, error, 0.0).restart_count == 3
    transient = ChildSpec("w", factory=spec.factory, restart=RestartType.TRANSIENT)
    assert supervisor.decide(transient, 0, None, 0.0).reason == "normal exit"
    assert supervisor.decide(transient, 0, error, 0.0).restart
