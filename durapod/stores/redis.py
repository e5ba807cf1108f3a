"""RedisStore: the store contract on Redis, shared by a fleet of workers, with group commit across jobs.

Every operation is one Lua script (or one plain read) run atomically by the server. Calls from many
coroutines are sent together (group commit): a sender task writes every call queued meanwhile in one
pipeline (``transaction=False``: each call is its own atomic script) on the store's own connection, and a
reader task reads the replies in order, so one round trip carries the writes of many jobs and each caller
continues with its own result or exception. Two batches may be in flight, so that the server runs one
while Python prepares the next and handles the replies of the previous one.

Key layout (``P`` is ``key_prefix``; ``<m>`` is a job's index member, see below)::

    P job:{<id>}          hash: ``record`` (the job's JSON) and the fields the store maintains:
                          status, agent, member, owner, lease_us, epoch, version, steps, recoveries,
                          updated_us (set by a claim until the next save)
    P steps:{<id>}        list: the journal, one StepRecord JSON per step
    P events:{<id>}       sorted set: event JSON scored by its ``seq``
    P controls:{<id>}     list: control requests (JSON) waiting for the owner
    P created             sorted set of every job's <m>, all scores 0 (ordered by <m>)
    P status:<status>     same, per status
    P agent:<agent>       same, per agent
    P ready[:<agent>]     same, claimable jobs (pending or running) whose lease is free
    P leased[:<agent>]    claimable jobs that have an owner and a lease, scored by lease_until (us)
    P expiry              jobs given a TTL: [<m>, status, agent] scored by when they expire (ms)
    P schedules           hash: ``v:<k>`` version and ``r:<k>`` JSON of each schedule
    P wake:<agent>        pub/sub channel: a job became claimable (``wait_for_work``)

``<m>`` is ``<created_at as 18 zero-padded digits of microseconds>:<id>``: byte order of the members is
(created_at, id) order, so the lexicographic ``ZRANGE ... BYLEX`` pages newest first from a cursor
exactly, with ties on ``created_at`` broken by id. ``list`` walks these indexes, never KEYS or SCAN.
``claim_orphans`` reads the expired leases of ``leased`` by score and the free jobs of ``ready`` in
order: it never visits a job that another worker holds.

The JSON record is the truth for everything but the maintained fields, which reads apply onto the decoded
job (a lease renewal, a claim or a journaled step changes only them; Lua never re-encodes a record).
Times are integers (microseconds since the Unix epoch) in those fields, so Lua compares them exactly.

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
import collections
import contextlib
import json
import math
from collections.abc import AsyncGenerator, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import structlog
from pydantic import JsonValue
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection, SSLConnection, UnixDomainSocketConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from durapod.errors import (
    CorruptRecord,
    InvalidInput,
    JobNotFound,
    StaleOwnerError,
    StoreError,
    StoreUnavailable,
    VersionConflict,
)
from durapod.models import Job, JobStatus, StepRecord, utcnow
from durapod.schedules import ScheduleState
from durapod.stores.base import ControlRequest, Page, Store, decode_cursor, encode_cursor, matches

__all__ = ["RedisStore"]

_log = structlog.get_logger("durapod.stores.redis")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
# added to created_at's microseconds so that every datetime gives 18 non-negative digits
_MEMBER_OFFSET: Final = 10**17
_MEMBER_ID_START: Final = 19  # 18 digits and ":"
_MAX_BATCH: Final = 2048  # commands per write
_MAX_IN_FLIGHT: Final = 2  # batches written whose replies are not read yet
_CHUNK: Final = 256  # index members read per round trip by list and claim_orphans
_WAITAOF_TIMEOUT_MS: Final = 2000  # below the default socket timeout (5 s) of a batch

# the hash fields every job read takes, in the order _decode_job expects
_READ_FIELDS: Final = ("record", "owner", "lease_us", "epoch", "version", "steps", "recoveries", "updated_us")

# ---------------------------------------------------------------------------------------------------
# Lua. ARGV[1] is always the key prefix; KEYS are the job's own keys (job, steps, events, controls).

# Each script carries only the helpers it uses: Redis runs a script's whole text on every call.
_LUA_BASE: Final = """
local P = ARGV[1]

local function is_live(status)
  return status == 'pending' or status == 'running'
end

local function is_expiring(status)
  return status == 'completed' or status == 'failed' or status == 'cancelled'
end

local function optional(value)
  if value == '' then return false end
  return value
end

-- an owner argument is '' for None, else '=' .. owner (so that '' stays a possible owner)
local function owner_arg(value)
  if value == '' then return false end
  return string.sub(value, 2)
end
"""

_LUA_INDEX: Final = """
-- the index keys a job belongs to, with its score in each
local function places(s)
  local out = {[P .. 'created'] = '0', [P .. 'status:' .. s.status] = '0', [P .. 'agent:' .. s.agent] = '0'}
  if is_live(s.status) then
    if s.owner and s.lease then
      out[P .. 'leased'] = s.lease
      out[P .. 'leased:' .. s.agent] = s.lease
    else
      out[P .. 'ready'] = '0'
      out[P .. 'ready:' .. s.agent] = '0'
    end
  end
  return out
end

-- move a job's index entries from its old state to its new one (either may be nil)
local function reindex(old, new)
  if old and new and old.status == new.status and old.agent == new.agent and old.member == new.member
      and old.lease == new.lease and not old.owner == not new.owner then
    return  -- the common case: same places, same scores
  end
  local before = old and places(old) or {}
  local after = new and places(new) or {}
  local moved = old and new and old.member ~= new.member
  for key, _ in pairs(before) do
    if moved or after[key] == nil then redis.call('ZREM', key, old.member) end
  end
  for key, score in pairs(after) do
    if moved or before[key] ~= score then redis.call('ZADD', key, score, new.member) end
  end
  if after[P .. 'ready'] and (moved or not before[P .. 'ready']) then
    redis.call('PUBLISH', P .. 'wake:' .. new.agent, new.member)
  end
end
"""

_LUA_EXPIRY: Final = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function expiry_entry(s)
  return cjson.encode({s.member, s.status, s.agent})
end

-- drop the index entries of up to n jobs whose TTL has passed
local function prune(now, n)
  local due = redis.call('ZRANGE', P .. 'expiry', '-inf', now, 'BYSCORE', 'LIMIT', 0, n)
  for _, entry in ipairs(due) do
    local e = cjson.decode(entry)
    local key = P .. 'job:{' .. string.sub(e[1], 20) .. '}'
    local ttl = -2
    if redis.call('HGET', key, 'member') == e[1] then ttl = redis.call('PTTL', key) end
    if ttl > 0 then
      redis.call('ZADD', P .. 'expiry', now + ttl, entry)
    else
      if ttl == -2 then
        reindex({status = e[2], agent = e[3], member = e[1], owner = false, lease = false}, nil)
      end
      redis.call('ZREM', P .. 'expiry', entry)
    end
  end
end

-- give the job's four keys the TTL (ms, '0': none) when it finishes; take it away when it runs again
local function set_ttl(old, new, ttl)
  local was = old and is_expiring(old.status)
  if is_expiring(new.status) then
    if ttl == '0' then return end
    for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
    local now = now_ms()
    if was then redis.call('ZREM', P .. 'expiry', expiry_entry(old)) end
    redis.call('ZADD', P .. 'expiry', now + tonumber(ttl), expiry_entry(new))
    prune(now, 2)
  elseif was then
    for i = 1, 4 do redis.call('PERSIST', KEYS[i]) end
    redis.call('ZREM', P .. 'expiry', expiry_entry(old))
  end
end
"""

_LUA_INHERIT_TTL: Final = """
-- a key written to a job that expires expires with it
local function inherit_ttl(key)
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
"""


# KEYS: job steps events controls. ARGV: P ttl_ms record status agent member owner lease_us epoch
# version recoveries. Returns nil if created, else the existing job's _READ_FIELDS.
_LUA_CREATE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HMGET', KEYS[1], 'record', 'owner', 'lease_us', 'epoch', 'version', 'steps',
    'recoveries', 'updated_us')
end
local new = {status = ARGV[4], agent = ARGV[5], member = ARGV[6], owner = owner_arg(ARGV[7]),
  lease = optional(ARGV[8])}
local fields = {'record', ARGV[3], 'status', new.status, 'agent', new.agent, 'member', new.member,
  'epoch', ARGV[9], 'version', ARGV[10], 'recoveries', ARGV[11], 'steps', 0}
if new.owner then fields[#fields + 1] = 'owner'; fields[#fields + 1] = new.owner end
if new.lease then fields[#fields + 1] = 'lease_us'; fields[#fields + 1] = new.lease end
redis.call('HSET', KEYS[1], unpack(fields))
-- a new job starts from an empty journal, whatever a previous job of that id left
redis.call('DEL', KEYS[2])
reindex(nil, new)
set_ttl(nil, new, ARGV[2])
return false
"""

# KEYS: job steps events controls. ARGV: P ttl_ms record status agent member owner lease_us epoch
# version recoveries expected_version. Returns steps (the lease is the one sent), {0, lease_us, steps},
# {1} (not found) or {2, version}.
_LUA_SAVE: Final = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'agent', 'member', 'owner', 'lease_us', 'version', 'epoch',
  'steps')
if not cur[6] then return {1} end
if cur[6] ~= ARGV[12] or tonumber(ARGV[10]) ~= tonumber(ARGV[12]) + 1 then return {2, cur[6]} end
local old = {status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = cur[5]}
local new = {status = ARGV[4], agent = ARGV[5], member = ARGV[6], owner = owner_arg(ARGV[7])}
if new.status == 'paused' or is_expiring(new.status) then
  new.lease = false
elseif new.owner == old.owner and ARGV[9] == cur[7] then
  new.lease = old.lease
else
  new.lease = optional(ARGV[8])
end
local fields = {'record', ARGV[3], 'status', new.status, 'agent', new.agent, 'member', new.member,
  'epoch', ARGV[9], 'version', ARGV[10], 'recoveries', ARGV[11]}
local gone = {'updated_us'}
if new.owner then
  fields[#fields + 1] = 'owner'; fields[#fields + 1] = new.owner
else
  gone[#gone + 1] = 'owner'
end
if new.lease then
  fields[#fields + 1] = 'lease_us'; fields[#fields + 1] = new.lease
else
  gone[#gone + 1] = 'lease_us'
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HDEL', KEYS[1], unpack(gone))
reindex(old, new)
set_ttl(old, new, ARGV[2])
-- the common answer is one integer (cheap to parse): the steps, when the lease is the one the writer sent
if new.lease == optional(ARGV[8]) then return tonumber(cur[8]) or 0 end
return {0, new.lease, tonumber(cur[8]) or 0}
"""

# KEYS: job steps. ARGV: index epoch record. Returns 0, {1} (not found) or {2, epoch, why}.
_LUA_APPEND_STEP: Final = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'epoch')
if not cur[1] then return {1} end
if cur[1] ~= 'running' then return {2, cur[2], 'job is ' .. cur[1]} end
if cur[2] ~= ARGV[2] then return {2, cur[2], 'another worker claimed it'} end
local length = redis.call('LLEN', KEYS[2])
if length ~= tonumber(ARGV[1]) then
  return {2, cur[2], 'step #' .. ARGV[1] .. ' but journal has ' .. length}
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'steps', length + 1)
return 0
"""

# KEYS: job. ARGV: P id owner lease_us now_us reclaim_own updated_us.
# Returns nil (not claimable), {1, why} (corrupt record: nothing written) or
# {0, record, epoch, version, recoveries, steps}.
_LUA_CLAIM: Final = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'agent', 'member', 'owner', 'lease_us', 'epoch', 'version',
  'recoveries', 'record', 'steps')
if not cur[1] or not is_live(cur[1]) then return false end
local old = {status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = cur[5]}
local free = (not old.owner) or (not old.lease) or tonumber(old.lease) < tonumber(ARGV[5])
  or (ARGV[6] == '1' and old.owner == ARGV[3])
if not free then return false end
-- a record the worker could not decode must not be claimed: check what Lua can
local ok, decoded = pcall(cjson.decode, cur[9] or '')
if not ok then return {1, 'not JSON'} end
if type(decoded) ~= 'table' or decoded.id ~= ARGV[2] or type(decoded.created_at) ~= 'string'
    or type(decoded.updated_at) ~= 'string' then
  return {1, 'not the record of this job'}
end
local epoch = (tonumber(cur[6]) or 0) + 1
local version = (tonumber(cur[7]) or 0) + 1
local recoveries = tonumber(cur[8]) or 0
if old.status == 'running' then recoveries = recoveries + 1 end
redis.call('HSET', KEYS[1], 'owner', ARGV[3], 'lease_us', ARGV[4], 'epoch', epoch, 'version', version,
  'recoveries', recoveries, 'updated_us', ARGV[7])
reindex(old, {status = old.status, agent = old.agent, member = old.member, owner = ARGV[3], lease = ARGV[4]})
return {0, cur[9], epoch, version, recoveries, tonumber(cur[10]) or 0}
"""

# KEYS: job. ARGV: P owner lease_us. Returns 1 if renewed.
_LUA_RENEW: Final = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'agent', 'member', 'owner', 'lease_us')
if not cur[1] or not is_live(cur[1]) or cur[4] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'lease_us', ARGV[3])
reindex({status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = cur[5]},
  {status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = ARGV[3]})
return 1
"""

# KEYS: job. ARGV: P owner. Returns 1 if released.
_LUA_RELEASE: Final = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'agent', 'member', 'owner', 'lease_us')
if not cur[1] or cur[4] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], 'lease_us')
reindex({status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = cur[5]},
  {status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = false})
return 1
"""

# KEYS: job steps events controls. ARGV: P. Returns 1 if the job existed.
_LUA_DELETE: Final = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'agent', 'member', 'owner', 'lease_us')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
if not cur[1] then return 0 end
local old = {status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = cur[5]}
reindex(old, nil)
if is_expiring(old.status) then redis.call('ZREM', P .. 'expiry', expiry_entry(old)) end
return 1
"""

# KEYS: job events. ARGV: P seq event seq event ... A seq already logged keeps its first event.
_LUA_APPEND_EVENTS: Final = """
for i = 2, #ARGV, 2 do
  if redis.call('ZCOUNT', KEYS[2], ARGV[i], ARGV[i]) == 0 then
    redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
inherit_ttl(KEYS[2])
return 0
"""

# KEYS: job controls. ARGV: P request. Returns 0 if the job does not exist.
_LUA_REQUEST_CONTROL: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
inherit_ttl(KEYS[2])
return 1
"""

# KEYS: controls. Returns the requests and removes them.
_LUA_TAKE_CONTROLS: Final = """
local taken = redis.call('LRANGE', KEYS[1], 0, -1)
if #taken > 0 then redis.call('DEL', KEYS[1]) end
return taken
"""

# ARGV: P index member member ... Removes the members whose job is gone from ``index`` and ``created``,
# then the index entries of up to 100 expired jobs.
_LUA_FORGET: Final = """
for i = 3, #ARGV do
  local member = ARGV[i]
  if redis.call('HGET', P .. 'job:{' .. string.sub(member, 20) .. '}', 'member') ~= member then
    redis.call('ZREM', ARGV[2], member)
    redis.call('ZREM', P .. 'created', member)
  end
end
prune(now_ms(), 100)
return 0
"""

# KEYS: schedules. ARGV: P field expected_version ('' to create) version record.
# Returns {0} or {1, stored version or nil}.
_LUA_SAVE_SCHEDULE: Final = """
local stored = redis.call('HGET', KEYS[1], 'v:' .. ARGV[2])
if ARGV[3] == '' then
  if stored then return {1, stored} end
elseif stored ~= ARGV[3] or tonumber(ARGV[4]) ~= tonumber(ARGV[3]) + 1 then
  return {1, stored}
end
redis.call('HSET', KEYS[1], 'v:' .. ARGV[2], ARGV[4], 'r:' .. ARGV[2], ARGV[5])
return {0}
"""

_WITH_INDEX: Final = _LUA_BASE + _LUA_INDEX
_WITH_EXPIRY: Final = _WITH_INDEX + _LUA_EXPIRY
_SCRIPTS: Final = {
    "create": _WITH_EXPIRY + _LUA_CREATE,
    "save": _WITH_EXPIRY + _LUA_SAVE,
    "append_step": _LUA_APPEND_STEP,
    "claim": _WITH_INDEX + _LUA_CLAIM,
    "renew": _WITH_INDEX + _LUA_RENEW,
    "release": _WITH_INDEX + _LUA_RELEASE,
    "delete": _WITH_EXPIRY + _LUA_DELETE,
    "append_events": _LUA_BASE + _LUA_INHERIT_TTL + _LUA_APPEND_EVENTS,
    "request_control": _LUA_BASE + _LUA_INHERIT_TTL + _LUA_REQUEST_CONTROL,
    "take_controls": _LUA_TAKE_CONTROLS,
    "forget": _WITH_EXPIRY + _LUA_FORGET,
    "save_schedule": _LUA_SAVE_SCHEDULE,
}


# ---------------------------------------------------------------------------------------------------
# Encoding


def _micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _member(created_at: datetime, job_id: str) -> str:
    """The job's entry in the indexes: byte order is (created_at, id) order."""
    return f"{_micros(created_at) + _MEMBER_OFFSET:018d}:{job_id}"


def _member_id(member: bytes) -> str:
    return member[_MEMBER_ID_START:].decode()


def _owner_arg(owner: str | None) -> str:
    return "" if owner is None else "=" + owner


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _encode_json(value: object, what: str, job_id: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(what, value, str(exc), job_id) from None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _decode_job(job_id: str, values: Sequence[Any]) -> Job:
    """Decode a job from its hash's ``_READ_FIELDS`` and apply the fields the store maintains."""
    record, owner, lease, epoch, version, steps, recoveries, updated = values
    if record is None:
        raise CorruptRecord(job_id, "the job hash has no record")
    try:
        job = Job.model_validate_json(record)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise CorruptRecord(job_id, _first_line(exc)) from None
    if job.id != job_id:
        raise CorruptRecord(job_id, f"the record is of job {job.id!r}")
    try:
        changes: dict[str, Any] = {}
        owner_text = _text(owner)
        if job.owner != owner_text:
            changes["owner"] = owner_text
        if lease is None:
            if job.lease_until is not None:
                changes["lease_until"] = None
        elif job.lease_until is None or _micros(job.lease_until) != int(lease):
            changes["lease_until"] = _moment(int(lease))
        for name, value in (("epoch", epoch), ("version", version), ("steps", steps), ("recoveries", recoveries)):
            if value is None or int(value) != getattr(job, name):
                changes[name] = int(value)  # None (a missing field) fails here: the hash is damaged
        if updated is not None and _micros(job.updated_at) != int(updated):
            changes["updated_at"] = _moment(int(updated))
    except (TypeError, ValueError) as exc:
        raise CorruptRecord(job_id, f"the job hash has a bad field: {exc}") from None
    return job.model_copy(update=changes) if changes else job


# ---------------------------------------------------------------------------------------------------
# Group commit


class _Call:
    """A queued command: its arguments, the script it runs (for the NOSCRIPT fallback) and its future.

    ``future`` is None for the pipeline's own commands (a ``SCRIPT LOAD`` before a retry).
    """

    __slots__ = ("args", "future", "retried", "script", "writes")

    def __init__(
        self, args: tuple[Any, ...], script: AsyncScript | None, future: asyncio.Future[Any] | None, writes: bool
    ) -> None:
        self.args = args
        self.script = script
        self.future = future
        self.writes = writes
        self.retried = False


class _Batch:
    """Calls sent in one write, whose replies are awaited in order (plus a WAITAOF reply if asked)."""

    __slots__ = ("calls", "connection", "dead", "waits_for_disk")

    def __init__(self, calls: list[_Call], connection: AbstractConnection, waits_for_disk: bool) -> None:
        self.calls = calls
        self.connection = connection
        self.waits_for_disk = waits_for_disk
        self.dead = False  # its connection broke: its callers have their StoreUnavailable already


class _Pipeline:
    """Group commit on one connection: a sender task and a reader task.

    The sender writes every call queued meanwhile in one write (a batch), with up to ``_MAX_IN_FLIGHT``
    batches awaiting their replies; the reader reads the replies in order and gives each call's future its
    own result, or its own exception (a ``ResponseError`` concerns one command only). So the server runs
    one batch while Python prepares the next and handles the replies of the previous one.

    A command refused with NOSCRIPT (the server's script cache was flushed, or it restarted) was not run:
    it is queued again behind a ``SCRIPT LOAD`` of its script, once. A broken connection fails the calls
    in flight with :class:`StoreUnavailable` (their outcome is unknown) and the next batch reconnects.
    """

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._queue: collections.deque[_Call] = collections.deque()
        self._in_flight: collections.deque[_Batch] = collections.deque()
        self._sender: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._sender_idle: asyncio.Future[None] | None = None
        self._reader_idle: asyncio.Future[None] | None = None
        self._connection: AbstractConnection | None = None
        self._closing = False
        self._waitaof: bool | None = None if store.durability == "full" else False
        kwargs = store.client.connection_pool.connection_kwargs
        self._encoding: tuple[str, str] = (kwargs.get("encoding", "utf-8"), kwargs.get("encoding_errors", "strict"))

    def submit(self, args: tuple[Any, ...], script: AsyncScript | None, writes: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Call(args, script, future, writes))
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_loop(), name=f"durapod-redis-sender {self._store._where}")
        else:
            self._wake_sender()
        return future

    async def close(self) -> None:
        """Send what is queued, wait for the replies, then stop the tasks and give the connection back."""
        self._closing = True
        self._wake_sender()
        self._wake_reader()
        for task in (self._sender, self._reader):
            if task is not None:
                await asyncio.shield(task)
        await self._release()

    def _wake_sender(self) -> None:
        if self._sender_idle is not None and not self._sender_idle.done():
            self._sender_idle.set_result(None)

    def _wake_reader(self) -> None:
        if self._reader_idle is not None and not self._reader_idle.done():
            self._reader_idle.set_result(None)

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._queue or len(self._in_flight) >= _MAX_IN_FLIGHT:
                    # in flight, a reply may still send a call again (NOSCRIPT): stop only when all is answered
                    if self._closing and not self._queue and not self._in_flight:
                        return
                    self._sender_idle = loop.create_future()
                    await self._sender_idle
                    self._sender_idle = None
                    continue
                count = min(len(self._queue), _MAX_BATCH)
                free = _MAX_IN_FLIGHT - len(self._in_flight)
                if free > 1 and count >= 16:
                    # split the callers into groups, so that the server runs one group's batch while Python
                    # handles another's replies: the groups then keep taking turns
                    count = -(-count // free)
                calls = [self._queue.popleft() for _ in range(count)]
                await self._send(calls)
        finally:
            self._fail(self._queue, StoreError(f"{self._store!r} is closed"))
            self._queue.clear()
            self._wake_reader()

    async def _send(self, calls: list[_Call]) -> None:
        waits_for_disk = self._waitaof is not False and any(call.writes for call in calls)
        commands = [call.args for call in calls]
        if waits_for_disk:
            commands.append(("WAITAOF", 1, 0, _WAITAOF_TIMEOUT_MS))
        try:
            if self._connection is not None and not self._in_flight and await self._is_stale(self._connection):
                await self._broken(RedisConnectionError("closed by the server while idle"))
            if self._connection is None:
                self._connection = await self._store.client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            connection = self._connection
            await connection.send_packed_command(self._pack(commands), check_health=False)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._fail(calls, self._store._failure(exc))
            await self._broken(exc)
            return
        except BaseException as exc:
            self._fail(calls, self._store._failure(exc))
            await self._broken(exc)
            raise
        self._in_flight.append(_Batch(calls, connection, waits_for_disk))
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(
                self._read_loop(), name=f"durapod-redis-reader {self._store._where}"
            )
        else:
            self._wake_reader()

    @staticmethod
    async def _is_stale(connection: AbstractConnection) -> bool:
        """True if an idle connection was closed (a server ``timeout``, a restart) or holds stray data."""
        try:
            return await connection.can_read()
        except (RedisConnectionError, OSError):
            return True

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._in_flight:
                if self._closing and not self._queue and (self._sender is None or self._sender.done()):
                    return
                self._reader_idle = loop.create_future()
                await self._reader_idle
                self._reader_idle = None
                continue
            batch = self._in_flight[0]
            replies = await self._read(batch)
            if batch.dead:
                continue  # _broken has failed it and emptied _in_flight
            self._in_flight.popleft()
            self._wake_sender()
            self._settle(batch, replies)

    async def _read(self, batch: _Batch) -> list[Any]:
        connection = batch.connection
        count = len(batch.calls) + batch.waits_for_disk
        replies: list[Any] = []
        try:
            # one deadline for the whole batch instead of a timer per reply
            async with asyncio.timeout(connection.socket_timeout):
                for _ in range(count):
                    try:
                        replies.append(await connection.read_response(disable_decoding=True, timeout=math.inf))
                    except ResponseError as exc:
                        replies.append(exc)
        except TimeoutError:
            if not batch.dead:
                await self._broken(RedisTimeoutError(f"no reply within {connection.socket_timeout} s"), replies)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if not batch.dead:
                await self._broken(exc, replies)
        except BaseException as exc:
            if not batch.dead:
                await self._broken(exc, replies)
            raise
        return replies

    def _settle(self, batch: _Batch, replies: list[Any]) -> None:
        if batch.waits_for_disk:
            replies = self._check_on_disk(replies)
        again: list[_Call] = []
        for call, reply in zip(batch.calls, replies, strict=True):
            if isinstance(reply, NoScriptError) and call.script is not None and not call.retried:
                call.retried = True
                again.append(call)
            elif call.future is None or call.future.done():
                continue  # the pipeline's own command, or a caller that was cancelled
            elif isinstance(reply, BaseException):
                call.future.set_exception(self._store._failure(reply))
            else:
                call.future.set_result(reply)
        if again:
            # not run: load the scripts, then send them again (the connection keeps the order)
            scripts = {id(call.script): call.script for call in again if call.script is not None}
            self._queue.extendleft(reversed(again))
            self._queue.extendleft(
                _Call(("SCRIPT", "LOAD", script.script), None, None, False) for script in scripts.values()
            )
            self._wake_sender()

    async def _broken(self, exc: BaseException, replies: Sequence[Any] = ()) -> None:
        """The connection failed: fail every call in flight (keeping the replies already read) and drop it."""
        lost = self._store._failure(exc)
        batches = builtins.list(self._in_flight)
        self._in_flight.clear()
        for index, batch in enumerate(batches):
            batch.dead = True
            if index == 0 and replies:
                read = builtins.list(replies[: len(batch.calls)])
                self._settle(batch, read + [lost] * (len(batch.calls) + batch.waits_for_disk - len(read)))
            else:
                self._fail(batch.calls, lost)
        connection, self._connection = self._connection, None
        self._wake_sender()
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect()
            with contextlib.suppress(Exception):
                await self._store.client.connection_pool.release(connection)

    @staticmethod
    def _fail(calls: Iterable[_Call], error: BaseException) -> None:
        for call in calls:
            if call.future is not None and not call.future.done():
                call.future.set_exception(error)

    def _pack(self, commands: list[tuple[Any, ...]]) -> bytes:
        """The commands in the Redis protocol, in one buffer (leaner than redis-py's general packer)."""
        encoding, errors = self._encoding
        out: list[bytes] = []
        append = out.append
        for args in commands:
            append(b"*%d\r\n" % len(args))
            for arg in args:
                kind = arg.__class__
                if kind is str:
                    arg = arg.encode(encoding, errors)
                elif kind is int:
                    arg = b"%d" % arg
                elif kind is not bytes:
                    arg = (str(int(arg)) if kind is bool else str(arg)).encode(encoding, errors)
                append(b"$%d\r\n%b\r\n" % (len(arg), arg))
        return b"".join(out)

    def _check_on_disk(self, replies: list[Any]) -> list[Any]:
        """Strip the WAITAOF reply; when it says the writes are not on disk, fail the calls."""
        synced, replies = replies[-1], replies[:-1]
        if isinstance(synced, ResponseError):
            # Redis before 7.2 has no WAITAOF, and it needs appendonly: the server's own fsync policy rules
            if self._waitaof is not False:
                self._waitaof = False
                _log.warning("WAITAOF unavailable: durability='full' relies on the server's fsync", error=str(synced))
        elif isinstance(synced, list) and synced and synced[0] == 0:
            lost = StoreUnavailable(f"{self._store!r}: writes not fsynced within {_WAITAOF_TIMEOUT_MS} ms")
            replies = [reply if isinstance(reply, BaseException) else lost for reply in replies]
        elif isinstance(synced, list):
            self._waitaof = True
        return replies

    async def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await self._store.client.connection_pool.release(connection)


#: The pub/sub "agent" name on which control requests wake lease keepers (no agent is named so).
_CONTROL_CHANNEL = "\x00control"


class _Wakeups:
    """Pub/sub on ``wake:<agent>``: an event per agent, set when a job of it (or of agent "") is claimable."""

    def __init__(self, store: RedisStore) -> None:
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
                await self._pubsub.subscribe(*sorted(new))
            except (RedisError, OSError):
                await self.close()
                return None
            self._subscribed |= new
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._listen(self._pubsub))
        return event

    async def _listen(self, pubsub: PubSub) -> None:
        with contextlib.suppress(RedisError, OSError):
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
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


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
        self._scripts = {name: client.register_script(text) for name, text in _SCRIPTS.items()}
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
        if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
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

    async def create(self, job: Job) -> tuple[Job, bool]:
        """Insert ``job`` if no job has its id.

        Returns:
            The stored job and True if it was created; the existing job and False otherwise.

        Raises:
            CorruptRecord: the existing job's record cannot be decoded.
            StoreUnavailable: the server cannot be reached.
        """
        existing = await self._script(
            "create",
            self._job_keys(job.id),
            self._ttl_ms,
            job.model_dump_json(),
            str(job.status),
            job.agent,
            _member(job.created_at, job.id),
            _owner_arg(job.owner),
            "" if job.lease_until is None else _micros(job.lease_until),
            job.epoch,
            job.version,
            job.recoveries,
        )
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

    async def save(self, job: Job, *, expected_version: int) -> Job:
        """Compare-and-set write of ``job``: only if the stored version is ``expected_version``.

        ``job.version`` must be ``expected_version + 1``. The stored lease and step count are kept as the
        store rules say (see :mod:`durapod.stores.base`).

        Returns:
            The job as stored.

        Raises:
            JobNotFound: no job has that id.
            VersionConflict: the stored version is not ``expected_version``, or ``job.version`` is not
                one higher.
        """
        reply = await self._script(
            "save",
            self._job_keys(job.id),
            self._ttl_ms,
            job.model_dump_json(),
            str(job.status),
            job.agent,
            _member(job.created_at, job.id),
            _owner_arg(job.owner),
            "" if job.lease_until is None else _micros(job.lease_until),
            job.epoch,
            job.version,
            job.recoveries,
            expected_version,
        )
        if isinstance(reply, int):
            return job if reply == job.steps else job.model_copy(update={"steps": reply})
        if reply[0] == 1:
            raise JobNotFound(job.id)
        if reply[0] == 2:
            raise VersionConflict(job.id, expected_version, int(reply[1]))
        lease, steps = reply[1], reply[2]
        changes: dict[str, Any] = {}
        if lease is None:
            if job.lease_until is not None:
                changes["lease_until"] = None
        elif job.lease_until is None or _micros(job.lease_until) != int(lease):
            changes["lease_until"] = _moment(int(lease))
        if steps != job.steps:
            changes["steps"] = steps
        return job.model_copy(update=changes) if changes else job

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

        Raises:
            ValueError: an invalid cursor, status or limit (naming it).
            CorruptRecord: a record on the way cannot be decoded.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"invalid limit {limit!r}: expected an int >= 0")
        statuses: builtins.list[str] | None = None
        if status is not None:
            if isinstance(status, str):
                status = (JobStatus(status),)
            statuses = sorted({str(JobStatus(value)) for value in status})
            if not statuses:
                return Page([], None)
        start = "+"
        if cursor is not None:
            created, job_id = decode_cursor(cursor)
            start = "(" + _member(created, job_id)
        if limit == 0:
            return Page([], None)
        if statuses is not None:
            indexes = [f"{self._prefix}status:{value}" for value in statuses]
        elif agent is not None:
            indexes = [f"{self._prefix}agent:{agent}"]
        else:
            indexes = [f"{self._prefix}created"]
        chunk = _CHUNK if limit is None or metadata else max(min(limit + 1, _CHUNK), 16)
        wanted_status = None if statuses is None else {value.encode() for value in statuses}
        wanted_agent = None if agent is None else agent.encode()
        walk = self._walk_newest_first(indexes, start, chunk)
        async with contextlib.aclosing(walk):
            return await self._list_page(walk, wanted_status, wanted_agent, metadata, limit)

    async def _list_page(
        self,
        walk: AsyncGenerator[builtins.list[tuple[str, bytes]], None],
        wanted_status: set[bytes] | None,
        wanted_agent: bytes | None,
        metadata: Mapping[str, JsonValue] | None,
        limit: int | None,
    ) -> Page:
        found: builtins.list[Job] = []
        async for members in walk:
            rows = await self._gather(
                self._read("HMGET", self._job_key(_member_id(member)), "member", "status", "agent", *_READ_FIELDS)
                for _, member in members
            )
            stale: dict[str, builtins.list[bytes]] = collections.defaultdict(builtins.list)
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
                    await self._forget(stale)
                    return Page(found, encode_cursor(found[-1]))
                job = _decode_job(_member_id(member), row[3:])
                if metadata and not matches(job, None, None, metadata):
                    continue
                found.append(job)
                if limit is not None and len(found) > limit:
                    await self._forget(stale)
                    page = found[:limit]
                    return Page(page, encode_cursor(page[-1]))
            await self._forget(stale)
        return Page(found, None)

    async def _walk_newest_first(
        self, indexes: Sequence[str], start: str, chunk: int
    ) -> AsyncGenerator[builtins.list[tuple[str, bytes]], None]:
        """Members of ``indexes`` merged in descending order from ``start``, a chunk at a time."""
        bounds = dict.fromkeys(indexes, start)
        buffers: dict[str, collections.deque[bytes]] = {index: collections.deque() for index in indexes}
        exhausted: set[str] = set()
        while True:
            refill = [index for index in indexes if not buffers[index] and index not in exhausted]
            if refill:
                replies = await self._gather(
                    self._read("ZRANGE", index, bounds[index], "-", "BYLEX", "REV", "LIMIT", 0, chunk)
                    for index in refill
                )
                for index, members in zip(refill, replies, strict=True):
                    buffers[index].extend(members)
                    if len(members) < chunk:
                        exhausted.add(index)
                    if members:
                        bounds[index] = "(" + members[-1].decode()
            out: builtins.list[tuple[str, bytes]] = []
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

    async def _forget(self, stale: Mapping[str, Sequence[bytes]]) -> None:
        for index, members in stale.items():
            if members:
                await self._script("forget", (), index, *members)

    async def delete(self, job_id: str) -> bool:
        """Remove a job with its journal, events, control requests and index entries. True if it existed."""
        return bool(await self._script("delete", self._job_keys(job_id)))

    # -- journal and events ------------------------------------------------------------------------------

    async def append_step(self, record: StepRecord) -> None:
        """Journal one step, fenced: the job must be running with ``record.epoch`` and the journal hold
        exactly ``record.index`` steps. Sets the job's ``steps`` count without changing its version.

        Raises:
            JobNotFound: no job has that id.
            StaleOwnerError: the job is not running with ``record.epoch``, or ``record.index`` is not
                the journal's length.
        """
        keys = self._job_keys(record.job_id)
        script = self._scripts["append_step"]
        reply = await self._submit(
            ("EVALSHA", script.sha, 2, keys[0], keys[1], record.index, record.epoch, record.model_dump_json()),
            script,
            writes=True,
        )
        if reply == 0:
            return
        if reply[0] == 1:
            raise JobNotFound(record.job_id)
        if reply[0] == 2:
            raise StaleOwnerError(record.job_id, record.epoch, int(reply[1]), reply[2].decode())

    async def read_steps(self, job_id: str) -> builtins.list[StepRecord]:
        """The job's journal, in order (empty for an unknown job).

        Raises:
            CorruptRecord: a step cannot be decoded (``.key`` is ``"<job id>/steps/<index>"``).
        """
        steps: builtins.list[StepRecord] = []
        for index, raw in enumerate(await self._read("LRANGE", self._job_keys(job_id)[1], 0, -1)):
            try:
                steps.append(StepRecord.model_validate_json(raw))
            except ValueError as exc:
                raise CorruptRecord(f"{job_id}/steps/{index}", _first_line(exc)) from None
        return steps

    async def append_events(self, job_id: str, events: Sequence[Mapping[str, JsonValue]]) -> None:
        """Append events (JSON objects, each with an int ``seq``) to the job's event log.

        An event whose ``seq`` is already logged for the job is ignored (the first one stays).

        Raises:
            InvalidInput: an event is not JSON or has no int ``seq``; nothing is written.
        """
        args: builtins.list[Any] = []
        for event in events:
            seq = event.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool):
                raise InvalidInput("event", event, "no int 'seq'", job_id)
            args += (seq, _encode_json(dict(event), "event", job_id))
        if args:
            keys = self._job_keys(job_id)
            await self._script("append_events", (keys[0], keys[2]), *args)

    async def read_events(self, job_id: str, *, after: int = -1) -> builtins.list[dict[str, JsonValue]]:
        """The job's logged events whose ``seq`` is greater than ``after``, in ``seq`` order.

        Raises:
            CorruptRecord: an event cannot be decoded (``.key`` is ``"<job id>/events/<position>"``).
        """
        raws = await self._read("ZRANGE", self._job_keys(job_id)[2], f"({after}", "+inf", "BYSCORE")
        events: builtins.list[dict[str, JsonValue]] = []
        for position, raw in enumerate(raws):
            try:
                event = json.loads(raw)
            except ValueError as exc:
                raise CorruptRecord(f"{job_id}/events/{position}", str(exc)) from None
            if not isinstance(event, dict):
                raise CorruptRecord(f"{job_id}/events/{position}", "not a JSON object")
            events.append(event)
        return events

    # -- leases ----------------------------------------------------------------------------------------

    def _claim(
        self, job_id: str, owner: str, lease_micros: int, now_micros: int, reclaim_own: bool, updated: int
    ) -> asyncio.Future[Any]:
        return self._script(
            "claim", (self._job_key(job_id),), job_id, owner, lease_micros, now_micros, int(reclaim_own), updated
        )

    @staticmethod
    def _claimed(job_id: str, reply: Any, owner: str, lease_until: datetime, updated_at: datetime) -> Job:
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

    async def claim(
        self, job_id: str, owner: str, *, lease_until: datetime, now: datetime, reclaim_own: bool = False
    ) -> Job | None:
        """Take the lease of a pending or running job whose lease is free (see :class:`Store`).

        The lease is free when the job has no owner or its ``lease_until`` is None or before ``now``; with
        ``reclaim_own`` also when ``owner`` holds it already.

        Returns:
            The claimed job (``epoch`` and ``version`` one higher, one more recovery if it was running),
            or None if it is not claimable.

        Raises:
            CorruptRecord: the job's record cannot be decoded; nothing is written.
        """
        updated_at = utcnow()
        reply = await self._claim(job_id, owner, _micros(lease_until), _micros(now), reclaim_own, _micros(updated_at))
        if reply is None:
            return None
        return self._claimed(job_id, reply, owner, lease_until, _moment(_micros(updated_at)))

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

        Reads only claimable jobs: those whose lease is free from the ``ready`` index, and the expired
        leases (with ``reclaim_own`` also ``owner``'s live ones) from the ``leased`` index. A job whose
        record cannot be decoded is skipped (it stays where it is), so that one bad record does not stop
        every worker from taking the others.
        """
        if limit <= 0:
            return []
        suffix = "" if agent is None else ":" + agent
        ready_key, leased_key = f"{self._prefix}ready{suffix}", f"{self._prefix}leased{suffix}"
        now_micros, lease_micros = _micros(now), _micros(lease_until)
        leased = await self._read("ZRANGE", leased_key, "-inf", f"({now_micros}", "BYSCORE")
        if reclaim_own:
            live = await self._read("ZRANGE", leased_key, now_micros, "+inf", "BYSCORE")
            owners = await self._gather(
                self._read("HGET", self._job_key(_member_id(member)), "owner") for member in live
            )
            leased += [member for member, held_by in zip(live, owners, strict=True) if _text(held_by) == owner]
        candidates = collections.deque(sorted(set(leased)))
        ready: collections.deque[bytes] = collections.deque()
        bound, ready_done = "-", False
        seen: set[bytes] = set()
        claimed: builtins.list[Job] = []
        while len(claimed) < limit:
            wanted = min(limit - len(claimed), _CHUNK)
            batch: builtins.list[bytes] = []
            while len(batch) < wanted:
                if not ready and not ready_done:  # refill before comparing, or the order could break
                    more = await self._read("ZRANGE", ready_key, bound, "+", "BYLEX", "LIMIT", 0, _CHUNK)
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
            updated_at = utcnow()
            updated = _micros(updated_at)
            job_ids = [_member_id(member) for member in batch]
            replies = await self._gather(
                self._claim(job_id, owner, lease_micros, now_micros, reclaim_own, updated) for job_id in job_ids
            )
            for job_id, reply in zip(job_ids, replies, strict=True):
                if reply is None:
                    continue
                with contextlib.suppress(CorruptRecord):
                    claimed.append(self._claimed(job_id, reply, owner, lease_until, _moment(updated)))
        return claimed

    async def renew_leases(self, owner: str, job_ids: Collection[str], *, lease_until: datetime) -> set[str]:
        """Extend the leases ``owner`` holds on ``job_ids``; returns the ids it still holds.

        Does not change ``version``. Jobs another worker claimed, settled jobs and unknown ids are left
        out.
        """
        ids = builtins.list(dict.fromkeys(job_ids))
        if not ids:
            return set()
        lease = _micros(lease_until)
        replies = await self._gather(self._script("renew", (self._job_key(job_id),), owner, lease) for job_id in ids)
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
        entry = json.dumps(
            {
                "kind": request.kind,
                "requested_at": request.requested_at.isoformat(),
                "payload": json.loads(_encode_json(request.payload, "control payload", request.job_id)),
            },
            separators=(",", ":"),
        )
        keys = self._job_keys(request.job_id)
        if not await self._script("request_control", (keys[0], keys[3]), entry):
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
        taken: builtins.list[ControlRequest] = []
        for job_id, entries in zip(ids, replies, strict=True):
            for raw in entries:
                try:
                    entry = json.loads(raw)
                    taken.append(
                        ControlRequest(
                            job_id, entry["kind"], datetime.fromisoformat(entry["requested_at"]), entry["payload"]
                        )
                    )
                except (ValueError, TypeError, KeyError) as exc:
                    raise CorruptRecord(f"{job_id}/controls", str(exc)) from None
        taken.sort(key=lambda request: request.requested_at)
        return taken

    # -- schedules -------------------------------------------------------------------------------------

    @staticmethod
    def _schedule_field(agent: str, name: str) -> str:
        return json.dumps([agent, name], separators=(",", ":"))

    @staticmethod
    def _decode_schedule(field: str, raw: bytes) -> ScheduleState:
        try:
            return ScheduleState.model_validate_json(raw)
        except ValueError as exc:
            raise CorruptRecord(f"schedule {field}", _first_line(exc)) from None

    async def get_schedule(self, agent: str, name: str) -> ScheduleState | None:
        """The schedule ``name`` of ``agent``, or None.

        Raises:
            CorruptRecord: its record cannot be decoded.
        """
        field = self._schedule_field(agent, name)
        raw = await self._read("HGET", f"{self._prefix}schedules", "r:" + field)
        return None if raw is None else self._decode_schedule(field, raw)

    async def save_schedule(self, state: ScheduleState, *, expected_version: int | None) -> ScheduleState:
        """Compare-and-set write of a schedule: create it when ``expected_version`` is None (it must not
        exist), else replace the stored one whose version is ``expected_version`` (``state.version``
        must be one higher).

        Raises:
            VersionConflict: otherwise (``.job_id`` is ``"schedule <agent>/<name>"``).
        """
        reply = await self._script(
            "save_schedule",
            (f"{self._prefix}schedules",),
            self._schedule_field(state.agent, state.name),
            "" if expected_version is None else expected_version,
            state.version,
            state.model_dump_json(),
        )
        if reply[0] == 1:
            stored = None if len(reply) < 2 or reply[1] is None else int(reply[1])
            what = f"schedule {state.agent}/{state.name}"
            raise VersionConflict(what, 0 if expected_version is None else expected_version, stored)
        return state

    async def list_schedules(self, agent: str | None = None) -> builtins.list[ScheduleState]:
        """The schedules of ``agent`` (None: every agent), by agent and name."""
        stored = await self._read("HGETALL", f"{self._prefix}schedules")
        # RESP2 answers a flat list of fields and values, RESP3 a map
        pairs = stored.items() if isinstance(stored, dict) else zip(stored[::2], stored[1::2], strict=True)
        found: builtins.list[ScheduleState] = []
        for raw_field, raw in pairs:
            field = raw_field.decode()
            if not field.startswith("r:"):
                continue
            state = self._decode_schedule(field[2:], raw)
            if agent is None or state.agent == agent:
                found.append(state)
        return sorted(found, key=lambda state: (state.agent, state.name))

    async def delete_schedule(self, agent: str, name: str) -> bool:
        """Remove a schedule. True if it existed."""
        field = self._schedule_field(agent, name)
        future = self._submit(("HDEL", f"{self._prefix}schedules", "v:" + field, "r:" + field), writes=True)
        return bool(await future)

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


def _redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
