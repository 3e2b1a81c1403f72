"""The numba kernel's innermost loops (model/sgd_numba.py) and the LLVM intrinsics they use.

The weights are trained in a copy whose rows are padded to whole 64-float chunks
(W_1) or 16-float vectors (the other layers) and start on cache lines. The loops
here have a width fixed at compile time, so that LLVM keeps a chunk of z_1 or
delta_1 in four AVX-512 registers while a sample's rows stream past: one broadcast
and four FMAs from memory per row forward, four loads, FMAs and stores per row in
the update. Every sum keeps its order, so the weights are bit for bit those of the
kernel before padding.
"""

from __future__ import annotations

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
