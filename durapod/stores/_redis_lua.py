"""The Lua scripts of RedisStore: the helpers they share, the table that names them, and their registration
on a client.

A script's own text is in :mod:`durapod.stores._redis_lua_jobs` (a job's record, journal and events) or
:mod:`durapod.stores._redis_lua_coordination` (claims, leases, sleepers, controls, schedules, worker ids);
``_SCRIPTS`` below puts the helpers it uses in front of it. RedisStore runs each script as one operation,
atomically on the server. ARGV[1] is always the key prefix; KEYS are the job's own keys (job, steps,
events, controls). Index key names are derived inside the scripts from the prefix. The key layout is
described in :mod:`durapod.stores.redis`.

Leases are judged on one clock, the server's. A job (or a worker id) keeps the lease its writer sent
(``lease_us``, on the writer's clock, what readers see) and when that lease ends on the server's clock
(``lease_at``: ``TIME`` at the write plus the lease's length on the writer's clock). Claims compare
``lease_at`` with ``TIME`` (and ``lease_us`` with the claimer's ``now``: a lease is free once both say it
ended, so a claimer whose clock runs behind only waits longer) and the ``leased`` index is scored by
``lease_at``, so workers whose clocks disagree never both hold a job. A record written before
``lease_at`` existed is judged by its ``lease_us``.

A lease with no owner is a sleeping job's (``ctx.sleep``): no worker holds it, so there is no one to
exclude, and it is judged by the claimer's clock only (``lease_at`` = ``lease_us``), like a wake time. Such
jobs are in the ``asleep`` indexes, scored by ``lease_us``, rather than in ``leased``.
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from durapod.models import CLAIMABLE, SETTLED, JobStatus
from durapod.stores._redis_lua_coordination import (
    _LUA_CLAIM,
    _LUA_LIST_WORKERS,
    _LUA_NEXT_WAKE,
    _LUA_REGISTER_WORKER,
    _LUA_RELEASE,
    _LUA_RENEW,
    _LUA_RENEW_WORKER,
    _LUA_REQUEST_CONTROL,
    _LUA_SAVE_SCHEDULE,
    _LUA_TAKE_CONTROLS,
    _LUA_UNREGISTER_WORKER,
    _LUA_WORKER_EXPIRY,
    _LUA_WORKER_LIVE,
)
from durapod.stores._redis_lua_jobs import (
    _LUA_APPEND_EVENTS,
    _LUA_APPEND_STEP,
    _LUA_CREATE,
    _LUA_DELETE,
    _LUA_FORGET,
    _LUA_READ_EVENTS,
    _LUA_SAVE,
)


def _lua_in(statuses: frozenset[JobStatus]) -> str:
    """A Lua condition on ``status`` that holds for ``statuses`` (derived from the lifecycle table)."""
    return " or ".join(f"status == '{status.value}'" for status in sorted(statuses))


# Each script carries only the helpers it uses: Redis runs a script's whole text on every call.
_LUA_STATUSES: Final = f"""
local P = ARGV[1]

local function is_live(status)
  return {_lua_in(CLAIMABLE)}
end

local function is_expiring(status)
  return {_lua_in(SETTLED - {JobStatus.PAUSED})}
end
"""
_LUA_SERVER_TIME: Final = """
-- the server's clock, in microseconds since the epoch (below 2^53: exact in a Lua number)
local function server_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- when a lease ends on the server's clock: its length (until - now, on the writer's clock) from TIME
local function lease_end(until_us, now_us)
  return string.format('%.0f', server_us() + tonumber(until_us) - tonumber(now_us))
end
"""
_LUA_BASE: Final = (
    _LUA_STATUSES
    + _LUA_SERVER_TIME
    + """
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
)

_LUA_INDEX: Final = """
-- the index keys a job belongs to, with its score in each
local function places(s)
  local out = {[P .. 'created'] = '0', [P .. 'status:' .. s.status] = '0', [P .. 'agent:' .. s.agent] = '0'}
  if is_live(s.status) then
    if s.lease and s.owner then
      out[P .. 'leased'] = s.lease
      out[P .. 'leased:' .. s.agent] = s.lease
    elseif s.lease then  -- no owner: asleep in ctx.sleep until its lease ends (lease_us)
      out[P .. 'asleep'] = s.lease
      out[P .. 'asleep:' .. s.agent] = s.lease
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

_WITH_INDEX: Final = _LUA_BASE + _LUA_INDEX
_WITH_EXPIRY: Final = _WITH_INDEX + _LUA_EXPIRY
_SCRIPTS: Final = {
    "create": _WITH_EXPIRY + _LUA_CREATE,
    "save": _WITH_EXPIRY + _LUA_SAVE,
    "append_step": _LUA_APPEND_STEP,
    "read_events": _LUA_READ_EVENTS,
    "claim": _WITH_INDEX + _LUA_CLAIM,
    "renew": _WITH_INDEX + _LUA_RENEW,
    "release": _WITH_INDEX + _LUA_RELEASE,
    "delete": _WITH_EXPIRY + _LUA_DELETE,
    "append_events": _LUA_BASE + _LUA_INHERIT_TTL + _LUA_APPEND_EVENTS,
    "request_control": _LUA_BASE + _LUA_INHERIT_TTL + _LUA_REQUEST_CONTROL,
    "take_controls": _LUA_TAKE_CONTROLS,
    "forget": _WITH_EXPIRY + _LUA_FORGET,
    "save_schedule": _LUA_SAVE_SCHEDULE,
    "register_worker": _LUA_SERVER_TIME + _LUA_WORKER_LIVE + _LUA_WORKER_EXPIRY + _LUA_REGISTER_WORKER,
    "renew_worker": _LUA_SERVER_TIME + _LUA_WORKER_EXPIRY + _LUA_RENEW_WORKER,
    "unregister_worker": _LUA_UNREGISTER_WORKER,
    "list_workers": _LUA_SERVER_TIME + _LUA_WORKER_LIVE + _LUA_LIST_WORKERS,
    "next_wake": _LUA_NEXT_WAKE,
}


def _register_scripts(client: Redis) -> dict[str, AsyncScript]:
    """Every script registered on ``client``, by name (sent by EVALSHA, loaded again on NOSCRIPT)."""
    return {name: client.register_script(text) for name, text in _SCRIPTS.items()}
