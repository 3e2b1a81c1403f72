"""Per-sample SGD compiled with numba: the same update as ``sgd_numpy``, ~14x faster.

One function over the flat float32 buffer, any number of layers. Images come as
sparse rows (``model/sparse.py``): the first layer reads and updates only the
rows of W1 that belong to non-zero pixels (exact: a zero input has zero gradient).
Each layer's weights are read for the backward pass and updated in the same
loop, old value first, so the result is exactly per-sample SGD.
``cache=True`` keeps the machine code on disk next to this file, so worker
processes load it instead of recompiling.

Training visits samples in a shuffled order, so each sample's pixels start as
cache misses that stall the loop (measured here: 13% slower than MNIST's stored
order). The loop therefore prefetches the next sample's pixels while it trains
the current one, which removes that cost (380k -> 440k samples/s on one core)
and changes no result.

The weights are trained in a copy whose rows are padded to whole 64-float chunks
(W_1) or 16-float vectors (the other layers) and start on cache lines, and the
hot loops over a sample's rows (``model/row_loops.py``) have a width fixed at
compile time, so that LLVM keeps a chunk of z_1 or delta_1 in AVX-512 registers
while the rows stream past. Every sum keeps its order, so the weights are bit for
bit those of the kernel before the change. The kernel's per-sample steps are
functions of their own that numba inlines into it (STEP_FLAGS), so it computes
exactly as it did with them written out in its loop.
``benchmarks/kernel.py`` measures it against a plain numba kernel of the same
maths (issue 19 item 4: from 1.0x to ~1.8x on one core).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from dtrain.model.row_loops import (
    CHUNK,
    VECTOR,
    add_dense_rows,
    add_rows,
    aligned_empty,
    prefetch,
    subtract_rows,
)


#: The kernel's flags. reassoc/contract let LLVM vectorise the backward loop's delta
#: reduction (its order, LLVM's, is what the weights' bits have always been); no "fast"
#: flags that assume finite values, so a diverging run still shows its NaN.
#: error_model="numpy": the softmax's division is never by zero (total >= 1), so no zero
#: check and no exception path in the loop.
KERNEL_FLAGS = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy", fastmath={"reassoc", "contract"})
#: The per-sample steps' flags: the kernel's, and numba inlines them into its loop, where
#: they compile as the code they were before being split out. As calls (LLVM did not inline
#: them), each passing every array as seven words, the kernel ran a few percent slower.
STEP_FLAGS = dict(KERNEL_FLAGS, inline="always")


@njit(cache=True, nogil=True)
def padded_layout(sizes):  # pragma: no cover - compiled
    """Where each layer l = 1..L lies, for sizes (L + 1,) int64; each result is (L + 1,) int64,
    index 0 unused (zero). theta[w_off[l]:] holds W_l, (n_{l-1}, n_l), and theta[b_off[l]:]
    b_l, (n_l,); P[p_off[l]:] holds W_l padded to (n_{l-1}, width[l]), width[l] being n_l
    rounded up to whole CHUNKs (l = 1) or VECTORs. Returns (width, w_off, b_off, p_off, len(P))."""
    L = sizes.shape[0] - 1
    width = np.zeros(L + 1, np.int64)
    w_off = np.zeros(L + 1, np.int64)
    b_off = np.zeros(L + 1, np.int64)
    p_off = np.zeros(L + 1, np.int64)
    o = 0
    po = 0
    for l in range(1, L + 1):
        block = CHUNK if l == 1 else VECTOR
        width[l] = -(-sizes[l] // block) * block
        w_off[l] = o
        o += sizes[l - 1] * sizes[l]
        b_off[l] = o
        o += sizes[l]
        p_off[l] = po
        po += sizes[l - 1] * width[l]
    return width, w_off, b_off, p_off, po


@njit(**STEP_FLAGS)
def padded_weights(P, sizes, width, p_off, l):  # pragma: no cover - compiled
    """W_l in P, the padded copy: a (n_{l-1}, width[l]) view (padded_layout says where)."""
    return P[p_off[l] : p_off[l] + sizes[l - 1] * width[l]].reshape((sizes[l - 1], width[l]))


@njit(cache=True, nogil=True, boundscheck=False)
def copy_weights(theta, P, sizes, width, w_off, p_off, into_padded):  # pragma: no cover - compiled
    """Copy every W_l between theta (flat float32) and P, its padded copy (padded_layout says
    where each lies): into P, the padding set to zero, if into_padded, else back into theta,
    the padding left out. Plain loops, not 2D slice assignments: a call with no samples took
    48 us with those and takes 13 us with these, and workers call the kernel on blocks of a
    few hundred samples (~2 us each)."""
    for l in range(1, sizes.shape[0]):
        n_prev, n, w = sizes[l - 1], sizes[l], width[l]
        padded = padded_weights(P, sizes, width, p_off, l)
        W = theta[w_off[l] : w_off[l] + n_prev * n].reshape((n_prev, n))
        for i in range(n_prev):
            if into_padded:
                for j in range(n):
                    padded[i, j] = W[i, j]
                for j in range(n, w):
                    padded[i, j] = np.float32(0.0)
            else:
                for j in range(n):
                    W[i, j] = padded[i, j]


@njit(**STEP_FLAGS)
def prefetch_ahead(order, step, indptr, indices, values):  # pragma: no cover - compiled
    """Start loading the pixels of sample order[step + 1] and the row offsets of order[step + 2]
    (order (n_samples,); indptr, indices, values the sparse rows), so they are in cache when
    their turn comes."""
    n_samples = order.shape[0]
    if step + 2 < n_samples:
        prefetch(indptr, order[step + 2])
    if step + 1 < n_samples:
        following = order[step + 1]
        start, stop = indptr[following], indptr[following + 1]
        for t in range(start, stop, 32):  # 32 uint16 = one 64-byte line
            prefetch(indices, t)
        for t in range(start, stop, 64):
            prefetch(values, t)
        if stop > start:  # the strides start mid-line, so the last line may be left out
            prefetch(indices, stop - 1)
            prefetch(values, stop - 1)


@njit(**STEP_FLAGS)
def load_sample(nz, xv, indptr, indices, values, s, scale):  # pragma: no cover - compiled
    """a_0 of sample s as (pixel index, value) pairs: nz[:m] (uint16) and xv[:m] (float32,
    the uint8 values times scale), m being the sample's non-zero pixels; returns m."""
    lo = indptr[s]
    m = indptr[s + 1] - lo
    for k in range(m):
        nz[k] = indices[lo + k]
        xv[k] = np.float32(values[lo + k]) * scale
    return m


@njit(**STEP_FLAGS)
def forward_first(z, z_chunks, b1, W1_chunks, nz, xv, m):  # pragma: no cover - compiled
    """z_1 = b_1 + sum over the m non-zero pixels k of xv[k] * W_1[nz[k]], into z (>= width_1,),
    the padding zero; z_chunks is z[:width_1] as (n_chunks, CHUNK), W1_chunks W_1 padded as
    (n_0, n_chunks, CHUNK), b1 (n_1,)."""
    n1 = b1.shape[0]
    for j in range(n1):
        z[j] = b1[j]
    for j in range(n1, z_chunks.size):
        z[j] = np.float32(0.0)
    for c in range(z_chunks.shape[0]):
        add_rows(z_chunks, W1_chunks, nz, xv, m, c)


@njit(**STEP_FLAGS)
def forward_dense(z, W, b, a_prev):  # pragma: no cover - compiled
    """z_l = b_l + a_{l-1} @ W_l, into z (>= width_l,), the padding zero: W is W_l padded,
    (n_{l-1}, width_l), b (n_l,), a_prev (>= n_{l-1},)."""
    n_prev, w = W.shape
    n = b.shape[0]
    for j in range(n):
        z[j] = b[j]
    for j in range(n, w):
        z[j] = np.float32(0.0)
    z_chunks = z[:w].reshape((w // VECTOR, VECTOR))
    W_chunks = W.reshape((n_prev, w // VECTOR, VECTOR))
    for c in range(w // VECTOR):
        add_dense_rows(z_chunks, W_chunks, a_prev, n_prev, c)


@njit(**STEP_FLAGS)
def activate(z, is_relu):  # pragma: no cover - compiled
    """a_l = relu(z_l) or sigmoid(z_l), in place over z (n_l,)."""
    one = np.float32(1.0)
    for j in range(z.shape[0]):
        if is_relu:
            z[j] = max(z[j], np.float32(0.0))
        else:
            z[j] = one / (one + np.exp(-z[j]))


@njit(**STEP_FLAGS)
def softmax(p):  # pragma: no cover - compiled
    """p (n_out,) from z_L to softmax(z_L), in place; returns the index of its largest entry
    (the first, among equal ones)."""
    n_out = p.shape[0]
    zmax = p[0]
    for j in range(1, n_out):
        zmax = max(zmax, p[j])
    total = np.float32(0.0)
    for j in range(n_out):
        p[j] = np.exp(p[j] - zmax)
        total += p[j]
    best = 0
    for j in range(n_out):
        p[j] /= total
        if p[j] > p[best]:
            best = j
    return best


@njit(**STEP_FLAGS)
def backward_dense(d_prev, W, b, d, a_prev, lr, is_relu):  # pragma: no cover - compiled
    """delta_{l-1} into d_prev (>= n_{l-1},) from d = delta_l (n_l,), and the SGD step of W
    (W_l padded, (n_{l-1}, width_l)) and b (n_l,): each weight read for delta_{l-1}, then
    updated, in the same loop. a_prev is a_{l-1} (>= n_{l-1},)."""
    one = np.float32(1.0)
    n_prev = W.shape[0]
    n = d.shape[0]
    for i in range(n_prev):
        acc = np.float32(0.0)
        g = lr * a_prev[i]
        for j in range(n):
            acc += W[i, j] * d[j]
            W[i, j] -= g * d[j]
        ai = a_prev[i]
        if is_relu:
            d_prev[i] = acc if ai > 0 else np.float32(0.0)
        else:
            d_prev[i] = acc * ai * (one - ai)
    for j in range(n):
        b[j] -= lr * d[j]


@njit(**STEP_FLAGS)
def update_first(W1_chunks, b1, d, d_chunks, nz, xv, m, lr):  # pragma: no cover - compiled
    """The SGD step of W_1's rows of the m non-zero pixels and of b1 (n_1,), from d = delta_1
    (>= n_1,); d_chunks is d[:width_1] as (n_chunks, CHUNK), W1_chunks W_1 padded as
    (n_0, n_chunks, CHUNK)."""
    for c in range(d_chunks.shape[0] - 1, -1, -1):
        subtract_rows(W1_chunks, nz, xv, m, d_chunks, c, lr)
    for j in range(b1.shape[0]):
        b1[j] -= lr * d[j]


@njit(**KERNEL_FLAGS)
def sgd_numba(theta, sizes, is_relu, indptr, indices, values, y, order, lr, scale):  # pragma: no cover - compiled
    """Train theta (float32, flat) in place on sparse rows `order`; returns (loss sum, correct).

    sizes (L + 1,) int64; indptr, indices (uint16), values (uint8) the sparse rows; y (n,)
    labels; order (n_samples,) the rows visited, in that order; lr, scale float32.
    """
    L = sizes.shape[0] - 1
    n0 = sizes[0]
    # The weights are trained in a copy, P, and copied back at the end. In it each
    # layer's rows are padded with zeros, W_1's to a multiple of CHUNK floats and the
    # other layers' to a multiple of VECTOR, and start on 64-byte boundaries: a row
    # is then whole chunks, whole AVX-512 vectors and whole cache lines (in theta, a
    # row of 64 floats sits where NumPy's allocator put theta, typically 32 bytes
    # into a line, so it spans 5 lines). The padding's delta is zero, so it stays
    # zero, and it is never copied back. Rows are indexed, not taken as per-row
    # array views, which cost a reference count in and out for each row.
    width, w_off, b_off, p_off, p_size = padded_layout(sizes)
    P = aligned_empty(p_size)
    copy_weights(theta, P, sizes, width, w_off, p_off, True)
    n_chunks = width[1] // CHUNK
    W1_chunks = P[: n0 * width[1]].reshape((n0, n_chunks, CHUNK))  # row i's chunk c
    b1 = theta[b_off[1] : b_off[1] + sizes[1]]
    A = np.zeros((L + 1, width.max()), np.float32)  # A[l]: z_l, then a_l (A[L]: softmax output)
    D = np.zeros_like(A)  # D[l]: delta_l
    z1_chunks = A[1, : width[1]].reshape((n_chunks, CHUNK))  # z_1 and delta_1, chunked as W_1's rows
    d1_chunks = D[1, : width[1]].reshape((n_chunks, CHUNK))
    nz = np.empty(n0, np.uint16)  # unsigned: W1[nz[k]] needs no negative-index wraparound
    xv = np.empty(n0, np.float32)
    loss = 0.0
    correct = 0
    for step in range(order.shape[0]):
        prefetch_ahead(order, step, indptr, indices, values)
        s = order[step]
        m = load_sample(nz, xv, indptr, indices, values, s, scale)
        forward_first(A[1], z1_chunks, b1, W1_chunks, nz, xv, m)
        for l in range(2, L + 1):
            activate(A[l - 1, : sizes[l - 1]], is_relu)
            b = theta[b_off[l] : b_off[l] + sizes[l]]
            forward_dense(A[l], padded_weights(P, sizes, width, p_off, l), b, A[l - 1])
        p = A[L, : sizes[L]]
        best = softmax(p)
        label = y[s]
        loss -= math.log(max(p[label], np.float32(1.1754944e-38)))
        if best == label:
            correct += 1
        # backward: delta_L = p - onehot(y), then down the layers, each updated as it is passed
        for j in range(sizes[L]):
            D[L, j] = p[j]
        D[L, label] -= np.float32(1.0)
        for l in range(L, 1, -1):
            W, b = padded_weights(P, sizes, width, p_off, l), theta[b_off[l] : b_off[l] + sizes[l]]
            backward_dense(D[l - 1], W, b, D[l, : sizes[l]], A[l - 1], lr, is_relu)
        update_first(W1_chunks, b1, D[1], d1_chunks, nz, xv, m, lr)
    copy_weights(theta, P, sizes, width, w_off, p_off, False)
    return loss, correct
