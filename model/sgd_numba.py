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
hot loops (add_rows, subtract_rows, add_dense_rows) have a width fixed at compile
time, so that LLVM keeps a chunk of z_1 or delta_1 in four AVX-512 registers
while a sample's rows stream past: one broadcast and four FMAs from memory per
row forward, four loads, FMAs and stores per row in the update. Every sum keeps
its order, so the weights are bit for bit those of the kernel before the change.
``benchmarks/kernel.py`` measures it against a plain numba kernel of the same
maths (issue 19 item 4: from 1.0x to ~1.8x on one core).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch(typingctx, arr, idx):
    """Ask the CPU to start loading the cache line of arr[idx] (LLVM's llvm.prefetch:
    read, keep in all cache levels). A hint only: it never changes a result."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]])
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [byte_pointer], fnty)
        builder.call(fn, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


#: Hidden units of layer 1 handled at once: z_1 (or delta_1) for 64 units is four
#: AVX-512 registers, held there while the ~150 rows of a sample stream past. A
#: width known when compiling is what lets LLVM keep them in registers and emit
#: the row loop as four full-width loads and FMAs, with no remainder loop and no
#: runtime alias checks.
CHUNK = 64
#: floats in one AVX-512 register and in one 64-byte cache line
VECTOR = 16


@intrinsic
def stack_floats(typingctx, count):
    """A pointer to `count` (a constant) float32s on the stack. Unlike a NumPy array
    they provably alias no weight, so LLVM keeps them in registers across the row loops."""
    if not isinstance(count, types.IntegerLiteral):
        return None

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, ir.FloatType(), size=count.literal_value)

    return types.CPointer(types.float32)(count), codegen


@njit(cache=True, nogil=True)
def aligned_empty(n):  # pragma: no cover - compiled
    """n float32s starting on a 64-byte boundary (a view into a slightly larger array)."""
    buffer = np.empty(n + VECTOR, np.float32)
    skip = (-(buffer.ctypes.data // 4)) % VECTOR
    return buffer[skip : skip + n]


# No "reassoc" in the two row loops: z_1 is a sum over the pixels, and with it LLVM
# may split that sum into partial sums (it did, in a 16-wide version), which changes
# the rounding. "contract" keeps the FMAs the kernel always had. Each helper is its own
# function (called a few times a sample), compiled with its own flags.
@njit(cache=True, nogil=True, boundscheck=False, fastmath={"contract"})
def add_rows(z, W1, nz, xv, m, c):  # pragma: no cover - compiled
    """z[c, j] += sum over k < m of xv[k] * W1[nz[k], c, j], k in order. (Chunked
    arrays, so that the last index is j alone and LLVM knows it is never negative:
    W1[i, j0 + j] would cost a negative-index check per element, as a gather.)"""
    acc = carray(stack_floats(CHUNK), CHUNK)
    for j in range(CHUNK):
        acc[j] = z[c, j]
    for k in range(m):
        v = xv[k]
        i = nz[k]
        for j in range(CHUNK):
            acc[j] += v * W1[i, c, j]
    for j in range(CHUNK):
        z[c, j] = acc[j]


@njit(cache=True, nogil=True, boundscheck=False, fastmath={"contract"})
def subtract_rows(W1, nz, xv, m, d, c, lr):  # pragma: no cover - compiled
    """W1[nz[k], c, j] -= lr * xv[k] * d[c, j] for k < m. Last row first:
    the forward pass just read them in ascending order and ~150 rows of 64 floats
    overflow L1 (32 KiB), so the last ones read are the ones still there. Each
    element is updated once, so the order of the rows changes no result."""
    dd = carray(stack_floats(CHUNK), CHUNK)
    for j in range(CHUNK):
        dd[j] = d[c, j]
    for k in range(m - 1, -1, -1):
        g = lr * xv[k]
        i = nz[k]
        for j in range(CHUNK):
            W1[i, c, j] -= g * dd[j]


@njit(cache=True, nogil=True, boundscheck=False, fastmath={"contract"})
def add_dense_rows(z, W, a_prev, n_prev, c):  # pragma: no cover - compiled
    """z[c, j] += sum over i < n_prev of a_prev[i] * W[i, c, j], i in order: a dense
    layer's forward pass, VECTOR outputs (one register) at a time."""
    acc = carray(stack_floats(VECTOR), VECTOR)
    for j in range(VECTOR):
        acc[j] = z[c, j]
    for i in range(n_prev):
        v = a_prev[i]
        for j in range(VECTOR):
            acc[j] += v * W[i, c, j]
    for j in range(VECTOR):
        z[c, j] = acc[j]


# reassoc/contract let LLVM vectorise the backward loop's delta reduction (its
# order, LLVM's, is what the weights' bits have always been); no "fast" flags that
# assume finite values, so a diverging run still shows its NaN. error_model="numpy": the
# softmax's division is never by zero (total >= 1), so no zero check and no exception
# path in the loop.
@njit(cache=True, nogil=True, boundscheck=False, error_model="numpy", fastmath={"reassoc", "contract"})
def sgd_numba(theta, sizes, is_relu, indptr, indices, values, y, order, lr, scale):  # pragma: no cover - compiled
    """Train theta (float32, flat) in place on sparse rows `order`; returns (loss sum, correct)."""
    L = sizes.shape[0] - 1
    n0 = sizes[0]
    n1 = sizes[1]
    # The weights are trained in a copy, P, and copied back at the end. In it each
    # layer's rows are padded with zeros, W_1's to a multiple of CHUNK floats and the
    # other layers' to a multiple of VECTOR, and start on 64-byte boundaries: a row
    # is then whole chunks, whole AVX-512 vectors and whole cache lines (in theta, a
    # row of 64 floats sits where NumPy's allocator put theta, typically 32 bytes
    # into a line, so it spans 5 lines). The padding's delta is zero, so it stays
    # zero, and it is never copied back. Rows are indexed, not taken as per-row
    # array views, which cost a reference count in and out for each row.
    width = np.empty(L + 1, np.int64)  # padded row length of W_l (l = 1..L)
    w_off = np.empty(L + 1, np.int64)  # W_l starts at theta[w_off[l]], b_l at theta[b_off[l]]
    b_off = np.empty(L + 1, np.int64)
    p_off = np.empty(L + 1, np.int64)  # padded W_l starts at P[p_off[l]]
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
    # Plain loops, not 2D slice assignments: a call with no samples took 48 us with
    # those and takes 13 us with these, and workers call the kernel on blocks of a
    # few hundred samples (~2 us each).
    P = aligned_empty(po)
    for l in range(1, L + 1):
        n_prev, n, w = sizes[l - 1], sizes[l], width[l]
        padded = P[p_off[l] : p_off[l] + n_prev * w].reshape((n_prev, w))
        W = theta[w_off[l] : w_off[l] + n_prev * n].reshape((n_prev, n))
        for i in range(n_prev):
            for j in range(n):
                padded[i, j] = W[i, j]
            for j in range(n, w):
                padded[i, j] = np.float32(0.0)
    n1p = width[1]
    n_chunks = n1p // CHUNK
    W1_chunks = P[: n0 * n1p].reshape((n0, n_chunks, CHUNK))  # row i's chunk c
    b1 = theta[b_off[1] : b_off[1] + n1]
    widest = 0
    for l in range(1, L + 1):
        widest = max(widest, width[l])
    A = np.zeros((L + 1, widest), np.float32)  # A[l]: a_l (A[L]: softmax output)
    D = np.zeros((L + 1, widest), np.float32)  # D[l]: delta_l
    z1_chunks = A[1, :n1p].reshape((n_chunks, CHUNK))  # z_1 and delta_1, chunked as W_1's rows
    d1_chunks = D[1, :n1p].reshape((n_chunks, CHUNK))
    nz = np.empty(n0, np.uint16)  # unsigned: W1[nz[k]] needs no negative-index wraparound
    xv = np.empty(n0, np.float32)
    one = np.float32(1.0)
    loss = 0.0
    correct = 0
    n_samples = order.shape[0]
    for step in range(n_samples):
        s = order[step]
        # the next sample's pixels (and the one after's row offsets) on their way to the cache
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
        # a_0 as (pixel index, value) pairs
        lo = indptr[s]
        m = indptr[s + 1] - lo
        for k in range(m):
            nz[k] = indices[lo + k]
            xv[k] = np.float32(values[lo + k]) * scale
        # forward, layer 1: z_1 = b_1 + sum over non-zero pixels of x_i W_1[i]
        z = A[1]
        for j in range(n1):
            z[j] = b1[j]
        for j in range(n1, n1p):
            z[j] = np.float32(0.0)
        for c in range(n_chunks):
            add_rows(z1_chunks, W1_chunks, nz, xv, m, c)
        # forward, layers 2..L (a_{l-1} is dense)
        for l in range(1, L + 1):
            n = sizes[l]
            if l > 1:
                n_prev = sizes[l - 1]
                w = width[l]
                W = P[p_off[l] : p_off[l] + n_prev * w].reshape((n_prev, w // VECTOR, VECTOR))
                z = A[l]
                for j in range(n):
                    z[j] = theta[b_off[l] + j]
                for j in range(n, w):
                    z[j] = np.float32(0.0)
                z_chunks = A[l, :w].reshape((w // VECTOR, VECTOR))
                for c in range(w // VECTOR):
                    add_dense_rows(z_chunks, W, A[l - 1], n_prev, c)
            if l < L:
                z = A[l]
                for j in range(n):
                    if is_relu:
                        z[j] = max(z[j], np.float32(0.0))
                    else:
                        z[j] = one / (one + np.exp(-z[j]))
        # softmax and loss
        n_out = sizes[L]
        p = A[L]
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
        label = y[s]
        loss -= math.log(max(p[label], np.float32(1.1754944e-38)))
        if best == label:
            correct += 1
        # backward: delta_L = p - onehot(y); each layer's weights read (for delta_{l-1})
        # and updated in the same loop, old value first
        for j in range(n_out):
            D[L, j] = p[j]
        D[L, label] -= one
        for l in range(L, 1, -1):
            n = sizes[l]
            n_prev = sizes[l - 1]
            W = P[p_off[l] : p_off[l] + n_prev * width[l]].reshape((n_prev, width[l]))
            b = theta[b_off[l] : b_off[l] + n]
            d = D[l, :n]
            a_prev = A[l - 1]
            for i in range(n_prev):
                acc = np.float32(0.0)
                g = lr * a_prev[i]
                for j in range(n):
                    acc += W[i, j] * d[j]
                    W[i, j] -= g * d[j]
                ai = a_prev[i]
                if is_relu:
                    D[l - 1, i] = acc if ai > 0 else np.float32(0.0)
                else:
                    D[l - 1, i] = acc * ai * (one - ai)
            for j in range(n):
                b[j] -= lr * d[j]
        # update W_1's rows of the non-zero pixels, and b_1
        d = D[1]
        for c in range(n_chunks - 1, -1, -1):
            subtract_rows(W1_chunks, nz, xv, m, d1_chunks, c, lr)
        for j in range(n1):
            b1[j] -= lr * d[j]
    for l in range(1, L + 1):
        n_prev, n, w = sizes[l - 1], sizes[l], width[l]
        padded = P[p_off[l] : p_off[l] + n_prev * w].reshape((n_prev, w))
        W = theta[w_off[l] : w_off[l] + n_prev * n].reshape((n_prev, n))
        for i in range(n_prev):
            for j in range(n):
                W[i, j] = padded[i, j]
    return loss, correct
