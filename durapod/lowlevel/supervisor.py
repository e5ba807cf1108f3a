"""Supervisor: an actor that starts children, restarts them with backoff, and escalates when they flap."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from durapod._log import get_logger
from durapod.errors import RestartIntensityExceeded
from durapod.lowlevel.actor import Actor, ActorRef, spawn
from durapod.lowlevel.clock import SYSTEM_CLOCK, Clock
from durapod.lowlevel.policy import ChildSpec, RestartDecision, RestartType, Strategy

__all__ = ["ChildInfo", "Supervisor"]

_log = get_logger("durapod.supervisor")


@dataclass(slots=True)
class _Child:
    spec: ChildSpec
    ref: ActorRef[Any] | None
    restarts: int
    started_at: float
    restarting: asyncio.Task[None] | None = None
    recorded: asyncio.Event | None = None  # set once on_exit has recorded the last exit


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """A snapshot of one child: its name, reference (None while it waits to restart) and restarts."""

    name: str
    ref: ActorRef[Any] | None
    restart: RestartType
    restarts: int
    is_restarting: bool


@dataclass(frozen=True, slots=True)
class _ChildExited:
    name: str
    ref: ActorRef[Any]
    error: BaseException | None


@dataclass(slots=True)
class _Restarts:
    """Restart times within the intensity window."""

    limit: int | None
    within: float
    times: deque[float] = field(default_factory=deque)

    def record(self, now: float) -> bool:
        """Record a restart at ``now``; True if the intensity is exceeded."""
        if self.limit is None:
            return False
        self.times.append(now)
        while self.times and self.times[0] < now - self.within:
            self.times.popleft()
        return len(self.times) > self.limit


class Supervisor(Actor[Any]):
    """Starts children, restarts them by their :class:`ChildSpec`, stops them in reverse order.

    Args:
        name: for logs and errors.
        strategy: one_for_one (default) or one_for_all.
        max_restarts: restart intensity: more than this many restarts within ``within`` seconds stops
            every child and crashes the supervisor with :class:`RestartIntensityExceeded`, which its
            own parent then handles (None: no limit).
        within: the intensity window in seconds.
        clock: what restart delays and the intensity window are measured on (a ``FakeClock`` in tests).
        random: the source of jitter, uniform in [0, 1).
        ordered_shutdown: stop children one by one in reverse start order (True), or all at once (for
            many independent children such as job actors).

    Example:
        >>> supervisor = Supervisor("root", max_restarts=3, within=5.0)
    """

    mailbox_capacity = 1 << 20

    def __init__(
        self,
        name: str = "supervisor",
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int | None = 3,
        within: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
        random: Callable[[], float] = random.random,
        ordered_shutdown: bool = True,
    ) -> None:
        if max_restarts is not None and max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0 or None, got {max_restarts!r}")
        if within <= 0:
            raise ValueError(f"within must be > 0 seconds, got {within!r}")
        self.name = name
        self.strategy = Strategy(strategy)
        self.clock = clock
        self._random = random
        self._ordered_shutdown = ordered_shutdown
        self._children: dict[str, _Child] = {}
        self._intensity = _Restarts(max_restarts, within)
        self._stopping = False
        self._exit_handled = asyncio.Event()  # set (and replaced) each time a child's exit is handled
        self._log = _log.bind(supervisor=name)

    # -- public API ------------------------------------------------------------------------------

    async def start_child(self, spec: ChildSpec) -> ActorRef[Any]:
        """Start a child and return its reference once it is ready.

        Raises:
            ValueError: a child of that name exists.
            RuntimeError: the supervisor is stopping.
            Exception: what the child's ``on_start`` raised (the child is then not kept).
        """
        if self._stopping:
            raise RuntimeError(f"supervisor {self.name!r} is stopping")
        if spec.name in self._children:
            raise ValueError(f"supervisor {self.name!r} already has a child named {spec.name!r}")
        child = _Child(spec, None, spec.restarts, self.clock.monotonic())
        self._children[spec.name] = child
        try:
            child.ref = await self._spawn(spec, restart=False, error=None)
        except BaseException:
            self._children.pop(spec.name, None)
            raise
        return child.ref

    def child(self, name: str) -> ActorRef[Any] | None:
        """The running child of that name, or None (also while it waits to restart)."""
        entry = self._children.get(name)
        return entry.ref if entry is not None else None

    async def settle(self, name: str) -> None:
        """Wait until the supervisor has handled the exit of the named child, if it has stopped.

        Between a child's stop and the supervisor handling it (deciding on a restart, recording the exit),
        ``child(name)`` still returns the stopped reference; callers that act on a child's state wait here.
        """
        while (entry := self._children.get(name)) is not None and entry.ref is not None and not entry.ref.is_alive:
            await self._exit_handled.wait()

    def has_child(self, name: str) -> bool:
        """True while a child of that name is running or waiting to restart."""
        return name in self._children

    def which_children(self) -> list[ChildInfo]:
        """Every child, in start order."""
        return [
            ChildInfo(name, c.ref, c.spec.restart, c.restarts, c.restarting is not None)
            for name, c in self._children.items()
        ]

    async def terminate_child(self, name: str) -> None:
        """Stop a child (gracefully, then by cancellation after its shutdown timeout) and forget it."""
        entry = self._children.pop(name, None)
        if entry is None:
            return
        await self._shutdown_child(entry)

    async def stop_children(self) -> None:
        """Stop every child and stop restarting them (the supervisor itself keeps running)."""
        self._stopping = True
        entries = list(self._children.values())
        self._children.clear()
        await self._shutdown_all(entries)

    # -- actor hooks -----------------------------------------------------------------------------

    async def receive(self, message: Any) -> Any:
        if isinstance(message, _ChildExited):
            try:
                await self._child_exited(message)
            finally:
                self._signal_exit_handled()
            return None
        raise TypeError(f"supervisor {self.name!r} got an unexpected message {message!r}")

    async def on_stop(self, error: BaseException | None) -> None:
        await self.stop_children()

    # -- internals -------------------------------------------------------------------------------

    async def _spawn(self, spec: ChildSpec, *, restart: bool, error: BaseException | None) -> ActorRef[Any]:
        ref = await spawn(spec.factory(), name=spec.name, restart=restart, restarted_after=error)
        ref.add_exit_callback(self._on_child_exit)
        return ref

    def _on_child_exit(self, ref: ActorRef[Any], error: BaseException | None) -> None:
        if self._stopping:
            self._signal_exit_handled()
            return
        if error is None:
            # A normal stop of a transient or temporary child only ends it: no need for a message.
            entry = self._children.get(ref.name)
            if entry is not None and entry.ref is ref and entry.spec.restart is not RestartType.PERMANENT:
                del self._children[ref.name]
                self._signal_exit_handled()
                return
        self.ref.tell(_ChildExited(ref.name, ref, error))

    def _signal_exit_handled(self) -> None:
        handled, self._exit_handled = self._exit_handled, asyncio.Event()
        handled.set()

    def decide(self, spec: ChildSpec, restarts: int, error: BaseException | None, ran_for: float) -> RestartDecision:
        """The restart decision for a child that stopped with ``error`` after running ``ran_for`` seconds.

        ``restarts`` is how many restarts the child has used. Pure: it records nothing.
        """
        if self._stopping:
            return RestartDecision(False, 0.0, restarts, "shutting down")
        if spec.restart is RestartType.TEMPORARY:
            return RestartDecision(False, 0.0, restarts, "temporary")
        if error is None and spec.restart is RestartType.TRANSIENT:
            return RestartDecision(False, 0.0, restarts, "normal exit")
        if error is not None and spec.should_restart is not None and not spec.should_restart(error):
            return RestartDecision(False, 0.0, restarts, "not retryable")
        if spec.backoff.reset_after is not None and ran_for >= spec.backoff.reset_after:
            restarts = 0
        if spec.max_restarts is not None and restarts >= spec.max_restarts:
            return RestartDecision(False, 0.0, restarts, "max restarts")
        count = restarts + 1
        return RestartDecision(True, spec.backoff.delay(count, self._random()), count, "crashed")

    async def _child_exited(self, message: _ChildExited) -> None:
        entry = self._children.get(message.name)
        if entry is None or entry.ref is not message.ref:
            return  # a child we already terminated or replaced
        ran_for = self.clock.monotonic() - entry.started_at
        decision = self.decide(entry.spec, entry.restarts, message.error, ran_for)
        if not decision.restart:
            del self._children[message.name]
            if message.error is not None:
                self._log.warning("child failed", child=message.name, reason=decision.reason, error=repr(message.error))
            if entry.spec.on_exit is not None and message.error is not None:
                await _call_on_exit(entry.spec, message.error, decision, self._log)
            return
        if self._intensity.record(self.clock.monotonic()):
            self._log.error("restart intensity exceeded", child=message.name, restarts=len(self._intensity.times))
            await self.stop_children()
            raise RestartIntensityExceeded(self.name, len(self._intensity.times), self._intensity.within)
        self._log.info("restarting child", child=message.name, restart=decision.restart_count, delay=decision.delay)
        entry.ref = None
        entry.restarts = decision.restart_count
        if self.strategy is Strategy.ONE_FOR_ALL:
            others = [c for name, c in self._children.items() if name != message.name]
            await self._shutdown_all(others)
        entry.recorded = asyncio.Event()  # created now: a shutdown before the task runs still waits for it
        entry.restarting = asyncio.create_task(self._restart_later(entry, message.error, decision))

    async def _restart_later(self, entry: _Child, error: BaseException | None, decision: RestartDecision) -> None:
        try:
            await _call_on_exit(entry.spec, error, decision, self._log)
        finally:
            if entry.recorded is not None:
                entry.recorded.set()
        await self.clock.sleep(decision.delay)
        if self._stopping or self._children.get(entry.spec.name) is not entry:
            return
        to_start = [entry]
        if self.strategy is Strategy.ONE_FOR_ALL:
            to_start = [c for c in self._children.values() if c.ref is None]
        # ``entry.restarting`` stays set until the spawns are done, so that a shutdown meanwhile cancels
        # (and waits for) a child still in on_start instead of leaving it running unsupervised.
        try:
            for child in to_start:
                child.started_at = self.clock.monotonic()
                try:
                    child.ref = await self._spawn(child.spec, restart=True, error=error if child is entry else None)
                except Exception as exc:
                    # A child that cannot even start counts as one more crash of that child.
                    self._log.warning("child failed to restart", child=child.spec.name, error=repr(exc))
                    placeholder = _DeadRef(child.spec.name, exc)
                    child.ref = placeholder.ref
                    self.ref.tell(_ChildExited(child.spec.name, placeholder.ref, exc))
        finally:
            if entry.restarting is asyncio.current_task():
                entry.restarting = None

    async def _shutdown_all(self, entries: list[_Child]) -> None:
        if self._ordered_shutdown:
            for entry in reversed(entries):
                await self._shutdown_child(entry)
        else:
            await asyncio.gather(*(self._shutdown_child(entry) for entry in entries))

    async def _shutdown_child(self, entry: _Child) -> None:
        restarting = entry.restarting
        if restarting is not None:
            if entry.recorded is not None and restarting is not asyncio.current_task():
                # let on_exit finish recording the last exit (a job's retry timer): never leave it half-done
                await entry.recorded.wait()
            entry.restarting = None
            restarting.cancel()
            if restarting is not asyncio.current_task():
                await asyncio.wait([restarting])  # a child it was starting is killed before we go on
        ref = entry.ref
        entry.ref = None
        if ref is None or not ref.is_alive:
            return
        ref.stop()
        try:
            async with asyncio.timeout(entry.spec.shutdown_timeout):
                await ref.join()
        except TimeoutError:
            self._log.warning("child did not stop in time; cancelling it", child=entry.spec.name)
            ref.kill()
            await ref.join()


class _DeadRef:
    """Stands in for a child whose restart failed in ``on_start``, so its failure is handled as a crash."""

    def __init__(self, name: str, error: BaseException) -> None:
        self.ref: ActorRef[Any] = _dead_ref(name)
        self.ref._exit.set_result(error)


def _dead_ref(name: str) -> ActorRef[Any]:
    from durapod.lowlevel.mailbox import Mailbox, OverflowPolicy

    mailbox: Any = Mailbox._create(name, 1, OverflowPolicy.REJECT)
    mailbox.close()
    return ActorRef._create(name, mailbox)


async def _call_on_exit(spec: ChildSpec, error: BaseException | None, decision: RestartDecision, log: Any) -> None:
    if spec.on_exit is None:
        return
    try:
        await spec.on_exit(error, decision)
    except Exception as exc:
        with contextlib.suppress(Exception):  # a broken log sink must not stop the restart
            log.exception("child on_exit hook failed", child=spec.name, error=repr(exc))
