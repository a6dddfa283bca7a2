"""``GET /api/system/cache/rules``: the invalidation rules of the service's manager, read-only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, params, status
from pydantic import BaseModel

from .schemas import Problem


class RuleRow(BaseModel):
    entity_type: str
    fields: list[str] | None  # None: fires on any change
    tags: list[str]


class RelationRow(BaseModel):
    entity_type: str
    fields: list[str] | None
    parent: str
    keys: dict[str, str]  # the parent's field: the child's field that holds it


class RulesAnswer(BaseModel):
    entity_types: list[str]
    rules: list[RuleRow]
    relations: list[RelationRow]


def rules_router(
    manager: Any, read: params.Depends, errors: dict[int | str, dict[str, Any]]
) -> APIRouter:
    """The route, guarded like the other reads; a 404 when the router was given no manager."""
    router = APIRouter(tags=["freshcache"])

    @router.get(
        "/api/system/cache/rules",
        response_model=RulesAnswer,
        dependencies=[read],
        responses={**errors, 404: {"model": Problem}},
    )
    async def rules() -> dict[str, Any]:
        """What each entity change invalidates: every rule (tags, on which fields) and relation."""
        if manager is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                "no manager given to monitoring_router: the rules are the manager's",
            )
        described: dict[str, Any] = manager.rules.describe()
        return described

    return router
