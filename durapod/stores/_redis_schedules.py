"""RedisStore's schedules: one hash, ``P schedules``, holding ``v:<k>`` (the version) and ``r:<k>`` (the
JSON record) of each schedule, where ``<k>`` is ``["<agent>","<name>"]``. Each operation is one command
or script, run by the store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, Protocol

from redis.commands.core import AsyncScript

from durapod.errors import CorruptRecord, VersionConflict
from durapod.schedules import ScheduleState
from durapod.stores._redis_codec import _first_line


class _SchedulesStore(Protocol):
    """What the schedules need of their store (a :class:`~durapod.stores.redis.RedisStore`)."""

    @property
    def key_prefix(self) -> str: ...

    def _submit(
        self, args: tuple[Any, ...], script: AsyncScript | None = None, *, writes: bool
    ) -> asyncio.Future[Any]: ...

    def _script(self, name: str, keys: Sequence[str], *args: Any) -> asyncio.Future[Any]: ...

    def _read(self, *args: Any) -> asyncio.Future[Any]: ...


def _schedule_field(agent: str, name: str) -> str:
    return json.dumps([agent, name], separators=(",", ":"))


def _decode_schedule(field: str, raw: bytes) -> ScheduleState:
    try:
        return ScheduleState.model_validate_json(raw)
    except ValueError as exc:
        raise CorruptRecord(f"schedule {field}", _first_line(exc)) from None


async def _get_schedule(store: _SchedulesStore, agent: str, name: str) -> ScheduleState | None:
    """See :meth:`RedisStore.get_schedule <durapod.stores.redis.RedisStore.get_schedule>`."""
    field = _schedule_field(agent, name)
    raw = await store._read("HGET", f"{store.key_prefix}schedules", "r:" + field)
    return None if raw is None else _decode_schedule(field, raw)


async def _save_schedule(store: _SchedulesStore, state: ScheduleState, expected_version: int | None) -> ScheduleState:
    """See :meth:`RedisStore.save_schedule <durapod.stores.redis.RedisStore.save_schedule>`."""
    reply = await store._script(
        "save_schedule",
        (f"{store.key_prefix}schedules",),
        _schedule_field(state.agent, state.name),
        "" if expected_version is None else expected_version,
        state.version,
        state.model_dump_json(),
    )
    if reply[0] == 1:
        stored = None if len(reply) < 2 or reply[1] is None else int(reply[1])
        what = f"schedule {state.agent}/{state.name}"
        raise VersionConflict(what, 0 if expected_version is None else expected_version, stored)
    return state


async def _list_schedules(store: _SchedulesStore, agent: str | None) -> list[ScheduleState]:
    """See :meth:`RedisStore.list_schedules <durapod.stores.redis.RedisStore.list_schedules>`."""
    stored = await store._read("HGETALL", f"{store.key_prefix}schedules")
    # RESP2 answers a flat list of fields and values, RESP3 a map
    pairs = stored.items() if isinstance(stored, dict) else zip(stored[::2], stored[1::2], strict=True)
    found: list[ScheduleState] = []
    for raw_field, raw in pairs:
        field = raw_field.decode()
        if not field.startswith("r:"):
            continue
        state = _decode_schedule(field[2:], raw)
        if agent is None or state.agent == agent:
            found.append(state)
    return sorted(found, key=lambda state: (state.agent, state.name))


async def _delete_schedule(store: _SchedulesStore, agent: str, name: str) -> bool:
    """See :meth:`RedisStore.delete_schedule <durapod.stores.redis.RedisStore.delete_schedule>`."""
    field = _schedule_field(agent, name)
    future = store._submit(("HDEL", f"{store.key_prefix}schedules", "v:" + field, "r:" + field), writes=True)
    return bool(await future)
