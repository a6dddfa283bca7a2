"""``python -m freshcache.cli``: the same command as ``freshcache``."""

from __future__ import annotations

import sys

from freshcache.cli import main

sys.exit(main())
