# Binding of the softmax family (csrc/bf_softmax.h, csrc/bf_softmax.c);
# included at the end of _core.pyx, so it shares _buf and _dtype_code.

import numpy as np

cdef extern from "bf_kernels.h" nogil:
    enum:
        BF_SM_SOFTMAX
        BF_SM_LOG_SOFTMAX
        BF_SM_CE
        BF_SM_CE_PROB
        BF_SM_NLL

    ctypedef struct bf_softmax:
        int kind
        int64_t outer, C, inner
        const void *x
        const int64_t *target
        const void *ptarget
        const void *w
        int64_t ignore_index
        double eps
        double wsum
        void *out
        void *grad
        void *hess
        const void *grad_up
        double grad_scale
        double *scratch

    int bf_softmax_run(int dtype, const bf_softmax *p, double *sums)
    int64_t bf_softmax_scratch(const bf_softmax *p)


SM_SOFTMAX = BF_SM_SOFTMAX
SM_LOG_SOFTMAX = BF_SM_LOG_SOFTMAX
SM_CE = BF_SM_CE
SM_CE_PROB = BF_SM_CE_PROB
SM_NLL = BF_SM_NLL


cdef const int64_t *_index_buf(object a, int64_t need) except? NULL:
    """Data pointer of a class-index array: C-contiguous, aligned, native int64."""
    cdef cnp.ndarray arr = <cnp.ndarray?>a
    if (cnp.PyArray_TYPE(arr) != cnp.NPY_INT64 or not cnp.PyArray_IS_C_CONTIGUOUS(arr)
            or not cnp.PyArray_ISALIGNED(arr)
            or not cnp.PyArray_ISNOTSWAPPED(arr) or cnp.PyArray_SIZE(arr) < need):
        raise SystemError("bce_fast internal error: target of wrong layout or size")
    return <const int64_t *>cnp.PyArray_DATA(arr)


def softmax_family(int kind, cnp.ndarray x, int64_t outer, int64_t C, int64_t inner,
                   target=None, ptarget=None, w=None, int64_t ignore_index=-100,
                   double eps=0.0, double wsum=0.0, out=None, grad=None, hess=None,
                   grad_up=None, double grad_scale=1.0, bint want_sum=False):
    """Run one softmax-family kernel on x seen as (outer, C, inner).

    Returns (status, loss_sum, weight_sum); status is BF_OK or BF_ERR_INDEX
    (a class index outside [0, C) that is not ignore_index), which the caller
    turns into an IndexError naming the value.
    """
    cdef bf_softmax p
    cdef int dt = _dtype_code(x)
    cdef int status
    cdef double sums[2]
    cdef int64_t npos, nel
    if outer < 0 or C < 0 or inner < 1 or outer * C * inner != cnp.PyArray_SIZE(x):
        raise SystemError("bce_fast internal error: bad softmax layout")
    if kind < BF_SM_SOFTMAX or kind > BF_SM_NLL:
        raise SystemError("bce_fast internal error: bad softmax kind")
    npos = outer * inner
    nel = npos * C
    sums[0] = sums[1] = 0.0
    p.kind = kind
    p.outer, p.C, p.inner = outer, C, inner
    p.x = _buf(x, dt, nel)
    p.target = _index_buf(target, npos) if target is not None else NULL
    p.ptarget = _buf(ptarget, dt, nel)
    p.w = _buf(w, dt, C)
    p.ignore_index = ignore_index
    p.eps = eps
    p.wsum = wsum
    is_map = kind == BF_SM_SOFTMAX or kind == BF_SM_LOG_SOFTMAX
    p.out = _buf(out, dt, nel if is_map else npos)
    p.grad = _buf(grad, dt, nel)
    p.hess = _buf(hess, dt, nel)
    p.grad_up = _buf(grad_up, dt, npos)
    p.grad_scale = grad_scale
    if is_map and (p.out == NULL or p.grad != NULL or p.hess != NULL):
        raise SystemError("bce_fast internal error: map without output")
    if (kind == BF_SM_CE or kind == BF_SM_NLL) and p.target == NULL:
        raise SystemError("bce_fast internal error: loss without class indices")
    if kind == BF_SM_CE_PROB and p.ptarget == NULL:
        raise SystemError("bce_fast internal error: loss without probabilities")
    if p.hess != NULL and (kind != BF_SM_CE or inner != 1 or p.grad == NULL or eps != 0.0):
        raise SystemError("bce_fast internal error: Hessian only for class-index CE rows")
    cdef cnp.ndarray scratch = None
    p.scratch = NULL
    cdef int64_t nscratch = bf_softmax_scratch(&p)
    if nscratch > 0:
        scratch = np.empty(nscratch, dtype=np.float64)
        p.scratch = <double *>cnp.PyArray_DATA(scratch)
    with nogil:
        status = bf_softmax_run(dt, &p, sums if want_sum else NULL)
    if status != BF_OK and status != BF_ERR_INDEX:
        _raise_status(status)
    return status, sums[0], sums[1]


# Fast paths for canonical operands, as map_canonical / binary_canonical in
# _core.pyx: a few C comparisons instead of the general argument handling,
# which on small inputs cost several times the kernel (softmax of 10x100
# float32: 4.1 us, PyTorch 1.9).  They return None for anything else, and
# for anything that would raise: the caller then takes the general path,
# which validates in full and raises the documented errors.

cdef void _sm_layout(cnp.ndarray a, int ax, bf_softmax *p):
    """(outer, C, inner) of `a` around axis `ax`."""
    cdef int i, nd = cnp.PyArray_NDIM(a)
    p.outer, p.C, p.inner = 1, cnp.PyArray_DIM(a, ax), 1
    for i in range(ax):
        p.outer *= cnp.PyArray_DIM(a, i)
    for i in range(ax + 1, nd):
        p.inner *= cnp.PyArray_DIM(a, i)


def sm_map_canonical(int kind, x, int axis, out=None):
    """softmax / log_softmax of a canonical operand along `axis` into a new
    array, or into `out` on map_canonical's terms (the kernels may write over
    their input), or None."""
    if not _canonical_float(x):
        return None
    cdef cnp.ndarray a = x
    cdef int nd = cnp.PyArray_NDIM(a)
    if axis < -nd or axis >= nd:
        return None
    if out is not None and not _canonical_out(out, a):
        return None
    cdef bf_softmax p
    memset(&p, 0, sizeof(p))
    p.kind = kind
    _sm_layout(a, axis + nd if axis < 0 else axis, &p)
    if bf_softmax_scratch(&p) != 0:
        return None
    cdef cnp.ndarray res = _empty_like(a) if out is None else out
    p.x = cnp.PyArray_DATA(a)
    p.out = cnp.PyArray_DATA(res)
    p.grad_scale = 1.0
    cdef int dt = _dtype_code(a)
    cdef int status
    with nogil:
        status = bf_softmax_run(dt, &p, NULL)
    _raise_status(status)
    return res


cdef object _sm_indexed(int kind, cnp.ndarray a, object target, int64_t ignore_index,
                        int reduction, bint want_grad, bint want_hess):
    """Unweighted, unsmoothed class-index CE or NLL of canonical logits `a`
    (class axis 1, or 0 for 1-d) and C-contiguous native int64 `target` of
    the matching shape: the loss reduced per REDUCTION_* (with the gradient,
    and the Hessian diagonal for softmax_grad_hess, when asked), or None --
    also when a class index is out of range, which the general path then
    reports."""
    if type(target) is not cnp.ndarray:
        return None
    cdef cnp.ndarray t = target
    cdef int nd = cnp.PyArray_NDIM(a), ax = 1 if nd > 1 else 0, i
    if (cnp.PyArray_TYPE(t) != cnp.NPY_INT64 or not cnp.PyArray_IS_C_CONTIGUOUS(t)
            or not cnp.PyArray_ISALIGNED(t) or not cnp.PyArray_ISNOTSWAPPED(t)
            or cnp.PyArray_NDIM(t) != nd - 1):
        return None
    for i in range(nd - 1):
        if cnp.PyArray_DIM(t, i) != cnp.PyArray_DIM(a, i if i < ax else i + 1):
            return None
    cdef bf_softmax p
    memset(&p, 0, sizeof(p))
    p.kind = kind
    _sm_layout(a, ax, &p)
    want_grad = want_grad or want_hess
    cdef const int64_t *tp = <const int64_t *>cnp.PyArray_DATA(t)
    cdef int64_t npos = p.outer * p.inner, j, valid = 0
    p.grad_scale = 1.0
    if want_grad and reduction == _RED_MEAN:
        for j in range(npos):
            valid += tp[j] != ignore_index
        p.grad_scale = 1.0 / valid if valid else 0.0
    cdef cnp.ndarray loss = None, grad = None, hess = None
    cdef cnp.npy_intp pdims[64]                      # NPY_MAXDIMS
    if reduction == _RED_NONE and not want_hess:
        for i in range(nd - 1):
            pdims[i] = cnp.PyArray_DIM(t, i)
        loss = _empty_dims(nd - 1, pdims, cnp.PyArray_TYPE(a),
                           <size_t>(npos * cnp.PyArray_ITEMSIZE(a)))
    if want_grad:
        grad = _empty_like(a)
    if want_hess:
        hess = _empty_like(a)
    p.x = cnp.PyArray_DATA(a)
    p.target = tp
    p.ignore_index = ignore_index
    p.out, p.grad, p.hess = _data_or_null(loss), _data_or_null(grad), _data_or_null(hess)
    if bf_softmax_scratch(&p) != 0:        # few rows of very many classes: general path
        return None
    cdef int dt = _dtype_code(a)
    cdef int status
    cdef double sums[2]
    sums[0] = sums[1] = 0.0
    with nogil:
        status = bf_softmax_run(dt, &p, sums if reduction != _RED_NONE else NULL)
    if status == BF_ERR_INDEX:
        return None
    _raise_status(status)
    if want_hess:
        return grad, hess
    if reduction == _RED_NONE:
        result = loss
    elif reduction == _RED_SUM:
        result = _scalar(sums[0], dt)
    else:
        result = _scalar(sums[0] / sums[1] if sums[1] != 0.0 else NAN, dt)
    return (result, grad) if want_grad else result


def sm_loss_canonical(int kind, x, target, int64_t ignore_index, int reduction,
                      bint want_grad):
    """cross_entropy / nll_loss (kind SM_CE / SM_NLL) and their _and_grad of
    canonical operands in their plain form (see _sm_indexed), or None."""
    if not _canonical_float(x):
        return None
    return _sm_indexed(kind, x, target, ignore_index, reduction, want_grad, False)


def sm_grad_hess_canonical(x, y):
    """softmax_grad_hess of canonical (n, K) logits and int64 labels without
    sample weights, or None."""
    if not _canonical_float(x) or cnp.PyArray_NDIM(<cnp.ndarray>x) != 2:
        return None
    if type(y) is cnp.ndarray and _holds_int64_min(y):
        return None         # the kernel would ignore those rows: the general path raises
    return _sm_indexed(BF_SM_CE, x, y, INT64_MIN, _RED_NONE, True, True)


cdef bint _holds_int64_min(cnp.ndarray y):
    """True if int64, C-contiguous `y` (as _sm_indexed takes it) holds INT64_MIN."""
    if (cnp.PyArray_TYPE(y) != cnp.NPY_INT64 or not cnp.PyArray_IS_C_CONTIGUOUS(y)
            or not cnp.PyArray_ISALIGNED(y) or not cnp.PyArray_ISNOTSWAPPED(y)):
        return False
    cdef const int64_t *tp = <const int64_t *>cnp.PyArray_DATA(y)
    cdef int64_t j, n = cnp.PyArray_SIZE(y)
    for j in range(n):
        if tp[j] == INT64_MIN:
            return True
    return False
