"""The Lua scripts of RedisStore that coordinate workers: claims, leases, sleepers' wake times, control
requests, schedules and the worker id registry.

Each constant is a script's own text (the two worker registry helpers are put in front of the scripts that
use them); :mod:`durapod.stores._redis_lua` puts the shared helpers in front of them, registers them, and
describes how leases are judged on the server's clock.
"""

from __future__ import annotations

from typing import Final

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

# KEYS: asleep[:<agent>]. ARGV: P now_us. Returns the score (lease_us) of the first sleeper waking at or
# after now, or false: one round trip where ZRANGE and ZSCORE would take two.
_LUA_NEXT_WAKE: Final = """
local first = redis.call('ZRANGE', KEYS[1], ARGV[2], '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
if #first == 0 then return false end
return first[2]
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
