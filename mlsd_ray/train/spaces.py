"""Each tunable model kind's default search space and tuning metric.

A card's ``tuning: {}`` searches the kind's space below; ``tuning.space`` replaces it. The
kind registry can reference ``SPACES`` per kind. The ranges are the usual ones for tabular
data of thousands to millions of rows (the GBDT ones follow the xgboost/LightGBM parameter
tuning guides: shallow trees, learning rate 0.01-0.3, row/column subsampling, minimum child
weight); the number of rounds is not searched, early stopping on validation picks it.
"""

from __future__ import annotations

from mlsd_ray.models.kinds import get_kind
from mlsd_ray.spec import SearchDim, Tuning


def _dim(**kwargs: object) -> SearchDim:
    return SearchDim.model_validate(kwargs)


_GBDT = {
    "max_depth": _dim(type="int", low=2, high=8),
    "learning_rate": _dim(type="loguniform", low=0.01, high=0.3),
    "subsample": _dim(type="uniform", low=0.5, high=1.0),
    "colsample": _dim(type="uniform", low=0.4, high=1.0),
    "min_child_weight": _dim(type="loguniform", low=0.5, high=20.0),
}
SPACES: dict[str, dict[str, SearchDim]] = {
    "xgboost": _GBDT,
    "lightgbm": _GBDT,
    "logreg": {"C": _dim(type="loguniform", low=1e-3, high=1e2)},
    "tfidf_logreg": {"C": _dim(type="loguniform", low=1e-2, high=1e2)},
    "ridge": {"alpha": _dim(type="loguniform", low=1e-3, high=1e3)},
    "mlp": {
        "learning_rate": _dim(type="loguniform", low=1e-4, high=1e-2),
        "dropout": _dim(type="choice", values=[0.0, 0.1, 0.3]),
        "weight_decay": _dim(type="loguniform", low=1e-6, high=1e-3),
    },
}


def resolve(tuning: Tuning, kind: str, category: str) -> Tuning:
    """The card's tuning with the kind's space, metric and mode filled in where unset."""
    metric = tuning.metric
    if metric is None:
        # Single fits and boosting trials report ROC-AUC on a binary card; epoch trials a loss.
        ranked = get_kind(kind).tune_by != "epochs" and category == "binary"
        metric = "val_roc_auc" if ranked else "val_loss"
    mode = tuning.mode or ("max" if metric == "val_roc_auc" else "min")
    space = tuning.space or SPACES.get(kind, {})
    return tuning.model_copy(update={"metric": metric, "mode": mode, "space": space})
