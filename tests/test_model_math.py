"""The MLP's maths: gradients, one SGD step by hand, the SGD kernels, He init, evaluation.

Covers dtrain.model.mlp, dtrain.model.kernels (with sgd_numpy and sgd_numba) and
dtrain.model.evaluate.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from dtrain.data.mnist import load_dataset
from dtrain.model import mlp
from dtrain.model.evaluate import evaluate
from dtrain.model.kernels import resolve_kernel, sgd
from dtrain.model.sgd_setup import SGDSetup
from dtrain.model.sparse import SparseRows

ACTIVATIONS = ("relu", "sigmoid")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset()


# ------------------------------------------------------------------ layout


def test_layer_sizes_n_params_and_unflatten_layout():
    sizes = mlp.layer_sizes(3, [2], 4)
    assert sizes == (3, 2, 4)
    assert mlp.layer_sizes(784, (64, 32)) == (784, 64, 32, 10)
    # 3*2 + 2 + 2*4 + 4
    assert mlp.n_params(sizes) == 20

    theta = np.arange(20, dtype=np.float32)
    (W1, b1), (W2, b2) = mlp.unflatten(theta, sizes)
    # [W1 (row-major, (n_prev, n)), b1, W2, b2]
    np.testing.assert_array_equal(W1, [[0, 1], [2, 3], [4, 5]])
    np.testing.assert_array_equal(b1, [6, 7])
    np.testing.assert_array_equal(W2, [[8, 9, 10, 11], [12, 13, 14, 15]])
    np.testing.assert_array_equal(b2, [16, 17, 18, 19])
    # views, not copies
    for arr in (W1, b1, W2, b2):
        assert np.shares_memory(arr, theta)
    W2[1, 2] = -1
    assert theta[14] == -1

    with pytest.raises(ValueError):
        mlp.unflatten(np.zeros(19, dtype=np.float32), sizes)


# ------------------------------------------------- 1. backprop vs finite differences


def _mean_loss(params, X, y, activation):
    """Independent of backprop: forward pass and mean cross-entropy."""
    p = mlp.predict_proba(params, X, activation)
    return float(mlp.cross_entropy(p, y).mean())


def _preactivations(params, X, activation):
    f = mlp.ACTIVATIONS[activation]
    zs, a = [], X
    for W, b in params[:-1]:
        z = a @ W + b
        zs.append(z)
        a = f(z)
    return zs


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("hidden", [(5,), (5, 4)], ids=["6-5-3", "6-5-4-3"])
def test_backprop_matches_central_finite_differences(activation, hidden):
    sizes = mlp.layer_sizes(6, hidden, 3)
    y = np.array([0, 2, 1, 2])
    # the first seed whose net keeps clear of relu's kink: no pre-activation within
    # 1e-3 of 0 (parameter perturbations move them by ~1e-6); used for sigmoid too
    for seed in range(100):
        rng = np.random.default_rng(seed)
        theta = rng.normal(0.0, 0.7, size=mlp.n_params(sizes)).astype(np.float64)
        params = mlp.unflatten(theta, sizes)
        X = rng.uniform(-1.0, 1.0, size=(4, 6))
        zs = _preactivations(params, X, "relu")
        if min(np.abs(z).min() for z in zs) > 1e-3:
            break
    else:
        pytest.fail("no seed in 0..99 keeps every pre-activation away from 0")
    assert theta.dtype == np.float64 and all(W.dtype == np.float64 for W, _ in params)
    if activation == "relu":
        # some units are actually off, so the zero derivative is exercised
        assert any((z < 0).any() for z in zs) and any((z > 0).any() for z in zs)

    loss, grads = mlp.backprop(params, X, y, activation)
    assert loss == pytest.approx(_mean_loss(params, X, y, activation), rel=1e-12)
    assert len(grads) == len(params)
    for (W, b), (dW, db) in zip(params, grads):
        assert dW.shape == W.shape and db.shape == b.shape
        assert dW.dtype == np.float64 and db.dtype == np.float64

    analytic = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads])
    assert analytic.shape == theta.shape

    eps = 1e-6
    numeric = np.empty_like(theta)
    for i in range(theta.size):
        old = theta[i]
        theta[i] = old + eps
        up = _mean_loss(params, X, y, activation)
        theta[i] = old - eps
        down = _mean_loss(params, X, y, activation)
        theta[i] = old
        numeric[i] = (up - down) / (2 * eps)

    # every parameter, not only on average
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
    rel = np.linalg.norm(analytic - numeric) / np.linalg.norm(analytic + numeric)
    assert rel < 1e-7
    # the check is not vacuous
    assert np.abs(analytic).max() > 1e-2


# ------------------------------------------------------- 2. one SGD step by hand


def _tiny_net(dtype):
    """2 inputs, 2 hidden units, 2 outputs, hand-chosen weights."""
    sizes = (2, 2, 2)
    theta = np.zeros(mlp.n_params(sizes), dtype=dtype)
    (W1, b1), (W2, b2) = mlp.unflatten(theta, sizes)
    W1[...] = [[0.5, -1.0], [0.25, 0.5]]
    b1[...] = [0.0, -0.5]
    W2[...] = [[1.0, -1.0], [2.0, 0.5]]
    b2[...] = [0.0, 0.0]
    return sizes, theta


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_step_relu_matches_hand_computation(dtype):
    sizes, theta = _tiny_net(dtype)
    params = mlp.unflatten(theta, sizes)
    x = np.array([1.0, 2.0], dtype=dtype)
    label = 0
    lr = 0.1

    # forward, hidden layer: z1_j = x0*W1[0,j] + x1*W1[1,j] + b1_j
    z1_0 = 1.0 * 0.5 + 2.0 * 0.25 + 0.0  # = 1.0
    z1_1 = 1.0 * -1.0 + 2.0 * 0.5 - 0.5  # = -0.5
    a1_0 = max(z1_0, 0.0)  # = 1.0 (active)
    a1_1 = max(z1_1, 0.0)  # = 0.0 (inactive)
    # output logits: z2_k = a1_0*W2[0,k] + a1_1*W2[1,k] + b2_k
    z2_0 = a1_0 * 1.0 + a1_1 * 2.0 + 0.0  # = 1.0
    z2_1 = a1_0 * -1.0 + a1_1 * 0.5 + 0.0  # = -1.0
    # softmax
    e0, e1 = math.exp(z2_0), math.exp(z2_1)
    p0, p1 = e0 / (e0 + e1), e1 / (e0 + e1)  # p1 = 1 / (1 + e^2) ~ 0.1192
    loss = -math.log(p0)  # label 0
    # output delta: p - onehot(label)
    d2_0 = p0 - 1.0  # = -p1
    d2_1 = p1
    # hidden delta: (W2 @ d2) * relu'(a1)
    d1_0 = (1.0 * d2_0 + -1.0 * d2_1) * (1.0 if a1_0 > 0 else 0.0)  # = -2 p1
    d1_1 = (2.0 * d2_0 + 0.5 * d2_1) * (1.0 if a1_1 > 0 else 0.0)  # = 0
    # gradients: dW2[i,k] = a1_i * d2_k, db2 = d2, dW1[i,j] = x_i * d1_j, db1 = d1
    W2_new = [
        [1.0 - lr * a1_0 * d2_0, -1.0 - lr * a1_0 * d2_1],
        [2.0 - lr * a1_1 * d2_0, 0.5 - lr * a1_1 * d2_1],
    ]
    b2_new = [0.0 - lr * d2_0, 0.0 - lr * d2_1]
    W1_new = [
        [0.5 - lr * 1.0 * d1_0, -1.0 - lr * 1.0 * d1_1],
        [0.25 - lr * 2.0 * d1_0, 0.5 - lr * 2.0 * d1_1],
    ]
    b1_new = [0.0 - lr * d1_0, -0.5 - lr * d1_1]
    # the same numbers in closed form, as a check on the arithmetic above
    q = 1 / (1 + math.e**2)
    assert W1_new[0][0] == pytest.approx(0.5 + 0.2 * q) and W1_new[1][0] == pytest.approx(0.25 + 0.4 * q)
    assert b1_new[0] == pytest.approx(0.2 * q) and b2_new == pytest.approx([0.1 * q, -0.1 * q])

    got_loss = mlp.sgd_step(params, x, label, lr, "relu")

    assert got_loss == pytest.approx(loss, abs=1e-6)
    (W1, b1), (W2, b2) = mlp.unflatten(theta, sizes)
    np.testing.assert_allclose(W1, W1_new, rtol=0, atol=1e-6)
    np.testing.assert_allclose(b1, b1_new, rtol=0, atol=1e-6)
    np.testing.assert_allclose(W2, W2_new, rtol=0, atol=1e-6)
    np.testing.assert_allclose(b2, b2_new, rtol=0, atol=1e-6)
    # the inactive unit's incoming weights and bias did not move at all
    assert W1[0, 1] == dtype(-1.0) and W1[1, 1] == dtype(0.5) and b1[1] == dtype(-0.5)
    assert theta.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_step_sigmoid_matches_hand_computation(dtype):
    sizes, theta = _tiny_net(dtype)
    params = mlp.unflatten(theta, sizes)
    x = np.array([1.0, 2.0], dtype=dtype)
    label = 1
    lr = 0.1

    def s(z):
        return 1.0 / (1.0 + math.exp(-z))

    # forward, hidden layer
    z1_0 = 1.0 * 0.5 + 2.0 * 0.25 + 0.0  # = 1.0
    z1_1 = 1.0 * -1.0 + 2.0 * 0.5 - 0.5  # = -0.5
    a1_0 = s(z1_0)  # ~ 0.7311
    a1_1 = s(z1_1)  # ~ 0.3775
    # output logits
    z2_0 = a1_0 * 1.0 + a1_1 * 2.0 + 0.0
    z2_1 = a1_0 * -1.0 + a1_1 * 0.5 + 0.0
    # softmax
    e0, e1 = math.exp(z2_0), math.exp(z2_1)
    p0, p1 = e0 / (e0 + e1), e1 / (e0 + e1)
    loss = -math.log(p1)  # label 1
    # output delta: p - onehot(label)
    d2_0 = p0
    d2_1 = p1 - 1.0
    # hidden delta: (W2 @ d2) * a1 (1 - a1)
    d1_0 = (1.0 * d2_0 + -1.0 * d2_1) * a1_0 * (1.0 - a1_0)
    d1_1 = (2.0 * d2_0 + 0.5 * d2_1) * a1_1 * (1.0 - a1_1)
    # updated parameters
    W2_new = [
        [1.0 - lr * a1_0 * d2_0, -1.0 - lr * a1_0 * d2_1],
        [2.0 - lr * a1_1 * d2_0, 0.5 - lr * a1_1 * d2_1],
    ]
    b2_new = [0.0 - lr * d2_0, 0.0 - lr * d2_1]
    W1_new = [
        [0.5 - lr * 1.0 * d1_0, -1.0 - lr * 1.0 * d1_1],
        [0.25 - lr * 2.0 * d1_0, 0.5 - lr * 2.0 * d1_1],
    ]
    b1_new = [0.0 - lr * d1_0, -0.5 - lr * d1_1]

    got_loss = mlp.sgd_step(params, x, label, lr, "sigmoid")

    assert got_loss == pytest.approx(loss, abs=1e-6)
    (W1, b1), (W2, b2) = mlp.unflatten(theta, sizes)
    np.testing.assert_allclose(W1, W1_new, rtol=0, atol=1e-6)
    np.testing.assert_allclose(b1, b1_new, rtol=0, atol=1e-6)
    np.testing.assert_allclose(W2, W2_new, rtol=0, atol=1e-6)
    np.testing.assert_allclose(b2, b2_new, rtol=0, atol=1e-6)
    assert theta.dtype == dtype


def test_activation_derivatives_take_the_activation():
    z = np.array([-2.0, -0.5, 0.5, 3.0])
    a = mlp.relu(z)
    np.testing.assert_array_equal(a, [0, 0, 0.5, 3.0])
    np.testing.assert_array_equal(mlp.relu_derivative(a), [0, 0, 1, 1])
    a = mlp.sigmoid(z)
    h = 1e-6
    numeric = (mlp.sigmoid(z + h) - mlp.sigmoid(z - h)) / (2 * h)
    np.testing.assert_allclose(mlp.sigmoid_derivative(a), numeric, rtol=1e-8)
    p = mlp.softmax(np.array([[1000.0, 1000.0], [0.0, math.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.25, 0.75]])
    np.testing.assert_allclose(mlp.cross_entropy(p, np.array([0, 1])), [math.log(2), -math.log(0.75)])


# ------------------------------------------------------- 3. kernels vs reference


def _reference_sgd(theta, sizes, activation, X, y, order, lr):
    """A loop of mlp.sgd_step: (loss sum, correct count) before each step."""
    params = mlp.unflatten(theta, sizes)
    loss, correct = 0.0, 0
    for s in order:
        x = (X[s] / 255).astype(np.float32)
        p = mlp.predict_proba(params, x[None, :], activation)[0]
        correct += int(p.argmax() == y[s])
        loss += mlp.sgd_step(params, x, int(y[s]), lr, activation)
    return loss, correct


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("hidden", [(64,), (32, 16)], ids=["h64", "h32-16"])
def test_kernels_agree_with_reference_sgd_step(mnist, activation, hidden):
    sizes = mlp.layer_sizes(mnist.n_features, hidden, 10)
    theta0 = mlp.he_init(sizes, np.random.default_rng(7))
    order = np.random.default_rng(11).permutation(2000)[:300]
    lr = 0.05
    X, y = mnist.x_train, mnist.y_train

    t_np, t_nb, t_ref = theta0.copy(), theta0.copy(), theta0.copy()
    loss_np, correct_np = sgd("numpy", t_np, SGDSetup(sizes, activation, X, y, lr), order)
    loss_nb, correct_nb = sgd("numba", t_nb, SGDSetup(sizes, activation, X, y, lr), order)
    loss_ref, correct_ref = _reference_sgd(t_ref, sizes, activation, X, y, order, lr)

    for t in (t_np, t_nb, t_ref):
        assert t.dtype == np.float32 and t.shape == theta0.shape
        assert np.isfinite(t).all()
    # training moved the weights well beyond the tolerance
    assert np.abs(t_ref - theta0).max() > 1e-2
    np.testing.assert_allclose(t_np, t_ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(t_nb, t_ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(t_nb, t_np, rtol=0, atol=1e-5)

    assert correct_nb == correct_np == correct_ref
    assert 0 < correct_np < len(order)
    assert loss_nb == pytest.approx(loss_np, rel=1e-4)
    assert loss_np == pytest.approx(loss_ref, rel=1e-4)
    assert loss_np > 0


@pytest.mark.parametrize("kernel", ["numpy", "numba"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_sparse_kernel_is_exact_for_zero_pixels(kernel, activation):
    sizes = (20, 6, 4, 3)
    rng = np.random.default_rng(3)
    theta0 = mlp.he_init(sizes, rng)
    for _, b in mlp.unflatten(theta0, sizes):
        # non-zero biases, so that with relu a black image still activates some units
        b[...] = rng.uniform(-0.5, 0.5, size=b.shape)
    X = np.zeros((3, 20), dtype=np.uint8)
    X[1, [2, 7, 13]] = [255, 40, 128]  # three non-zero pixels
    y = np.array([2, 0, 1], dtype=np.uint8)
    lr = 0.1

    # an all-black image: the first layer's weights cannot change, its bias must
    theta = theta0.copy()
    sgd(kernel, theta, SGDSetup(sizes, activation, X, y, lr), np.array([0]))
    (W1_0, b1_0), *rest0 = mlp.unflatten(theta0, sizes)
    (W1, b1), *rest = mlp.unflatten(theta, sizes)
    np.testing.assert_array_equal(W1, W1_0)
    assert np.abs(b1 - b1_0).max() > 1e-6
    for (W, b), (W0, b0) in zip(rest, rest0):
        assert not np.array_equal(W, W0) and not np.array_equal(b, b0)
    # and it is the same step as the dense reference
    ref = theta0.copy()
    mlp.sgd_step(mlp.unflatten(ref, sizes), np.zeros(20, np.float32), 2, lr, activation)
    np.testing.assert_allclose(theta, ref, rtol=0, atol=1e-7)

    # three non-zero pixels: exactly their rows of W1 move, nothing else in W1
    theta = theta0.copy()
    sgd(kernel, theta, SGDSetup(sizes, activation, X, y, lr), np.array([1]))
    (W1, _), *_ = mlp.unflatten(theta, sizes)
    changed = np.flatnonzero((W1 != W1_0).any(axis=1))
    np.testing.assert_array_equal(changed, [2, 7, 13])
    ref = theta0.copy()
    mlp.sgd_step(mlp.unflatten(ref, sizes), (X[1] / 255).astype(np.float32), 0, lr, activation)
    np.testing.assert_allclose(theta, ref, rtol=0, atol=1e-7)


# ---------------------------------------------------------- 4. kernel choice


def test_resolve_kernel():
    assert resolve_kernel("auto") == "numba"
    assert resolve_kernel("numba") == "numba"
    assert resolve_kernel("numpy") == "numpy"
    for bad in ("cuda", "", "NUMPY", "Auto"):
        with pytest.raises(ValueError):
            resolve_kernel(bad)


def test_sgd_with_unknown_kernel_raises_and_leaves_theta_alone():
    sizes = (4, 3, 2)
    theta = mlp.he_init(sizes, np.random.default_rng(0))
    before = theta.copy()
    X = np.full((1, 4), 9, dtype=np.uint8)
    with pytest.raises(ValueError):
        sgd("fortran", theta, SGDSetup(sizes, "relu", X, np.array([1], np.uint8), 0.1), np.array([0]))
    np.testing.assert_array_equal(theta, before)


# ---------------------------------------------------------------- 5. He init


def test_he_init_distribution_and_reproducibility():
    sizes = (784, 64, 10)
    theta = mlp.he_init(sizes, np.random.default_rng(0))
    assert theta.dtype == np.float32
    assert theta.shape == (mlp.n_params(sizes),)
    (W1, b1), (W2, b2) = mlp.unflatten(theta, sizes)
    np.testing.assert_array_equal(b1, 0)
    np.testing.assert_array_equal(b2, 0)

    target1 = math.sqrt(2 / 784)
    assert abs(W1.std() / target1 - 1) < 0.05
    assert abs(W1.mean()) < 0.05 * target1
    target2 = math.sqrt(2 / 64)
    assert abs(W2.std() / target2 - 1) < 0.15  # only 640 weights

    again = mlp.he_init(sizes, np.random.default_rng(0))
    np.testing.assert_array_equal(theta, again)
    other = mlp.he_init(sizes, np.random.default_rng(1))
    assert not np.array_equal(theta, other)
    assert np.mean(theta == other) < 0.01 + (b1.size + b2.size) / theta.size


# ------------------------------------------------------------- 6. evaluate


def _identity_net():
    """3-3-3 relu, W1 = I, W2 = 10 I: the prediction is the brightest pixel."""
    sizes = (3, 3, 3)
    theta = np.zeros(mlp.n_params(sizes), dtype=np.float32)
    (W1, _), (W2, _) = mlp.unflatten(theta, sizes)
    W1[...] = np.eye(3)
    W2[...] = 10 * np.eye(3)
    return sizes, theta


def test_evaluate_hand_made_case_with_a_class_never_predicted():
    sizes, theta = _identity_net()
    # predicted classes:   0  0  1  1  0  1   (class 2 never predicted)
    X = np.array(
        [[255, 0, 0], [255, 0, 0], [0, 255, 0], [0, 255, 0], [255, 0, 0], [0, 255, 0]],
        dtype=np.uint8,
    )
    y = np.array([0, 1, 1, 2, 0, 2], dtype=np.uint8)

    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        ev = evaluate(theta, sizes, "relu", X, y)
        precision, recall, f1 = ev.precision, ev.recall, ev.f1
        summary = ev.summary()

    np.testing.assert_array_equal(ev.predictions, [0, 0, 1, 1, 0, 1])
    # row = true class, column = predicted
    np.testing.assert_array_equal(ev.confusion, [[2, 0, 0], [1, 1, 0], [0, 2, 0]])
    assert ev.confusion.sum() == len(y)
    assert ev.accuracy == pytest.approx(np.trace(ev.confusion) / len(y)) and ev.accuracy == 0.5
    # precision: diag / column sums (3, 3, 0) -> class 2 is 0, not nan
    np.testing.assert_allclose(precision, [2 / 3, 1 / 3, 0.0])
    # recall: diag / row sums (2, 2, 2)
    np.testing.assert_allclose(recall, [1.0, 0.5, 0.0])
    # f1 = 2pr / (p + r): 2(2/3)(1)/(5/3) = 0.8, 2(1/3)(1/2)/(5/6) = 0.4, 0
    np.testing.assert_allclose(f1, [0.8, 0.4, 0.0])
    assert not np.isnan(precision).any() and not np.isnan(f1).any()

    # logits are 10 on the predicted class, 0 elsewhere
    top = math.exp(10) / (math.exp(10) + 2)
    np.testing.assert_allclose(ev.confidence, [top] * 6, rtol=1e-6)
    # right: -log(e^10 / (e^10 + 2)); wrong: -log(1 / (e^10 + 2))
    loss = (3 * math.log(1 + 2 * math.exp(-10)) + 3 * math.log(math.exp(10) + 2)) / 6
    assert ev.loss == pytest.approx(loss, rel=1e-5)
    assert summary["accuracy"] == 0.5
    assert summary["confusion"] == [[2, 0, 0], [1, 1, 0], [0, 2, 0]]
    assert summary["precision"][2] == 0.0 and summary["f1"] == pytest.approx([0.8, 0.4, 0.0])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_evaluate_matches_independent_numpy_on_random_data(activation):
    rng = np.random.default_rng(5)
    sizes = (30, 12, 8, 5)
    theta = mlp.he_init(sizes, rng)
    theta += rng.normal(0, 0.1, size=theta.shape).astype(np.float32)  # non-zero biases
    n = 500
    X = rng.integers(0, 256, size=(n, 30), dtype=np.uint8)
    y = rng.integers(0, 5, size=n).astype(np.uint8)

    ev = evaluate(theta, sizes, activation, X, y)

    # independent float64 forward pass
    t = theta.astype(np.float64)
    a = X / 255.0
    offset = 0
    for l, (n_prev, k) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        W = t[offset : offset + n_prev * k].reshape(n_prev, k)
        offset += n_prev * k
        b = t[offset : offset + k]
        offset += k
        z = a @ W + b
        if l < len(sizes) - 1:
            a = np.maximum(z, 0) if activation == "relu" else 1 / (1 + np.exp(-z))
        else:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            a = e / e.sum(axis=1, keepdims=True)
    pred = a.argmax(axis=1)
    confusion = np.zeros((5, 5), dtype=np.int64)
    for true, guess in zip(y, pred):
        confusion[true, guess] += 1

    np.testing.assert_array_equal(ev.predictions, pred)
    np.testing.assert_array_equal(ev.confusion, confusion)
    assert ev.confusion.sum() == n
    assert ev.accuracy == pytest.approx(np.trace(confusion) / n)
    assert ev.loss == pytest.approx(-np.log(a[np.arange(n), y]).mean(), rel=1e-5)
    np.testing.assert_allclose(ev.confidence, a.max(axis=1), rtol=1e-5)
    for c in range(5):
        tp = np.sum((pred == c) & (y == c))
        n_pred, n_true = np.sum(pred == c), np.sum(y == c)
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / n_true if n_true else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        assert ev.precision[c] == pytest.approx(prec)
        assert ev.recall[c] == pytest.approx(rec)
        assert ev.f1[c] == pytest.approx(f1)


# -------------------------------------------------------- 7. it actually learns


def test_one_epoch_numba_sgd_learns_mnist(mnist):
    sizes = mlp.layer_sizes(mnist.n_features, (64,), 10)
    theta = mlp.he_init(sizes, np.random.default_rng(0))
    # one epoch in a shuffled order, as the workers visit their shards (in file
    # order, samples 0..19999 give 0.9285 test accuracy with this seed)
    order = np.random.default_rng(0).permutation(20000)
    loss_sum, correct = sgd("numba", theta, SGDSetup(sizes, "relu", mnist.x_train, mnist.y_train, 0.01), order)
    assert np.isfinite(loss_sum) and correct > 0.8 * len(order)

    ev = evaluate(theta, sizes, "relu", mnist.x_test, mnist.y_test)
    assert len(ev.predictions) == 10000 and ev.confusion.sum() == 10000
    assert ev.accuracy >= 0.93, ev.accuracy
    assert ev.loss < 0.3


def test_numba_kernel_result_depends_on_the_samples_not_where_they_lie(mnist):
    """The kernel prefetches the next sample's pixels while it trains the current one:
    a shuffled order over the whole set must give bit for bit the weights of the same
    samples copied out in that order and visited in sequence."""
    sizes = mlp.layer_sizes(mnist.n_features, (64,), 10)
    theta0 = mlp.he_init(sizes, np.random.default_rng(3))
    images = SparseRows.from_dense(mnist.x_train[:5000])
    order = np.random.default_rng(4).permutation(5000)[:1500]

    shuffled, in_sequence = theta0.copy(), theta0.copy()
    a = sgd("numba", shuffled, SGDSetup(sizes, "relu", images, mnist.y_train[:5000], 0.01), order)
    copied = SparseRows.from_dense(mnist.x_train[order])
    b = sgd("numba", in_sequence, SGDSetup(sizes, "relu", copied, mnist.y_train[order], 0.01), np.arange(len(order)))

    assert np.abs(shuffled - theta0).max() > 1e-2
    assert np.array_equal(shuffled, in_sequence)
    assert a == b


def test_warm_up_loads_numba_without_scipy_linalg_and_leaves_it_importable():
    """warm_up keeps numba from importing scipy.linalg (0.19 s of CPU in each worker) and
    lifts the block afterwards: the process can still import it, and the kernel still trains."""
    pytest.importorskip("numba")
    pytest.importorskip("scipy")
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import numpy as np\n"
        "from dtrain.model.kernels import sgd, warm_up\n"
        "from dtrain.model.sgd_setup import SGDSetup\n"
        "warm_up('numba')\n"
        "print('loaded during warm_up:', 'scipy.linalg' in sys.modules)\n"
        "import scipy.linalg\n"
        "print('norm:', scipy.linalg.norm([3.0, 4.0]))\n"
        "theta = np.zeros(4 * 2 + 2 + 2 * 2 + 2, np.float32)\n"
        "x = np.array([[0, 255, 0, 128]], np.uint8)\n"
        "sgd('numba', theta, SGDSetup((4, 2, 2), 'relu', x, np.array([1], np.uint8), 0.5), np.zeros(1, np.int64))\n"
        "print('output bias moved:', bool(theta[-2:].any()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "loaded during warm_up: False" in out.stdout
    assert "norm: 5.0" in out.stdout
    assert "output bias moved: True" in out.stdout  # the kernel still trains


def test_evaluate_on_threads_gives_the_same_scores(mnist):
    """The driver scores epochs on several threads; the figures must not depend on it."""
    sizes = mlp.layer_sizes(mnist.n_features, (32,), 10)
    theta = mlp.he_init(sizes, np.random.default_rng(3))
    X, y = mnist.x_test[:1001], mnist.y_test[:1001]  # a count no thread count divides
    one = evaluate(theta, sizes, "relu", X, y)
    for threads in (2, 3, 4):
        many = evaluate(theta, sizes, "relu", X, y, threads=threads)
        np.testing.assert_allclose(many.proba, one.proba, rtol=1e-6, atol=1e-7)  # same rows; BLAS may block them otherwise
        assert many.loss == pytest.approx(one.loss, rel=1e-6) and many.accuracy == one.accuracy
        np.testing.assert_array_equal(many.confusion, one.confusion)
