"""Repositories: every write through them invalidates on commit; ``get`` and ``list`` are cached."""

from __future__ import annotations

from freshcache.app.models import Challenge, Evaluation, User
from freshcache.integrations.sqlalchemy import AsyncBaseRepository


class Users(AsyncBaseRepository[User]):
    model = User


class Challenges(AsyncBaseRepository[Challenge]):
    model = Challenge


class Evaluations(AsyncBaseRepository[Evaluation]):
    model = Evaluation
