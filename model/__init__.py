"""The MLP: its maths, SGD kernels, evaluation, and weight files.

For inference::

    from dtrain.model import load_model
    m = load_model("model.npz")
    m.predict(images)        # uint8 28x28 (or 784) images, one or a batch
    m.predict_proba(images)
"""

from dtrain.model.inference import Model, load_model
from dtrain.model.weights import WeightsError, read_weights, save_weights

__all__ = ["Model", "load_model", "read_weights", "save_weights", "WeightsError"]
