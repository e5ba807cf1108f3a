"""Actors: readiness on spawn, tell/ask, ordering, the control lane, stop/kill and restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, ClassVar, TypeVar

import pytest

from durapod.errors import AskTimeout, DurapodError, MailboxFull
from durapod.lowlevel import Actor, ActorRef, ControlMessage, OverflowPolicy, Stop, spawn

T = TypeVar("T")

pytestmark = pytest.mark.timeout(10)  # a hang fails fast instead of after the global 120 s


class Boom(Exception):
    """The failure the test actors raise."""


class Flush(ControlMessage):
    """A control message the recorder handles like any other."""

    __slots__ = ()


class Recorder(Actor[Any]):
    """Records every hook and message; ``"block"`` waits on ``gate``, ``"crash"`` raises ``Boom``."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.gate = asyncio.Event()
        self.blocked = asyncio.Event()
        self.stopped = asyncio.Event()
        self.active = 0
        self.max_active = 0
        self.stop_error: BaseException | None = None

    async def on_restart(self, error: BaseException | None) -> None:
        self.events.append(("restart", error))

    async def on_start(self) -> None:
        self.events.append(("start",))

    async def receive(self, message: Any) -> Any:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            self.events.append(message)
            if message == "block":
                self.blocked.set()
                await self.gate.wait()
            if message == "crash":
                raise Boom("crash requested")
            return ("echo", message)
        finally:
            self.active -= 1

    async def on_stop(self, error: BaseException | None) -> None:
        self.events.append(("stop", error))
        self.stop_error = error
        self.stopped.set()


async def block(ref: ActorRef[Any], actor: Recorder) -> None:
    """Make ``actor`` busy on a ``"block"`` message until ``actor.gate`` is set."""
    ref.tell("block")
    await actor.blocked.wait()


async def started(coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run ``coroutine`` in a task and return once it has run up to its first real suspension."""
    entered = asyncio.Event()

    async def run() -> T:
        entered.set()
        return await coroutine  # runs synchronously up to its first wait

    task = asyncio.create_task(run())
    await entered.wait()
    return task


# -- construction and spawn ---------------------------------------------------------------------


async def test_actor_ref_cannot_be_built_by_users() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    with pytest.raises(TypeError, match="no public constructor"):
        ActorRef("x", ref._mailbox)
    ref.stop()
    await ref.join()


def test_ref_before_spawn_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="spawn"):
        _ = Recorder().ref


class SlowLoader(Actor[str]):
    """Loads its state in several steps in ``on_start``."""

    def __init__(self) -> None:
        self.state: str | None = None
        self.loaded = asyncio.Event()
        self.release = asyncio.Event()

    async def on_start(self) -> None:
        self.loaded.set()
        await self.release.wait()
        self.state = "loaded"

    async def receive(self, message: str) -> Any:
        return self.state


async def test_spawn_returns_only_after_on_start_finished() -> None:
    actor = SlowLoader()
    spawning = asyncio.create_task(spawn(actor, name="loader"))
    await actor.loaded.wait()
    assert not spawning.done()
    assert actor.state is None
    actor.release.set()
    ref = await spawning
    assert actor.state == "loaded"  # visible at once, without a message round trip
    assert ref.is_alive
    assert ref.name == "loader"
    assert actor.ref is ref
    assert await ref.ask("state?", timeout=1.0) == "loaded"
    ref.stop()
    assert await ref.join() is None


async def test_default_name_is_the_class_name() -> None:
    ref = await spawn(Recorder())
    assert ref.name == "Recorder"
    assert "Recorder" in repr(ref)
    assert "alive" in repr(ref)
    ref.stop()
    await ref.join()
    assert "stopped" in repr(ref)


class FailsToStart(Actor[str]):
    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.stopped = False
        self.received: list[str] = []

    async def on_start(self) -> None:
        raise self.error

    async def receive(self, message: str) -> None:
        self.received.append(message)

    async def on_stop(self, error: BaseException | None) -> None:
        self.stopped = True


async def test_on_start_failure_fails_spawn_with_that_exception() -> None:
    error = Boom("cannot load snapshot")
    actor = FailsToStart(error)
    with pytest.raises(Boom) as caught:
        await spawn(actor, name="bad")
    assert caught.value is error
    ref = actor.ref
    assert not ref.is_alive
    assert await ref.join() is error
    assert ref.exit_reason is error
    assert actor.stopped is False  # on_stop only runs for an actor that started
    assert ref.tell("hello") is False
    assert actor.received == []


class FailsToRestart(Recorder):
    async def on_restart(self, error: BaseException | None) -> None:
        raise Boom("restart hook failed")


async def test_on_restart_failure_fails_spawn() -> None:
    actor = FailsToRestart()
    with pytest.raises(Boom, match="restart hook failed"):
        await spawn(actor, restart=True, restarted_after=ValueError("x"))
    assert actor.events == []  # on_start never ran
    assert not actor.ref.is_alive


async def test_on_restart_runs_before_on_start_with_the_error() -> None:
    previous = Boom("previous instance crashed")
    actor = Recorder()
    ref = await spawn(actor, restart=True, restarted_after=previous)
    assert actor.events == [("restart", previous), ("start",)]
    assert actor.events[0][1] is previous
    ref.stop()
    await ref.join()


async def test_on_restart_not_called_on_a_first_start() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    assert actor.events == [("start",)]
    ref.stop()
    await ref.join()


# -- tell and ask --------------------------------------------------------------------------------


async def test_tell_does_not_block_and_messages_run_in_order_one_at_a_time() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    await block(ref, actor)
    # tell is synchronous: it queues and returns while the actor is busy
    results = [ref.tell(i) for i in range(5)]
    assert results == [True] * 5
    assert ref.statistics().queued == 5
    assert actor.events == [("start",), "block"]  # nothing else started while "block" runs
    actor.gate.set()
    assert await ref.ask("last", timeout=1.0) == ("echo", "last")
    assert actor.events == [("start",), "block", 0, 1, 2, 3, 4, "last"]
    assert actor.max_active == 1
    ref.stop()
    await ref.join()


async def test_ask_returns_the_value_of_receive() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    assert await ref.ask("ping", timeout=1.0) == ("echo", "ping")
    assert await ref.ask(42, timeout=1.0) == ("echo", 42)
    ref.stop()
    await ref.join()


async def test_ask_without_answer_raises_ask_timeout() -> None:
    actor = Recorder()
    ref = await spawn(actor, name="silent")
    with pytest.raises(AskTimeout) as caught:
        await ref.ask("block", timeout=0.05)
    assert isinstance(caught.value, DurapodError)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.actor == "silent"
    assert caught.value.timeout == 0.05
    assert "'silent'" in str(caught.value)
    assert ref.is_alive  # a slow answer is not a crash
    ref.kill()
    await ref.join()


async def test_ask_whose_receive_raises_reraises_and_crashes_the_actor() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    with pytest.raises(Boom, match="crash requested") as caught:
        await ref.ask("crash", timeout=1.0)
    error = await ref.join()
    assert error is caught.value
    assert not ref.is_alive
    assert ref.exit_reason is error
    assert actor.stop_error is error


async def test_crash_on_tell_ends_the_actor_with_the_error() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    ref.tell("crash")
    ref.tell("after")  # never handled
    error = await ref.join()
    assert isinstance(error, Boom)
    assert actor.stop_error is error
    assert "after" not in actor.events


async def test_asks_queued_behind_a_stop_get_ask_timeout() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    await block(ref, actor)
    pending = await started(ref.ask("queued", timeout=5.0))
    assert ref.statistics().queued == 1
    ref.stop()
    actor.gate.set()
    with pytest.raises(AskTimeout):
        await pending
    assert await ref.join() is None
    assert "queued" not in actor.events


async def test_ask_after_stop_raises_ask_timeout() -> None:
    ref = await spawn(Recorder())
    ref.stop()
    await ref.join()
    with pytest.raises(AskTimeout):
        await ref.ask("anyone?", timeout=1.0)


# -- control lane --------------------------------------------------------------------------------


async def test_control_messages_overtake_queued_ordinary_messages() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    await block(ref, actor)
    ref.tell("a")
    ref.tell("b")
    flush = Flush()
    assert ref.tell(flush) is True
    stats = ref.statistics()
    assert (stats.queued, stats.queued_control) == (2, 1)
    actor.gate.set()
    await ref.ask("end", timeout=1.0)
    assert actor.events[1:] == ["block", flush, "a", "b", "end"]
    ref.stop()
    await ref.join()


class Tiny(Recorder):
    mailbox_capacity: ClassVar[int] = 2
    overflow_policy: ClassVar[OverflowPolicy] = OverflowPolicy.REJECT


async def test_control_messages_get_through_a_full_mailbox() -> None:
    actor = Tiny()
    ref = await spawn(actor)
    await block(ref, actor)
    ref.tell("a")
    ref.tell("b")
    with pytest.raises(MailboxFull):
        ref.tell("c")
    controls = [Flush() for _ in range(20)]
    assert all(ref.tell(control) for control in controls)
    ref.stop()  # also goes through
    actor.gate.set()
    assert await ref.join() is None
    assert actor.events[2 : 2 + 20] == controls


async def test_stop_overtakes_queued_ordinary_messages() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    await block(ref, actor)
    ref.tell("a")
    ref.stop()
    actor.gate.set()
    assert await ref.join() is None
    assert actor.events == [("start",), "block", ("stop", None)]


async def test_telling_stop_is_the_same_as_calling_stop() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    ref.tell(Stop())
    assert await ref.join() is None
    assert actor.events == [("start",), ("stop", None)]


async def test_asking_stop_answers_none_and_stops() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    assert await ref.ask(Stop(), timeout=1.0) is None
    assert await ref.join() is None
    assert actor.events == [("start",), ("stop", None)]


# -- stop, kill, join ----------------------------------------------------------------------------


async def test_stop_runs_on_stop_with_none_and_join_returns_none() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    ref.tell("work")
    ref.stop()
    assert await ref.join() is None
    assert actor.events[-1] == ("stop", None)
    assert actor.stopped.is_set()
    assert not ref.is_alive
    assert ref.exit_reason is None
    # join can be called again (and by several waiters)
    assert list(await asyncio.gather(ref.join(), ref.join())) == [None, None]


async def test_stop_twice_is_harmless() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    ref.stop()
    ref.stop()
    assert await ref.join() is None
    ref.stop()  # after the end: nothing happens
    assert [e for e in actor.events if isinstance(e, tuple) and e[0] == "stop"] == [("stop", None)]


async def test_kill_cancels_and_on_stop_gets_the_cancelled_error() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    await block(ref, actor)
    ref.kill()
    error = await ref.join()
    assert isinstance(error, asyncio.CancelledError)
    assert actor.stop_error is error
    assert not ref.is_alive
    assert ref._task is not None
    assert ref._task.cancelled()  # the task itself ends cancelled: nothing swallowed the cancel


async def test_kill_an_idle_actor() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    ref.kill()
    assert isinstance(await ref.join(), asyncio.CancelledError)
    assert isinstance(actor.stop_error, asyncio.CancelledError)
    ref.kill()  # a second kill of a dead actor does nothing


async def test_join_is_not_cancelled_by_cancelling_a_waiter() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    waiter = await started(ref.join())
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert ref.is_alive  # cancelling a joiner does not touch the actor
    ref.stop()
    assert await ref.join() is None


class FailingStop(Recorder):
    async def on_stop(self, error: BaseException | None) -> None:
        self.stopped.set()
        raise Boom("on_stop failed")


async def test_failing_on_stop_still_ends_the_actor() -> None:
    actor = FailingStop()
    ref = await spawn(actor)
    ref.stop()
    assert await ref.join() is None
    assert actor.stopped.is_set()


async def test_tell_after_stop_returns_false_and_does_not_raise() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    ref.stop()
    await ref.join()
    assert ref.tell("late") is False
    assert ref.tell(Flush()) is False
    assert "late" not in actor.events


async def test_exit_callback_receives_ref_and_error() -> None:
    actor = Recorder()
    ref = await spawn(actor)
    seen: list[tuple[ActorRef[Any], BaseException | None]] = []
    done = asyncio.Event()

    def callback(who: ActorRef[Any], error: BaseException | None) -> None:
        seen.append((who, error))
        done.set()

    ref.add_exit_callback(callback)
    ref.tell("crash")
    await done.wait()
    assert len(seen) == 1
    assert seen[0][0] is ref
    assert isinstance(seen[0][1], Boom)


# -- statistics ----------------------------------------------------------------------------------


class Bounded(Recorder):
    mailbox_capacity: ClassVar[int] = 3
    overflow_policy: ClassVar[OverflowPolicy] = OverflowPolicy.DROP_NEWEST


async def test_statistics_through_the_ref() -> None:
    actor = Bounded()
    ref = await spawn(actor)
    stats = ref.statistics()
    assert stats.capacity == 3
    assert stats.overflow_policy is OverflowPolicy.DROP_NEWEST
    assert (stats.queued, stats.queued_control, stats.received, stats.dropped, stats.rejected) == (0, 0, 0, 0, 0)
    await block(ref, actor)
    assert [ref.tell(i) for i in range(5)] == [True, True, True, False, False]
    stats_flush = Flush()
    ref.tell(stats_flush)
    stats = ref.statistics()
    assert stats.queued == 3
    assert stats.queued_control == 1
    assert stats.received == 1 + 3 + 1  # "block", three ordinary, one control
    assert stats.dropped == 2
    assert stats.rejected == 0
    ref.stop()
    actor.gate.set()
    await ref.join()
    # the control lane (Flush, then Stop) overtook the queued ordinary messages
    assert actor.events[2:] == [stats_flush, ("stop", None)]


async def test_default_mailbox_is_bounded_with_reject() -> None:
    ref = await spawn(Recorder())
    stats = ref.statistics()
    assert stats.capacity == 1024
    assert stats.overflow_policy is OverflowPolicy.REJECT
    ref.stop()
    await ref.join()
