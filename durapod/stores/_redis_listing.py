"""How RedisStore lists jobs: its status, agent or creation index walked newest first, a chunk at a time.

``list`` reads the sorted-set indexes (never KEYS or SCAN) with ``ZRANGE ... BYLEX REV``: the byte order of
their members is (created_at, id) order (see :func:`durapod.stores._redis_codec._member`), so a page
starts exactly after its cursor. Every entry is checked against its job's hash, and entries whose job
expired or was deleted are removed from their index on the way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncGenerator, Collection, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

from pydantic import JsonValue

from durapod._log import get_logger
from durapod.errors import CorruptRecord
from durapod.models import Job, JobStatus
from durapod.stores._redis_codec import _READ_FIELDS, _decode_job, _member, _member_id
from durapod.stores.base import Page, encode_cursor, list_arguments, matches

# the logger of the public module: the warnings are about the store
_log = get_logger("durapod.stores.redis")

_CHUNK: Final = 256  # index members read per round trip by list and claim_orphans


class _IndexedStore(Protocol):
    """What walking the job indexes (a listing here, ``claim_orphans`` in ``_redis_claims``) needs of its
    store (a :class:`~durapod.stores.redis.RedisStore`)."""

    @property
    def key_prefix(self) -> str: ...

    def _job_key(self, job_id: str) -> str: ...

    def _script(self, name: str, keys: Sequence[str], *args: Any) -> asyncio.Future[Any]: ...

    def _read(self, *args: Any) -> asyncio.Future[Any]: ...

    async def _gather(self, futures: Iterable[asyncio.Future[Any]]) -> list[Any]: ...


async def _list_jobs(
    store: _IndexedStore,
    status: Collection[JobStatus] | None,
    agent: str | None,
    metadata: Mapping[str, JsonValue] | None,
    limit: int | None,
    cursor: str | None,
) -> Page:
    """The page :meth:`RedisStore.list <durapod.stores.redis.RedisStore.list>` returns for these filters."""
    statuses, after = list_arguments(status, limit, cursor)
    if statuses == []:
        return Page([], None)
    start = "+" if after is None else "(" + _member(*after)
    if limit == 0:
        return Page([], None)
    prefix = store.key_prefix
    if statuses is not None:
        indexes = [f"{prefix}status:{value}" for value in statuses]
    elif agent is not None:
        indexes = [f"{prefix}agent:{agent}"]
    else:
        indexes = [f"{prefix}created"]
    chunk = _CHUNK if limit is None or metadata else max(min(limit + 1, _CHUNK), 16)
    wanted_status = None if statuses is None else {value.encode() for value in statuses}
    wanted_agent = None if agent is None else agent.encode()
    walk = _walk_newest_first(store, indexes, start, chunk)
    async with contextlib.aclosing(walk):
        return await _list_page(store, walk, wanted_status, wanted_agent, metadata, limit)


async def _list_page(
    store: _IndexedStore,
    walk: AsyncGenerator[list[tuple[str, bytes]], None],
    wanted_status: set[bytes] | None,
    wanted_agent: bytes | None,
    metadata: Mapping[str, JsonValue] | None,
    limit: int | None,
) -> Page:
    found: list[Job] = []
    async for members in walk:
        rows = await store._gather(
            store._read("HMGET", store._job_key(_member_id(member)), "member", "status", "agent", *_READ_FIELDS)
            for _, member in members
        )
        stale: dict[str, list[bytes]] = collections.defaultdict(list)
        for (index, member), row in zip(members, rows, strict=True):
            if row[0] != member:  # the job expired or was deleted (or its id was reused)
                stale[index].append(member)
                continue
            if wanted_status is not None and row[1] not in wanted_status:
                continue
            if wanted_agent is not None and row[2] != wanted_agent:
                continue
            if limit is not None and len(found) == limit and not metadata:
                # one more job matches: the page is full and a next one follows (no need to decode it)
                await _forget(store, stale)
                return Page(found, encode_cursor(found[-1]))
            try:
                job = _decode_job(_member_id(member), row[3:])
            except CorruptRecord as exc:  # reported for that job alone: the listing goes on
                _log.warning("corrupt job record skipped in a listing", job_id=_member_id(member), error=str(exc))
                continue
            if metadata and not matches(job, None, None, metadata):
                continue
            found.append(job)
            if limit is not None and len(found) > limit:
                await _forget(store, stale)
                page = found[:limit]
                return Page(page, encode_cursor(page[-1]))
        await _forget(store, stale)
    return Page(found, None)


async def _walk_newest_first(
    store: _IndexedStore, indexes: Sequence[str], start: str, chunk: int
) -> AsyncGenerator[list[tuple[str, bytes]], None]:
    """Members of ``indexes`` merged in descending order from ``start``, a chunk at a time."""
    bounds = dict.fromkeys(indexes, start)
    buffers: dict[str, collections.deque[bytes]] = {index: collections.deque() for index in indexes}
    exhausted: set[str] = set()
    while True:
        refill = [index for index in indexes if not buffers[index] and index not in exhausted]
        if refill:
            replies = await store._gather(
                store._read("ZRANGE", index, bounds[index], "-", "BYLEX", "REV", "LIMIT", 0, chunk) for index in refill
            )
            for index, members in zip(refill, replies, strict=True):
                buffers[index].extend(members)
                if len(members) < chunk:
                    exhausted.add(index)
                if members:
                    bounds[index] = "(" + members[-1].decode()
        out: list[tuple[str, bytes]] = []
        while len(out) < chunk:
            # a source that may hold more must be refilled before its members can be ordered
            if any(not buffers[index] and index not in exhausted for index in indexes):
                break
            heads = [index for index in indexes if buffers[index]]
            if not heads:
                break
            best = max(heads, key=lambda index: buffers[index][0])
            out.append((best, buffers[best].popleft()))
        if not out:
            if all(not buffers[index] for index in indexes) and exhausted.issuperset(indexes):
                return
            continue
        yield out


async def _forget(store: _IndexedStore, stale: Mapping[str, Sequence[bytes]]) -> None:
    for index, members in stale.items():
        if members:
            await store._script("forget", (), index, *members)
