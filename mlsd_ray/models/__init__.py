"""Models: plain estimators and torch modules. No Ray, no MLflow in here.

Every model follows the scikit-learn contract (``fit`` returns self, learned state ends in ``_``,
predicting before ``fit`` raises) and saves to a folder of JSON and safetensors files, so
loading an artifact never unpickles anything.
"""

from mlsd_ray.models.base import Model, load_model_class
from mlsd_ray.models.kinds import KINDS, MODEL_KINDS
from mlsd_ray.models.package import ModelManifest, load_package, save_package

__all__ = [
    "KINDS",
    "MODEL_KINDS",
    "Model",
    "ModelManifest",
    "load_model_class",
    "load_package",
    "save_package",
]
