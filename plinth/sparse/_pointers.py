"""Typed pointers from integer addresses, for compiled kernels over a chunked row arena.

The table stores rows in fixed-size blocks (numpy arrays that never move once allocated) and
hands kernels a small int64 array of the blocks' base addresses. numba's typed ``List`` of
arrays costs a reference-count round trip per element access (3-4x slower than a flat gather
on this machine), whereas an address plus ``inttoptr`` costs one load. The Python side keeps
every block alive for as long as its address is in the block table.

Also: bit casts between float32 and uint32, for the float16 storage conversion (numba has no
float16 on the CPU).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["bits_f32", "f32_bits", "ptr_f32", "ptr_i64", "ptr_u8", "ptr_u16", "ptr_u32"]


def _ptr_intrinsic(nbtype: types.Type):
    @intrinsic
    def ptr(typingctx, addr):
        sig = types.CPointer(nbtype)(types.int64)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(types.CPointer(nbtype)))

        return sig, codegen

    return ptr


ptr_f32 = _ptr_intrinsic(types.float32)
ptr_i64 = _ptr_intrinsic(types.int64)
ptr_u32 = _ptr_intrinsic(types.uint32)
ptr_u16 = _ptr_intrinsic(types.uint16)
ptr_u8 = _ptr_intrinsic(types.uint8)


@intrinsic
def f32_bits(typingctx, x):
    """float32 -> its IEEE-754 bits as uint32."""
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def bits_f32(typingctx, x):
    """uint32 bits -> the float32 they encode."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def prefetch(typingctx, addr):  
    """Hint the CPU to load the cache line at integer address ``addr`` (no fault if bad).

    Kernels issue these for a group of ids before touching any of them, so the cache misses
    of a group overlap instead of running one after another."""
    sig = types.void(types.int64)

    def codegen(context, builder, signature, args):  
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
        # rw=0 (read), locality=3 (keep in all cache levels), cache type=1 (data)
        builder.call(fn, [builder.inttoptr(args[0], i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen
