"""Prometheus metrics of the acting monitor: drift, decay, errors, latency, log losses, and
what the watch loop decides (``observe_decision``: retrains, decisions by kind, the last
decision's time, the hold switch, the loop's phase).

One ``MonitorMetrics`` per card, on its own registry, so tests and several cards in one process
do not collide. The rules in ``deploy/prometheus/alerts.yml`` read these names. The exporter
listens on 127.0.0.1 unless told otherwise (``start``).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from mlsd_ray.spec import DesignCard

#: Every action ``watch.step`` can decide; their counters start at 0 so that ``increase()``
#: in the alert rules sees the first one.
WATCH_ACTIONS = (
    "watch",
    "retrain",
    "gate_failed",
    "canary",
    "wait",
    "promote",
    "rollback",
    "rollback_unfinished_retrain",
    "guard_min_interval",
    "guard_daily_cap",
    "held",
    "step_failed",
)
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class MonitorMetrics:
    def __init__(self, card: DesignCard) -> None:
        self.card = card.name
        r = self.registry = CollectorRegistry()
        self.psi = Gauge(
            "mlsd_drift_psi", "PSI of the latest window", ["card", "feature"], registry=r
        )
        self.psi_alert = Gauge(
            "mlsd_drift_psi_alert_level", "Card's PSI alert level", ["card"], registry=r
        )
        self.alerting = Gauge(
            "mlsd_drift_alerting_features",
            "Features alerting in the latest window",
            ["card"],
            registry=r,
        )
        self.drifted_windows = Gauge(
            "mlsd_drift_consecutive_windows", "Consecutive drifted windows", ["card"], registry=r
        )
        self.online = Gauge(
            "mlsd_online_metric",
            "Online metric from delayed labels",
            ["card", "model_version", "arm", "metric"],
            registry=r,
        )
        self.estimated = Gauge(
            "mlsd_estimated_metric",
            "Confidence-based estimate (no labels)",
            ["card", "metric"],
            registry=r,
        )
        self.decay_min = Gauge(
            "mlsd_decay_min_value", "Card's decay threshold", ["card"], registry=r
        )
        self.labels = Gauge(
            "mlsd_labels", "Predictions by label state", ["card", "state"], registry=r
        )
        self.requests = Counter(
            "mlsd_requests", "Requests seen by outcome", ["card", "outcome"], registry=r
        )
        self.latency = Histogram(
            "mlsd_request_latency_seconds",
            "Request latency",
            ["card"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.latency_target = Gauge(
            "mlsd_latency_p99_target_seconds", "Card's p99 latency target", ["card"], registry=r
        )
        self.log_lost = Counter(
            "mlsd_prediction_log_lost", "Prediction records dropped or failed", ["card"], registry=r
        )
        self.psi_pvalue = Gauge(
            "mlsd_drift_psi_pvalue",
            "Chance of the latest window's PSI from sampling noise alone",
            ["card", "feature"],
            registry=r,
        )
        self.window_online = Gauge(
            "mlsd_window_online_metric",
            "Online metric of the latest window's labelled predictions (decay)",
            ["card", "metric"],
            registry=r,
        )
        self.decisions = Counter(
            "mlsd_watch_decisions", "Watch loop decisions by kind", ["card", "action"], registry=r
        )
        self.retrains = Counter("mlsd_watch_retrains", "Retrains started", ["card"], registry=r)
        self.last_decision = Gauge(
            "mlsd_watch_last_decision_timestamp_seconds",
            "Unix time of the latest decision",
            ["card"],
            registry=r,
        )
        self.held = Gauge("mlsd_watch_hold", "1 while `mlsd hold` is on", ["card"], registry=r)
        self.phase = Gauge(
            "mlsd_watch_phase", "1 for the loop's current phase", ["card", "phase"], registry=r
        )
        for action in WATCH_ACTIONS:
            self.decisions.labels(self.card, action)
        self.retrains.labels(self.card)
        self.psi_alert.labels(self.card).set(card.monitoring.psi_alert)
        decay = card.monitoring.loop.watch.decay_min_value
        if decay is not None:
            self.decay_min.labels(self.card).set(decay)
        if card.requirements.latency_p99_ms is not None:
            self.latency_target.labels(self.card).set(card.requirements.latency_p99_ms / 1000)
        self._lost_seen = 0

    # -- feeding -------------------------------------------------------------------------
    def observe_window(self, window: dict[str, Any], consecutive: int = 0) -> None:
        """A ``drift_windows`` entry (the latest window with a verdict)."""
        for feature, value in (window.get("psi") or {}).items():
            if value is not None:
                self.psi.labels(self.card, feature).set(value)
        self.alerting.labels(self.card).set(len(window.get("alerting", [])))
        self.drifted_windows.labels(self.card).set(consecutive)
        for metric, value in (window.get("estimated") or {}).items():
            if value is not None:
                self.estimated.labels(self.card, metric).set(value)

    def observe_decision(self, decision: dict[str, Any], state: dict[str, Any]) -> None:
        """One ``watch.step`` result and the loop's state after it."""
        action = str(decision["action"])
        if "retrain" in decision:  # the step retrained, then gated (canary or gate_failed)
            self.decisions.labels(self.card, "retrain").inc()
            self.retrains.labels(self.card).inc()
        self.decisions.labels(self.card, action).inc()
        self.last_decision.labels(self.card).set(float(decision["at"]))
        self.held.labels(self.card).set(float(action == "held"))
        for phase in ("watching", "retraining", "canary"):
            self.phase.labels(self.card, phase).set(float(state.get("phase") == phase))
        window = decision.get("window") or {}
        if window.get("drifted") is not None:
            self.observe_window(window, int(decision.get("consecutive", 0)))
        for feature, p in (window.get("psi_pvalue") or {}).items():
            if p is not None:
                self.psi_pvalue.labels(self.card, feature).set(p)
        if window.get("online_roc_auc") is not None:
            self.window_online.labels(self.card, "roc_auc").set(window["online_roc_auc"])

    def observe_online(self, report: dict[str, Any]) -> None:
        """An ``online_by_arm`` result (plus ``counts`` from the delayed-label stage)."""
        for group in report.get("by_version_arm", {}).values():
            for metric in ("roc_auc", "ctr", "caught_share", "precision_of_flags"):
                if group.get(metric) is not None:
                    self.online.labels(self.card, group["model_version"], group["arm"], metric).set(
                        group[metric]
                    )
        for state, n in report.get("counts", {}).items():
            self.labels.labels(self.card, state).set(n)

    def observe_request(self, latency_s: float, ok: bool) -> None:
        self.requests.labels(self.card, "ok" if ok else "error").inc()
        self.latency.labels(self.card).observe(latency_s)

    def observe_logger(self, stats: dict[str, Any]) -> None:
        """``PredictionLogger.stats()``: the growth of lost records since the last call."""
        lost = sum(int(v) for k, v in stats.items() if k.startswith(("dropped", "rejected")))
        if lost > self._lost_seen:
            self.log_lost.labels(self.card).inc(lost - self._lost_seen)
            self._lost_seen = lost

    def start(self, port: int, host: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` on ``host:port`` in a thread; returns the server."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
