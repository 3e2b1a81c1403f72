"""The multilayer perceptron's maths, as pure NumPy functions.

Notation follows the literature: layer l computes z_l = a_{l-1} @ W_l + b_l and
a_l = f(z_l), with a_0 = x the input and softmax in place of f at the output.
Weights are stored the way scikit-learn stores ``coefs_``: W_l has shape
(n_{l-1}, n_l), so the rows of W_1 are the input pixels (which is what lets the
SGD kernels touch only the rows of non-zero pixels).

All parameters live in one contiguous float32 vector ``theta``
([W_1, b_1, W_2, b_2, ...], each W row-major); ``unflatten`` gives views into it.
One buffer is what the workers and the parameter server send each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DTYPE = np.float32

# ---------------------------------------------------------------- activations


def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0)


def relu_derivative(a: np.ndarray) -> np.ndarray:
    """f'(z) written in terms of a = f(z): 1 where the unit is active."""
    return (a > 0).astype(a.dtype)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def sigmoid_derivative(a: np.ndarray) -> np.ndarray:
    """f'(z) = a (1 - a), written in terms of a = sigmoid(z)."""
    return a * (1 - a)


ACTIVATIONS = {"relu": relu, "sigmoid": sigmoid}
DERIVATIVES = {"relu": relu_derivative, "sigmoid": sigmoid_derivative}


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits z, shape (n, k) or (k,)."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample loss -log p[y], for p of shape (n, k) and labels y of shape (n,)."""
    picked = p[np.arange(len(y)), y]
    return -np.log(np.maximum(picked, np.finfo(p.dtype).tiny))


# ------------------------------------------------------------------- layout


def layer_sizes(n_in: int, hidden: Sequence[int], n_out: int = 10) -> tuple[int, ...]:
    return (int(n_in), *map(int, hidden), int(n_out))


def n_params(sizes: Sequence[int]) -> int:
    return sum(n_prev * n + n for n_prev, n in zip(sizes[:-1], sizes[1:]))


def unflatten(theta: np.ndarray, sizes: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Views [(W_1, b_1), ...] into the flat parameter vector theta."""
    if theta.shape != (n_params(sizes),):
        raise ValueError(f"theta has shape {theta.shape}, layers {list(sizes)} need ({n_params(sizes)},)")
    params, offset = [], 0
    for n_prev, n in zip(sizes[:-1], sizes[1:]):
        W = theta[offset : offset + n_prev * n].reshape(n_prev, n)
        offset += n_prev * n
        b = theta[offset : offset + n]
        offset += n
        params.append((W, b))
    return params


def he_init(sizes: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """He et al. (2015): W_l ~ N(0, 2 / n_{l-1}), b_l = 0. Returns flat theta."""
    theta = np.zeros(n_params(sizes), dtype=DTYPE)
    for W, _ in unflatten(theta, sizes):
        W[...] = rng.normal(0.0, np.sqrt(2.0 / W.shape[0]), size=W.shape)
    return theta


# ------------------------------------------------------------ forward, backward


def forward(
    params: list[tuple[np.ndarray, np.ndarray]], X: np.ndarray, activation: str
) -> list[np.ndarray]:
    """Activations [a_0 = X, a_1, ..., a_L = softmax output] for X of shape (n, n_0)."""
    f = ACTIVATIONS[activation]
    a = [X]
    for l, (W, b) in enumerate(params, start=1):
        z = a[-1] @ W + b
        a.append(softmax(z) if l == len(params) else f(z))
    return a


def predict_proba(params: list[tuple[np.ndarray, np.ndarray]], X: np.ndarray, activation: str) -> np.ndarray:
    """Class probabilities, shape (n, n_out), for inputs X of shape (n, n_0) in [0, 1]."""
    return forward(params, X, activation)[-1]


def backprop(
    params: list[tuple[np.ndarray, np.ndarray]], X: np.ndarray, y: np.ndarray, activation: str
) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
    """Mean cross-entropy over the batch X (n, n_0), labels y (n,), and its gradient.

    Returns (loss, [(dW_1, db_1), ...]) with each gradient shaped like its parameter.
    """
    a = forward(params, X, activation)
    return float(cross_entropy(a[-1], y).mean()), gradients(params, a, y, activation)


def gradients(
    params: list[tuple[np.ndarray, np.ndarray]], a: list[np.ndarray], y: np.ndarray, activation: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Gradient of the batch-mean cross-entropy, from a forward pass's activations `a`.

    With softmax and cross-entropy the output error is delta_L = p - onehot(y);
    then delta_{l-1} = (delta_l @ W_l.T) * f'(a_{l-1}).
    """
    f_prime = DERIVATIVES[activation]
    n = len(y)
    delta = a[-1].copy()
    delta[np.arange(n), y] -= 1
    delta /= n
    grads = []
    for l in range(len(params), 0, -1):
        W, _ = params[l - 1]
        grads.append((a[l - 1].T @ delta, delta.sum(axis=0)))
        if l > 1:
            delta = (delta @ W.T) * f_prime(a[l - 1])
    return grads[::-1]


def sgd_step(
    params: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, y: int, lr: float, activation: str
) -> float:
    """One per-sample SGD step in place: theta <- theta - lr * grad. Returns the loss before it."""
    loss, grads = backprop(params, x[None, :], np.array([y]), activation)
    for (W, b), (dW, db) in zip(params, grads):
        W -= lr * dW
        b -= lr * db
    return loss
