"""``exp`` written as arithmetic, so that LLVM vectorizes the loops that call it.

Numba compiles ``math.exp`` to a call into the C library, one element at a
time (this numba has no SVML); a loop around it cannot use the CPU's vector
units.  :func:`vexp` is made of multiplications, additions and bit moves
only, so a kernel loop calling it vectorizes when nothing else in the loop
prevents it (no other library call, no floating-point reduction).  Measured
on adaptive quadrature's Poisson kernel ``y eta - exp(eta)`` over 72,135
values: 0.44-0.70 ms with ``math.exp``, 0.19 ms with :func:`vexp`.

Method: ``x = k ln 2 + r`` with ``|r| <= ln(2) / 2`` (Cody and Waite's two-part
``ln 2``, ``k`` rounded by adding ``1.5 * 2**52``, whose low mantissa bits then
hold ``k``), ``exp(r)`` by its Taylor polynomial of degree 13 (truncation below
``2e-17`` relative) in Estrin's grouping, and ``2**k`` put into the exponent
bits.  Accuracy: within 2 ulp of ``numpy.exp`` (tested; 1.3 ulp measured over
``[-708, 709.8]``).  Results below ``exp(-708)`` (about ``3.3e-308``, where
doubles turn subnormal) are 0; above ``709.8`` inf; NaN stays NaN.
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238        # ln 2 to 32 bits: k * _LN2_HI is exact
_LN2_LO = 1.9082149292705877e-10    # ln 2 - _LN2_HI
_ROUND = 6755399441055744.0         # 1.5 * 2**52: adding it rounds to an integer
_ROUND_BITS = 0x4338000000000000    # its bit pattern
_LOWEST = -708.0                    # exp below: subnormal, returned as 0
_HIGHEST = 709.8                    # exp above: beyond the largest double
_C = [1.0 / math.factorial(i) for i in range(14)]
_C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = _C[3:]


@intrinsic
def _bits(typingctx, x):
    """The bit pattern of a float64 as an int64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, x):
    """The float64 with an int64's bit pattern."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@njit(cache=True, inline="always")
def vexp(x: float) -> float:
    """``exp(x)`` within 2 ulp, vectorizable (see the module docstring)."""
    xc = min(max(x, _LOWEST), _HIGHEST)
    shifted = xc * _LOG2E + _ROUND
    k_bits = _bits(shifted) - _ROUND_BITS      # k, from the mantissa's low bits
    k = shifted - _ROUND
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    r2 = r * r
    poly = (1.0 + r) + r2 * ((0.5 + r * _C3) + r2 * ((_C4 + r * _C5) + r2 * (
        (_C6 + r * _C7) + r2 * ((_C8 + r * _C9) + r2 * ((_C10 + r * _C11)
                                                         + r2 * (_C12 + r * _C13))))))
    # 2**(k-1) times 2: k reaches 1024 at the top of the range, 2**1024 is not a double
    out = poly * _from_bits((k_bits + 1022) << 52) * 2.0
    if x < _LOWEST:
        out = 0.0
    if x > _HIGHEST:
        out = math.inf
    if x != x:
        out = x
    return out
