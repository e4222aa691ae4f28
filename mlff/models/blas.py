"""Matrix products on strided row views from compiled (numba) code, straight through BLAS.

numba's ``np.dot`` hands BLAS contiguous arrays only: a view such as ``rad[:, s:e]`` (one
atom's columns of a block's per-edge rows) is copied into a fresh array first, and a result
bound for such a view is written to a temporary and copied back. BLAS itself takes any row
stride (its leading dimension), so :func:`gemm_rows` passes the views as they are. In the ACE
kernel that removed three copies and their allocations per atom: 1.17x on the whole kernel at
64 and at 512 Si atoms (one thread, same run).

The call goes to ``numba_xxgemm``, the BLAS entry point of numba's own helper library (the one
``np.dot`` uses, which loads scipy's BLAS on first use), so compiled kernels stay cacheable.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["gemm_rows"]


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, a, lda, b, ldb, c, ldc):
    """Fortran (column-major) ``c = op(a) · op(b)`` in float32 or float64: a, b and c are
    arrays whose data pointers start the matrices; ``transa``/``transb`` are ``ord("n")`` or
    ``ord("t")``; sizes and leading dimensions in elements."""
    if not all(isinstance(x, types.Array) for x in (a, b, c)):
        return None
    dtype = c.dtype
    if dtype not in (types.float32, types.float64) or a.dtype != dtype or b.dtype != dtype:
        return None
    sig = types.void(transa, transb, m, n, k, a, lda, b, ldb, c, ldc)

    def codegen(context, builder, signature, args):
        ll_char = ir.IntType(8)
        ll_void_p = ll_char.as_pointer()
        intp_t = context.get_value_type(types.intp)
        fnty = ir.FunctionType(ir.IntType(32), [ll_char, ll_char, ll_char, intp_t, intp_t, intp_t, ll_void_p,
                                                ll_void_p, intp_t, ll_void_p, intp_t, ll_void_p, ll_void_p, intp_t])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        tys = signature.args

        def integer(i):
            return context.cast(builder, args[i], tys[i], types.intp)

        def data(i):
            return builder.bitcast(context.make_array(tys[i])(context, builder, args[i]).data, ll_void_p)

        alpha = cgutils.alloca_once_value(builder, context.get_constant(dtype, 1.0))
        beta = cgutils.alloca_once_value(builder, context.get_constant(dtype, 0.0))
        kind = ir.Constant(ll_char, ord("d" if dtype == types.float64 else "s"))
        status = builder.call(fn, (kind, builder.trunc(integer(0), ll_char), builder.trunc(integer(1), ll_char),
                                   integer(2), integer(3), integer(4), builder.bitcast(alpha, ll_void_p), data(5),
                                   integer(6), data(7), integer(8), builder.bitcast(beta, ll_void_p), data(9),
                                   integer(10)))
        with builder.if_then(cgutils.is_not_null(builder, status), likely=False):
            # As numba's own np.dot: the wrapper fails only for an unknown dtype or a missing BLAS.
            pyapi = context.get_python_api(builder)
            pyapi.gil_ensure()
            pyapi.fatal_error("BLAS wrapper returned with an error")
        return context.get_dummy_value()

    return sig, codegen


_NO, _YES = ord("n"), ord("t")


@numba.njit(inline="always")
def gemm_rows(a, a_transposed: bool, b, b_transposed: bool, out) -> None:
    """``out = op(a) @ op(b)``, op transposing where asked, for 2-D float32/float64 views whose
    rows are contiguous (unit stride along the last axis, any row stride) and do not overlap
    ``out``. out (m, n) is written in place; nothing is allocated. The caller checks shapes:
    op(a) is (m, k) and op(b) is (k, n)."""
    m, n = out.shape
    k = a.shape[0] if a_transposed else a.shape[1]
    item = out.itemsize
    if a.strides[1] != item or b.strides[1] != item or out.strides[1] != item:
        raise ValueError("gemm_rows needs views whose rows are contiguous")
    # Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: BLAS gets the operands swapped, each
    # row-major matrix being its column-major transpose with the row stride as leading
    # dimension (at least 1, as BLAS requires even of an empty matrix).
    _xxgemm(_YES if b_transposed else _NO, _YES if a_transposed else _NO, n, m, k, b, max(1, b.strides[0] // item),
            a, max(1, a.strides[0] // item), out, max(1, out.strides[0] // item))
