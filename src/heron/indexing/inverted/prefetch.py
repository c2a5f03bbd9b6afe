"""A software prefetch for the numba kernels.

``prefetch(array, i)`` asks the CPU to start loading the cache line that holds ``array[i]`` (LLVM's
``llvm.prefetch``: read, keep in all cache levels). It is a hint: it never faults, whatever ``i`` is, and
changes no result; it only hides memory latency when the kernel knows which rows it reads next (the
approximate search's forward rows: about 2.4x faster per entry on a forward index larger than the
caches, bench/forward_row_cost.py).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch(typingctx, array, index):
    """Start loading ``array[index]``'s cache line (no bounds check is needed: a prefetch cannot fault)."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, view, [args[1]], wraparound=False)
        byte_pointer = builder.bitcast(pointer, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        function = builder.module.declare_intrinsic(
            "llvm.prefetch", [byte_pointer.type],
            fnty=ir.FunctionType(ir.VoidType(), [byte_pointer.type, i32, i32, i32]))
        builder.call(function, [byte_pointer, i32(0), i32(3), i32(1)])  # read, high locality, data cache
        return context.get_dummy_value()

    return types.void(array, index), codegen


__all__ = ["prefetch"]
