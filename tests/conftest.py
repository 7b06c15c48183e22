"""Shared test infrastructure: per-dtype tolerances (stated once, here),
the ``isa`` and ``threads`` fixtures, and layout helpers that present the
same values through different memory layouts."""
import numpy as np
import pytest

import bce_fast
from bce_fast import _core

# ------------------------------------------------------------- tolerances

DTYPES = [np.float16, np.float32, np.float64]
DTYPE_IDS = ["f16", "f32", "f64"]

# Elementwise results against the float64 reference evaluated at the same
# (rounded) inputs.  float32/float64: a few ULP of the loss/gradient formulas
# (SEMANTICS.md promises 2-4 ULP; the ULP-exact checks live in
# test_accuracy.py).  float16 is computed in float32 and rounded once, so
# half an ULP of float16 plus float32 noise.
RTOL = {
    np.dtype(np.float16): 1e-3,
    np.dtype(np.float32): 1e-6,
    np.dtype(np.float64): 4e-15,
}
# Reduced losses against an exactly rounded float64 sum (SEMANTICS.md:
# 1e-6 for float32, 1e-12 for float64; float16 is rounded to float16 at the end).
RED_RTOL = {
    np.dtype(np.float16): 1e-3,
    np.dtype(np.float32): 1e-6,
    np.dtype(np.float64): 1e-12,
}


def tol(dtype):
    """Relative tolerance of elementwise results of `dtype`."""
    return RTOL[np.dtype(dtype)]


def assert_close(got, ref, dtype, scale=None, rtol=None):
    """`got` (of `dtype`) within the per-dtype relative tolerance of the
    float64 reference `ref`, rounded to `dtype` first.  `scale` adds an
    absolute floor ``rtol * scale`` for quantities that cancel (soft-target
    gradients) or that sit in float16's subnormal range."""
    dtype = np.dtype(dtype)
    got = np.asarray(got)
    assert got.dtype == dtype, f"dtype {got.dtype}, expected {dtype}"
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"shape {got.shape}, expected {ref.shape}"
    rtol = RTOL[dtype] if rtol is None else rtol
    atol = 0.0 if scale is None else rtol * np.asarray(scale, dtype=np.float64)
    if dtype == np.float16:      # float16's subnormals are 6e-8 apart
        atol = np.maximum(atol, 6e-8)
    with np.errstate(over="ignore"):
        ref_rounded = ref.astype(dtype).astype(np.float64)
    got = got.astype(np.float64)
    same = (got == ref_rounded) | (np.isnan(got) & np.isnan(ref_rounded))
    with np.errstate(invalid="ignore"):
        err = np.abs(got - ref_rounded)
        bad = ~same & ~(err <= atol + rtol * np.abs(ref_rounded))
    if bad.any():
        idx = np.argwhere(bad)[:5]
        lines = [f"  at {tuple(i)}: got {got[tuple(i)]!r}, reference {ref[tuple(i)]!r}"
                 for i in idx]
        raise AssertionError(f"{bad.sum()} of {bad.size} elements outside rtol={rtol:g} "
                             f"(dtype {dtype}):\n" + "\n".join(lines))


def assert_reduced_close(got, ref, dtype):
    """A reduced loss: a NumPy scalar of `dtype` within RED_RTOL of `ref`."""
    dtype = np.dtype(dtype)
    assert isinstance(got, np.generic) and got.dtype == dtype, \
        f"expected a NumPy {dtype} scalar, got {type(got).__name__} {getattr(got, 'dtype', '')}"
    ref = float(ref)
    if np.isnan(ref):
        assert np.isnan(got)
        return
    assert abs(float(got) - ref) <= RED_RTOL[dtype] * abs(ref) + 1e-300, \
        f"{float(got)!r} vs reference {ref!r} (rel {abs(float(got) - ref) / abs(ref):.3g})"


# --------------------------------------------------------------- fixtures

ISA_AVAILABLE = [lvl for lvl in _core.ISA_LEVELS if _core.isa_supported(lvl)]


@pytest.fixture(params=ISA_AVAILABLE)
def isa(request):
    """Run the test under each instruction-set level this CPU supports;
    the previously selected level is restored afterwards."""
    before = bce_fast.isa()
    _core.select_isa(request.param)
    assert bce_fast.isa() == request.param
    try:
        yield request.param
    finally:
        _core.select_isa(before)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Run the test with 1 and with 2 threads; restores the thread count."""
    before = bce_fast.get_num_threads()
    bce_fast.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        bce_fast.set_num_threads(before)


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


# --------------------------------------------------------- layout helpers

LAYOUTS = ["contiguous", "strided", "negstride", "readonly", "bigendian", "fortran",
           "unaligned"]


def _reverse_all(a):
    return a[(slice(None, None, -1),) * a.ndim]


def with_layout(a, layout):
    """A new array equal to `a` (same dtype, shape and values) laid out as
    `layout`: 'contiguous', 'strided' (every other element of a larger
    buffer), 'negstride' (negative strides on every axis), 'readonly',
    'bigendian' (non-native byte order), 'fortran', 'unaligned' (C-contiguous
    at an odd byte offset), or '0d' (a 0-d array; `a` must have one
    element)."""
    a = np.asarray(a)
    if a.ndim == 0 and layout in ("contiguous", "negstride", "fortran"):
        return a.copy()     # np.ascontiguousarray & co. would make it 1-d
    if layout == "contiguous":
        return np.ascontiguousarray(a).copy()
    if layout == "strided":
        buf = np.zeros(a.shape[:-1] + (2 * a.shape[-1],) if a.ndim else (2,), a.dtype)
        view = buf[..., ::2] if a.ndim else buf[::2].reshape(())
        view[...] = a
        return view
    if layout == "negstride":
        return _reverse_all(np.ascontiguousarray(_reverse_all(a)))
    if layout == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if layout == "bigendian":
        return a.astype(a.dtype.newbyteorder(">" if a.dtype.isnative and
                                             np.little_endian else "<"))
    if layout == "fortran":
        return np.asfortranarray(a).copy(order="F")
    if layout == "unaligned":
        if a.dtype.itemsize == 1:
            return a.copy()
        buf = np.empty(a.nbytes + 1, np.uint8)
        view = buf[1:].view(a.dtype).reshape(a.shape)
        view[...] = a
        return view
    if layout == "0d":
        assert a.size == 1
        return a.reshape(()).copy()
    raise ValueError(f"unknown layout {layout!r}")


def check_layout(arr, layout):
    """Assert that `with_layout` produced what it says (guards the helper)."""
    if layout == "strided" and arr.size > 1:
        assert not arr.flags.c_contiguous
    if layout == "negstride" and arr.size > 1:
        assert any(s < 0 for s in arr.strides)
    if layout == "readonly":
        assert not arr.flags.writeable
    if layout == "unaligned" and arr.dtype.itemsize > 1:
        assert not arr.flags.aligned
    if layout == "bigendian" and arr.dtype.itemsize > 1:
        assert not arr.dtype.isnative
    if layout == "fortran" and arr.ndim > 1 and min(arr.shape) > 1:
        assert arr.flags.f_contiguous and not arr.flags.c_contiguous
    if layout == "0d":
        assert arr.ndim == 0
