"""The reference service's rules, shared by the tests of rules and of the manager."""

from __future__ import annotations

from freshcache import Rules


def service_rules() -> Rules:
    """Users, challenges, evaluations; a leaderboard that only names and scores move."""
    return (
        Rules()
        .entity("user", tags=["user:{id}"])
        .entity("user", tags=["leaderboard"], fields={"name", "score"})
        .entity("challenge", tags=["challenge:{id}", "user:{user_id}:challenges"])
        .entity(
            "evaluation",
            tags=[
                "challenge:{challenge_id}:evaluations",
                "user:{user_id}:evaluations",
                "leaderboard",
            ],
        )
        .relation("evaluation", "challenge", keys={"id": "challenge_id"})
    )
