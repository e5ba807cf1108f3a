"""How RedisStore claims jobs: the claim script's call, the job its reply gives, and ``claim_orphans``.

``claim_orphans`` reads only claimable jobs, oldest first: the free ones from the ``ready`` index (in
member order, a chunk at a time), the expired leases (with ``reclaim_own`` also the claimer's live ones)
from the ``leased`` index (scored by when each lease ends on the server's clock) and the sleeping jobs
whose wake time passed from the ``asleep`` index (on the claimer's clock): it never visits a job that
another worker holds. The key layout is described in :mod:`durapod.stores.redis`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from datetime import datetime
from typing import Any

from durapod.errors import CorruptRecord
from durapod.models import Job
from durapod.stores._codec import _micros, _moment
from durapod.stores._redis_codec import _first_line, _member_id, _text
from durapod.stores._redis_listing import _CHUNK, _IndexedStore


def _claim(
    store: _IndexedStore, job_id: str, owner: str, lease_micros: int, now_micros: int, reclaim_own: bool, updated: int
) -> asyncio.Future[Any]:
    """Run the claim script on one job (times in microseconds); its reply is None if it is not claimable."""
    return store._script(
        "claim", (store._job_key(job_id),), job_id, owner, lease_micros, now_micros, int(reclaim_own), updated
    )


def _claimed(job_id: str, reply: Any, owner: str, lease_until: datetime, updated_at: datetime) -> Job:
    """The job a claim script's reply gives, now held by ``owner``; CorruptRecord if it cannot be decoded."""
    if reply[0] == 1:
        raise CorruptRecord(job_id, reply[1].decode())
    _, record, epoch, version, recoveries, steps = reply
    try:
        job = Job.model_validate_json(record)
    except ValueError as exc:
        raise CorruptRecord(job_id, _first_line(exc)) from None
    return job.model_copy(
        update={
            "owner": owner,
            "lease_until": lease_until,
            "epoch": epoch,
            "version": version,
            "recoveries": recoveries,
            "steps": steps,
            "updated_at": updated_at,
        }
    )


async def _claim_orphans(
    store: _IndexedStore,
    agent: str | None,
    owner: str,
    lease_until: datetime,
    now: datetime,
    limit: int,
    reclaim_own: bool,
) -> list[Job]:
    """The jobs :meth:`RedisStore.claim_orphans <durapod.stores.redis.RedisStore.claim_orphans>` claims."""
    if limit <= 0:
        return []
    prefix = store.key_prefix
    suffix = "" if agent is None else ":" + agent
    ready_key, leased_key = f"{prefix}ready{suffix}", f"{prefix}leased{suffix}"
    now_micros, lease_micros = _micros(now), _micros(lease_until)
    # the leased index is scored by when each lease ends on the server's clock
    seconds, micros = await store._read("TIME")
    server_now = int(seconds) * 1_000_000 + int(micros)
    leased = await store._read("ZRANGE", leased_key, "-inf", f"({server_now}", "BYSCORE")
    # sleeping jobs whose wake time passed, on the claimer's clock
    leased += await store._read("ZRANGE", f"{prefix}asleep{suffix}", "-inf", f"({now_micros}", "BYSCORE")
    if reclaim_own:
        live = await store._read("ZRANGE", leased_key, server_now, "+inf", "BYSCORE")
        owners = await store._gather(
            store._read("HGET", store._job_key(_member_id(member)), "owner") for member in live
        )
        leased += [member for member, held_by in zip(live, owners, strict=True) if _text(held_by) == owner]
    candidates = collections.deque(sorted(set(leased)))
    ready: collections.deque[bytes] = collections.deque()
    bound, ready_done = "-", False
    seen: set[bytes] = set()
    claimed: list[Job] = []
    while len(claimed) < limit:
        wanted = min(limit - len(claimed), _CHUNK)
        batch: list[bytes] = []
        while len(batch) < wanted:
            if not ready and not ready_done:  # refill before comparing, or the order could break
                more = await store._read("ZRANGE", ready_key, bound, "+", "BYLEX", "LIMIT", 0, _CHUNK)
                ready.extend(more)
                ready_done = len(more) < _CHUNK
                if more:
                    bound = "(" + more[-1].decode()
                continue
            if ready and (not candidates or ready[0] <= candidates[0]):
                member = ready.popleft()
            elif candidates:
                member = candidates.popleft()
            else:
                break
            if member not in seen:  # a job may move from one index to the other between two reads
                seen.add(member)
                batch.append(member)
        if not batch:
            break
        updated = _micros(now)
        job_ids = [_member_id(member) for member in batch]
        replies = await store._gather(
            _claim(store, job_id, owner, lease_micros, now_micros, reclaim_own, updated) for job_id in job_ids
        )
        for job_id, reply in zip(job_ids, replies, strict=True):
            if reply is None:
                continue
            with contextlib.suppress(CorruptRecord):
                claimed.append(_claimed(job_id, reply, owner, lease_until, _moment(updated)))
    return claimed
