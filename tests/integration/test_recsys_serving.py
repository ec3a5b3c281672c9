"""The recommendation graph on Ray Serve, over real HTTP, with features from the real Redis."""

from __future__ import annotations

import time
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from mlsd_ray.monitor.log import read_prediction_log
from mlsd_ray.recsys.ab import ABTest, assign
from mlsd_ray.recsys.bundle import publish_online, save_bundle
from mlsd_ray.recsys.data import TS, RecData, load_movielens, seen_items
from mlsd_ray.recsys.features import OnlineStore
from mlsd_ray.recsys.two_stage import (
    TwoStageConfig,
    fit_ranker,
    fit_retrievers,
    recommend_two_stage,
)
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REDIS = "redis://127.0.0.1:6379/0"
AB = {"salt": "t", "arms": [{"name": "ranked", "weight": 1, "system": "two_stage"},
                            {"name": "pop", "weight": 1, "system": "popular"}]}  # fmt: skip


@pytest.fixture(scope="module")
def served(ray_cluster, tmp_path_factory):
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    from ray import serve

    from mlsd_ray.recsys.serving import run_graph

    torch.set_num_threads(1)
    full = load_movielens()
    # A small slice of MovieLens keeps the test short: the 120 most active users.
    top = full.interactions["user_id"].value_counts().index[:120]
    inter = full.interactions[full.interactions["user_id"].isin(top)].reset_index(drop=True)
    data = RecData(inter, full.users, full.items)
    ts = inter[TS].to_numpy()
    t1, t2 = np.quantile(ts, [0.7, 0.85])
    train, val, hist = inter[ts < t1], inter[(ts >= t1) & (ts < t2)], inter[ts < t2]
    cfg = TwoStageConfig(
        retrieve={"two_tower": 30, "recent_popular": 10},
        two_tower={"num_workers": 0, "epochs": 2, "dim": 8, "hidden": 16},
        ranker={"num_leaves": 7, "rounds": 20, "min_data_in_leaf": 20},
        mf_factors=8,
    )
    ranker = fit_ranker(train, val, data, cfg)
    retrievers = fit_retrievers(hist, data, cfg)
    tmp = tmp_path_factory.mktemp("recsys")
    bundle = save_bundle(tmp / "bundle", retrievers, ranker, cfg, "v-test", data.items)
    prefix = f"mlsd-test-i14-serve-{uuid.uuid4().hex[:8]}"
    publish_online(hist, data, float(t2), REDIS, prefix)
    port = free_port()
    url = run_graph(str(bundle), REDIS, prefix, port, name="recsys_test", ab=AB,
                    log_uri=str(tmp / "log"))  # fmt: skip
    ctx = {"url": url, "hist": hist, "data": data, "retrievers": retrievers, "ranker": ranker,
           "cfg": cfg, "t2": float(t2), "tmp": tmp, "users": list(top), "bundle": str(bundle),
           "prefix": prefix}  # fmt: skip
    yield ctx
    serve.delete("recsys_test")
    serve.shutdown()  # its HTTP proxy is on a free port: later modules start Serve on theirs
    OnlineStore(REDIS, prefix).delete_prefix()


def _user(ctx, arm: str) -> str:
    test = ABTest.model_validate(AB)
    return next(u for u in ctx["users"] if assign(u, test).name == arm)


def test_recommend_returns_unseen_top_k_matching_offline_two_stage(served) -> None:
    user = _user(served, "ranked")
    answer = httpx.post(f"{served['url']}/recommend", json={"user_id": user, "k": 10,
                        "context": {"device": "tv"}}, timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    items = [r["item_id"] for r in body["items"]]
    scores = [r["score"] for r in body["items"]]
    assert len(items) == 10 and body["arm"] == "ranked" and body["system"] == "two_stage"
    assert scores == sorted(scores, reverse=True)
    assert not set(items) & seen_items(served["hist"])[user]
    offline = recommend_two_stage([user], served["retrievers"], served["ranker"], served["hist"],
                                  served["data"], served["t2"], served["cfg"], 10)[0]  # fmt: skip
    # Same features offline and online; float32 vs float64 scores may swap a near-tie.
    assert len(set(items) & set(offline)) >= 8, (items, offline)


def test_popular_arm_bad_request_and_stats(served) -> None:
    user = _user(served, "pop")
    body = httpx.post(
        f"{served['url']}/recommend", json={"user_id": user, "k": 5}, timeout=60
    ).json()
    assert body["arm"] == "pop" and len(body["items"]) == 5
    assert not {r["item_id"] for r in body["items"]} & seen_items(served["hist"])[user]
    bad = httpx.post(f"{served['url']}/recommend", json={"user": 1}, timeout=30)
    assert bad.status_code == 422 and "user_id" in bad.text
    big = httpx.post(f"{served['url']}/recommend", json={"user_id": 1, "k": 10_000}, timeout=30)
    assert big.status_code == 422
    # A user the store does not know: features fall back to defaults, counted.
    cold = httpx.post(
        f"{served['url']}/recommend", json={"user_id": "new-user-1", "k": 3}, timeout=60
    )
    assert cold.status_code == 200 and len(cold.json()["items"]) == 3
    stats = httpx.get(f"{served['url']}/stats", timeout=30).json()
    assert stats["online_store"]["missing_key"] >= 1 and stats["online_store"]["hit"] >= 1


def test_serve_tune_sweeps_the_ranking_graph(served) -> None:
    """``mlsd serve tune``'s sweep on the graph itself (retrieve, features, rank, filter, top
    k): each point deploys the graph with that batching, concurrency and replica count and
    load-tests /recommend. Two tiny points; no timing is asserted, only that both ran whole."""
    from mlsd_ray.recsys.serving import build_graph
    from mlsd_ray.serve.tuner import choose, grid, run_sweep
    from mlsd_ray.spec import load_card
    from tests.conftest import REPO

    card = load_card(REPO / "systems" / "watch_time_ranking.yaml")
    bodies = [{"user_id": u, "k": 10} for u in served["users"][:8]]

    def deploy(tuned, setting):
        tuning = {"max_batch_size": setting.max_batch_size, "replicas": setting.replicas,
                  "batch_wait_timeout_s": setting.batch_wait_timeout_s,
                  "max_ongoing_requests": setting.max_ongoing_requests}  # fmt: skip
        return build_graph(served["bundle"], REDIS, served["prefix"], tuning=tuning)

    settings = grid([1, 4], [0.002], [1])
    points = run_sweep(card, None, settings, deploy=deploy, path="/recommend", bodies=bodies,
                       clients=2, requests=12, max_seconds=120)  # fmt: skip
    assert [p.setting.max_batch_size for p in points] == [1, 4]
    assert all(p.ok >= 12 and p.failed == 0 and p.p99_ms is not None for p in points)
    assert choose(points, target_p99_ms=1e9) is not None


def test_assignment_reaches_the_prediction_log(served) -> None:
    from ray import serve

    for u in served["users"][:6]:
        assert (
            httpx.post(
                f"{served['url']}/recommend", json={"user_id": u, "k": 2}, timeout=60
            ).status_code
            == 200
        )
    serve.delete("recsys_test")  # graceful: the replica flushes the log
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            logged = read_prediction_log(str(served["tmp"] / "log"))
            break
        except Exception:
            time.sleep(1)
    test = ABTest.model_validate(AB)
    per_user = logged.groupby("user_id")["arm"].agg(set)
    assert all(arms == {assign(u, test).name} for u, arms in per_user.items())
    assert set(pd.unique(logged["arm"])) == {"ranked", "pop"}
