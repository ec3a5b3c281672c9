"""The recommendation graph on Ray Serve.

    POST /recommend {"user_id": "196", "k": 10, "context": {...}}
      RecIngress: A/B arm (sticky hash) -> seen items + user/item features (Redis, fallbacks)
        -> Retriever (two-tower user vector, FAISS search; @serve.batch across requests)
        -> Ranker (LightGBM lambdarank; @serve.batch) -> drop seen -> top k with scores
      -> one prediction-log row per returned item (user, item, position, arm, context)

The arm decides what is served: ``two_stage`` (the graph above), ``two_tower`` (retrieval
order, no ranker) or ``popular`` (the recent-popular list). The online store's fallbacks
(defaults for features, the bundle's popular list, no seen filter) are counted in ``/stats``.
Listens on 127.0.0.1 unless told otherwise. This module lives apart from ``mlsd_ray/serve``
(the model-package graph); it shares only Serve itself and the prediction logger. No
``from __future__ import annotations`` here: FastAPI must see real types on the class routes.
"""

import json
import logging
import time
import uuid
from collections import Counter
from typing import Any, cast

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from mlsd_ray.monitor.log import PredictionLogger
from mlsd_ray.recsys.ab import ABTest, assign
from mlsd_ray.recsys.bundle import ITEM_VIEW, SEEN, USER_VIEW, history_scores, load_bundle
from mlsd_ray.recsys.features import OnlineStore, counts
from mlsd_ray.recsys.pair_features import AFFINITY, affinity, rank_desc

log = logging.getLogger(__name__)
rec_api = FastAPI(title="mlsd-ray recommender", description="POST /recommend -> top-k items")
#: The A/B arm goes into the log's own ``arm`` column (PredictionLogger.log(arm=...)).
LOG_FIELDS = {"user_id": "string", "item_id": "string", "position": "int", "context": "string"}


class RecommendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | int
    k: int = Field(10, ge=1, le=100)
    context: dict[str, str | int | float | bool] = Field(default_factory=dict)


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class Retriever:
    def __init__(self, bundle_dir: str, batching: dict[str, float] | None = None) -> None:
        self.bundle = load_bundle(bundle_dir)
        _set_batching(self.retrieve, batching)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def retrieve(self, requests: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
        """For each (user, seen): two-tower candidates plus recent-popular ones (unseen), and the
        two-tower score of every candidate. One user-tower pass and one FAISS search per batch."""
        b = self.bundle
        n_tt = int(b.meta["retrieve"].get("two_tower", 100))
        n_pop = int(b.meta["retrieve"].get("recent_popular", 0))
        vectors = b.model.user_vectors([u for u, _ in requests])
        extra = max(len(s) for _, s in requests)  # over-fetch: seen items are dropped
        found, _ = b.index.search(vectors, n_tt + extra)
        item_vectors = _item_vectors(b)
        col = {item: j for j, item in enumerate(b.meta["items"])}
        out = []
        for (_, seen), vec, ids in zip(requests, vectors, found, strict=True):
            skip = set(seen)
            cands = [i for i in ids if i not in skip][:n_tt]
            have = set(cands)
            cands += [i for i in b.meta["recent_popular"] if i not in skip and i not in have][
                :n_pop
            ]
            scores = item_vectors[[col[i] for i in cands]] @ vec
            out.append({"items": cands, "two_tower_score": scores.tolist()})
        return out


def _set_batching(method: Any, batching: dict[str, float] | None) -> None:
    """Apply ``mlsd serve tune``'s batch size and wait to a ``@serve.batch`` method."""
    if batching:
        method.set_max_batch_size(int(batching["max_batch_size"]))
        method.set_batch_wait_timeout_s(float(batching["batch_wait_timeout_s"]))


def _item_vectors(bundle: Any) -> np.ndarray:
    if not hasattr(bundle, "_item_vectors"):
        bundle._item_vectors = bundle.model.item_vectors()
    return bundle._item_vectors


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class Ranker:
    def __init__(self, bundle_dir: str, batching: dict[str, float] | None = None) -> None:
        self.ranker = load_bundle(bundle_dir).ranker
        _set_batching(self.score, batching)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def score(self, frames: list[dict[str, list[float]]]) -> list[list[float]]:
        """Score every request's candidate frame in one LightGBM call."""
        sizes = [len(next(iter(f.values()))) for f in frames]
        joined = pd.concat([pd.DataFrame(f) for f in frames], ignore_index=True)
        scores = self.ranker.predict(joined)
        return [s.tolist() for s in np.split(scores, np.cumsum(sizes)[:-1])]


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
@serve.ingress(rec_api)
class RecIngress:
    def __init__(
        self,
        retriever: DeploymentHandle,
        ranker: DeploymentHandle,
        bundle_dir: str,
        redis_url: str,
        prefix: str,
        ab: dict[str, Any] | None = None,
        log_uri: str | None = None,
        fetch_timeout_s: float = 0.05,
    ) -> None:
        self.retriever, self.ranker = retriever, ranker
        self.bundle = load_bundle(bundle_dir)
        self.store = OnlineStore(redis_url, prefix, timeout_s=fetch_timeout_s)
        self.ab = ABTest.model_validate(ab) if ab else None
        self.logger = PredictionLogger(log_uri, fields=LOG_FIELDS) if log_uri else None
        self.counters: Counter[str] = Counter()
        self.features = list(self.bundle.ranker.features)
        self.version = str(self.bundle.meta.get("version", "local"))

    @rec_api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok", "version": self.version}

    @rec_api.get("/stats")
    async def stats(self) -> dict[str, Any]:
        return {"requests": dict(self.counters), "online_store": counts(self.store.stats)}

    @rec_api.post("/recommend")
    async def recommend(self, request: Request) -> JSONResponse:
        started = time.perf_counter()
        try:
            body = RecommendBody.model_validate(json.loads(await request.body() or b"null"))
        except (ValueError, ValidationError) as exc:
            self.counters["bad_request"] += 1
            if isinstance(exc, ValidationError):
                err = exc.errors()[0]
                reason = f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}"
            else:
                reason = str(exc)
            return JSONResponse({"error": f"bad request body: {reason}"}, status_code=422)
        user = str(body.user_id)
        arm = assign(user, self.ab) if self.ab else None
        system = arm.system if arm else "two_stage"
        seen = self.store.get_list(SEEN, user, fallback=[])
        # Ads are shown again: the bundle says whether seen items are dropped.
        exclude = seen if self.bundle.meta.get("filter_seen", True) else []
        if system == "popular":
            items = [i for i in self.bundle.meta["recent_popular"] if i not in set(exclude)]
            items = items[: body.k]
            scores = [float(body.k - j) for j in range(len(items))]
        else:
            got = await self.retriever.retrieve.remote((user, exclude))
            items, tt = got["items"], np.asarray(got["two_tower_score"])
            if system == "two_tower":
                order = np.argsort(-tt, kind="stable")[: body.k]
            else:
                tt_scores = await self.ranker.score.remote(self._frame(user, seen, items, tt))
                order = np.argsort(-np.asarray(tt_scores), kind="stable")[: body.k]
                tt = np.asarray(tt_scores)
            items, scores = [items[j] for j in order], [float(tt[j]) for j in order]
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        self.counters[f"arm:{arm.name if arm else 'none'}"] += 1
        if self.logger is not None and items:
            context = json.dumps(body.context, sort_keys=True)
            rows = [
                {"user_id": user, "item_id": i, "position": p, "context": context}
                for p, i in enumerate(items)
            ]
            self.logger.log(rid, rows, scores, self.version, arm=arm.name if arm else "")
        return JSONResponse(
            {
                "request_id": rid,
                "user_id": user,
                "arm": arm.name if arm else None,
                "system": system,
                "items": [{"item_id": i, "score": s} for i, s in zip(items, scores, strict=True)],
                "model_version": self.version,
                "latency_ms": round(1000 * (time.perf_counter() - started), 2),
            }
        )

    def _frame(
        self, user: str, seen: list[str], items: list[str], tt: np.ndarray
    ) -> dict[str, list[float]]:
        """The ranker's features for one user's candidates, from the online store: the same
        columns, in the same order, as ``two_stage.pair_frame`` builds offline."""
        u = self.store.get(USER_VIEW, [user]).iloc[0]
        feats = self.store.get(ITEM_VIEW, items)
        mf, i2i = history_scores(self.bundle, seen)
        col = {item: j for j, item in enumerate(self.bundle.meta["items"])}
        idx = [col[i] for i in items]
        scores = {"two_tower": tt, "item2item": i2i[idx], "mf": mf[idx]}
        frame: dict[str, list[float]] = {f"{n}_score": v.tolist() for n, v in scores.items()}
        for name, v in scores.items():
            frame[f"{name}_rank"] = rank_desc(v).tolist()
        seen_rows = [col[i] for i in seen if i in col]
        frame[AFFINITY] = affinity(seen_rows, idx, self.bundle.genres).tolist()
        for f in USER_VIEW.features:
            frame[f] = [float(u[f])] * len(items)
        for f in ITEM_VIEW.features:
            frame[f] = feats[f].astype(float).tolist()
        return {f: frame[f] for f in self.features}

    def __del__(self) -> None:
        logger = getattr(self, "logger", None)
        if logger is not None:
            logger.close()


def build_graph(
    bundle_dir: str,
    redis_url: str,
    prefix: str,
    ab: dict[str, Any] | None = None,
    log_uri: str | None = None,
    tuning: dict[str, float] | None = None,
) -> serve.Application:
    """The graph; ``tuning`` (``max_batch_size``, ``batch_wait_timeout_s``,
    ``max_ongoing_requests``, ``replicas``: a point of ``mlsd serve tune``) sets the batching of
    the retriever and the ranker and every deployment's concurrency and replica count."""
    # Decorated classes are Deployments at run time; mypy sees the plain classes.
    opts: dict[str, Any] = {}
    if tuning:
        opts = {"num_replicas": int(tuning["replicas"]),
                "max_ongoing_requests": int(tuning["max_ongoing_requests"])}  # fmt: skip
    retriever = cast(Any, Retriever).options(**opts).bind(bundle_dir, tuning)
    ranker = cast(Any, Ranker).options(**opts).bind(bundle_dir, tuning)
    ingress = cast(Any, RecIngress).options(**opts)
    return ingress.bind(retriever, ranker, bundle_dir, redis_url, prefix, ab, log_uri)  # type: ignore[no-any-return]


def run_graph(
    bundle_dir: str,
    redis_url: str,
    prefix: str,
    port: int,
    host: str = "127.0.0.1",
    name: str = "recsys",
    ab: dict[str, Any] | None = None,
    log_uri: str | None = None,
) -> str:
    """Deploy the graph on the running (or a new local) Ray and return its base URL."""
    serve.start(http_options={"host": host, "port": port})
    serve.run(
        build_graph(bundle_dir, redis_url, prefix, ab, log_uri), name=name, route_prefix=f"/{name}"
    )
    return f"http://{host}:{port}/{name}"
