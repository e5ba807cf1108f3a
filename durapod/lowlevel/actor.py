"""Actors: one task, one mailbox, messages handled one at a time.

An :class:`Actor` subclass defines ``receive`` and, optionally, the lifecycle hooks ``on_start``,
``on_restart`` and ``on_stop``. :func:`spawn` runs it and returns an :class:`ActorRef` once ``on_start``
has finished (a readiness handshake, like anyio's ``TaskGroup.start``), so an actor that cannot load its
state fails the caller instead of a background task.

Messages that subclass :class:`ControlMessage` travel in the mailbox's control lane, which is never full
and is served first.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, final

from durapod._log import get_logger
from durapod._util import NoPublicConstructor
from durapod.errors import AskTimeout
from durapod.lowlevel.mailbox import Mailbox, MailboxClosed, MailboxStatistics, OverflowPolicy

__all__ = ["Actor", "ActorRef", "ControlMessage", "Stop", "spawn"]

M = TypeVar("M")

_log = get_logger("durapod.actors")


class ControlMessage:
    """Base class of messages that go in the control lane (pause, resume, cancel, stop)."""

    __slots__ = ()


@final
class Stop(ControlMessage):
    """Ask an actor to stop after the message it is handling. Its ``on_stop`` runs with no error."""

    __slots__ = ()


_STOP = Stop()


@dataclass(slots=True)
class _Ask:
    message: Any
    reply: asyncio.Future[Any]


class Actor(Generic[M]):
    """Base class of actors.

    Class attributes set the mailbox: ``mailbox_capacity`` (default 1024) and ``overflow_policy``
    (default ``reject``). An exception escaping ``receive`` (or ``on_start``) crashes the actor: its
    ``ActorRef.join()`` raises it, and a supervisor decides whether to restart a fresh instance.
    """

    mailbox_capacity: ClassVar[int] = 1024
    overflow_policy: ClassVar[OverflowPolicy] = OverflowPolicy.REJECT

    _ref: ActorRef[M] | None = None

    @property
    def ref(self) -> ActorRef[M]:
        """This actor's own reference (available from ``on_start`` on)."""
        if self._ref is None:
            raise RuntimeError(f"{type(self).__name__} is not running; spawn() it first")
        return self._ref

    async def on_start(self) -> None:
        """Load state before the first message. ``spawn`` returns once this has finished."""

    async def on_restart(self, error: BaseException | None) -> None:
        """Called on the fresh instance a supervisor restarts, before ``on_start``."""

    async def receive(self, message: M) -> Any:
        """Handle one message. The return value answers an ``ask``."""
        raise NotImplementedError

    async def on_stop(self, error: BaseException | None) -> None:
        """Called once the actor stops; ``error`` is what crashed it, or None for a normal stop."""


@final
class ActorRef(Generic[M], metaclass=NoPublicConstructor):
    """The handle to a running actor: send it messages, ask it questions, stop it, wait for its end.

    Made by :func:`spawn` only.
    """

    __slots__ = ("_exit", "_mailbox", "_task", "name")

    def __init__(self, name: str, mailbox: Mailbox[Any]) -> None:
        self.name = name
        self._mailbox = mailbox
        self._task: asyncio.Task[None] | None = None
        self._exit: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        state = "alive" if self.is_alive else "stopped"
        return f"<ActorRef {self.name} {state}>"

    @property
    def is_alive(self) -> bool:
        """True until the actor has stopped."""
        return not self._exit.done()

    def tell(self, message: M) -> bool:
        """Queue ``message`` without blocking. Returns False if the overflow policy dropped it.

        Raises:
            MailboxFull: the mailbox is full and its policy is ``reject``.
        """
        try:
            return self._mailbox.put_nowait(message, control=isinstance(message, ControlMessage))
        except MailboxClosed:
            return False

    async def ask(self, message: M, timeout: float) -> Any:
        """Send ``message`` and wait for ``receive``'s return value.

        Raises:
            AskTimeout: no answer within ``timeout`` seconds (or the actor stopped before answering).
            MailboxFull: the mailbox refused the message.
            Exception: whatever ``receive`` raised for this message.
        """
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        envelope = _Ask(message, reply)
        try:
            queued = self._mailbox.put_nowait(envelope, control=isinstance(message, ControlMessage))
        except MailboxClosed:
            queued = False
        if not queued:
            raise AskTimeout(self.name, timeout)
        try:
            async with asyncio.timeout(timeout):
                return await reply
        except TimeoutError:
            raise AskTimeout(self.name, timeout) from None

    def stop(self) -> None:
        """Ask the actor to stop once it has handled its current message (control lane)."""
        with contextlib.suppress(MailboxClosed):
            self._mailbox.put_nowait(_STOP, control=True)

    def kill(self) -> None:
        """Cancel the actor's task at once; ``on_stop`` still runs with the ``CancelledError``."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def join(self) -> BaseException | None:
        """Wait for the actor to stop; returns what crashed it, or None for a normal stop."""
        return await asyncio.shield(self._exit)

    def add_exit_callback(self, callback: Any) -> None:
        """Call ``callback(ref, error)`` once the actor has stopped (internal: supervisors use it)."""

        def _done(future: asyncio.Future[BaseException | None]) -> None:
            callback(self, future.result())

        self._exit.add_done_callback(_done)

    @property
    def exit_reason(self) -> BaseException | None:
        """What crashed the stopped actor (None if it stopped normally or still runs)."""
        return self._exit.result() if self._exit.done() else None

    def statistics(self) -> MailboxStatistics:
        """A snapshot of the actor's mailbox."""
        return self._mailbox.statistics()


async def spawn(
    actor: Actor[M], *, name: str | None = None, restarted_after: BaseException | None = None, restart: bool = False
) -> ActorRef[M]:
    """Run ``actor`` in a task of its own and return its reference once ``on_start`` has finished.

    Args:
        actor: a fresh actor instance.
        name: its name in logs and errors (default: its class name).
        restart: True when a supervisor restarts it; ``on_restart(restarted_after)`` runs first.
        restarted_after: the error that ended the previous instance.

    Raises:
        Exception: whatever ``on_restart`` or ``on_start`` raised; the actor is then not running.
    """
    actor_name = name or type(actor).__name__
    mailbox: Mailbox[Any] = Mailbox._create(actor_name, actor.mailbox_capacity, actor.overflow_policy)
    ref: ActorRef[M] = ActorRef._create(actor_name, mailbox)  # type: ignore[assignment]
    actor._ref = ref
    # Readiness: on_start runs here, in the caller's task, so that spawn returns once the actor's state
    # is loaded and a failure (a corrupt record) is raised to the caller, not lost in a background task.
    try:
        if restart:
            await actor.on_restart(restarted_after)
        await actor.on_start()
    except BaseException as exc:
        mailbox.close()
        ref._exit.set_result(exc)
        raise
    ref._task = asyncio.create_task(_run(actor, ref, mailbox), name=actor_name)
    # Let the task take its first step (it waits on the mailbox): from then on a cancellation reaches
    # its ``finally`` and ``on_stop`` runs. A task cancelled before its first step would never run it.
    await asyncio.sleep(0)
    return ref


async def _run(actor: Actor[Any], ref: ActorRef[Any], mailbox: Mailbox[Any]) -> None:
    error: BaseException | None = None
    try:
        while True:
            try:
                item = await mailbox.get()
            except MailboxClosed:
                break
            if isinstance(item, Stop):  # any Stop instance, not only the one stop() sends
                break
            if type(item) is _Ask:
                if isinstance(item.message, Stop):
                    if not item.reply.done():
                        item.reply.set_result(None)
                    break
                try:
                    answer = await actor.receive(item.message)
                except Exception as exc:
                    if not item.reply.done():
                        item.reply.set_exception(exc)
                    raise
                if not item.reply.done():
                    item.reply.set_result(answer)
            else:
                await actor.receive(item)
    except asyncio.CancelledError as exc:
        error = exc
    except Exception as exc:
        error = exc
    finally:
        mailbox.close()
        for left in mailbox.drain():
            if type(left) is _Ask and not left.reply.done():
                left.reply.set_exception(AskTimeout(ref.name, 0.0))
        try:
            await actor.on_stop(error)
        except Exception:
            _log.exception("actor on_stop failed", actor=ref.name)
        finally:
            ref._exit.set_result(error)
    if isinstance(error, asyncio.CancelledError):
        raise error  # killed: join() reports it, and the task still ends cancelled
