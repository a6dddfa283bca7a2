"""The Redis backend's read-only inspection scripts (key scheme: see :mod:`freshcache._lua`).

Each reads an entry or a tag with everything that decides a hit in one atomic step, so
the explanation cannot mix a version from before an invalidation with one from after.
They write nothing: expired pending holders are reported as gone, not pruned.
"""

from __future__ import annotations

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
