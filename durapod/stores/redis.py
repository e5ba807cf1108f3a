"""RedisStore: the store contract on Redis, shared by a fleet of workers, with group commit across jobs.

Every operation is one Lua script (or one plain read) run atomically by the server
(:mod:`durapod.stores._redis_lua`). Calls from many coroutines share one round trip: group commit, in
:mod:`durapod.stores._redis_pipeline`. Encoding and decoding are in :mod:`durapod.stores._redis_codec`,
the pub/sub wake-ups of waiting workers in :mod:`durapod.stores._redis_wakeups`. The arguments each kind of
write sends and how its replies read are with what it writes: a job's record in
:mod:`durapod.stores._redis_records`, its journal and event log in :mod:`durapod.stores._redis_journal`,
control requests in :mod:`durapod.stores._redis_controls`, schedules in :mod:`durapod.stores._redis_schedules`.
``list`` walks the indexes in :mod:`durapod.stores._redis_listing`, claims (and ``claim_orphans``' walk)
are in :mod:`durapod.stores._redis_claims`.

Key layout (``P`` is ``key_prefix``; ``<m>`` is a job's index member, see below)::

    P job:{<id>}          hash: ``record`` (the job's JSON) and the fields the store maintains:
                          status, agent, member, owner, lease_us, lease_at, epoch, version, steps,
                          recoveries, updated_us (set by a claim until the next save). ``lease_us``
                          is the lease as its writer sent it (its clock), ``lease_at`` when it ends
                          on the server's clock: leases are judged by ``TIME`` (see _redis_lua)
    P steps:{<id>}        hash: the journal, one StepRecord JSON per step, by index
    P events:{<id>}       sorted set: the appended events' JSON, each scored by its ``seq``
    P controls:{<id>}     list: control requests (JSON) waiting for the owner
    P created             sorted set of every job's <m>, all scores 0 (ordered by <m>)
    P status:<status>     same, per status
    P agent:<agent>       same, per agent
    P ready[:<agent>]     same, claimable jobs (pending or running) with no lease
    P leased[:<agent>]    claimable jobs that have an owner and a lease, scored by lease_at (us)
    P asleep[:<agent>]    claimable jobs with a lease and no owner (asleep in ctx.sleep), scored by
                          lease_us: when they wake, on the clock of the worker that put them to sleep
    P expiry              jobs given a TTL: [<m>, status, agent] scored by when they expire (ms)
    P schedules           hash: ``v:<k>`` version and ``r:<k>`` JSON of each schedule
    P wake:<agent>        pub/sub channel: a job became claimable (``wait_for_work``)
    P worker:{<wid>}      hash: a worker id's registration (token, info, lease_us, lease_at)
    P workers             set: the registered worker ids (``list_workers``)

``<m>`` is ``<created_at as 18 zero-padded digits of microseconds>:<id>``: byte order of the members is
(created_at, id) order, so the lexicographic ``ZRANGE ... BYLEX`` pages newest first from a cursor
exactly, with ties on ``created_at`` broken by id. ``list`` walks these indexes, never KEYS or SCAN.
``claim_orphans`` reads the expired leases of ``leased`` by score and the free jobs of ``ready`` in
order: it never visits a job that another worker holds.

The JSON record is the truth for everything but the maintained fields, which reads apply onto the decoded
job (a lease renewal, a claim or a journaled step changes only them; Lua never re-encodes a record).
Times are integers (microseconds since the Unix epoch) in those fields, so Lua compares them exactly.

The event log a reader sees is ``events`` merged with the ``step`` events that the journal's records with
an ``event_seq`` give it (:meth:`StepRecord.step_event <durapod.models.StepRecord.step_event>`): those are
derived when the log is read, never written to ``events`` (one script reads both, atomically).

Atomicity and Redis Cluster: a job's keys share the hash tag ``{<id>}``, so they live in one cluster
slot. The scripts update the job's keys *and* the index keys in one atomic step, which holds on a single
server and with Sentinel (a replica promoted by Sentinel may lack the last writes, as with any
asynchronous replication; see ``durability``). Redis Cluster refuses scripts whose keys span slots, so
RedisStore does not run on a cluster; the layout is ready for it (indexes would then be updated by
separate commands after each job's script, and ``list`` and ``claim_orphans`` already verify every index
entry against the job and drop stale ones). Index key names are derived inside the scripts from the
prefix, which a single server allows.

Expiry: with ``ttl_seconds`` a job that becomes completed, failed or cancelled expires together with its
journal, events and controls; a failed job that runs again loses its TTL. The index entries of expired
jobs are removed a few at a time as other jobs finish, and ``list`` skips and removes any it meets.

Cancellation: a coroutine cancelled while it awaits a write does not cancel the write; it may have been
applied or not. Re-read the job (or retry the compare-and-set, which fails safely) to find out. Nothing is
retried automatically: a lost connection fails the calls in flight with :class:`StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import JsonValue
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from durapod.errors import JobNotFound, StaleOwnerError, StoreError, StoreUnavailable
from durapod.models import Job, JobStatus, StepRecord, utcnow
from durapod.schedules import ScheduleState
from durapod.stores._codec import _micros, _moment, _redact
from durapod.stores._redis_claims import _claim, _claim_orphans, _claimed
from durapod.stores._redis_codec import _READ_FIELDS, _decode_job
from durapod.stores._redis_compat import CONNECTION_ERRORS
from durapod.stores._redis_controls import _control_entry, _decode_controls
from durapod.stores._redis_journal import (
    _append_step_command,
    _decode_steps,
    _event_args,
    _merge_log,
    _read_events_command,
    _step_refused,
)
from durapod.stores._redis_listing import _list_jobs
from durapod.stores._redis_lua import _register_scripts
from durapod.stores._redis_pipeline import _Pipeline
from durapod.stores._redis_records import _record_args, _saved, _status_args
from durapod.stores._redis_schedules import _delete_schedule, _get_schedule, _list_schedules, _save_schedule
from durapod.stores._redis_wakeups import _CONTROL_CHANNEL, _Wakeups
from durapod.stores.base import ControlRequest, Page, Store, WorkerRecord

__all__ = ["RedisStore"]


# ---------------------------------------------------------------------------------------------------
# The store


def _describe(client: Redis) -> str:
    """Where the client connects, as a URL without credentials."""
    kwargs = client.connection_pool.connection_kwargs
    connection_class = client.connection_pool.connection_class
    if issubclass(connection_class, UnixDomainSocketConnection):
        return f"unix://{kwargs.get('path', '')}?db={kwargs.get('db', 0)}"
    scheme = "rediss" if issubclass(connection_class, SSLConnection) else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


class RedisStore(Store):
    """Jobs, journals, events, leases, control requests and schedules in Redis, shared by many workers.

    Every operation is atomic (one Lua script); calls made at the same time by many coroutines share one
    round trip (group commit), so throughput grows with concurrency. See the module docstring for the key
    layout, Redis Cluster and expiry. Like its client, a store serves the event loop it is first used on.
    Installing ``hiredis`` (``durapod[hiredis]``) makes redis-py parse replies faster.

    Args:
        client: a ``redis.asyncio.Redis`` client (``decode_responses`` may be either). The store owns it
            from now on: :meth:`close` closes it.
        key_prefix: the prefix of every key (and pub/sub channel) the store uses; several stores may share
            one database with different prefixes.
        ttl_seconds: if set, a job that becomes completed, failed or cancelled expires after that many
            seconds, with its journal, events and controls. Unfinished jobs never expire.
        durability: ``"normal"``, or ``"full"``: every write waits until the server has written it to its
            append-only file (``WAITAOF``, Redis 7.2 or later with ``appendonly yes``; for power-loss
            safety also set ``appendfsync always``). With an older server, or without the AOF, the store
            logs a warning once and relies on the server's own fsync policy.

    Raises:
        TypeError: ``client`` is not a ``redis.asyncio.Redis``.
        ValueError: ``ttl_seconds`` or ``durability`` is not valid (naming the value).

    Example:
        >>> store = RedisStore.from_url("redis://localhost:6379/0", ttl_seconds=7 * 86400)
        >>> store
        RedisStore('redis://localhost:6379/0', key_prefix='durapod:')
    """

    notifies: ClassVar[bool] = True

    def __init__(
        self,
        client: Redis,
        key_prefix: str = "durapod:",
        ttl_seconds: float | None = None,
        *,
        durability: Literal["normal", "full"] = "normal",
    ) -> None:
        if not isinstance(client, Redis):
            raise TypeError(f"RedisStore needs a redis.asyncio.Redis client, not {type(client).__name__}")
        if not isinstance(key_prefix, str):
            raise TypeError(f"key_prefix must be a str, not {type(key_prefix).__name__}")
        if ttl_seconds is not None and (
            isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int | float) or not ttl_seconds >= 0.001
        ):
            raise ValueError(f"invalid ttl_seconds {ttl_seconds!r}: expected None or seconds >= 0.001")
        if durability not in ("normal", "full"):
            raise ValueError(f"invalid durability {durability!r}: expected 'normal' or 'full'")
        self.client = client
        self._prefix = key_prefix
        self._ttl_ms = "0" if ttl_seconds is None else str(round(ttl_seconds * 1000))
        self._ttl_seconds = ttl_seconds
        self._durability: Literal["normal", "full"] = durability
        self._where = _describe(client)
        self._closed = False
        self._scripts = _register_scripts(client)
        self._pipeline = _Pipeline(self)
        self._wakeups = _Wakeups(self)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = "durapod:",
        ttl_seconds: float | None = None,
        durability: Literal["normal", "full"] = "normal",
        **client_options: Any,
    ) -> RedisStore:
        """A store on the server that ``url`` names.

        Args:
            url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
                ``unix:///path/to/socket?db=0``; query options (``?socket_timeout=5``...) are the
                redis-py ones.
            key_prefix: see the class.
            ttl_seconds: see the class.
            durability: see the class.
            **client_options: passed on to ``redis.asyncio.Redis.from_url``.

        Raises:
            ValueError: the URL is not one of those (naming it, without its password).
        """
        try:
            client = Redis.from_url(url, **client_options)
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL {_redact(url)!r}: {exc}") from None
        return cls(client, key_prefix, ttl_seconds, durability=durability)

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, key_prefix={self._prefix!r})"

    @property
    def key_prefix(self) -> str:
        """The prefix of every key the store uses."""
        return self._prefix

    @property
    def ttl_seconds(self) -> float | None:
        """Seconds a finished job is kept (None: forever)."""
        return self._ttl_seconds

    @property
    def durability(self) -> Literal["normal", "full"]:
        """``"normal"`` or ``"full"`` (see the class)."""
        return self._durability

    # -- plumbing ------------------------------------------------------------------------------------

    def _failure(self, exc: BaseException) -> BaseException:
        """The durapod error for a client error (durapod's own errors pass through)."""
        if isinstance(exc, StoreError):
            return exc
        error: StoreError
        if isinstance(exc, CONNECTION_ERRORS):
            error = StoreUnavailable(f"Redis store {self._where} is unreachable: {exc}")
        else:
            error = StoreError(f"Redis store {self._where}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error

    def _job_key(self, job_id: str) -> str:
        return f"{self._prefix}job:{{{job_id}}}"

    def _job_keys(self, job_id: str) -> tuple[str, str, str, str]:
        tagged = f"{{{job_id}}}"
        prefix = self._prefix
        return (
            f"{prefix}job:{tagged}",
            f"{prefix}steps:{tagged}",
            f"{prefix}events:{tagged}",
            f"{prefix}controls:{tagged}",
        )

    def _submit(self, args: tuple[Any, ...], script: AsyncScript | None = None, *, writes: bool) -> asyncio.Future[Any]:
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        return self._pipeline.submit(args, script, writes)

    def _script(self, name: str, keys: Sequence[str], *args: Any) -> asyncio.Future[Any]:
        script = self._scripts[name]
        return self._submit(("EVALSHA", script.sha, len(keys), *keys, self._prefix, *args), script, writes=True)

    def _read(self, *args: Any) -> asyncio.Future[Any]:
        return self._submit(args, writes=False)

    async def _gather(self, futures: Iterable[asyncio.Future[Any]]) -> builtins.list[Any]:
        """Await futures submitted together; the first exception is raised once all are done."""
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    # -- jobs ------------------------------------------------------------------------------------------

    async def create(self, job: Job, *, status_seq: int | None = None) -> tuple[Job, bool]:
        """Insert ``job`` if no job has its id. With ``status_seq`` the script that creates it logs the
        ``job_status`` event at that ``seq``, wrapping the record it writes (the job is serialised and sent
        once); nothing is logged when the id exists.

        Returns:
            The stored job and True if it was created; the existing job and False otherwise.

        Raises:
            CorruptRecord: the existing job's record cannot be decoded.
            InvalidInput: ``status_seq`` is not an int; nothing is written.
            StoreUnavailable: the server cannot be reached.
        """
        status = _status_args(job.id, status_seq)
        existing = await self._script("create", self._job_keys(job.id), *_record_args(self._ttl_ms, job), *status)
        if existing is None:
            return job, True
        return _decode_job(job.id, existing), False

    async def get(self, job_id: str) -> Job | None:
        """The job with that id, or None.

        Raises:
            CorruptRecord: its record cannot be decoded (``.key`` is the job id).
        """
        values = await self._read("HMGET", self._job_key(job_id), *_READ_FIELDS)
        if all(value is None for value in values):
            return None
        return _decode_job(job_id, values)

    async def save(
        self,
        job: Job,
        *,
        expected_version: int,
        events: Sequence[Mapping[str, JsonValue]] = (),
        status_seq: int | None = None,
    ) -> Job:
        """Compare-and-set write of ``job``: only if the stored version is ``expected_version``.

        ``job.version`` must be ``expected_version + 1``. The stored lease and step count are kept as the
        store rules say (see :mod:`durapod.stores.base`). ``events`` are logged by the same script, then
        with ``status_seq`` the ``job_status`` event at that ``seq``, which the script makes by wrapping
        the record it writes (the job is serialised and sent once).

        Returns:
            The job as stored.

        Raises:
            JobNotFound: no job has that id.
            VersionConflict: the stored version is not ``expected_version``, or ``job.version`` is not
                one higher.
            InvalidInput: an event is not JSON or has no int ``seq``, or ``status_seq`` is not an int;
                nothing is written.
        """
        logged = _event_args(job.id, events) if events else ()
        status = _status_args(job.id, status_seq)
        args = _record_args(self._ttl_ms, job)
        reply = await self._script("save", self._job_keys(job.id), *args, expected_version, *status, *logged)
        return _saved(job, expected_version, reply)

    async def list(
        self,
        *,
        status: Collection[JobStatus] | None = None,
        agent: str | None = None,
        metadata: Mapping[str, JsonValue] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        """Jobs newest first (``created_at``, then id, descending), filtered, one page of ``limit``.

        Walks the status, agent or creation index (never KEYS or SCAN) a chunk at a time.

        Args:
            status: keep jobs in one of these statuses (a single status is accepted too).
            agent: keep jobs of this agent.
            metadata: keep jobs whose metadata has all these keys with equal values.
            limit: the page size (None: every matching job).
            cursor: a previous page's ``next_cursor``.

        A record that cannot be decoded is skipped and logged (a warning naming the job): one bad record
        never hides the others, and :meth:`get` reports it with :class:`CorruptRecord`.

        Raises:
            ValueError: an invalid cursor, status or limit (naming it).
        """
        return await _list_jobs(self, status, agent, metadata, limit, cursor)

    async def delete(self, job_id: str) -> bool:
        """Remove a job with its journal, events, control requests and index entries. True if it existed."""
        return bool(await self._script("delete", self._job_keys(job_id)))

    # -- journal and events ------------------------------------------------------------------------------

    async def append_step(self, record: StepRecord, *, events: Sequence[Mapping[str, JsonValue]] = ()) -> None:
        """Journal one step, fenced: the job must be running with ``record.epoch`` and its journal must not
        hold ``record.index`` yet. Counts it in the job's ``steps`` without changing its version. ``events``
        are logged by the same script, only if the step is journaled. A record with an ``event_seq`` gives
        the log its ``step`` event, derived from the journal by :meth:`read_events` (not logged twice).

        Raises:
            JobNotFound: no job has that id.
            StaleOwnerError: the job is not running with ``record.epoch``, or ``record.index`` is journaled.
        """
        keys = self._job_keys(record.job_id)
        script = self._scripts["append_step"]
        event_args = _event_args(record.job_id, events) if events else []
        reply = await self._submit(_append_step_command(script.sha, keys, record, event_args), script, writes=True)
        if reply != 0:
            _step_refused(record, reply)

    async def read_steps(self, job_id: str) -> builtins.list[StepRecord]:
        """The job's journal, in order (empty for an unknown job).

        Raises:
            CorruptRecord: a step cannot be decoded (``.key`` is ``"<job id>/steps/<index>"``).
        """
        return _decode_steps(job_id, await self._read("HGETALL", self._job_keys(job_id)[1]))

    async def append_events(
        self, job_id: str, events: Sequence[Mapping[str, JsonValue]], *, epoch: int | None = None
    ) -> None:
        """Append events (JSON objects, each with an int ``seq``) to the job's event log.

        An event whose ``seq`` is already logged for the job is ignored (the first one stays).

        Raises:
            InvalidInput: an event is not JSON or has no int ``seq``; nothing is written.
            StaleOwnerError: ``epoch`` was given and the job does not have it; nothing is written.
        """
        args: builtins.list[Any] = ["" if epoch is None else str(epoch), *_event_args(job_id, events)]
        if len(args) > 1:
            keys = self._job_keys(job_id)
            current = await self._script("append_events", (keys[0], keys[2]), *args)
            if current != 0:  # fenced off: the job's epoch (or its absence) is returned
                held = None if current == -1 else int(current) - 1
                raise StaleOwnerError(job_id, epoch if epoch is not None else -1, held, "event log")

    async def read_events(self, job_id: str, *, after: int = -1) -> builtins.list[dict[str, JsonValue]]:
        """The job's logged events whose ``seq`` is greater than ``after``, in ``seq`` order: those appended,
        merged with the ``step`` events of journaled steps with an ``event_seq`` (an appended event keeps
        its ``seq``).

        One script reads the event log and the journal atomically, in one round trip; it sends only the
        steps that may give an event above ``after`` (it judges a record by its JSON's tail), which are
        the only ones decoded.

        Raises:
            CorruptRecord: an event (``.key`` is ``"<job id>/events/<position>"``) or a step sent
                (``.key`` is ``"<job id>/steps/<index>"``) cannot be decoded.
        """
        script = self._scripts["read_events"]
        command = _read_events_command(script.sha, self._job_keys(job_id), self._prefix, after)
        return _merge_log(job_id, after, await self._submit(command, script, writes=False))

    # -- leases ----------------------------------------------------------------------------------------

    async def claim(
        self, job_id: str, owner: str, *, lease_until: datetime, now: datetime, reclaim_own: bool = False
    ) -> Job | None:
        """Take the lease of a pending or running job whose lease is free (see :class:`Store`).

        The lease is free when its ``lease_until`` is None or before ``now`` (a job with no owner but a
        ``lease_until``, one asleep in ``ctx.sleep``, is free from then); with
        ``reclaim_own`` also when ``owner`` holds it already.

        Returns:
            The claimed job (``epoch`` and ``version`` one higher, one more recovery if it was running),
            or None if it is not claimable.

        Raises:
            CorruptRecord: the job's record cannot be decoded; nothing is written.
        """
        updated_at = now
        reply = await _claim(self, job_id, owner, _micros(lease_until), _micros(now), reclaim_own, _micros(updated_at))
        if reply is None:
            return None
        return _claimed(job_id, reply, owner, lease_until, _moment(_micros(updated_at)))

    async def claim_orphans(
        self,
        agent: str | None,
        owner: str,
        *,
        lease_until: datetime,
        now: datetime,
        limit: int,
        reclaim_own: bool = False,
    ) -> builtins.list[Job]:
        """Claim up to ``limit`` claimable jobs (as :meth:`claim`) of ``agent`` (None: any agent), oldest first.

        Reads only claimable jobs: those whose lease is free from the ``ready`` index, the expired
        leases (with ``reclaim_own`` also ``owner``'s live ones) from the ``leased`` index, and the
        sleeping jobs whose wake time passed from the ``asleep`` index. A job whose
        record cannot be decoded is skipped (it stays where it is), so that one bad record does not stop
        every worker from taking the others.
        """
        return await _claim_orphans(self, agent, owner, lease_until, now, limit, reclaim_own)

    async def next_wake(self, agent: str | None, *, now: datetime) -> datetime | None:
        """When the next sleeping job of ``agent`` (None: any) wakes; see :meth:`Store.next_wake`."""
        key = f"{self._prefix}asleep" + ("" if agent is None else ":" + agent)
        score = await self._script("next_wake", (key,), _micros(now))
        return None if score is None else _moment(int(float(score)))

    async def renew_leases(
        self, owner: str, job_ids: Collection[str], *, lease_until: datetime, now: datetime | None = None
    ) -> set[str]:
        """Extend the leases ``owner`` holds on ``job_ids``; returns the ids it still holds.

        Does not change ``version``. Jobs another worker claimed, settled jobs and unknown ids are left
        out.
        """
        ids = builtins.list(dict.fromkeys(job_ids))
        if not ids:
            return set()
        lease, at = _micros(lease_until), _micros(now or utcnow())
        replies = await self._gather(
            self._script("renew", (self._job_key(job_id),), owner, lease, at) for job_id in ids
        )
        return {job_id for job_id, renewed in zip(ids, replies, strict=True) if renewed}

    async def release(self, job_id: str, owner: str) -> bool:
        """Clear ``owner``'s lease on the job so any worker may claim it. False if ``owner`` is not its owner."""
        return bool(await self._script("release", (self._job_key(job_id),), owner))

    async def wait_for_work(self, agent: str, timeout: float) -> None:
        """Wait until a job of ``agent`` (or of any agent, ``""``) may have become claimable, or ``timeout``.

        Woken through pub/sub by the write that makes a job claimable (created, queued again, released), so
        an idle worker takes new work at once without polling. An expired lease wakes nobody: the caller
        claims again after ``timeout``. Without pub/sub (a lost connection) it just waits ``timeout``.
        """
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        if timeout <= 0:
            await asyncio.sleep(0)
            return
        event = await self._wakeups.watch(agent)
        if event is None:
            await asyncio.sleep(timeout)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
        event.clear()

    # -- control requests ----------------------------------------------------------------------------

    async def request_control(self, request: ControlRequest) -> None:
        """Record a control request for the job's owner to act on.

        Raises:
            JobNotFound: no job has that id.
            InvalidInput: the payload is not JSON.
        """
        keys = self._job_keys(request.job_id)
        if not await self._script("request_control", (keys[0], keys[3]), _control_entry(request)):
            raise JobNotFound(request.job_id)
        # wake the owners' lease keepers at once (the request in the store is the truth: a lost message
        # only delays it to their next poll)
        await self._read("PUBLISH", self._prefix + "wake:" + _CONTROL_CHANNEL, request.job_id)

    async def wait_for_control(self, timeout: float) -> None:
        """Wait until some process asks for a pause or cancel (pub/sub), or ``timeout`` seconds pass."""
        await self.wait_for_work(_CONTROL_CHANNEL, timeout)

    async def take_controls(self, job_ids: Collection[str]) -> builtins.list[ControlRequest]:
        """Remove and return the control requests of ``job_ids``, oldest first.

        Raises:
            CorruptRecord: a request cannot be decoded (``.key`` is ``"<job id>/controls"``); the others
                taken with it are lost with it.
        """
        ids = builtins.list(dict.fromkeys(job_ids))
        if not ids:
            return []
        script = self._scripts["take_controls"]
        replies = await self._gather(
            self._submit(("EVALSHA", script.sha, 1, self._job_keys(job_id)[3]), script, writes=True) for job_id in ids
        )
        return _decode_controls(ids, replies)

    # -- worker ids ------------------------------------------------------------------------------------

    def _worker_key(self, worker_id: str) -> str:
        return f"{self._prefix}worker:{{{worker_id}}}"

    async def register_worker(
        self,
        worker_id: str,
        token: str,
        *,
        info: str,
        lease_until: datetime,
        now: datetime,
        replace: str | None = None,
    ) -> str | None:
        """Claim ``worker_id`` for ``token`` (see :meth:`Store.register_worker`). Returns the live holder's
        info when refused, else None."""
        holder = await self._script(
            "register_worker",
            (self._worker_key(worker_id),),
            token,
            info,
            _micros(lease_until),
            _micros(now),
            replace or "",
            worker_id,
        )
        return None if holder is None else holder.decode()

    async def renew_worker(
        self, worker_id: str, token: str, *, lease_until: datetime, now: datetime | None = None
    ) -> bool:
        """Extend the claim ``token`` holds on ``worker_id``. False if it holds it no longer."""
        lease, at = _micros(lease_until), _micros(now or utcnow())
        return bool(await self._script("renew_worker", (self._worker_key(worker_id),), token, lease, at, worker_id))

    async def unregister_worker(self, worker_id: str, token: str) -> None:
        """Let go of the claim ``token`` holds on ``worker_id``."""
        await self._script("unregister_worker", (self._worker_key(worker_id),), token, worker_id)

    async def list_workers(self, *, now: datetime) -> builtins.list[WorkerRecord]:
        """The worker ids whose registration is live (judged as :meth:`register_worker` judges it), by id."""
        flat = await self._script("list_workers", (), _micros(now))
        found = [
            WorkerRecord(flat[at].decode(), flat[at + 1].decode(), _moment(int(flat[at + 2])))
            for at in range(0, len(flat), 3)
        ]
        return sorted(found, key=lambda record: record.worker_id)

    # -- schedules -------------------------------------------------------------------------------------

    async def get_schedule(self, agent: str, name: str) -> ScheduleState | None:
        """The schedule ``name`` of ``agent``, or None.

        Raises:
            CorruptRecord: its record cannot be decoded.
        """
        return await _get_schedule(self, agent, name)

    async def save_schedule(self, state: ScheduleState, *, expected_version: int | None) -> ScheduleState:
        """Compare-and-set write of a schedule: create it when ``expected_version`` is None (it must not
        exist), else replace the stored one whose version is ``expected_version`` (``state.version``
        must be one higher).

        Raises:
            VersionConflict: otherwise (``.job_id`` is ``"schedule <agent>/<name>"``).
        """
        return await _save_schedule(self, state, expected_version)

    async def list_schedules(self, agent: str | None = None) -> builtins.list[ScheduleState]:
        """The schedules of ``agent`` (None: every agent), by agent and name."""
        return await _list_schedules(self, agent)

    async def delete_schedule(self, agent: str, name: str) -> bool:
        """Remove a schedule. True if it existed."""
        return await _delete_schedule(self, agent, name)

    # -- lifecycle -------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Send what is queued, stop listening, and close the client. Idempotent.

        Operations called after ``close`` raise :class:`StoreError`.
        """
        if self._closed:
            return
        self._closed = True
        await self._pipeline.close()
        await self._wakeups.close()
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()
