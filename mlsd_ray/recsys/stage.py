"""The ``ranking`` task's stages: etl (time split of the interactions), train (retrieval and
ranker, saved as one bundle), evaluate (every system of the card on the later split, with
intervals over users, activity slices and the gate).

The card's ``models`` name the systems by kind (popular, recent_popular, mf, item2item,
two_tower, two_stage); ``models.baseline`` is what the gate's ``must_beat_baseline`` compares
with. Splits are Parquet under the workdir like every other task's; the bundle is
``models/<two_stage name>/`` with an ``mlsd_model.json`` manifest so the register stage logs it
as any other package.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsd_ray import storage
from mlsd_ray.errors import CardError, DataError
from mlsd_ray.models.package import MANIFEST, InputSchema, ModelManifest
from mlsd_ray.ranking_card import RankingSpec
from mlsd_ray.recsys.data import TS, RecData, normalise_interactions, read_atomic, time_split
from mlsd_ray.recsys.metrics import evaluate_lists
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard, ModelSpec

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")


def _spec(card: DesignCard) -> RankingSpec:
    if card.ranking is None:  # the card validator fills it for category ranking
        raise CardError("ranking: this card is not a ranking card.", fix="set framing.category")
    return card.ranking


def _read_source(card: DesignCard) -> pd.DataFrame:
    frames = []
    for src in card.data.sources:
        frame = read_atomic(src.uri) if src.format == "tsv" else pd.read_csv(src.uri)
        # Typed headers (user_id:token) lose their types in read_atomic; rename the rest.
        names = {k.split(":", 1)[0]: v for k, v in (src.rename or {}).items()}
        frames.append(frame.rename(columns=names))
    frame = pd.concat(frames, ignore_index=True)
    spec = _spec(card)
    if spec.user_columns:
        missing = [c for c in spec.user_columns if c not in frame]
        if missing:
            raise CardError(
                f"ranking.user_columns: {missing} not in the source (have {list(frame)[:12]}...).",
                fix="name columns of data.sources",
            )
        frame["user_id"] = frame[spec.user_columns].astype(str).agg("|".join, axis=1)
    label = card.framing.label.column
    if label in frame and label != "rating":
        frame = frame.rename(columns={label: "rating"})
    return normalise_interactions(frame)


def etl_ranking(card: DesignCard, workdir: Workdir) -> dict[str, Any]:
    """Read the interactions, split them by time (the card's fractions) into Parquet splits."""
    split = card.data.split
    frame = _read_source(card)
    parts = time_split(frame, (split.train, split.validation, split.test))
    for name, part in zip(SPLITS, parts, strict=True):
        out = Path(workdir.split_uri(card, name))
        out.mkdir(parents=True, exist_ok=True)
        part.to_parquet(out / "part-0.parquet", index=False)
    summary = {
        "rows_in": len(frame),
        "rows_ok": len(frame),
        "rows_quarantined": 0,
        "splits": {n: len(p) for n, p in zip(SPLITS, parts, strict=True)},
        "rows_per_split": {n: len(p) for n, p in zip(SPLITS, parts, strict=True)},
        "time_cuts": [float(parts[1][TS].min()), float(parts[2][TS].min())],
    }
    storage.write_json(str(workdir.summary_path("etl")), summary)
    return summary


def _splits(card: DesignCard, workdir: Workdir) -> tuple[pd.DataFrame, ...]:
    out = []
    for name in SPLITS:
        folder = Path(workdir.split_uri(card, name))
        if not folder.exists():
            raise DataError(
                f"ranking: no {name} split at {folder}.", fix="run `mlsd etl CARD` first"
            )
        out.append(normalise_interactions(pd.read_parquet(folder)))
    return tuple(out)


def _data(card: DesignCard, interactions: pd.DataFrame) -> RecData:
    spec = _spec(card)
    users = read_atomic(spec.users_uri) if spec.users_uri else pd.DataFrame()
    items = read_atomic(spec.items_uri) if spec.items_uri else pd.DataFrame()
    return RecData(interactions, users, items)


def _config(card: DesignCard) -> Any:
    from mlsd_ray.recsys.two_stage import TwoStageConfig

    spec = _spec(card)
    models = [card.models.baseline, *card.models.candidates]
    return TwoStageConfig(
        retrieve=dict(spec.retrieve),
        target=spec.target,
        two_tower=spec.params_of(models, "two_tower"),
        ranker=spec.params_of(models, "two_stage") or TwoStageConfig().ranker,
        mf_factors=int(spec.params_of(models, "mf").get("factors", 64)),
        half_life_days=spec.half_life_days,
        label_windows=spec.label_windows,
        filter_seen=spec.filter_seen,
    )


def _two_stage_spec(card: DesignCard) -> ModelSpec:
    for m in [card.models.baseline, *card.models.candidates]:
        if m.kind == "two_stage":
            return m
    raise CardError(
        "models: a ranking card needs a candidate of kind two_stage (the served system).",
        fix="add {name: two_stage, kind: two_stage} to models.candidates",
    )


def train_ranking(card: DesignCard, workdir: Workdir) -> dict[str, Any]:
    """Fit the ranker on train -> validation, then the retrievers on train + validation; save
    the bundle (the two-stage system) with a manifest."""
    from mlsd_ray.recsys.bundle import save_bundle
    from mlsd_ray.recsys.two_stage import fit_ranker, fit_retrievers

    started = time.perf_counter()
    train, val, test = _splits(card, workdir)
    data = _data(card, pd.concat([train, val, test], ignore_index=True))
    cfg = _config(card)
    spec = _two_stage_spec(card)
    storage_path = str(workdir.root / "ray_results")
    ranker = fit_ranker(train, val, data, cfg, storage_path)
    history = pd.concat([train, val], ignore_index=True)
    retrievers = fit_retrievers(history, data, cfg, storage_path, f"{card.name}_two_tower")
    folder = workdir.model_dir(spec.name)
    version = f"{card.name}-{int(time.time())}"
    save_bundle(folder, retrievers, ranker, cfg, version, data.items)
    manifest = ModelManifest(
        name=spec.name,
        kind="two_stage",
        category="ranking",
        inputs=[InputSchema(name="user_id", type="string")],
        classes=[],
        params={"retrieve": cfg.retrieve, "ranker": cfg.ranker, "target": cfg.target},
        metadata={"version": version, "history_until": float(history[TS].max()),
                  "ranker_features": ranker.features},
    )  # fmt: skip
    (folder / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    seconds = round(time.perf_counter() - started, 1)
    # The shape of every task's train summary (the console and the HTML report read it).
    summary = {"models": {spec.name: {"kind": "two_stage", "train_seconds": seconds}},
               "seconds": seconds, "bundle": str(folder)}  # fmt: skip
    storage.write_json(str(workdir.summary_path("train")), summary)
    return summary


def evaluate_ranking(card: DesignCard, workdir: Workdir) -> dict[str, Any]:
    """Every system of the card on the test (latest) split; the gate on the card's metric."""
    from mlsd_ray.recsys.bundle import load_bundle
    from mlsd_ray.recsys.data import relevant_items, seen_items
    from mlsd_ray.recsys.train import TwoTowerRecommender
    from mlsd_ray.recsys.two_stage import fit_retrievers, recommend_two_stage

    spec = _spec(card)
    train, val, test = _splits(card, workdir)
    history = pd.concat([train, val], ignore_index=True)
    data = _data(card, pd.concat([train, val, test], ignore_index=True))
    cfg = _config(card)
    two_stage = _two_stage_spec(card)
    bundle = load_bundle(workdir.model_dir(two_stage.name))
    # The cheap retrievers are refitted (deterministic); the two-tower comes from the bundle.
    cfg_no_tt = {**cfg.two_tower, "epochs": 0, "num_workers": 0}
    retrievers = fit_retrievers(
        history, data, type(cfg)(**{**cfg.__dict__, "two_tower": cfg_no_tt})
    )
    retrievers["two_tower"] = TwoTowerRecommender(bundle.model, bundle.index)
    truth = relevant_items(test, spec.min_rating)
    users = sorted(truth)
    seen = seen_items(history)
    relevant = [{i: 1.0 for i in truth[u]} for u in users]
    counts = np.array([len(seen.get(u, ())) for u in users])
    pop = retrievers["popular"]
    popularity = dict(zip(pop.items, pop.popularity, strict=True))
    t2 = float(test[TS].min())
    candidate_lists: list[list[str]] = []
    metrics: dict[str, Any] = {}
    analysis: dict[str, Any] = {}
    raw: dict[str, dict[str, Any]] = {}
    for m in [card.models.baseline, *card.models.candidates]:
        if m.kind == "two_stage":
            lists = recommend_two_stage(
                users, retrievers, bundle.ranker, history, data, t2, cfg, 100
            )
        else:
            lists = retrievers[m.kind].recommend(users, 100, seen if cfg.filter_seen else {})[0]
        rep = evaluate_lists(lists, relevant, counts, popularity, len(data.item_ids), (10, 100),
                             spec.bootstrap_resamples)  # fmt: skip
        raw[m.name] = {k: v for k, v in rep.items() if not isinstance(v, dict)}
        metrics[m.name] = {safe(k): v for k, v in raw[m.name].items()}
        intervals = {safe(k): v for k, v in rep["intervals"].items()}
        analysis[m.name] = {"intervals": intervals, "slices": rep["slices"]}
        if m.kind == "two_stage":
            candidate_lists = lists
    champion = _champion(card, workdir, users, retrievers, history, data, t2, cfg)
    gate = _gate(card, raw, two_stage.name, candidate_lists, relevant, champion)
    report = {"card": card.name, "candidate": two_stage.name, "metrics": metrics,
              "analysis": analysis, "gate": gate, "users": len(users), "k": spec.k,
              "champion": champion}  # fmt: skip
    out = workdir.reports / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    write_markdown(report, out / "report.md")
    storage.write_json(str(workdir.summary_path("evaluate")), report)
    return report


def safe(metric: str) -> str:
    """``ndcg@10`` -> ``ndcg_at_10``: MLflow refuses '@' in metric names (the register stage
    logs these keys as they are)."""
    return metric.replace("@", "_at_")


def _champion(
    card: DesignCard,
    workdir: Workdir,
    users: list[str],
    retrievers: dict[str, Any],
    history: pd.DataFrame,
    data: RecData,
    now: float,
    cfg: Any,
) -> dict[str, Any] | None:
    """The registry's champion bundle ranked for the same users: its lists and metrics."""
    from mlsd_ray import registry
    from mlsd_ray.recsys.bundle import load_bundle
    from mlsd_ray.recsys.train import TwoTowerRecommender
    from mlsd_ray.recsys.two_stage import recommend_two_stage

    if registry.get_alias(card, workdir, registry.CHAMPION) is None:
        return None
    version, path = registry.fetch_model(card, workdir, registry.CHAMPION)
    bundle = load_bundle(path)
    mine = {**retrievers, "two_tower": TwoTowerRecommender(bundle.model, bundle.index)}
    lists = recommend_two_stage(users, mine, bundle.ranker, history, data, now, cfg, 100)
    return {"version": version, "lists": lists}


def _gate(
    card: DesignCard,
    raw: dict[str, dict[str, Any]],
    candidate: str,
    lists: list[list[str]],
    relevant: list[dict[str, float]],
    champion: dict[str, Any] | None,
) -> dict[str, Any]:
    """The card's gate through ``evaluate.gate.decide``, as for every task: the floor, the
    baseline, and the champion through a paired bootstrap over users (same users, same
    resamples), so a lucky draw of users does not move the champion."""
    from mlsd_ray.evaluate.gate import Evidence, decide
    from mlsd_ray.recsys.metrics import paired_over_users, per_user_metrics

    g = card.evaluation.gate
    ks = (10, 100)
    evidence = Evidence()
    champion_metrics = None
    if champion is not None:
        mine = per_user_metrics(lists, relevant, ks)
        theirs = per_user_metrics(champion.pop("lists"), relevant, ks)
        champion_metrics = {m: float(np.nanmean(v)) for m, v in theirs.items()}
        champion["metrics"] = {safe(m): v for m, v in champion_metrics.items()}
        resamples = card.ranking.bootstrap_resamples if card.ranking else 500
        evidence.comparisons = {
            m: paired_over_users(mine[m], theirs[m], m, g.improvement == "relative", resamples)
            for m in mine
        }
    base = card.models.baseline.name
    baseline = raw.get(base) if base != candidate else None
    decision = decide(g, raw[candidate], baseline, champion_metrics, evidence)
    return {"metric": g.metric, "value": raw[candidate].get(g.metric), **decision.as_dict(),
            "config": {"metric": safe(g.metric)},
            "comparisons": evidence.comparisons}  # fmt: skip


def write_markdown(report: dict[str, Any], path: Path) -> Path:
    """The ranking report: each system's metrics with intervals, the slices, the gate."""

    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    cols = ["ndcg_at_10", "map_at_10", "recall_at_100", "coverage_at_10", "popularity_bias_at_10"]
    lines = [f"# Evaluation: {report.get('card', '')} (ranking)", "",
             f"{report['users']} users in the test window; candidate: **{report['candidate']}**.",
             "", "| system | " + " | ".join(cols) + " | NDCG@10 95% CI |",
             "|---|" + "---|" * (len(cols) + 1)]  # fmt: skip
    for name, m in report["metrics"].items():
        ci = report["analysis"][name]["intervals"].get("ndcg_at_10")
        shown = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "n/a"
        lines.append(f"| {name} | " + " | ".join(fmt(m.get(c)) for c in cols) + f" | {shown} |")
    lines += ["", f"## Slices by user activity ({report['candidate']})", ""]
    for sl, v in report["analysis"][report["candidate"]]["slices"].items():
        lines.append(f"- {sl}: {v['users']} users, NDCG@10 {fmt(v.get('ndcg@10'))}")
    gate = report["gate"]
    lines += ["", f"## Promotion gate: {'PASSED' if gate['passed'] else 'FAILED'}", ""]
    lines += [f"- {'pass' if r['passed'] else 'FAIL'} `{r['rule']}`: {r['detail']}"
              for r in gate["rules"]]  # fmt: skip
    if report.get("promotion"):
        lines += ["", "## Registry", "", report["promotion"]["summary"]]
    path.write_text("\n".join(lines) + "\n")
    return path


def publish_features(card: DesignCard, workdir: Workdir) -> dict[str, Any]:
    """Materialise the user and item views and the seen lists into the card's online store,
    as of the start of the test window (the state the bundle was trained up to)."""
    from mlsd_ray.recsys.bundle import publish_online

    spec = _spec(card)
    train, val, test = _splits(card, workdir)
    history = pd.concat([train, val], ignore_index=True)
    data = _data(card, pd.concat([train, val, test], ignore_index=True))
    store = spec.online_store
    return publish_online(history, data, float(test[TS].min()), store.url, store.prefix)


def serve_ranking(card: DesignCard, workdir: Workdir, blocking: bool = False) -> str:
    """Publish the features and deploy the graph (the card's port, host and A/B test)."""
    from mlsd_ray.recsys.serving import run_graph
    from mlsd_ray.runtime import ensure_ray

    ensure_ray()
    spec = _spec(card)
    publish_features(card, workdir)
    url = run_graph(
        str(workdir.model_dir(_two_stage_spec(card).name)),
        spec.online_store.url,
        spec.online_store.prefix,
        card.deployment.port,
        host=card.deployment.host,
        name=card.name,
        ab=spec.ab.model_dump() if spec.ab else None,
        log_uri=workdir.prediction_log_uri(card),
    )
    if blocking:
        import time as _time

        log.info("serving %s at %s; Ctrl-C to stop", card.name, url)
        try:
            while True:
                _time.sleep(3600)
        except KeyboardInterrupt:
            from ray import serve

            serve.delete(card.name)
    return url


def tune_ranking(card: DesignCard, workdir: Workdir) -> dict[str, Any]:
    """What ``mlsd serve tune`` needs to sweep the ranking graph (retrieve, fetch features,
    rank, filter, top k) instead of the model-package one: the card's features published to
    the online store, a ``deploy`` per setting, and one ``/recommend`` body per test user."""
    from dataclasses import asdict

    from mlsd_ray.recsys.serving import build_graph

    spec = _spec(card)
    publish_features(card, workdir)
    bundle = str(workdir.model_dir(_two_stage_spec(card).name))
    store = spec.online_store

    def deploy(tuned: DesignCard, setting: Any) -> Any:
        return build_graph(bundle, store.url, store.prefix, tuning=asdict(setting))

    test = _splits(card, workdir)[2]
    users = sorted(set(test["user_id"]))
    return {"deploy": deploy, "path": "/recommend",
            "bodies": [{"user_id": u, "k": spec.k} for u in users]}  # fmt: skip
