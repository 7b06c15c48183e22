"""Softmax, log-softmax, softmax cross-entropy and NLL (public API).

The logits are viewed as (outer, C, inner) around the class axis, so any axis
is handled without copying a C-contiguous input; one kernel call per function
computes the loss, its reduction and, for the ``*_and_grad`` variants, the
gradient (bce_fast._core.softmax_family, csrc/bf_softmax.h).
"""
import math
import operator

import numpy as np

from . import _core
from ._validation import (as_array, check_broadcast, check_out, check_reduction,
                          compute_dtypes, finish_out, float_array, kernel_out,
                          numeric_array, reduced, reduction_code, to_kernel)

__all__ = [
    "softmax", "log_softmax", "cross_entropy", "nll_loss",
    "cross_entropy_and_grad", "nll_loss_and_grad", "softmax_grad_hess",
]

_NEVER = np.iinfo(np.int64).min     # ignore_index that matches no class


def _index(value, name):
    """An integer argument; bools (which operator.index accepts) are refused."""
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {value!r}") from None


def _axis(axis, ndim, name="axis"):
    ax = _index(axis, name)
    if not -ndim <= ax < ndim:
        raise ValueError(f"{name}: {ax} is out of range for an input with {ndim} "
                         f"dimension{'s' if ndim != 1 else ''}")
    return ax % ndim


def class_axis(axis, ndim):
    """The class axis of a cross-entropy input of `ndim` >= 1 dimensions:
    `axis` if given (an integer in range, else TypeError / ValueError naming
    it), else PyTorch's: 1, or 0 for a 1-D input.  Also what bce_fast.stream
    and bce_fast.dask check whole arrays with."""
    return _axis((1 if ndim > 1 else 0) if axis is None else axis, ndim)


def _layout(shape, ax):
    """(outer, C, inner) of `shape` around axis `ax`."""
    return math.prod(shape[:ax]), shape[ax], math.prod(shape[ax + 1:])


def _pick_axis(x, axis, dim, default):
    """The axis of a map: `dim` (PyTorch's name) if given, else `axis`;
    None means every axis, as in scipy.special.softmax."""
    if dim is not None:
        if axis is not None and axis != default and axis != dim:
            raise TypeError(f"axis and dim are aliases; got axis={axis!r} and dim={dim!r}")
        return dim
    return tuple(range(max(np.ndim(x), 1))) if axis is None else axis


# ------------------------------------------------------------------- maps

def _map(kind, x, axis, out):
    if type(axis) is int:
        res = _core.sm_map_canonical(kind, x, axis, out)
        if res is not None:                       # already canonical: no conversions needed
            return res
    arr = float_array(x, "x")
    ct, rt = compute_dtypes((x, arr))
    check_out(out, arr.shape, rt, [arr])
    if isinstance(axis, tuple):
        return _map_axes(kind, arr, axis, out, ct, rt)
    ax = _axis(axis, max(arr.ndim, 1))
    outer, C, inner = _layout(arr.shape, ax) if arr.ndim else (1, 1, 1)
    xk = to_kernel(arr, ct)
    buf = kernel_out(out, arr.shape, ct)
    if arr.size:
        _core.softmax_family(kind, xk, outer, C, inner, out=buf)
    return finish_out(buf, out, rt)


def _map_axes(kind, arr, axis, out, ct, rt):
    """A map over several axes at once (their entries form one class axis).
    Adjacent axes of a C-contiguous input merge without a copy; otherwise
    they are moved together first."""
    nd = max(arr.ndim, 1)
    axes = sorted(_axis(a, nd) for a in axis)
    if len(set(axes)) != len(axes) or not axes:
        raise ValueError(f"axis: expected distinct axes, got {axis!r}")
    if arr.ndim == 0:
        return _map(kind, arr, 0, out)
    first = axes[0]
    moved = np.moveaxis(arr, axes, list(range(first, first + len(axes))))
    shape = moved.shape
    flat = to_kernel(moved, ct).reshape(shape[:first] + (-1,) + shape[first + len(axes):])
    res = _map(kind, flat, first, None).reshape(shape)
    res = np.moveaxis(res, list(range(first, first + len(axes))), axes)
    if out is not None:
        np.copyto(out, res, casting="unsafe")
        return out
    return np.ascontiguousarray(res) if res.dtype == rt else res.astype(rt)


def softmax(x, axis=-1, out=None, *, dim=None):
    """Softmax along `axis`: ``exp(x - m) / sum(exp(x - m))``, m the max.

    Computed as ``exp(x_c - m) / (1 + s)`` with ``s`` the sum of
    ``exp(x - m)`` over all entries but one occurrence of the max, in one
    kernel call (no temporaries); any axis, without copying a C-contiguous
    input.  A row containing ``+inf`` or only ``-inf`` gives NaN (PyTorch).

    Parameters
    ----------
    x : array_like of float16, float32 or float64
    axis : int, tuple of ints or None, default -1
        The class axis (a tuple: several axes whose entries together form the
        classes; None: all of them, as in ``scipy.special.softmax``).
        ``dim=`` is accepted as an alias (PyTorch's name).
    out : ndarray, optional
        Output of ``x``'s shape and result dtype; may be ``x`` itself.

    Returns
    -------
    ndarray of ``x``'s shape and dtype.

    See Also
    --------
    torch.softmax, scipy.special.softmax

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> bce_fast.softmax(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
    array([[0.09003057, 0.24472847, 0.66524096],
           [0.33333333, 0.33333333, 0.33333333]])
    """
    return _map(_core.SM_SOFTMAX, x, _pick_axis(x, axis, dim, -1), out)


def log_softmax(x, axis=-1, out=None, *, dim=None):
    """Log-softmax along `axis`, accurate for confident rows.

    ``log_softmax(x)_c = (x_c - m) - log1p(s)`` with m the max and ``s`` the
    sum of ``exp(x - m)`` over all entries but one occurrence of the max, so
    the largest entry of a confident row keeps its small true value:
    ``log_softmax([20, 0, 0])[0]`` is -4.12e-9 in float32 (PyTorch: 0).

    Parameters
    ----------
    x : array_like of float16, float32 or float64
    axis : int, tuple of ints or None, default -1
        The class axis, or several axes forming the classes together (None:
        all of them); ``dim=`` is an alias.
    out : ndarray, optional
        Output of ``x``'s shape and result dtype; may be ``x`` itself.

    Returns
    -------
    ndarray of ``x``'s shape and dtype.

    See Also
    --------
    torch.nn.functional.log_softmax, scipy.special.log_softmax

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> bce_fast.log_softmax(np.array([20.0, 0.0, 0.0], dtype=np.float32))
    array([-4.1223074e-09, -2.0000000e+01, -2.0000000e+01], dtype=float32)
    """
    return _map(_core.SM_LOG_SOFTMAX, x, _pick_axis(x, axis, dim, -1), out)


# ----------------------------------------------------------------- losses

def _bad_target(t, C, ignore_index):
    """IndexError naming the first class index outside [0, C) (and not
    ignore_index, unless that is None)."""
    flat = t.ravel()
    with np.errstate(invalid="ignore"):
        bad = (flat < 0) | (flat >= C)
        if ignore_index is not None:
            bad &= flat != ignore_index
        bad = flat[bad]
    value = bad[0] if bad.size else "?"
    return IndexError(f"Target {value} is out of bounds.")


def _int64_targets(t, C, ignore_index):
    """Class indices as C-contiguous int64.  uint64 values of 2**63 and more
    would wrap to negative numbers (possibly ignore_index): they are out of
    bounds for any C, so raise here."""
    if t.dtype == np.uint64 and t.size and t.max() >= 2**63:
        raise _bad_target(t, C, ignore_index)
    return to_kernel(t, np.int64)


def _weights_near_one(w, total):
    """(w 2^k, total 2^k) with the power of two that brings the total weight
    of a class-index mean near 1 when it lies outside [2^-64, 2^64], as far
    as the largest |w| allows (it stays below 2^100 in float32, 2^1000 in
    float64); else (w, total).  The mean, loss and gradient, is homogeneous
    of degree 0 in the weights and power-of-two scaling commutes with
    rounding, so this changes no bits where nothing under- or overflowed; it
    matters where the kernels' products of weights were subnormal and the
    mean's 1/total overflowed (a fuzz run: float32 weights [1e-45, 0] with
    label smoothing gave a loss 0.025 off and a NaN gradient; float64
    weights [1, 5e-324] with the target on the second, a loss of 1 for
    log 2 and a NaN gradient)."""
    if not 0.0 < abs(total) < math.inf or 2.0 ** -64 <= abs(total) <= 2.0 ** 64:
        return w, total
    top = float(np.maximum.reduce(np.abs(w))) if w.size else 0.0
    if not top < math.inf:
        return w, total
    room = 100 if w.dtype == np.float32 else 1000
    k = min(-math.frexp(total)[1], room - math.frexp(top)[1])
    if k == 0:
        return w, total
    return np.ldexp(w, k).astype(w.dtype, copy=False), math.ldexp(total, k)


def _loss(input, target, weight, ignore_index, reduction, label_smoothing, axis,
          out, nll, want_grad=False, grad_out=None, grad_output=None):
    """Shared body of cross_entropy, nll_loss and their ``_and_grad``."""
    code = reduction_code(reduction)
    if (code is not None and weight is None and out is None and axis is None
            and grad_out is None and grad_output is None
            and type(label_smoothing) in (float, int) and label_smoothing == 0
            and type(ignore_index) is int and -2**63 <= ignore_index < 2**63):
        fast = _core.sm_loss_canonical(_core.SM_NLL if nll else _core.SM_CE, input, target,
                                       ignore_index, code, want_grad)
        if fast is not None:                      # plain arguments, canonical operands
            return fast
    check_reduction(reduction)
    x = float_array(input, "input")
    if x.ndim == 0:
        raise ValueError("input: expected at least 1 dimension (the classes), got a 0-d array")
    ax = class_axis(axis, x.ndim)
    outer, C, inner = _layout(x.shape, ax)
    pshape = x.shape[:ax] + x.shape[ax + 1:]
    npos = outer * inner
    ignore_index = _index(ignore_index, "ignore_index")
    if not -2**63 <= ignore_index < 2**63:
        raise ValueError(f"ignore_index: expected a value in the int64 range, got {ignore_index}")
    if not isinstance(label_smoothing, (int, float, np.integer, np.floating)) \
            or isinstance(label_smoothing, (bool, np.bool_)):
        raise TypeError(f"label_smoothing: expected a number, got {label_smoothing!r}")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {label_smoothing!r}")

    t = as_array(target, "target")
    prob = t.dtype.kind == "f"
    if prob:
        if nll:
            raise TypeError(f"target: expected integer class indices, got dtype {t.dtype}")
        if t.shape != x.shape:
            raise ValueError(f"target: probability targets must have the shape of input "
                             f"{x.shape}, got {t.shape}")
        if ignore_index >= 0:
            raise ValueError(f"ignore_index: not supported with probability targets "
                             f"(got {ignore_index})")
    else:
        if t.dtype.kind not in "iu":
            raise TypeError(f"target: expected integer class indices or float "
                            f"probabilities, got dtype {t.dtype}")
        if t.shape != pshape:
            raise ValueError(f"target: expected shape {pshape} (input {x.shape} without "
                             f"class axis {ax}), got {t.shape}")
    w = None
    if weight is not None:
        w = numeric_array(weight, "weight")
        if w.shape != (C,):
            raise ValueError(f"weight: expected shape ({C},) (one per class), got {w.shape}")
    ct, rt = compute_dtypes((input, x), (weight, w), *([(target, t)] if prob else []))

    inputs = [x, t, w]
    if reduction == "none":
        check_out(out, pshape, rt, inputs)
    elif out is not None:
        raise ValueError(f"out: only used with reduction='none', got reduction={reduction!r}")
    g_up = None
    if want_grad:
        check_out(grad_out, x.shape, rt, inputs, name="grad_out")
        if grad_out is not None and out is not None and np.shares_memory(grad_out, out):
            raise ValueError("grad_out: overlaps out")
        if grad_output is not None:
            if reduction != "none":
                raise ValueError("grad_output: only used with reduction='none'")
            g_up = numeric_array(grad_output, "grad_output")
            check_broadcast(g_up, pshape, "grad_output", what="loss")
            g_up = to_kernel(np.broadcast_to(g_up, pshape), ct)

    xk = to_kernel(x, ct)
    wk = None if w is None else to_kernel(w, ct)          # None: all 1, nothing allocated
    weighted_mean = wk is not None and reduction == "mean" and not prob
    if prob:
        kind, tk, pk = _core.SM_CE_PROB, None, to_kernel(t, ct)
    else:
        kind = _core.SM_NLL if nll else _core.SM_CE
        tk, pk = _int64_targets(t, C, ignore_index), None

    scale = 1.0
    if want_grad and reduction == "mean":
        if prob:
            den = npos
        elif w is None:
            den = np.count_nonzero(tk != ignore_index)
        else:
            counted = tk[tk != ignore_index]       # (out-of-range ones raise later)
            den = float(np.sum(wk[np.clip(counted, 0, max(C - 1, 0))], dtype=np.float64)) \
                if C else 0.0
            wk, den = _weights_near_one(wk, den)
        scale = 1.0 / den if den else 0.0
        if not den and not prob and w is not None and counted.size:
            # counted targets of total weight 0: the mean is 0/0 or +-inf
            # and its gradient undefined, NaN on their rows (PyTorch: NaN
            # or +-inf), not a finite 0
            scale = math.nan
    wsum = (float(C) if wk is None else float(np.sum(wk, dtype=np.float64))) if eps else 0.0
    # With smoothing, weights summing to over 2^100 times the mean's total
    # can put gradient entries past float32's range (each is at most about
    # (w_t + eps w_sum / C) / total): computed in float64 they round to
    # +-inf in the result, where in float32 inf - inf made NaN.
    if want_grad and weighted_mean and eps and ct == np.float32 and den \
            and abs(wsum) > 2.0 ** 100 * abs(den):
        ct = np.dtype(np.float64)
        xk, wk = to_kernel(x, ct), wk.astype(ct)

    loss_buf = kernel_out(out, pshape, ct) if reduction == "none" else None
    grad_buf = kernel_out(grad_out, x.shape, ct) if want_grad else None
    if prob and grad_buf is not None and np.shares_memory(grad_buf, pk):
        grad_buf = _core.empty(x.shape, ct)      # the kernel re-reads the target
    if wk is not None and any(b is not None and np.shares_memory(b, wk)
                              for b in (loss_buf, grad_buf)):
        wk = wk.copy()          # an output that is the weight: read to the end
    if g_up is not None and grad_buf is not None and np.shares_memory(g_up, grad_buf):
        g_up = g_up.copy()

    total = wtotal = 0.0
    while npos:
        status, total, wtotal = _core.softmax_family(
            kind, xk, outer, C, inner, target=tk, ptarget=pk, w=wk,
            ignore_index=ignore_index, eps=eps, wsum=wsum, out=loss_buf, grad=grad_buf,
            grad_up=g_up, grad_scale=scale, want_sum=reduction != "none")
        if status:
            raise _bad_target(t, C, ignore_index)
        # For the loss alone the mean's total weight is known only now: out
        # of range, a rare second run with the weights scaled.
        if not weighted_mean or want_grad or 2.0 ** -64 <= abs(wtotal) <= 2.0 ** 64:
            break
        wk2, _ = _weights_near_one(wk, wtotal)
        if wk2 is wk:
            break
        wk, wsum = wk2, (float(np.sum(wk2, dtype=np.float64)) if eps else 0.0)

    if reduction == "none":
        loss = finish_out(loss_buf, out, rt)
    elif reduction == "sum":
        loss = reduced(total, rt)
    else:
        den = npos if prob else wtotal
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = reduced(np.float64(total) / den, rt)   # 0 / 0 is NaN, as in PyTorch
    if not want_grad:
        return loss
    return loss, finish_out(grad_buf, grad_out, rt)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, axis=None, out=None):
    """Softmax cross-entropy between logits and class indices or probabilities.

    With ``m`` the max of a row of logits and ``s`` the sum of ``exp(x - m)``
    over all its entries but one occurrence of the max, the loss of class
    index ``t`` is ``w[t] * ((m - x[t]) + log1p(s))`` -- two non-negative
    terms, so a confidently right row gets its true small loss (PyTorch
    float32: -0.0).  One sweep for the max and one for the sum per row; a
    reduced loss never materialises the ``N x C`` log-probabilities.

    Parameters
    ----------
    input : array_like of float
        Logits of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``.
    target : array_like
        Class indices of any integer dtype with the shape of `input` without
        the class axis (PyTorch accepts only int64/uint8), or float
        probabilities of `input`'s shape.
    weight : array_like, shape (C,), optional
        Class weights.
    ignore_index : int, default -100
        Class-index targets equal to it contribute 0 and do not count in the
        mean.  Must be negative with probability targets.
    reduction : {'mean', 'sum', 'none'}
        ``'mean'`` is ``sum(w[t] * l) / sum(w[t])`` over non-ignored
        positions for class indices (NaN when all are ignored), and
        ``sum(l) / rows`` for probability targets (PyTorch's rules).
    label_smoothing : float in [0, 1]
        PyTorch's formula: ``(1 - eps) * nll + eps / C * sum_c(-w_c log p_c)``
        for class indices, targets ``(1 - eps) * t + eps / C`` for probabilities.
    axis : int, optional
        The class axis (default 1, or 0 for 1-D input).  Beyond PyTorch: e.g.
        ``axis=-1`` for ``(N, L, C)`` logits, with no copy of the logits.
    out : ndarray, optional
        Output for ``reduction='none'`` (shape of `input` without the class axis).

    Returns
    -------
    NumPy scalar, or ndarray for ``reduction='none'``.

    Raises
    ------
    IndexError
        A class index outside ``[0, C)`` that is not `ignore_index`.

    See Also
    --------
    torch.nn.functional.cross_entropy

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> x = np.array([[20.0, 0.0, 0.0], [0.0, 1.0, 2.0]], dtype=np.float32)
    >>> bce_fast.cross_entropy(x, np.array([0, 2]), reduction="none")
    array([4.1223074e-09, 4.0760595e-01], dtype=float32)
    >>> bce_fast.cross_entropy(x, np.array([0, -100]))
    np.float32(4.1223074e-09)
    """
    return _loss(input, target, weight, ignore_index, reduction, label_smoothing,
                 axis, out, nll=False)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean", out=None):
    """Negative log-likelihood loss on log-probabilities: ``-w[t] * input[t]``.

    Same shapes, target, weight, ignore_index and reduction rules as
    :func:`cross_entropy` with class indices (class axis 1, or 0 for 1-D).
    One read per position, not per class.

    Parameters
    ----------
    input : array_like of float
        Log-probabilities of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``.
    target : array_like of int
        Class indices of any integer dtype, `input`'s shape without axis 1.
    weight : array_like, shape (C,), optional
    ignore_index : int, default -100
    reduction : {'mean', 'sum', 'none'}
        ``'mean'`` is ``sum(w[t] * l) / sum(w[t])`` over non-ignored positions.
    out : ndarray, optional
        Output for ``reduction='none'``.

    Returns
    -------
    NumPy scalar, or ndarray for ``reduction='none'``.

    See Also
    --------
    torch.nn.functional.nll_loss

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> logp = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]]))
    >>> bce_fast.nll_loss(logp, np.array([0, 2]), reduction="none")
    array([0.69314718, 0.35667494])
    """
    return _loss(input, target, weight, ignore_index, reduction, 0.0, None, out, nll=True)


def cross_entropy_and_grad(input, target, weight=None, ignore_index=-100,
                           reduction="mean", label_smoothing=0.0, axis=None, out=None,
                           grad_out=None, grad_output=None):
    """Loss and gradient of :func:`cross_entropy` in one pass.

    The gradient with respect to the logits is, per row,
    ``(1 - eps) w[t] (softmax(x) - onehot(t)) + eps / C (W softmax(x) - w)``
    (``W = sum(w)``) for class indices and ``sum(w t') softmax(x) - w t'``
    for probabilities, divided by the mean's denominator for
    ``reduction='mean'``; ignored positions get 0.  ``1 - softmax(x)[t]`` is
    computed without cancellation.  For ``reduction='none'`` it is the
    gradient of ``sum(loss)``, or of ``sum(grad_output * loss)`` when an
    upstream `grad_output` (broadcast to the loss shape) is given.

    Parameters
    ----------
    input, target, weight, ignore_index, reduction, label_smoothing, axis, out
        As for :func:`cross_entropy`.
    grad_out : ndarray, optional
        Preallocated gradient of `input`'s shape and result dtype; may be `input`.
    grad_output : array_like, optional
        Upstream gradient (``reduction='none'`` only).

    Returns
    -------
    (loss, grad)

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> x = np.array([[0.0, 0.0], [0.0, np.log(3.0)]])
    >>> loss, grad = bce_fast.cross_entropy_and_grad(x, np.array([0, 1]))
    >>> grad
    array([[-0.25 ,  0.25 ],
           [ 0.125, -0.125]])
    """
    return _loss(input, target, weight, ignore_index, reduction, label_smoothing,
                 axis, out, False, True, grad_out, grad_output)


def nll_loss_and_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                      out=None, grad_out=None, grad_output=None):
    """Loss and gradient of :func:`nll_loss` in one pass.

    The gradient is ``-w[t]`` at each position's target class (divided by
    ``sum(w[t])`` for ``'mean'``) and 0 elsewhere; `grad_out` and
    `grad_output` as for :func:`cross_entropy_and_grad`.

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> logp = np.log(np.full((2, 2), 0.5))
    >>> bce_fast.nll_loss_and_grad(logp, np.array([1, 0]))[1]
    array([[ 0. , -0.5],
           [-0.5,  0. ]])
    """
    return _loss(input, target, weight, ignore_index, reduction, 0.0, None, out,
                 True, True, grad_out, grad_output)


def softmax_grad_hess(raw, y, sample_weight=None):
    """Per-sample gradient and Hessian diagonal of the half multinomial log-loss.

    For ``loss = log(sum_k exp(raw_k)) - raw_y`` (scikit-learn's
    ``HalfMultinomialLoss``)::

        grad_k = sw * (p_k - [y == k]),   hess_k = sw * p_k * (1 - p_k)

    with ``p = softmax(raw)`` and ``1 - p_k`` computed without cancellation;
    the custom multiclass objective XGBoost / LightGBM expect.

    Parameters
    ----------
    raw : array_like of float, shape (n, K)
    y : array_like, shape (n,)
        Class labels 0..K-1 (integers, or floats with integer values as
        scikit-learn passes them).
    sample_weight : array_like, shape (n,), optional

    Returns
    -------
    (grad, hess) : ndarrays of `raw`'s shape and dtype

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> g, h = bce_fast.softmax_grad_hess(np.zeros((1, 2)), np.array([1]))
    >>> g, h
    (array([[ 0.5, -0.5]]), array([[0.25, 0.25]]))
    """
    if sample_weight is None:
        fast = _core.sm_grad_hess_canonical(raw, y)
        if fast is not None:
            return fast
    x = float_array(raw, "raw")
    if x.ndim != 2:
        raise ValueError(f"raw: expected shape (n, K), got {x.shape}")
    n, K = x.shape
    t = numeric_array(y, "y")
    if t.shape != (n,):
        raise ValueError(f"y: expected shape ({n},) (one label per row of raw), got {t.shape}")
    if t.dtype.kind in "fb":
        with np.errstate(invalid="ignore"):
            tk = t.astype(np.int64)
            if t.dtype.kind == "f" and not np.array_equal(tk, t):
                raise ValueError("y: expected integer class labels")
    else:
        tk = _int64_targets(t, K, None)
    # The kernel ignores rows labelled _NEVER (it has no "ignore nothing");
    # that label, like any with K = 0, is out of range
    if n and (K == 0 or tk.min() == _NEVER):
        raise _bad_target(tk, K, None)
    sw = None
    if sample_weight is not None:
        sw = numeric_array(sample_weight, "sample_weight")
        if sw.shape != (n,):
            raise ValueError(f"sample_weight: expected shape ({n},), got {sw.shape}")
    ct, rt = compute_dtypes((raw, x), (sample_weight, sw))
    grad = _core.empty(x.shape, ct)
    hess = _core.empty(x.shape, ct)
    if x.size:
        status, _, _ = _core.softmax_family(
            _core.SM_CE, to_kernel(x, ct), n, K, 1, target=to_kernel(tk, np.int64),
            ignore_index=_NEVER, grad=grad, hess=hess,
            grad_up=to_kernel(sw, ct))
        if status:
            raise _bad_target(tk, K, None)
    return finish_out(grad, None, rt), finish_out(hess, None, rt)
