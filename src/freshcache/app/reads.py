"""The aggregates, cached under the tags the rules of ``rules.py`` bump."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from freshcache import AsyncCache
from freshcache.app.models import Evaluation, User
from freshcache.app.rules import EVALUATIONS_BULK, LEADERBOARD, PROGRESS


class Aggregates:
    """A user's progress and the leaderboard, each loaded once per invalidation."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], cache: AsyncCache) -> None:
        self.sessions = sessions
        self.cache = cache

    async def progress(self, user_id: int) -> dict[str, Any]:
        tag = PROGRESS.format(user_id=user_id)
        return await self.cache.get_or_load(
            tag, lambda: self._load_progress(user_id), tags=[tag, EVALUATIONS_BULK]
        )

    async def _load_progress(self, user_id: int) -> dict[str, Any]:
        query = select(
            func.count(Evaluation.id), func.avg(Evaluation.score), func.max(Evaluation.score)
        ).where(Evaluation.user_id == user_id)
        async with self.sessions() as session:
            count, average, best = (await session.execute(query)).one()
        return {
            "user_id": user_id,
            "evaluations": count,
            "average_score": None if average is None else round(float(average), 2),
            "best_score": best,
        }

    async def leaderboard(self, limit: int) -> list[dict[str, Any]]:
        return await self.cache.get_or_load(
            f"{LEADERBOARD}:{limit}", lambda: self._load_leaderboard(limit), tags=[LEADERBOARD]
        )

    async def _load_leaderboard(self, limit: int) -> list[dict[str, Any]]:
        average = func.avg(Evaluation.score)
        query = (
            select(User.id, User.name, func.count(Evaluation.id), average)
            .join(Evaluation, Evaluation.user_id == User.id)
            .group_by(User.id, User.name)
            .order_by(average.desc(), User.id)
            .limit(limit)
        )
        async with self.sessions() as session:
            rows = (await session.execute(query)).all()
        return [
            {
                "rank": rank,
                "user_id": user_id,
                "name": name,
                "evaluations": count,
                "average_score": round(float(mean), 2),
            }
            for rank, (user_id, name, count, mean) in enumerate(rows, start=1)
        ]
