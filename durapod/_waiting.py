"""Waiting for jobs to settle: local writes wake waiters at once, other processes' writes are polled."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from durapod.errors import JobNotFound
from durapod.models import Job, JobStatus
from durapod.stores.base import Store

__all__ = ["Waiters", "parse_statuses"]


def parse_statuses(status: JobStatus | str | Iterable[JobStatus | str] | None) -> frozenset[JobStatus] | None:
    """Normalise a ``status=`` filter (one status or several); raise ``ValueError`` naming a bad one."""
    if status is None:
        return None
    items = [status] if isinstance(status, str) else list(status)
    parsed: set[JobStatus] = set()
    for item in items:
        try:
            parsed.add(JobStatus(item))
        except ValueError:
            valid = ", ".join(s.value for s in JobStatus)
            raise ValueError(f"invalid job status {item!r}; expected one of {valid}") from None
    return frozenset(parsed)


class Waiters:
    """Local futures waiting for jobs to settle, resolved by every write this process makes."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[Job]]] = {}

    def publish(self, job: Job) -> None:
        if job.status.is_settled and (futures := self._waiting.pop(job.id, None)):
            for future in futures:
                if not future.done():
                    future.set_result(job)

    async def wait(
        self,
        store: Store,
        job_id: str,
        timeout: float | None,
        poll_interval: float,
        is_local: bool,
        known: Job | None = None,
    ) -> Job:
        """Wait for the job to settle. Local writes wake the waiter at once; other processes' writes are
        seen by polling, quickly at first (every 10 ms, doubling up to ``poll_interval``).

        ``known`` is the job as the caller has just read or written it (no await since): the first store
        read is skipped.
        """
        delay = poll_interval if is_local else min(0.01, poll_interval)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                future: asyncio.Future[Job] = loop.create_future()
                waiting = self._waiting.setdefault(job_id, [])
                waiting.append(future)
                try:
                    job = known if known is not None else await store.get(job_id)
                    known = None
                    if job is None:
                        raise JobNotFound(job_id)
                    if job.status.is_settled:
                        return job
                    try:
                        async with asyncio.timeout(delay):
                            return await future
                    except TimeoutError:
                        delay = min(delay * 2, poll_interval)
                finally:
                    if not future.done():
                        future.cancel()
                        if future in waiting:
                            waiting.remove(future)
                        if not waiting and self._waiting.get(job_id) is waiting:
                            del self._waiting[job_id]
