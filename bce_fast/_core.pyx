"""Binding layer: the one place that calls into csrc/.

Receives arrays the Python layer has already validated (C-contiguous, native,
of the compute dtype), re-checks the few invariants that memory safety rests on
(dtype, contiguity, sizes: each a handful of C comparisons), releases the GIL,
calls the kernel, and turns its status code into an exception.
"""
from libc.stdint cimport INT64_MIN, int64_t
from libc.math cimport NAN
from libc.string cimport memset

import numpy as np

cimport numpy as cnp

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    object PyArray_Scalar(void *data, cnp.dtype descr, object base)

cdef cnp.dtype _DESCR_F32 = cnp.PyArray_DescrFromType(cnp.NPY_FLOAT32)
cdef cnp.dtype _DESCR_F64 = cnp.PyArray_DescrFromType(cnp.NPY_FLOAT64)


cdef object _scalar(double value, int dt):
    """A NumPy float32/float64 scalar of `value`, built directly rather than
    by calling np.float32, which parses its argument like an array."""
    cdef float f
    if dt == BF_F32:
        f = <float>value
        return PyArray_Scalar(&f, _DESCR_F32, None)
    return PyArray_Scalar(&value, _DESCR_F64, None)


cdef extern from "bf_kernels.h" nogil:
    enum:
        BF_OK
        BF_ERR_DOMAIN
        BF_ERR_INDEX
        BF_ERR_TARGET
        BF_F32
        BF_F64

    ctypedef struct bf_elementwise:
        int64_t n, row
        const void *x
        const void *y
        const void *w
        int64_t w_so, w_si
        const void *pw
        int64_t pw_so, pw_si
        const void *gu
        int64_t gu_so, gu_si
        void *out
        void *grad
        void *hess
        double grad_scale

    int bf_select_isa(const char *level)
    const char *bf_isa_name()
    int bf_isa_supported(const char *level)
    int bf_openmp_enabled()
    int bf_get_num_threads()
    void bf_set_num_threads(int n)

    int bf_sigmoid(int dtype, const bf_elementwise *p)
    int bf_log_sigmoid(int dtype, const bf_elementwise *p)
    int bf_bce_logits(int dtype, const bf_elementwise *p, double *sum)
    int bf_bce(int dtype, const bf_elementwise *p, double *sum)
    int bf_logistic_grad_hess(int dtype, const bf_elementwise *p)


# ----------------------------------------------------------------- runtime

ISA_LEVELS = ("baseline", "avx2", "avx512")


def select_isa(level=None):
    """Use instruction-set `level` ('baseline', 'avx2', 'avx512'; None: best)."""
    cdef bytes b = (level or "").encode()
    if level is not None and level not in ISA_LEVELS:
        raise ValueError(f"isa: expected one of {ISA_LEVELS}, got {level!r}")
    if bf_select_isa(b) != 0:
        raise ValueError(f"isa: this CPU does not support {level!r}")


def isa_name():
    return bf_isa_name().decode()


def isa_supported(str level):
    return bool(bf_isa_supported(level.encode()))


def openmp_enabled():
    return bool(bf_openmp_enabled())


def get_num_threads():
    return bf_get_num_threads()


def set_num_threads(int n):
    bf_set_num_threads(n)


include "_outcache.pxi"


# ------------------------------------------------------------- invariants

cdef int _dtype_code(cnp.ndarray a) except -1:
    cdef int t = cnp.PyArray_TYPE(a)
    if t == cnp.NPY_FLOAT32:
        return BF_F32
    if t == cnp.NPY_FLOAT64:
        return BF_F64
    raise SystemError(f"bce_fast internal error: kernel array of dtype {a.dtype}")


cdef void *_buf(object a, int dtype, int64_t need) except? NULL:
    """Data pointer of a kernel operand (None -> NULL), checked to be a
    C-contiguous, aligned, native array of `dtype` holding at least `need`
    elements."""
    if a is None:
        return NULL
    cdef cnp.ndarray arr = <cnp.ndarray?>a
    if (_dtype_code(arr) != dtype or not cnp.PyArray_IS_C_CONTIGUOUS(arr)
            or not cnp.PyArray_ISALIGNED(arr)
            or not cnp.PyArray_ISNOTSWAPPED(arr) or cnp.PyArray_SIZE(arr) < need):
        raise SystemError("bce_fast internal error: kernel operand of wrong layout or size")
    return cnp.PyArray_DATA(arr)


cdef inline int64_t _side_need(int64_t n, int64_t row, int64_t so, int64_t si):
    """Elements a broadcast side array must hold: its last index + 1."""
    if n == 0:
        return 0
    return (n // row - 1) * so + (row - 1) * si + 1


cdef void _raise_status(int status) except *:
    if status & BF_ERR_DOMAIN:
        raise ValueError("all elements of input should be between 0 and 1")
    if status & BF_ERR_TARGET:
        raise ValueError("all elements of target should be between 0 and 1")
    if status != BF_OK:
        raise SystemError(f"bce_fast internal error: kernel status {status}")


# ------------------------------------------------------- elementwise family

cpdef enum:
    KIND_SIGMOID
    KIND_LOG_SIGMOID
    KIND_BCE_LOGITS
    KIND_BCE
    KIND_GRAD_HESS


def elementwise(int kind, cnp.ndarray x, y=None,
                w=None, int64_t w_so=0, int64_t w_si=0,
                pw=None, int64_t pw_so=0, int64_t pw_si=0,
                gu=None, int64_t gu_so=0, int64_t gu_si=0,
                int64_t row=1, out=None, grad=None, hess=None,
                double grad_scale=1.0, bint want_sum=False):
    """Run one elementwise kernel; returns the loss sum (a float) or None.

    x, y, out, grad, hess: n contiguous elements.  w, pw, gu: side arrays read
    at (i // row) * so + (i % row) * si (see bf_elementwise in bf_kernels.h);
    gu (grad_output) for KIND_BCE_LOGITS only.
    """
    cdef bf_elementwise p
    cdef int dt = _dtype_code(x)
    cdef int status
    cdef double total = 0.0
    cdef double *sum_ptr = &total if want_sum else NULL
    p.n = cnp.PyArray_SIZE(x)
    if (row < 1 or p.n % row != 0 or w_si not in (0, 1) or pw_si not in (0, 1)
            or gu_si not in (0, 1) or (gu is not None and kind != KIND_BCE_LOGITS)):
        raise SystemError("bce_fast internal error: bad row layout")
    p.row = row
    p.x = _buf(x, dt, p.n)
    p.y = _buf(y, dt, p.n)
    p.w = _buf(w, dt, _side_need(p.n, row, w_so, w_si))
    p.w_so, p.w_si = w_so, w_si
    p.pw = _buf(pw, dt, _side_need(p.n, row, pw_so, pw_si))
    p.pw_so, p.pw_si = pw_so, pw_si
    p.gu = _buf(gu, dt, _side_need(p.n, row, gu_so, gu_si))
    p.gu_so, p.gu_si = gu_so, gu_si
    p.out = _buf(out, dt, p.n)
    p.grad = _buf(grad, dt, p.n)
    p.hess = _buf(hess, dt, p.n)
    p.grad_scale = grad_scale
    if kind in (KIND_SIGMOID, KIND_LOG_SIGMOID) and p.out == NULL:
        raise SystemError("bce_fast internal error: map without output")
    if kind in (KIND_BCE_LOGITS, KIND_BCE, KIND_GRAD_HESS) and p.y == NULL:
        raise SystemError("bce_fast internal error: loss without target")
    if kind == KIND_GRAD_HESS and (p.grad == NULL or p.hess == NULL):
        raise SystemError("bce_fast internal error: grad_hess without outputs")
    with nogil:
        if kind == KIND_SIGMOID:
            status = bf_sigmoid(dt, &p)
        elif kind == KIND_LOG_SIGMOID:
            status = bf_log_sigmoid(dt, &p)
        elif kind == KIND_BCE_LOGITS:
            status = bf_bce_logits(dt, &p, sum_ptr)
        elif kind == KIND_BCE:
            status = bf_bce(dt, &p, sum_ptr)
        else:
            status = bf_logistic_grad_hess(dt, &p)
    _raise_status(status)
    return total if want_sum else None


cdef bint _canonical_float(object x):
    """An ndarray, C-contiguous, aligned, native float32 or float64, non-empty
    and at least 1-d: what the fast paths below read without a conversion."""
    if type(x) is not cnp.ndarray:
        return False
    cdef cnp.ndarray a = x
    cdef int t = cnp.PyArray_TYPE(a)
    return ((t == cnp.NPY_FLOAT32 or t == cnp.NPY_FLOAT64) and cnp.PyArray_SIZE(a) > 0
            and cnp.PyArray_NDIM(a) > 0 and cnp.PyArray_IS_C_CONTIGUOUS(a)
            and cnp.PyArray_ISALIGNED(a) and cnp.PyArray_ISNOTSWAPPED(a))


cdef void _flat_problem(bf_elementwise *p, cnp.ndarray a):
    """An elementwise problem over all of `a`, without side arrays or outputs."""
    memset(p, 0, sizeof(p[0]))
    p.n = cnp.PyArray_SIZE(a)
    p.row = p.n
    p.x = cnp.PyArray_DATA(a)
    p.grad_scale = 1.0


cdef inline void *_data_or_null(cnp.ndarray a):
    return cnp.PyArray_DATA(a) if a is not None else NULL


cdef bint _same_shape(cnp.ndarray a, cnp.ndarray b):
    cdef int nd = cnp.PyArray_NDIM(a)
    if nd != cnp.PyArray_NDIM(b):
        return False
    for i in range(nd):
        if cnp.PyArray_DIM(a, i) != cnp.PyArray_DIM(b, i):
            return False
    return True


cdef bint _apart(cnp.ndarray o, cnp.ndarray a):
    """No byte of the contiguous arrays o and a is shared"""
    cdef char *da = <char *>cnp.PyArray_DATA(a)
    cdef char *do = <char *>cnp.PyArray_DATA(o)
    return do >= da + cnp.PyArray_NBYTES(a) or da >= do + cnp.PyArray_NBYTES(o)


cdef bint _canonical_out(object out, cnp.ndarray a):
    """`out` canonical too, of a's dtype and shape, writeable, and either a's
    own memory or apart from it (a partial overlap is the general path's
    error to raise)."""
    if not _canonical_float(out):
        return False
    cdef cnp.ndarray o = out
    if (cnp.PyArray_TYPE(o) != cnp.PyArray_TYPE(a) or not _same_shape(o, a)
            or not cnp.PyArray_ISWRITEABLE(o)):
        return False
    return cnp.PyArray_DATA(o) == cnp.PyArray_DATA(a) or _apart(o, a)


def map_canonical(int kind, x, out=None):
    """Sigmoid or log-sigmoid of a canonical operand -- an ndarray,
    C-contiguous, aligned, native float32 or float64, non-empty -- into a new
    array, or into `out` when it is canonical too, of x's dtype and shape,
    writeable, and either x's own memory or apart from it; None for anything
    else, which the caller then validates in full (as binary_canonical below,
    for the same reason: on 1000 float32 elements the general path took
    2.7 us, of which the kernel 0.45; with `out`, 4.3 us against 0.8)."""
    if not _canonical_float(x):
        return None
    cdef cnp.ndarray a = x
    if out is not None and not _canonical_out(out, a):
        return None
    cdef cnp.ndarray res = _empty_like(a) if out is None else out
    cdef bf_elementwise p
    _flat_problem(&p, a)
    p.out = cnp.PyArray_DATA(res)
    cdef int dt = _dtype_code(a)
    cdef int status
    with nogil:
        if kind == KIND_SIGMOID:
            status = bf_sigmoid(dt, &p)
        else:
            status = bf_log_sigmoid(dt, &p)
    _raise_status(status)
    return res


cdef enum:
    _RED_NONE = 0
    _RED_MEAN = 1
    _RED_SUM = 2

REDUCTION_NONE, REDUCTION_MEAN, REDUCTION_SUM = _RED_NONE, _RED_MEAN, _RED_SUM


def binary_canonical(int kind, x, y, int reduction, bint want_grad, out=None):
    """A binary loss (KIND_BCE_LOGITS, KIND_BCE; reduced per REDUCTION_*,
    with its gradient if want_grad) or logistic_grad_hess (KIND_GRAD_HESS:
    returns (grad, hess)) of two canonical operands -- ndarrays, C-contiguous,
    aligned, native, of one kernel dtype and one non-empty shape, no weights
    -- or None for anything else, which the caller then validates in full.
    `out`, for the unreduced loss alone, on map_canonical's terms but apart
    from both operands (in place takes the general path).  The checks here
    are a few C comparisons, so a small call costs little more than its
    kernel."""
    if not _canonical_float(x) or not _canonical_float(y):
        return None
    cdef cnp.ndarray a = x, b = y
    if cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(b) or not _same_shape(a, b):
        return None
    cdef bint grad_hess = kind == KIND_GRAD_HESS
    if out is not None and (grad_hess or want_grad or reduction != _RED_NONE
                            or not _canonical_out(out, a) or not _apart(out, a)
                            or not _apart(out, b)):
        return None
    cdef cnp.ndarray loss = None, grad = None, hess = None
    if grad_hess:
        grad, hess = _empty_like(a), _empty_like(a)
    else:
        if reduction == _RED_NONE:
            loss = _empty_like(a) if out is None else out
        if want_grad:
            grad = _empty_like(a)
    cdef bf_elementwise p
    _flat_problem(&p, a)
    p.y = cnp.PyArray_DATA(b)
    p.out, p.grad, p.hess = _data_or_null(loss), _data_or_null(grad), _data_or_null(hess)
    if reduction == _RED_MEAN:
        p.grad_scale = 1.0 / p.n
    cdef int dt = _dtype_code(a)
    cdef int status
    cdef double total = 0.0
    cdef double *sum_ptr = &total if reduction != _RED_NONE else NULL
    with nogil:
        if grad_hess:
            status = bf_logistic_grad_hess(dt, &p)
        elif kind == KIND_BCE_LOGITS:
            status = bf_bce_logits(dt, &p, sum_ptr)
        else:
            status = bf_bce(dt, &p, sum_ptr)
    _raise_status(status)
    if grad_hess:
        return grad, hess
    result = loss if reduction == _RED_NONE else \
        _scalar(total / p.n if reduction == _RED_MEAN else total, dt)
    return (result, grad) if want_grad else result


include "_softmax.pxi"
