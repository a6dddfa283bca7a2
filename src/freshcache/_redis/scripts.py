"""The Lua scripts of the Redis backend, and their registration on a client.

Each script runs atomically on the server, over the keys of one namespace (:mod:`.keys`),
and reads the entry header of :mod:`.wire` where it must check an entry. Hit reads that
know their tags use a plain MGET instead of a script: it is the cheapest round trip Redis
has, and the versions are compared in the client.

A tag's version starting with ``!`` is a pending mark (``PENDING_VERSION``): real versions
are hex digits.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# Live holders of a pending hash: prune the expired ones, count the rest, and return the
# latest deadline among them. A holder that expired died with its outcome unknown (it may
# have committed), so the version to restore on rollback is forgotten with it.
_HOLDERS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function live_holders(hold, now)
  local fields = redis.call('HGETALL', hold)
  local live = 0
  local latest = now
  for i = 1, #fields, 2 do
    if fields[i] ~= 'prev' then
      local deadline = tonumber(fields[i + 1])
      if deadline <= now then
        redis.call('HDEL', hold, fields[i], 'prev')
      else
        live = live + 1
        latest = math.max(latest, deadline)
      end
    end
  end
  return live, latest
end
"""

# Is a stored entry valid: does every tag it carries still have the version it records?
_VALID = """
local function valid(data, tag_prefix)
  local nl = string.find(data, '\\n', 1, true)
  if not nl then return false end
  local count = tonumber(string.match(string.sub(data, 1, nl - 1), ' (%d+)$'))
  if not count then return false end
  local pos = nl + 1
  for _ = 1, count do
    local eol = string.find(data, '\\n', pos, true)
    if not eol then return false end
    local space = string.find(data, ' ', pos, true)
    if not space or space > eol then return false end
    local tag = string.sub(data, pos, space - 1)
    if redis.call('GET', tag_prefix .. tag) ~= string.sub(data, space + 1, eol - 1) then
      return false
    end
    pos = eol + 1
  end
  return true
end
"""

# KEYS: entry keys. ARGV[1]: the tag-key prefix. Returns each entry or false.
GET_ENTRIES = (
    _VALID
    + """
local out = {}
for i = 1, #KEYS do
  local data = redis.call('GET', KEYS[i])
  if data and valid(data, ARGV[1]) then out[i] = data else out[i] = false end
end
return out
"""
)

# KEYS[1]: lease; KEYS[2..]: tag versions. ARGV: token, lease ms (0: no lease), tag ms,
# the entry's key, the tag-key prefix, then a fresh version per tag for the tags that
# have none. Returns {'hit', entry} | {'pending'} | {'busy'} | {'acquired', version...}.
BEGIN_FILL = (
    _VALID
    + """
local lease_ms = tonumber(ARGV[2])
if lease_ms > 0 then
  local data = redis.call('GET', ARGV[4])
  if data and valid(data, ARGV[5]) then return {'hit', data} end
end
local versions = {}
for i = 2, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v and string.sub(v, 1, 1) == '!' then return {'pending'} end
  versions[i - 1] = v
end
if lease_ms > 0 then
  local holder = redis.call('GET', KEYS[1])
  if holder and holder ~= ARGV[1] then return {'busy'} end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', lease_ms)
end
local out = {'acquired'}
for i = 2, #KEYS do
  if not versions[i - 1] then
    versions[i - 1] = ARGV[i + 4]
    redis.call('SET', KEYS[i], versions[i - 1], 'PX', ARGV[3])
  end
  out[i] = versions[i - 1]
end
return out
"""
)

# KEYS[1]: entry; KEYS[2]: lease; KEYS[3..]: tag versions.
# ARGV: token ('' for none), ttl ms, entry bytes, then the expected version per tag.
# Stores the entry only if every version is unchanged and, with a token, only while that
# token still holds the lease (a delete of the key takes it); returns 1 if stored, else 0.
FILL = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[2])
local fresh = 1
for i = 3, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[i + 1] then fresh = 0 break end
end
if fresh == 1 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ttl)
  for i = 3, #KEYS do
    local left = redis.call('PTTL', KEYS[i])
    if left >= 0 and left < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return fresh
"""

# KEYS[1]: lease. ARGV[1]: token. Deletes the lease only if the token holds it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1..n]: tag versions, KEYS[n+1..2n]: their holder hashes. ARGV[1]: n.
# A held tag stays pending (and forgets the version to restore); others lose their version.
INVALIDATE = (
    _HOLDERS
    + """
local n = tonumber(ARGV[1])
local now = nil  -- read once, and only for a tag some writer holds
for i = 1, n do
  local hold = KEYS[n + i]
  local held = redis.call('EXISTS', hold) == 1
  if held then
    now = now or now_ms()
    held = live_holders(hold, now) > 0
  end
  if held then
    redis.call('HDEL', hold, 'prev')
  else
    redis.call('DEL', KEYS[i], hold)
  end
end
return n
"""
)

# KEYS as INVALIDATE. ARGV: n, token, ttl ms.
MARK_PENDING = (
    _HOLDERS
    + """
local n = tonumber(ARGV[1])
local token = ARGV[2]
local ttl = tonumber(ARGV[3])
local now = now_ms()
for i = 1, n do
  local version, hold = KEYS[i], KEYS[n + i]
  if redis.call('EXISTS', hold) == 0 or live_holders(hold, now) == 0 then
    local current = redis.call('GET', version)
    redis.call('DEL', hold)
    if current and string.sub(current, 1, 1) ~= '!' then
      redis.call('HSET', hold, 'prev', current)
    end
  end
  redis.call('HSET', hold, token, now + ttl)
  local left = math.max(redis.call('PTTL', hold), ttl)
  redis.call('PEXPIRE', hold, left)
  redis.call('SET', version, '!pending', 'PX', left)
end
return n
"""
)

# KEYS as INVALIDATE. ARGV: n, token, '1' committed or '0' rolled back, tag ms.
CLEAR_PENDING = (
    _HOLDERS
    + """
local n = tonumber(ARGV[1])
local token = ARGV[2]
local committed = ARGV[3] == '1'
local now = now_ms()
for i = 1, n do
  local version, hold = KEYS[i], KEYS[n + i]
  redis.call('HDEL', hold, token)
  if committed then redis.call('HDEL', hold, 'prev') end
  local live, latest = live_holders(hold, now)
  if live == 0 then
    local previous = redis.call('HGET', hold, 'prev')
    redis.call('DEL', hold)
    local current = redis.call('GET', version)
    if previous then
      redis.call('SET', version, previous, 'PX', ARGV[4])
    elseif committed or (current and string.sub(current, 1, 1) == '!') then
      redis.call('DEL', version)
    end
  else
    -- The mark lasts as long as the writers still holding it, not the one that left.
    redis.call('PEXPIRE', hold, latest - now)
    redis.call('PEXPIRE', version, latest - now)
  end
end
return n
"""
)

# Read-only inspection: each reads an entry or a tag with everything that decides a hit in
# one atomic step, so an explanation cannot mix a version from before an invalidation with
# one from after. They write nothing: expired pending holders are reported as gone, not pruned.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1]: entry, KEYS[2]: lease. ARGV[1]: tag-version prefix, ARGV[2]: holder-hash prefix.
# Returns now (ms), entry size or false, entry PTTL, entry header or false, lease token or
# false, lease PTTL, then per tag of the entry: its current version or false, its holders.
DESCRIBE_KEY = (
    _NOW
    + """
local data = redis.call('GET', KEYS[1])
local out = {now, false, redis.call('PTTL', KEYS[1]), false,
             redis.call('GET', KEYS[2]) or false, redis.call('PTTL', KEYS[2])}
if not data then return out end
out[2] = #data
local nl = string.find(data, '\\n', 1, true)
local count = nl and tonumber(string.match(string.sub(data, 1, nl - 1), ' (%d+)$'))
if not count then return out end
local pos = nl + 1
local tags = {}
for _ = 1, count do
  local eol = string.find(data, '\\n', pos, true)
  if not eol then return out end
  local space = string.find(data, ' ', pos, true)
  if not space or space > eol then return out end
  tags[#tags + 1] = string.sub(data, pos, space - 1)
  pos = eol + 1
end
out[4] = string.sub(data, 1, pos - 1)
for _, tag in ipairs(tags) do
  out[#out + 1] = redis.call('GET', ARGV[1] .. tag) or false
  out[#out + 1] = redis.call('HGETALL', ARGV[2] .. tag)
end
return out
"""
)

# KEYS[1]: tag version, KEYS[2]: its holder hash. Returns now (ms), version or false, holders.
DESCRIBE_TAG = (
    _NOW
    + """
return {now, redis.call('GET', KEYS[1]) or false, redis.call('HGETALL', KEYS[2])}
"""
)


class Scripts(NamedTuple):
    """The scripts registered on one client: each is called with ``keys=`` and ``args=``.

    redis-py sends EVALSHA, and loads the script and retries on NOSCRIPT (a restarted or
    flushed server), inside the call.
    """

    get_entries: Any
    begin_fill: Any
    fill: Any
    release: Any
    invalidate: Any
    mark_pending: Any
    clear_pending: Any
    describe_key: Any
    describe_tag: Any


def register(client: Any) -> Scripts:
    """The scripts on ``client``, a redis-py client, sync or asyncio, plain or cluster."""
    return Scripts(
        get_entries=client.register_script(GET_ENTRIES),
        begin_fill=client.register_script(BEGIN_FILL),
        fill=client.register_script(FILL),
        release=client.register_script(RELEASE),
        invalidate=client.register_script(INVALIDATE),
        mark_pending=client.register_script(MARK_PENDING),
        clear_pending=client.register_script(CLEAR_PENDING),
        describe_key=client.register_script(DESCRIBE_KEY),
        describe_tag=client.register_script(DESCRIBE_TAG),
    )
