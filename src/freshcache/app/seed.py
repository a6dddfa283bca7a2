"""A small data set for a first run: users, their challenges, evaluations of those."""

from __future__ import annotations

import random
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from freshcache.app.models import Challenge, Evaluation, User

FOCUS_AREAS = ("algorithms", "databases", "networking", "security", "frontend")
DIFFICULTIES = ("easy", "medium", "hard")


async def is_empty(sessions: async_sessionmaker[AsyncSession]) -> bool:
    async with sessions() as session:
        return (await session.scalar(select(func.count(User.id)))) == 0


async def seed(
    sessions: async_sessionmaker[AsyncSession],
    *,
    users: int = 20,
    challenges_per_user: int = 3,
    evaluations_per_challenge: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
    random_seed: int = 7,
) -> int:
    """Insert ``users`` users, each with challenges and evaluations; returns the rows written.

    One transaction per user, through the hooked sessions, so the cache is invalidated as for
    any write. ``on_progress(done, total)`` is called after each user (for a progress bar).
    """
    if users < 0 or challenges_per_user < 0 or evaluations_per_challenge < 0:
        raise ValueError("seed takes counts of 0 or more")
    chance = random.Random(random_seed)
    async with sessions() as session:
        start = (await session.scalar(select(func.max(User.id)))) or 0
    rows = 0
    for done in range(1, users + 1):
        number = start + done
        async with sessions() as session, session.begin():
            user = User(
                email=f"user{number}@example.com",
                name=f"User {number}",
                focus_area=chance.choice(FOCUS_AREAS),
            )
            session.add(user)
            await session.flush()
            for index in range(challenges_per_user):
                challenge = Challenge(
                    user_id=user.id,
                    title=f"Challenge {index + 1} of {user.name}",
                    content="Explain, then implement.",
                    difficulty=chance.choice(DIFFICULTIES),
                )
                session.add(challenge)
                await session.flush()
                for _ in range(evaluations_per_challenge):
                    session.add(
                        Evaluation(
                            challenge_id=challenge.id,
                            user_id=user.id,
                            score=chance.randint(40, 100),
                            feedback="Seeded.",
                        )
                    )
            rows += 1 + challenges_per_user * (1 + evaluations_per_challenge)
        if on_progress is not None:
            on_progress(done, users)
    return rows
