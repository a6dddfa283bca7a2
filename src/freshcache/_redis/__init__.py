"""What freshcache knows about Redis, apart from the I/O that uses it.

The async and the sync backends (and the Redis Streams event transport) share these
modules; each keeps only its calls to its own redis-py client:

- :mod:`.keys`: the key scheme, one namespace per cluster slot.
- :mod:`.wire`: how an entry is stored: a text header of tag versions, then the payload.
- :mod:`.scripts`: the Lua scripts that run the conditional operations atomically.
- :mod:`.errors`: the one map from redis-py's errors to freshcache's.
- :mod:`.urls`: what a Redis URL may say, checked before anything connects.
- :mod:`.connections`: one redis-py connection driven directly (the read path's).

Only :mod:`.errors` and :mod:`.connections` import redis-py at import time, so the rest can be read (by the
backend registry, say) where redis-py is not installed.
"""
