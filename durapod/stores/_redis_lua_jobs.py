"""The Lua scripts of RedisStore that write and read a job's own keys (its record, journal and events), and
the one that forgets the index entries of jobs that expired.

Each constant is a script's own text; :mod:`durapod.stores._redis_lua` puts the shared helpers it uses
(the statuses, the server's clock, the indexes, expiry) in front of it, registers it, and describes the
conventions every script follows (``ARGV[1]`` is the key prefix ``P``; ``KEYS`` are the job's own keys).
"""

from __future__ import annotations

from typing import Final

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
