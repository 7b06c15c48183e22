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
    """Data pointer of a class-index array: C-contiguous native int64."""
    cdef cnp.ndarray arr = <cnp.ndarray?>a
    if (cnp.PyArray_TYPE(arr) != cnp.NPY_INT64 or not cnp.PyArray_IS_C_CONTIGUOUS(arr)
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
