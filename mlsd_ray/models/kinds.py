"""The one table of model kinds: adding a kind is one `Kind` entry here (plus its model and
trainer modules).

Each kind declares its ``Params`` (checked when the card loads), its `Model` class and package
format, its trainer (``fit(job) -> Fitted``, in mlsd_ray.train.trainers) and what it supports.
The card's kind Literal, the ensemble members and the training loop all derive from this table.
Classes and trainers are named as ``"module:attr"`` and imported on use: the card loader imports
this module, and the transformer's module pulls in torch and transformers.
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from mlsd_ray.models import params as P

if TYPE_CHECKING:
    from mlsd_ray.models.base import Model

#: Trainer options (``models.<name>.trainer``) and which kinds read them; a kind refuses the rest.
RAY_TRAIN_OPTIONS = frozenset({"num_workers", "cpus_per_worker"})
#: What a kind reads: ``text`` = the card's single text input (listed first); ``tabular`` =
#: numeric and categorical inputs (filled into params from the card); ``any`` = none.
Inputs = Literal["text", "tabular", "image", "any"]
Task = Literal["binary", "multiclass", "regression"]
CLASSIFICATION: frozenset[str] = frozenset({"binary", "multiclass"})
ALL_TASKS: frozenset[str] = frozenset({"binary", "multiclass", "regression"})


@dataclass(frozen=True)
class Kind:
    name: str
    params: type[P.KindParams] | type[P.MLPParams] | type[P.CNNParams]
    #: The `Model` subclass, ``"module:Class"``.
    model: str
    #: The trainer, ``"module:function"``: ``fit(FitJob) -> Fitted``.
    trainer: str
    #: Files in the package besides ``mlsd_model.json`` (all JSON, safetensors or native text /
    #: UBJSON boosters: never pickle).
    package_format: str
    inputs: Inputs = "tabular"
    tasks: frozenset[str] = CLASSIFICATION
    #: Trainer options the kind reads (others in the card are refused at load).
    trainer_options: frozenset[str] = frozenset()
    #: Fitted in a Ray task of one CPU (cheap kinds, all at once); else the trainer runs in the
    #: driver and starts its own Ray Train / Ray task fan-out.
    in_task: bool = False
    warm_start: bool = False
    gpu: bool = False
    tuning: bool = False
    #: How a tuning trial runs: one ``fit`` (one report), boosting ``rounds`` reported per
    #: chunk, or ``epochs`` inside the kind's own trainer (ASHA can stop the last two early).
    tune_by: Literal["fit", "rounds", "epochs"] = "fit"
    #: ``models.refit`` fits it again on train + validation after selection.
    refit: bool = False
    #: A calibration map can be fitted on its scores (not on a constant score).
    calibrate: bool = True
    fast_inference: bool = False
    ensemble_member: bool = False
    #: Combines other candidates' packages: trained after them (the blend).
    combines: bool = False

    def model_class(self) -> type[Model]:
        cls: type[Model] = pkgutil.resolve_name(self.model)
        return cls

    def trainer_fn(self) -> Any:
        return pkgutil.resolve_name(self.trainer)


_T = "mlsd_ray.train.trainers"
_ALL_TRAINER_OPTIONS = frozenset(
    {
        "pretrained",
        "max_length",
        "epochs",
        "max_steps",
        "batch_size",
        "learning_rate",
        "weight_decay",
        "num_workers",
        "cpus_per_worker",
        "use_gpu",
        "seed",
        "class_weight",
        "checkpoint_every_steps",
        "eval_every_steps",
        "patience",
        "checkpoint_selection",
        "max_failures",
        "fine_tune",
        "warm_start",
        "lr_schedule",
        "warmup_steps",
        "precision",
    }
)

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "majority",
            P.NoParams,
            "mlsd_ray.models.simple:MajorityClass",
            f"{_T}:fit_simple",
            "prior.json",
            inputs="any",
            in_task=True,
            ensemble_member=True,
            calibrate=False,
        ),
        Kind(
            "tfidf_logreg",
            P.TfidfLogRegParams,
            "mlsd_ray.models.simple:TfidfLogReg",
            f"{_T}:fit_simple",
            "vocabulary.json, weights.safetensors (idf, coef), model.json",
            inputs="text",
            in_task=True,
            tuning=True,  # train/spaces.py holds its search space
        ),
        Kind(
            "logreg",
            P.LogRegParams,
            "mlsd_ray.models.simple:TabularLogReg",
            f"{_T}:fit_simple",
            "preprocessor.json, weights.safetensors, model.json",
            in_task=True,
            ensemble_member=True,
            tuning=True,  # train/spaces.py holds its search space
            refit=True,
        ),
        Kind(
            "transformer",
            P.TransformerParams,
            "mlsd_ray.models.transformer:TransformerTextClassifier",
            f"{_T}:fit_transformer",
            "model.safetensors, config.json, head.json, tokenizer files",
            inputs="text",
            trainer_options=_ALL_TRAINER_OPTIONS,
            warm_start=True,
            gpu=True,
            fast_inference=True,
        ),
        Kind(
            "mlp",
            P.MLPParams,
            "mlsd_ray.models.mlp:TabularMLP",
            f"{_T}:fit_mlp",
            "preprocessor.json, weights.safetensors, model.json, learning_curve.json",
            tasks=ALL_TASKS,
            tuning=True,
            tune_by="epochs",
            ensemble_member=True,
        ),
        Kind(
            "cnn",
            P.CNNParams,
            "mlsd_ray.models.cnn:ImageCNN",
            f"{_T}:fit_cnn",
            "weights.safetensors, model.json, learning_curve.json",
            inputs="image",
        ),
        Kind(
            "mean",
            P.NoParams,
            "mlsd_ray.models.regression:MeanRegressor",
            f"{_T}:fit_simple",
            "mean.json",
            inputs="any",
            tasks=frozenset({"regression"}),
            in_task=True,
        ),
        Kind(
            "ridge",
            P.RidgeParams,
            "mlsd_ray.models.regression:TabularRidge",
            f"{_T}:fit_simple",
            "preprocessor.json, weights.safetensors",
            tasks=frozenset({"regression"}),
            in_task=True,
            tuning=True,  # train/spaces.py holds its search space
            refit=True,
        ),
        Kind(
            "xgboost",
            P.GBDTParams,
            "mlsd_ray.models.gbdt:XGBoostModel",
            f"{_T}:fit_gbdt",
            "preprocessor.json, model.ubj (xgboost UBJSON), gbdt.json",
            tasks=ALL_TASKS,
            trainer_options=RAY_TRAIN_OPTIONS,
            ensemble_member=True,
            tuning=True,  # train/spaces.py holds its search space
            tune_by="rounds",
            refit=True,
        ),
        Kind(
            "lightgbm",
            P.GBDTParams,
            "mlsd_ray.models.gbdt:LightGBMModel",
            f"{_T}:fit_gbdt",
            "preprocessor.json, model.txt (LightGBM text), gbdt.json",
            tasks=ALL_TASKS,
            trainer_options=RAY_TRAIN_OPTIONS,
            ensemble_member=True,
            tuning=True,  # train/spaces.py holds its search space
            tune_by="rounds",
            refit=True,
        ),
        Kind(
            "bagging",
            P.BaggingParams,
            "mlsd_ray.models.ensemble:Bagging",
            f"{_T}:fit_ensemble",
            "ensemble.json, members/NN/ (each member's own files)",
            tasks=ALL_TASKS,
        ),
        Kind(
            "stacking",
            P.StackingParams,
            "mlsd_ray.models.ensemble:Stacking",
            f"{_T}:fit_ensemble",
            "ensemble.json, meta.safetensors, members/NN/",
            tasks=ALL_TASKS,
        ),
        Kind(
            "blend",
            P.BlendParams,
            "mlsd_ray.models.blend:Blend",
            f"{_T}:fit_blend",
            "blend.json, members/NN/ (each member's whole package)",
            inputs="any",
            tasks=frozenset({"binary"}),
            calibrate=False,  # a combiner fitted on calibrated members' scores
            combines=True,
        ),
    )
}
KIND_NAMES: tuple[str, ...] = tuple(KINDS)
#: kind -> "module:Class" of its model.
MODEL_KINDS: dict[str, str] = {name: k.model for name, k in KINDS.items()}


def get_kind(name: str) -> Kind:
    if name not in KINDS:
        from mlsd_ray.errors import ModelError

        raise ModelError(f"Unknown model kind {name!r}.", fix=f"use one of {sorted(KINDS)}")
    return KINDS[name]


def check_params(kind: str, params: dict[str, Any]) -> None:
    """Raise ValueError naming the kind and each bad key when ``params`` do not fit the kind."""
    try:
        get_kind(kind).params.model_validate(params)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            key = "params." + ".".join(str(p) for p in e["loc"])
            if e["type"] == "extra_forbidden":
                known = sorted(get_kind(kind).params.model_fields)
                problems.append(
                    f"{key}: kind {kind!r} has no param {e['loc'][-1]!r}; known: {known}"
                )
            else:
                problems.append(f"{key}: got {e.get('input')!r}; {e['msg'].lower()}")
        raise ValueError("; ".join(problems)) from None
