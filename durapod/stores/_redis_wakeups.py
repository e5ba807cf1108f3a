"""Pub/sub wake-ups: a worker waiting for work (or for control requests) is woken when one may be there."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from durapod._util import cancel_and_wait
from durapod.stores._redis_codec import _text
from durapod.stores._redis_compat import CONNECTION_ERRORS, _subscribe


class _WakeupsOwner(Protocol):
    """What the wake-ups need of their store (a :class:`~durapod.stores.redis.RedisStore`)."""

    client: Redis

    @property
    def key_prefix(self) -> str: ...


#: What ends a subscription or a listener quietly (the next ``watch`` subscribes again).
RECOVERABLE_ERRORS: tuple[type[BaseException], ...] = (RedisError, *CONNECTION_ERRORS)

#: The pub/sub "agent" name on which control requests wake lease keepers (no agent is named so).
_CONTROL_CHANNEL = "\x00control"


class _Wakeups:
    """Pub/sub on ``wake:<agent>``: an event per agent, set when a job of it (or of agent "") is claimable."""

    def __init__(self, store: _WakeupsOwner) -> None:
        self._store = store
        self._channel_prefix = store.key_prefix + "wake:"
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscribed: set[str] = set()
        self._events: dict[str, asyncio.Event] = {}

    async def watch(self, agent: str) -> asyncio.Event | None:
        """The event of ``agent``, subscribed; None if pub/sub is not available now."""
        event = self._events.setdefault(agent, asyncio.Event())
        channels = {self._channel_prefix + agent, self._channel_prefix}
        if self._task is not None and self._task.done():
            await self.close()  # the listener died with its connection: start again
        new = channels - self._subscribed
        if new:
            try:
                if self._pubsub is None:
                    self._pubsub = self._store.client.pubsub()
                await _subscribe(self._pubsub, sorted(new))
            except RECOVERABLE_ERRORS:
                await self.close()
                return None
            self._subscribed |= new
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._listen(self._pubsub))
        return event

    async def _listen(self, pubsub: PubSub) -> None:
        # the listener ends quietly with its connection; the next watch() starts another
        with contextlib.suppress(*RECOVERABLE_ERRORS):
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                channel = _text(message.get("channel")) or ""
                agent = channel[len(self._channel_prefix) :]
                if agent:
                    if (event := self._events.get(agent)) is not None:
                        event.set()
                else:  # a job for any agent: every waiting worker may take it
                    for event in self._events.values():
                        event.set()

    async def close(self) -> None:
        task, self._task = self._task, None
        pubsub, self._pubsub = self._pubsub, None
        self._subscribed.clear()
        if task is not None:
            await cancel_and_wait(task)
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
