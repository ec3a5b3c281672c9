"""The card's ``ranking:`` section (``framing.category: ranking``) and the A/B test block.
Imports only pydantic, so that ``mlsd_ray.spec`` can hold it without pulling in models or Ray."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    weight: float = Field(gt=0)
    #: what the arm serves: the full two-stage system, the two-tower order, or popular items
    system: Literal["two_stage", "two_tower", "popular"] = "two_stage"


class ABTest(BaseModel):
    """The card's ``ranking.ab`` block. The first arm is the control."""

    model_config = ConfigDict(extra="forbid")

    salt: str
    arms: list[Arm] = Field(min_length=2)
    alpha: float = Field(0.05, gt=0, lt=1)

    @model_validator(mode="after")
    def _unique(self) -> ABTest:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"ab.arms: arm names must be unique, got {names}")
        return self


MetricKind = Literal["rate", "mean"]


def _click_rate() -> dict[str, MetricKind]:
    return {"click": "rate"}


#: What the systems of a ranking card are; ``models`` entries name them by ``kind``.
RANKING_KINDS = ("popular", "recent_popular", "mf", "item2item", "two_tower", "two_stage")


class OnlineStoreSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Redis URL (the online store); secrets, if any, come from REDIS_PASSWORD in the environment.
    url: str = "redis://127.0.0.1:6379/0"
    #: Key prefix: every key the card writes starts with ``<prefix>:``.
    prefix: str = Field("mlsd", pattern=r"^[A-Za-z0-9_\-]+$")
    fetch_timeout_s: float = Field(0.05, gt=0)


class RankingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The user is the combination of these source columns, when the log has no user id (the
    #: Open Bandit log's hashed user features: a user segment).
    user_columns: list[str] | None = None
    #: Drop what the user already interacted with (watch time: yes; ads shown again: no).
    filter_seen: bool = True
    #: Side tables (RecBole atomic files: user_id, age, gender, occupation / item_id,
    #: release_year, class). ``package://`` URIs are read in place.
    users_uri: str | None = None
    items_uri: str | None = None
    #: The ranker's target: interaction (clicked / watched) or the rating given.
    target: Literal["interaction", "rating"] = "interaction"
    #: Count only ratings of at least this much as relevant in evaluation (None: any).
    min_rating: float | None = None
    k: int = Field(10, ge=1, le=1000)
    #: retriever -> candidates it adds per user: two_tower, recent_popular (what the served
    #: graph retrieves with).
    retrieve: dict[str, int] = Field(
        default_factory=lambda: {"two_tower": 100, "recent_popular": 50}
    )
    half_life_days: float = Field(7.0, gt=0)
    #: Label windows the ranker learns from, back in time from the validation window (each as
    #: long as it, in rows): more users to learn from, none after the validation window.
    label_windows: int = Field(1, ge=1, le=10)
    bootstrap_resamples: int = Field(500, ge=0)
    online_store: OnlineStoreSpec = Field(default_factory=OnlineStoreSpec)
    ab: ABTest | None = None
    #: Online metrics for ``mlsd ab``: feedback column -> rate (0/1, e.g. click) or mean
    #: (e.g. watch_s).
    ab_metrics: dict[str, MetricKind] = Field(default_factory=_click_rate)

    @model_validator(mode="after")
    def _served_retrievers(self) -> RankingSpec:
        other = sorted(set(self.retrieve) - {"two_tower", "recent_popular"})
        if other or any(n < 1 for n in self.retrieve.values()):
            raise ValueError(
                f"ranking.retrieve: {other or self.retrieve} - the served graph retrieves with "
                "two_tower and recent_popular, at least 1 candidate each; "
                "fix: e.g. {two_tower: 100, recent_popular: 100}"
            )
        return self

    def params_of(self, models: list[Any], kind: str) -> dict[str, Any]:
        for m in models:
            if m.kind == kind:
                return dict(m.params)
        return {}
