"""The Lua scripts of RedisStore, and their registration on a client.

RedisStore runs each of these scripts as one operation, atomically on the server. ARGV[1] is
always the key prefix; KEYS are the job's own keys (job, steps, events, controls). Index key names are
derived inside the scripts from the prefix. The key layout is described in :mod:`durapod.stores.redis`.

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


# KEYS: job steps events controls. ARGV: P ttl_ms record status agent member owner lease_us epoch
# version recoveries now_us (the writer's clock) status_seq status_head. Returns nil if created, else the
# existing job's _READ_FIELDS. A job created with a status_seq (not '') logs the job_status event
# status_head .. record .. '}', the record sent for the write wrapped (as the save script does); a seq
# already logged keeps its first event.
_LUA_CREATE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HMGET', KEYS[1], 'record', 'owner', 'lease_us', 'epoch', 'version', 'steps',
    'recoveries', 'updated_us')
end
local new = {status = ARGV[4], agent = ARGV[5], member = ARGV[6], owner = owner_arg(ARGV[7])}
local fields = {'record', ARGV[3], 'status', new.status, 'agent', new.agent, 'member', new.member,
  'epoch', ARGV[9], 'version', ARGV[10], 'recoveries', ARGV[11], 'steps', 0}
if new.owner then fields[#fields + 1] = 'owner'; fields[#fields + 1] = new.owner end
if ARGV[8] ~= '' then
  new.lease = new.owner and lease_end(ARGV[8], ARGV[12]) or ARGV[8]
  for _, v in ipairs({'lease_us', ARGV[8], 'lease_at', new.lease}) do fields[#fields + 1] = v end
end
redis.call('HSET', KEYS[1], unpack(fields))
-- a new job starts from an empty journal, whatever a previous job of that id left
redis.call('DEL', KEYS[2])
if ARGV[13] ~= '' and redis.call('ZCOUNT', KEYS[3], ARGV[13], ARGV[13]) == 0 then
  redis.call('ZADD', KEYS[3], ARGV[13], ARGV[14] .. ARGV[3] .. '}')
end
reindex(nil, new)
set_ttl(nil, new, ARGV[2])
return false
"""

# KEYS: job steps events controls. ARGV: P ttl_ms record status agent member owner lease_us epoch
# version recoveries now_us expected_version status_seq status_head [seq event]... Returns steps (the lease
# is the one sent), {0, lease_us, steps}, {1} (not found) or {2, version}. The events are logged with the
# write, then (status_seq not '') the job_status event: status_head .. record .. '}', the record sent
# for the write wrapped, not sent twice. A seq already logged keeps its first event.
_LUA_SAVE: Final = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'agent', 'member', 'owner', 'lease_us', 'version', 'epoch',
  'steps', 'lease_at')
if not cur[6] then return {1} end
if cur[6] ~= ARGV[13] or tonumber(ARGV[10]) ~= tonumber(ARGV[13]) + 1 then return {2, cur[6]} end
local old = {status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = cur[9] or cur[5]}
local new = {status = ARGV[4], agent = ARGV[5], member = ARGV[6], owner = owner_arg(ARGV[7])}
local lease_us
if new.status == 'paused' or is_expiring(new.status) then
  lease_us, new.lease = false, false
elseif new.owner == old.owner and ARGV[9] == cur[7] then
  lease_us, new.lease = cur[5], old.lease
elseif ARGV[8] ~= '' then
  lease_us, new.lease = ARGV[8], new.owner and lease_end(ARGV[8], ARGV[12]) or ARGV[8]
else
  lease_us, new.lease = false, false
end
local fields = {'record', ARGV[3], 'status', new.status, 'agent', new.agent, 'member', new.member,
  'epoch', ARGV[9], 'version', ARGV[10], 'recoveries', ARGV[11]}
local gone = {'updated_us'}
if new.owner then
  fields[#fields + 1] = 'owner'; fields[#fields + 1] = new.owner
else
  gone[#gone + 1] = 'owner'
end
if lease_us then
  for _, v in ipairs({'lease_us', lease_us, 'lease_at', new.lease}) do fields[#fields + 1] = v end
else
  gone[#gone + 1] = 'lease_us'; gone[#gone + 1] = 'lease_at'
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HDEL', KEYS[1], unpack(gone))
for i = 16, #ARGV, 2 do
  if redis.call('ZCOUNT', KEYS[3], ARGV[i], ARGV[i]) == 0 then redis.call('ZADD', KEYS[3], ARGV[i], ARGV[i + 1]) end
end
if ARGV[14] ~= '' and redis.call('ZCOUNT', KEYS[3], ARGV[14], ARGV[14]) == 0 then
  redis.call('ZADD', KEYS[3], ARGV[14], ARGV[15] .. ARGV[3] .. '}')
end
reindex(old, new)
set_ttl(old, new, ARGV[2])
-- the common answer is one integer (cheap to parse): the steps, when the lease is the one the writer sent
if lease_us == optional(ARGV[8]) then return tonumber(cur[8]) or 0 end
return {0, lease_us, tonumber(cur[8]) or 0}
"""

# KEYS: job steps events. ARGV: index epoch record [seq event]... Returns 0, {1} (not found) or
# {2, epoch, why}. The journal is a hash by index: steps started together are journaled in the order they
# finish. A record's step event (its event_seq) is not logged: read_events derives it from the journal.
_LUA_APPEND_STEP: Final = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'epoch')
if not cur[1] then return {1} end
if cur[1] ~= 'running' then return {2, cur[2], 'job is ' .. cur[1]} end
if cur[2] ~= ARGV[2] then return {2, cur[2], 'another worker claimed it'} end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3]) == 0 then
  return {2, cur[2], 'step #' .. ARGV[1] .. ' is journaled'}
end
redis.call('HINCRBY', KEYS[1], 'steps', 1)
for i = 4, #ARGV, 2 do  -- the events streamed before the step, logged with it
  if redis.call('ZCOUNT', KEYS[3], ARGV[i], ARGV[i]) == 0 then
    redis.call('ZADD', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
return 0
"""

# KEYS: steps events. ARGV: P after. Read only. Returns {logged, steps}: ``logged`` the events whose seq is
# above ``after`` (event, seq, ... in seq order), ``steps`` the journal's records that may give the log a
# step event above it (index, record, ...). A record that ends as StepRecord's JSON does is judged by its
# tail, without decoding it: ``"event_seq":<n>}`` (kept when n > after), ``"event_seq":null}`` or (a record
# written before event_seq existed) ``"recorded_at":"..."}`` (no event). Any other record is sent for the
# reader to decode (and report if it is corrupt).
_LUA_READ_EVENTS: Final = """
local after = tonumber(ARGV[2])
local logged = redis.call('ZRANGE', KEYS[2], '(' .. ARGV[2], '+inf', 'BYSCORE', 'WITHSCORES')
local journal = redis.call('HGETALL', KEYS[1])
local steps = {}
for i = 1, #journal, 2 do
  local record = journal[i + 1]
  local tail = string.sub(record, -64)
  local seq = string.match(tail, '"event_seq":(%d+)}$')
  local keep
  if seq then
    keep = tonumber(seq) > after
  else
    keep = not (string.sub(tail, -17) == '"event_seq":null}' or string.match(tail, '"recorded_at":"[^"]*"}$'))
  end
  if keep then
    steps[#steps + 1] = journal[i]
    steps[#steps + 1] = record
  end
end
return {logged, steps}
"""

# KEYS: job. ARGV: P id owner lease_us now_us reclaim_own updated_us. The lease is free once it ended on
# the server's clock (and on the claimer's). Returns nil (not claimable), {1, why} (corrupt record: nothing written) or
# {0, record, epoch, version, recoveries, steps}.
_LUA_CLAIM: Final = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'agent', 'member', 'owner', 'lease_us', 'epoch', 'version',
  'recoveries', 'record', 'steps', 'lease_at')
if not cur[1] or not is_live(cur[1]) then return false end
local old = {status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = cur[11] or cur[5]}
-- expired on the server's clock, and on the claimer's too (a claimer whose clock runs behind waits)
local free = (not old.lease)
  or (old.owner and tonumber(old.lease) < server_us() and tonumber(cur[5] or old.lease) < tonumber(ARGV[5]))
  or (not old.owner and tonumber(cur[5] or old.lease) < tonumber(ARGV[5]))
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
local lease = lease_end(ARGV[4], ARGV[5])
redis.call('HSET', KEYS[1], 'owner', ARGV[3], 'lease_us', ARGV[4], 'lease_at', lease, 'epoch', epoch,
  'version', version, 'recoveries', recoveries, 'updated_us', ARGV[7])
reindex(old, {status = old.status, agent = old.agent, member = old.member, owner = ARGV[3], lease = lease})
return {0, cur[9], epoch, version, recoveries, tonumber(cur[10]) or 0}
"""

# KEYS: job. ARGV: P owner lease_us now_us (the writer's clock). Returns 1 if renewed.
_LUA_RENEW: Final = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'agent', 'member', 'owner', 'lease_us', 'lease_at')
if not cur[1] or not is_live(cur[1]) or cur[4] ~= ARGV[2] then return 0 end
local lease = lease_end(ARGV[3], ARGV[4])
redis.call('HSET', KEYS[1], 'lease_us', ARGV[3], 'lease_at', lease)
reindex({status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = cur[6] or cur[5]},
  {status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = lease})
return 1
"""

# KEYS: job. ARGV: P owner. Returns 1 if released.
_LUA_RELEASE: Final = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'agent', 'member', 'owner', 'lease_us', 'lease_at')
if not cur[1] or cur[4] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], 'lease_us', 'lease_at')
reindex({status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = cur[6] or cur[5]},
  {status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = false})
return 1
"""

# KEYS: job steps events controls. ARGV: P. Returns 1 if the job existed.
_LUA_DELETE: Final = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'agent', 'member', 'owner', 'lease_us', 'lease_at')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
if not cur[1] then return 0 end
local old = {status = cur[1], agent = cur[2], member = cur[3], owner = cur[4], lease = cur[6] or cur[5]}
reindex(old, nil)
if is_expiring(old.status) then redis.call('ZREM', P .. 'expiry', expiry_entry(old)) end
return 1
"""

# KEYS: job events. ARGV: P epoch seq event seq event ... A seq already logged keeps its first event.
# With an epoch ('' for none) the job must have it: else nothing is written and the job's epoch plus one
# is returned (-1 for no job); 0 means written.
_LUA_APPEND_EVENTS: Final = """
if ARGV[2] ~= '' then
  local current = redis.call('HGET', KEYS[1], 'epoch')
  if not current then return -1 end
  if current ~= ARGV[2] then return tonumber(current) + 1 end
end
for i = 3, #ARGV, 2 do
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

# A worker id's registration is live while its lease lasts on the server's clock or on the writer's
# (``lease_at`` is missing in registrations written before it existed). ``cur``: lease_us, lease_at.
_LUA_WORKER_LIVE: Final = """
local function worker_live(lease_us, lease_at, now_us)
  return tonumber(lease_at or lease_us) >= server_us() or tonumber(lease_us) >= tonumber(now_us)
end
"""

# A registration is forgotten (its hash expires) a day after its lease ends, as the SQL stores delete it.
_LUA_WORKER_EXPIRY: Final = """
local function keep_registration(key, until_us, now_us)
  local seconds = math.floor((tonumber(until_us) - tonumber(now_us)) / 1000000) + 86400
  if seconds > 0 then redis.call('EXPIRE', key, seconds) else redis.call('DEL', key) end
end
"""

# KEYS: worker. ARGV: P token info lease_us now_us replace id. Returns the live holder's info, or false.
# ``P workers`` (a set of worker ids) lets list_workers find the registrations.
_LUA_REGISTER_WORKER: Final = """
local cur = redis.call('HMGET', KEYS[1], 'token', 'info', 'lease_us', 'lease_at')
local live = cur[1] and worker_live(cur[3], cur[4], ARGV[5])
if live and cur[1] ~= ARGV[2] and cur[1] ~= ARGV[6] then
  return cur[2]
end
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'info', ARGV[3], 'lease_us', ARGV[4], 'lease_at',
  lease_end(ARGV[4], ARGV[5]))
keep_registration(KEYS[1], ARGV[4], ARGV[5])
redis.call('SADD', ARGV[1] .. 'workers', ARGV[7])
return false
"""

# KEYS: worker. ARGV: P token lease_us now_us (the writer's clock) id. Returns 1 if the token holds the id.
_LUA_RENEW_WORKER: Final = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'lease_us', ARGV[3], 'lease_at', lease_end(ARGV[3], ARGV[4]))
keep_registration(KEYS[1], ARGV[3], ARGV[4])
redis.call('SADD', ARGV[1] .. 'workers', ARGV[5])
return 1
"""

# KEYS: worker. ARGV: P token id.
_LUA_UNREGISTER_WORKER: Final = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', ARGV[1] .. 'workers', ARGV[3])
end
return 0
"""

# ARGV: P now_us. Returns id, info, lease_us of each live registration (flat); forgets the ids whose
# registration expired (a worker that never unregistered: its hash expires a day after its last renewal).
_LUA_LIST_WORKERS: Final = """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', ARGV[1] .. 'workers')) do
  local cur = redis.call('HMGET', ARGV[1] .. 'worker:{' .. id .. '}', 'info', 'lease_us', 'lease_at')
  if not cur[1] then
    redis.call('SREM', ARGV[1] .. 'workers', id)
  elseif worker_live(cur[2], cur[3], ARGV[2]) then
    out[#out + 1] = id
    out[#out + 1] = cur[1]
    out[#out + 1] = cur[2]
  end
end
return out
"""

# KEYS: asleep[:<agent>]. ARGV: P now_us. Returns the score (lease_us) of the first sleeper waking at or
# after now, or false: one round trip where ZRANGE and ZSCORE would take two.
_LUA_NEXT_WAKE: Final = """
local first = redis.call('ZRANGE', KEYS[1], ARGV[2], '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
if #first == 0 then return false end
return first[2]
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
