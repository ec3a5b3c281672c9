"""The business threshold on real data: Davidson et al. tweets, a TF-IDF model, a sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_score, recall_score

from mlsd_ray.models.simple import TfidfLogReg
from mlsd_ray.spec import ThresholdObjective
from mlsd_ray.tasks.threshold import choose_threshold


@pytest.fixture(scope="module")
def davidson(shared_datasets) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    frame = pd.read_csv(shared_datasets / "harmful_content" / "davidson_dev.csv")
    frame = frame.sample(6000, random_state=0).reset_index(drop=True)
    # The card's mapping: hate speech (0) and offensive (1) are harmful, neither (2) is not.
    frame = pd.DataFrame({"text": frame["tweet"], "label": (frame["class"] != 2).astype(int)})
    return frame.iloc[:3000], frame.iloc[3000:4500], frame.iloc[4500:]


@pytest.mark.parametrize("min_precision", [0.9, 0.97])
def test_chosen_threshold_meets_precision_on_davidson(davidson, min_precision: float) -> None:
    train, val, test = davidson
    model = TfidfLogReg(["text"]).fit(train[["text"]], train["label"].to_numpy())
    p_val = model.predict_proba(val[["text"]])[:, 1]
    obj = ThresholdObjective(rule="max_recall_at_precision", min_precision=min_precision)
    choice = choose_threshold(obj, val["label"].to_numpy(), p_val)
    assert choice["met"]
    flagged = p_val >= choice["threshold"]
    assert precision_score(val["label"], flagged) >= min_precision
    assert choice["achieved"]["recall"] == pytest.approx(recall_score(val["label"], flagged))
    # No threshold that keeps the precision catches more harmful tweets (brute force).
    y = val["label"].to_numpy()
    flags = p_val[None, :] >= np.unique(p_val)[:, None]
    tp = (flags & (y == 1)).sum(1)
    feasible = tp / flags.sum(1) >= min_precision
    assert (tp[feasible] / y.sum()).max() == pytest.approx(choice["achieved"]["recall"])
    # And on unseen test tweets the precision holds up to sampling noise.
    p_test = model.predict_proba(test[["text"]])[:, 1]
    assert precision_score(test["label"], p_test >= choice["threshold"]) >= min_precision - 0.03
