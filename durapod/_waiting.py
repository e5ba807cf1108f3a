"""Waiting for jobs to settle: local writes wake waiters at once, other processes' writes are polled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

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
        self._waiting: dict[str, list[asyncio.Future[Job | None]]] = {}

    def publish(self, job: Job) -> None:
        """A job was written here: wake its waiters if it settled."""
        if job.status.is_settled and (futures := self._waiting.pop(job.id, None)):
            for future in futures:
                if not future.done():
                    future.set_result(job)

    def nudge(self, job_id: str) -> None:
        """This process stopped running the job without settling it: its waiters read the store again
        (and poll it from then on, as for any job another process runs)."""
        for future in self._waiting.pop(job_id, ()):
            if not future.done():
                future.set_result(None)

    def wait(
        self,
        store: Store,
        job_id: str,
        timeout: float | None,
        poll_interval: float,
        is_local: Callable[[str], bool],
        known: Job | None = None,
    ) -> Coroutine[Any, Any, Job]:
        """Wait for the job to settle (await what this returns).

        While this process runs the job (``is_local``), its writes wake the waiter, with no timer; once it
        lets go of the job it nudges the waiter, which then polls the store like for a job another process
        runs: quickly at first (every 10 ms, doubling up to ``poll_interval``).

        ``known`` is the job as the caller has just read or written it (no await since): the first store
        read is skipped, and the wait holds it no longer than that (a caller that drops its own reference
        keeps no copy of the job alive while it waits).
        """
        if timeout is None:  # no timeout scope (it costs more than the rest of a local wait), no frame
            return self._wait(store, job_id, poll_interval, is_local, known)
        return self._wait_within(timeout, self._wait(store, job_id, poll_interval, is_local, known))

    @staticmethod
    async def _wait_within(timeout: float, waiting: Coroutine[Any, Any, Job]) -> Job:
        async with asyncio.timeout(timeout):
            return await waiting

    async def _wait(
        self, store: Store, job_id: str, poll_interval: float, is_local: Callable[[str], bool], known: Job | None
    ) -> Job:
        """:meth:`wait` without its timeout."""
        delay = min(0.01, poll_interval)
        loop = asyncio.get_running_loop()
        while True:
            future: asyncio.Future[Job | None] = loop.create_future()
            waiting = self._waiting.setdefault(job_id, [])
            waiting.append(future)
            try:
                job = known if known is not None else await store.get(job_id)
                known = None
                if job is None:
                    raise JobNotFound(job_id)
                if job.status.is_settled:
                    return job
                job = None  # not kept alive while the job runs
                if is_local(job_id):
                    settled = await future
                    if settled is not None:
                        return settled
                    continue  # nudged: read the store again
                try:
                    async with asyncio.timeout(delay):
                        settled = await future
                except TimeoutError:
                    delay = min(delay * 2, poll_interval)
                    continue
                if settled is not None:
                    return settled
            finally:
                if not future.done():
                    future.cancel()
                    if future in waiting:
                        waiting.remove(future)
                    if not waiting and self._waiting.get(job_id) is waiting:
                        del self._waiting[job_id]
