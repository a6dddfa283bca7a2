"""The API of the DESIGN table: every GET read through the cache, every write through a repository.

A write returns after its transaction committed and the hooks invalidated what it changed,
so the next read (here or in another process sharing the cache) sees it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response

from freshcache.app.pages import Cursor, page, start_after
from freshcache.app.schemas import (
    ChallengeCreate,
    ChallengeOut,
    ChallengeUpdate,
    EvaluationCreate,
    EvaluationOut,
    LeaderboardRow,
    ProgressOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from freshcache.app.service import Service

Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
Limit = Annotated[int, Query(ge=1, le=100)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]

router = APIRouter(prefix="/api")


def service_of(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def not_found(what: str, id: int) -> HTTPException:
    return HTTPException(404, f"{what} {id} not found")


async def existing_user(service: Service, user_id: int, field: str = "user_id") -> Any:
    user = await service.users.get(user_id)
    if user is None:
        raise HTTPException(404, f"{field}: user {user_id} not found")
    return user


# Users


@router.post("/users", status_code=201, response_model=UserOut)
async def create_user(request: Request, body: UserCreate) -> Any:
    return await service_of(request).users.add(**body.model_dump())


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(request: Request, user_id: Id) -> Any:
    user = await service_of(request).users.get(user_id)
    if user is None:
        raise not_found("user", user_id)
    return user


@router.patch("/users/{user_id}", response_model=UserOut)
async def update_user(request: Request, user_id: Id, body: UserUpdate) -> Any:
    user = await service_of(request).users.update(user_id, **body.model_dump(exclude_unset=True))
    if user is None:
        raise not_found("user", user_id)
    return user


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(request: Request, user_id: Id) -> Response:
    if not await service_of(request).users.delete(user_id):
        raise not_found("user", user_id)
    return Response(status_code=204)


@router.get("/users/{user_id}/challenges", response_model=list[ChallengeOut])
async def user_challenges(
    request: Request,
    response: Response,
    user_id: Id,
    limit: Limit = 20,
    offset: Offset = 0,
    cursor: Cursor = None,
) -> Any:
    service = service_of(request)
    after = start_after(cursor, offset)
    await existing_user(service, user_id, "user")
    rows = await service.challenges.list(
        user_id=user_id, limit=limit + 1, offset=offset, after=after
    )
    return page(request, response, rows, limit)


@router.get("/users/{user_id}/progress", response_model=ProgressOut)
async def user_progress(request: Request, user_id: Id) -> Any:
    service = service_of(request)
    await existing_user(service, user_id, "user")
    return await service.aggregates.progress(user_id)


# Challenges


@router.post("/challenges", status_code=201, response_model=ChallengeOut)
async def create_challenge(request: Request, body: ChallengeCreate) -> Any:
    service = service_of(request)
    await existing_user(service, body.user_id)
    return await service.challenges.add(**body.model_dump())


@router.get("/challenges/{challenge_id}", response_model=ChallengeOut)
async def get_challenge(request: Request, challenge_id: Id) -> Any:
    challenge = await service_of(request).challenges.get(challenge_id)
    if challenge is None:
        raise not_found("challenge", challenge_id)
    return challenge


@router.patch("/challenges/{challenge_id}", response_model=ChallengeOut)
async def update_challenge(request: Request, challenge_id: Id, body: ChallengeUpdate) -> Any:
    service = service_of(request)
    changes = body.model_dump(exclude_unset=True)
    if "user_id" in changes:
        await existing_user(service, changes["user_id"])
    challenge = await service.challenges.update(challenge_id, **changes)
    if challenge is None:
        raise not_found("challenge", challenge_id)
    return challenge


@router.delete("/challenges/{challenge_id}", status_code=204)
async def delete_challenge(request: Request, challenge_id: Id) -> Response:
    if not await service_of(request).challenges.delete(challenge_id):
        raise not_found("challenge", challenge_id)
    return Response(status_code=204)


# Evaluations


@router.post(
    "/challenges/{challenge_id}/evaluations", status_code=201, response_model=EvaluationOut
)
async def create_evaluation(
    request: Request, challenge_id: Id, body: Annotated[EvaluationCreate, Body()]
) -> Any:
    service = service_of(request)
    challenge = await service.challenges.get(challenge_id)
    if challenge is None:
        raise not_found("challenge", challenge_id)
    user_id = body.user_id if body.user_id is not None else challenge.user_id
    await existing_user(service, user_id)
    return await service.evaluations.add(
        challenge_id=challenge_id, user_id=user_id, score=body.score, feedback=body.feedback
    )


@router.get("/challenges/{challenge_id}/evaluations", response_model=list[EvaluationOut])
async def challenge_evaluations(
    request: Request,
    response: Response,
    challenge_id: Id,
    limit: Limit = 20,
    offset: Offset = 0,
    cursor: Cursor = None,
) -> Any:
    service = service_of(request)
    after = start_after(cursor, offset)
    if await service.challenges.get(challenge_id) is None:
        raise not_found("challenge", challenge_id)
    rows = await service.evaluations.list(
        challenge_id=challenge_id, limit=limit + 1, offset=offset, after=after
    )
    return page(request, response, rows, limit)


# Aggregates


@router.get("/leaderboard", response_model=list[LeaderboardRow])
async def leaderboard(request: Request, limit: Limit = 10) -> Any:
    return await service_of(request).aggregates.leaderboard(limit)
