"""What each write invalidates: the rules derived from the models, and the aggregates' own."""

from __future__ import annotations

from freshcache import Rules
from freshcache.app.models import MODELS
from freshcache.integrations.sqlalchemy import rules_from_models

LEADERBOARD = "leaderboard"
PROGRESS = "user:{user_id}:progress"
# What the hooks bump for evaluation writes they cannot read row by row (a bulk insert
# whose ids the database makes, a delete of the whole table): a read computed from
# evaluations that is cached by hand carries it, as the repositories' entries do.
EVALUATIONS_BULK = "evaluation#bulk"


def service_rules() -> Rules:
    """The derived tags (``user:{id}``, ``user:{user_id}:challenges``...), plus the aggregates'.

    The leaderboard shows names and scores: a user's name change drops it, their
    ``last_seen_at`` does not (a field-level rule); every evaluation change drops it and
    its user's progress.
    """
    rules = rules_from_models(MODELS)
    rules.entity("user", tags=[LEADERBOARD], fields=["name"])
    rules.entity("user", tags=["user:{id}:progress"], fields=["id"])
    rules.entity("evaluation", tags=[LEADERBOARD, PROGRESS])
    return rules
