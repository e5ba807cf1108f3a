"""A worker's id: the default one unique to a process, and its registration in the store.

A worker registers its id in the store while it runs; a second live worker with the same id is refused
with :class:`~durapod.WorkerIdInUse`. A worker started again under the id of a dead one (the same host,
its process gone) takes the id over at once, and with it the dead worker's jobs.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import timedelta
from typing import Any, Final

from durapod._log import Logger
from durapod.errors import StoreError, WorkerIdInUse
from durapod.lowlevel.clock import Clock
from durapod.stores.base import Store

__all__ = ["Registration", "default_worker_id"]


def default_worker_id() -> str:
    """An id unique to this process: host, process id and a random part."""
    host = "".join(ch for ch in socket.gethostname() if ch.isalnum() or ch in "-._") or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


#: This process among all the processes that ever had its pid (a container restarted keeps pid 1, say).
_PROCESS: Final = uuid.uuid4().hex


def _process_is_gone(holder: dict[str, Any]) -> bool:
    """True if the registered holder of an id is a process of this host that no longer exists."""
    if holder.get("host") != socket.gethostname():
        return False  # another host: only its lease running out tells
    if holder.get("process") == _PROCESS:
        return False  # another worker of this very process
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return True  # an earlier process that had our pid

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Registration:
    """A worker's claim on its id in the store, under a token of its own. Owned by the worker."""

    def __init__(self, store: Store, worker_id: str, *, lease_ttl: float, clock: Clock, log: Logger) -> None:
        self.store = store
        self.worker_id = worker_id
        self.lease_ttl = lease_ttl
        self.clock = clock
        self.log = log
        self._token = uuid.uuid4().hex

    def _info(self) -> str:
        return json.dumps({"token": self._token, "host": socket.gethostname(), "pid": os.getpid(), "process": _PROCESS})

    async def register(self) -> None:
        """Claim the id; take it over from a dead process of this host.

        Raises:
            WorkerIdInUse: a live worker holds the id.
            StoreError: the store failed.
        """
        now = self.clock.utcnow()
        until = now + timedelta(seconds=self.lease_ttl)
        holder = await self.store.register_worker(
            self.worker_id, self._token, info=self._info(), lease_until=until, now=now
        )
        if holder is None:
            return
        try:
            details = json.loads(holder)
        except ValueError:
            details = {}
        if not isinstance(details, dict) or not _process_is_gone(details):
            where = f"host {details.get('host')!r}, pid {details.get('pid')!r}" if isinstance(details, dict) else holder
            raise WorkerIdInUse(self.worker_id, where)
        # the holder died on this host: take its id over now (and its jobs with reclaim_own)
        replaced = await self.store.register_worker(
            self.worker_id,
            self._token,
            info=self._info(),
            lease_until=until,
            now=now,
            replace=str(details.get("token")),
        )
        if replaced is not None:
            raise WorkerIdInUse(self.worker_id, "a process that started meanwhile")

    async def renew(self) -> None:
        """Extend the claim on the id (register again if it had lapsed)."""
        now = self.clock.utcnow()
        until = now + timedelta(seconds=self.lease_ttl)
        if not await self.store.renew_worker(self.worker_id, self._token, lease_until=until, now=now):
            # taken over after we could not renew for a whole lease: keep going under a fresh claim
            self.log.warning("the worker id's registration had lapsed; registering again")
            await self.register()

    async def unregister(self) -> None:
        """Give the id up; a store error is logged (the registration then lapses by itself)."""
        try:
            await self.store.unregister_worker(self.worker_id, self._token)
        except StoreError as exc:
            self.log.warning("cannot unregister the worker id", error=repr(exc))
