"""The registers the workload writes and reads through the service's HTTP API.

Each register is a key with one writer that writes 1, 2, 3... and a value every cached
route showing it can be read back as a number:

- a user's name, ``v<n>``: ``GET /api/users/{id}`` and the user's row of the leaderboard
  (the user has one evaluation of 100, so it ranks at the top);
- a challenge's title, ``v<n>``, while the challenge moves between two users (even values
  to one, odd to the other): ``GET /api/challenges/{id}`` and the owner's
  ``GET /api/users/{id}/challenges``;
- the best score of a user who has one challenge: write ``n`` adds an evaluation scoring
  ``n`` (1 to 100, then the writer moves to a fresh user and challenge, a new key):
  ``best_score`` of ``GET /api/users/{id}/progress`` and the highest score of
  ``GET /api/challenges/{id}/evaluations``.

Every value is written once, so a write whose outcome is unknown stays recognisable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

MAX_SCORE = 100
LEADERBOARD_LIMIT = 100
ROUTES = ("user", "leaderboard", "challenge", "user challenges", "progress", "evaluations")


class Http(Protocol):
    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...


def parse(text: Any) -> int:
    """The ``n`` of ``v<n>``; -1 (a value no write wrote) for anything else."""
    if isinstance(text, str) and text.startswith("v") and text[1:].isdigit():
        return int(text[1:])
    return -1


@dataclass
class NameRegister:
    user_id: int
    value: int = 0

    @property
    def key(self) -> str:
        return f"user {self.user_id} name"

    @classmethod
    async def create(cls, http: Http, label: str) -> NameRegister:
        user = await http.request("POST", "/api/users", _user(label))
        challenge = await http.request(
            "POST", "/api/challenges", {"user_id": user["id"], "title": f"{label} ranking"}
        )
        await http.request(
            "POST", f"/api/challenges/{challenge['id']}/evaluations", {"score": MAX_SCORE}
        )
        return cls(user["id"])

    async def write(self, http: Http, value: int) -> None:
        await http.request("PATCH", f"/api/users/{self.user_id}", {"name": f"v{value}"})

    def users(self) -> list[int]:
        return [self.user_id]


@dataclass
class TitleRegister:
    challenge_id: int
    owners: tuple[int, int]
    value: int = 0

    @property
    def key(self) -> str:
        return f"challenge {self.challenge_id} title"

    @classmethod
    async def create(cls, http: Http, label: str) -> TitleRegister:
        first = await http.request("POST", "/api/users", _user(f"{label}-a"))
        second = await http.request("POST", "/api/users", _user(f"{label}-b"))
        challenge = await http.request(
            "POST", "/api/challenges", {"user_id": first["id"], "title": "v0"}
        )
        return cls(challenge["id"], (first["id"], second["id"]))

    async def write(self, http: Http, value: int) -> None:
        await http.request(
            "PATCH",
            f"/api/challenges/{self.challenge_id}",
            {"title": f"v{value}", "user_id": self.owners[value % 2]},
        )

    def users(self) -> list[int]:
        return list(self.owners)


@dataclass
class ScoreRegister:
    user_id: int
    challenge_id: int
    value: int = 0

    @property
    def key(self) -> str:
        return f"user {self.user_id} best score"

    @classmethod
    async def create(cls, http: Http, label: str) -> ScoreRegister:
        user = await http.request("POST", "/api/users", _user(label))
        challenge = await http.request(
            "POST", "/api/challenges", {"user_id": user["id"], "title": f"{label} scores"}
        )
        return cls(user["id"], challenge["id"])

    @property
    def full(self) -> bool:
        return self.value >= MAX_SCORE

    async def write(self, http: Http, value: int) -> None:
        await http.request(
            "POST",
            f"/api/challenges/{self.challenge_id}/evaluations",
            {"score": value, "user_id": self.user_id},
        )

    def users(self) -> list[int]:
        return [self.user_id]


Register = NameRegister | TitleRegister | ScoreRegister


def _user(label: str) -> dict[str, Any]:
    return {"email": f"{label}@verify.example.com", "name": "v0"}


@dataclass
class Registers:
    """The registers being written now, by kind."""

    names: list[NameRegister]
    titles: list[TitleRegister]
    scores: list[ScoreRegister]

    async def read(self, http: Http, route: str, rng: random.Random) -> list[tuple[str, int]]:
        """One GET of ``route`` and the (key, value) pairs it shows."""
        if route == "user":
            name = rng.choice(self.names)
            user = await http.request("GET", f"/api/users/{name.user_id}")
            return [(name.key, parse(user["name"]))]
        if route == "leaderboard":
            rows = await http.request("GET", f"/api/leaderboard?limit={LEADERBOARD_LIMIT}")
            keys = {name.user_id: name.key for name in self.names}
            return [(keys[r["user_id"]], parse(r["name"])) for r in rows if r["user_id"] in keys]
        if route == "challenge":
            title = rng.choice(self.titles)
            challenge = await http.request("GET", f"/api/challenges/{title.challenge_id}")
            return [(title.key, parse(challenge["title"]))]
        if route == "user challenges":
            title = rng.choice(self.titles)
            owner = rng.choice(title.owners)
            listed = await http.request("GET", f"/api/users/{owner}/challenges?limit=100")
            return [(title.key, parse(c["title"])) for c in listed if c["id"] == title.challenge_id]
        score = rng.choice(self.scores)
        if route == "progress":
            progress = await http.request("GET", f"/api/users/{score.user_id}/progress")
            return [(score.key, progress["best_score"] or 0)]
        if route == "evaluations":
            path = f"/api/challenges/{score.challenge_id}/evaluations?limit={MAX_SCORE}"
            listed = await http.request("GET", path)
            return [(score.key, max((e["score"] for e in listed), default=0))]
        raise ValueError(f"unknown route {route!r}")
