"""Argument checking and array preparation shared by every public function.

Everything about dtypes, shapes, broadcasting and output buffers is decided
here, before any kernel runs, so kernels stay narrow (contiguous native arrays
of one float type) and users see messages that name the argument.
"""
import math

import numpy as np

from . import _core

REDUCTIONS = ("none", "mean", "sum")
_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def reduction_code(reduction):
    """_core.REDUCTION_* of a valid reduction string, else None (the fast
    paths take only those; the general path then reports a bad one)."""
    return _REDUCTION_CODES.get(reduction) if type(reduction) is str else None


_REDUCTION_CODES = {"none": _core.REDUCTION_NONE, "mean": _core.REDUCTION_MEAN,
                    "sum": _core.REDUCTION_SUM}


def check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"{reduction!r} is not a valid value for reduction "
                         f"(expected one of {', '.join(map(repr, REDUCTIONS))})")


def as_array(a, name):
    """`a` as an ndarray, without a copy when NumPy can avoid one (ndarrays,
    objects with ``__array__`` or ``__dlpack__``)."""
    if isinstance(a, np.ndarray):
        return a
    if a is None:
        raise TypeError(f"{name}: expected an array, got None")
    try:
        if hasattr(a, "__dlpack__") and not hasattr(a, "__array__"):
            return np.from_dlpack(a)    # np.asarray would make an object array
        return np.asarray(a)
    except Exception as exc:  # e.g. a PyTorch tensor that requires grad
        raise TypeError(f"{name}: cannot be converted to a NumPy array "
                        f"({type(exc).__name__}: {exc})") from None


def check_float(arr, name):
    """Logits or probabilities (anything with a .dtype): floating point."""
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {arr.dtype}")
    return arr


def check_numeric(arr, name):
    """A target or weight: floating point, or integer/bool (cast to the
    compute dtype)."""
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    return arr


def float_array(a, name):
    return check_float(as_array(a, name), name)


def numeric_array(a, name):
    return check_numeric(as_array(a, name), name)


def _weak(original, arr):
    """What decides the compute dtype: Python floats stay "weak" (NEP 50) so
    that ``weight=0.5`` keeps a float32 input in float32."""
    return original if type(original) is float else arr


def compute_dtypes(*pairs):
    """(compute dtype, result dtype) from (original, array) pairs of the float
    arguments.  Integer and bool arrays do not take part: they are cast.
    float16 computes in float32 and returns float16; wider than float64
    computes in float64."""
    floats = [_weak(o, a) for o, a in pairs if a is not None and a.dtype.kind == "f"]
    first = getattr(floats[0], "dtype", None)     # None for a weak Python float
    if first is not None and first.isnative and all(getattr(f, "dtype", None) == first for f in floats) \
            and first in _NATIVE_FLOATS:              # fast path: one native float dtype
        return first, first
    res = np.result_type(*floats)
    if res == np.float16:
        return np.dtype(np.float32), res
    if res.itemsize > 8:
        return np.dtype(np.float64), np.dtype(np.float64)
    return res, res


def to_kernel(arr, dtype):
    """C-contiguous, aligned, native-endian array of `dtype`; `arr` itself
    when it is one already.  (An unaligned view, e.g. np.frombuffer at an odd
    offset, is copied: the kernels read whole elements.)"""
    if arr is None:
        return None
    a = np.asarray(arr, dtype=dtype, order="C")
    return a if a.flags.aligned else a.copy()


def check_broadcast(arr, shape, name, what="input"):
    """`arr` must broadcast to `shape` without enlarging it."""
    try:
        ok = np.broadcast_shapes(arr.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name}: shape {arr.shape} does not broadcast to the "
                         f"{what} shape {tuple(shape)}")


def _merged_dims(arr, shape):
    """(length, element stride) runs of `arr` broadcast to `shape`, with
    unit dimensions dropped and adjacent runs that form one affine run merged."""
    view = np.broadcast_to(arr, shape)
    dims = [(n, s // arr.itemsize) for n, s in zip(shape, view.strides) if n != 1]
    merged = []
    for n, s in dims:
        if merged and merged[-1][1] == s * n:
            merged[-1] = (merged[-1][0] * n, s)
        else:
            merged.append((n, s))
    return merged


class Side:
    """A side array (weight, pos_weight, grad_output) and how the kernel reads it."""

    def __init__(self, arr, shape):
        self.arr = arr
        self.shape = tuple(shape)
        runs = _merged_dims(arr, shape)
        if not runs or (len(runs) == 1 and runs[0][1] == 0):
            self.kind, self.row = "scalar", None
        elif len(runs) == 1 and runs[0][1] == 1:
            self.kind, self.row = "full", None
        elif len(runs) == 2 and runs[1][1] in (0, 1):
            self.kind, self.row = "rows", runs[1][0]
            self.so, self.si = runs[0][1], runs[1][1]
        else:
            self.materialize()

    def materialize(self):
        self.arr = np.ascontiguousarray(np.broadcast_to(self.arr, self.shape))
        self.kind, self.row = "full", None

    def strides(self, row):
        """(so, si) for a given row length."""
        if self.kind == "scalar":
            return 0, 0
        if self.kind == "full":
            return row, 1
        return self.so, self.si


def side_layout(sides, shape):
    """Common row length for the side arrays (C-contiguous, as to_kernel
    gives them; materialising any that do not fit it) and their kernel
    arguments, flattened as ``row, [arr, so, si] * len(sides)`` (None entries
    read as 1)."""
    n = math.prod(shape)
    if all(s is None for s in sides):                   # the common case, kept cheap
        return [max(n, 1)] + [None, 0, 0] * len(sides)
    if all(s is None or s.shape == tuple(shape) for s in sides):   # full arrays, as cheap
        row = max(n, 1)
        return [row] + [v for s in sides for v in ((None, 0, 0) if s is None else (s, row, 1))]
    present = [Side(s, shape) if s is not None else None for s in sides]
    rows = sorted({s.row for s in present if s is not None and s.row is not None})
    row = rows[0] if rows else max(n, 1)
    args = [row]
    for s in present:
        if s is None:
            args += [None, 0, 0]
            continue
        if s.row is not None and s.row != row:
            s.materialize()
        so, si = s.strides(row)
        args += [s.arr, so, si]
    return args


def _same_view(a, b):
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype)


def check_out(out, shape, dtype, inputs, name="out"):
    """Validate a user-supplied output array.  It may be exactly one of the
    inputs (in place) but may not partly overlap any."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name}: array is read-only")
    for a in inputs:
        if isinstance(a, np.ndarray) and np.may_share_memory(out, a) \
                and not _same_view(out, a) and np.shares_memory(out, a):
            raise ValueError(f"{name}: overlaps an input without being the same "
                             f"array (pass the input itself to compute in place)")
    return out


def kernel_out(out, shape, dtype, avoid=()):
    """Array the kernel writes: `out` itself when the kernel can write it
    directly, else a fresh array that `finish_out` copies into `out`.  A
    kernel that can fail part-way passes its inputs as `avoid`, so that an
    `out` aliasing one of them is only written after success."""
    if out is not None and out.dtype == dtype and out.flags.c_contiguous \
            and out.flags.aligned and out.dtype.isnative \
            and not any(a is not None and np.may_share_memory(out, a) for a in avoid):
        return out
    return _core.empty(shape, dtype)


def finish_out(buf, out, res_dtype):
    """Deliver a kernel result: into `out` if given, else as `res_dtype`
    (float16 results past float16's range are inf without a warning, as a
    result and as in PyTorch: NumPy's cast would warn, and -W error raise)."""
    with np.errstate(over="ignore"):
        if out is not None:
            if buf is not out:
                np.copyto(out, buf, casting="unsafe")
            return out
        return buf if buf.dtype == res_dtype else buf.astype(res_dtype)


def reduced(total, rt):
    """A reduced loss as a NumPy scalar of the result dtype; past its range,
    inf without NumPy's cast warning (as finish_out)."""
    with np.errstate(over="ignore"):
        return rt.type(total)
