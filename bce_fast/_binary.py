"""Sigmoid, log-sigmoid and the binary cross-entropies (public API).

Each function validates and prepares its arguments (bce_fast._validation) and
makes one kernel call (bce_fast._core.elementwise); the loss, its reduction
and, for the ``*_and_grad`` variants, the gradient come out of the same pass.
"""
import numpy as np

from . import _core
from ._validation import (check_broadcast, check_out, check_reduction,
                          compute_dtypes, finish_out, float_array, kernel_out,
                          numeric_array, reduced, reduction_code, side_layout, to_kernel)

__all__ = [
    "sigmoid", "log_sigmoid",
    "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "binary_cross_entropy_and_grad", "binary_cross_entropy_with_logits_and_grad",
    "logistic_grad_hess",
]


def _map(kind, x, out):
    res = _core.map_canonical(kind, x, out)
    if res is not None:                           # already canonical: no conversions needed
        return res
    arr = float_array(x, "x")
    ct, rt = compute_dtypes((x, arr))
    check_out(out, arr.shape, rt, [arr])
    xk = to_kernel(arr, ct)
    buf = kernel_out(out, arr.shape, ct)
    if arr.size:
        _core.elementwise(kind, xk, out=buf)
    return finish_out(buf, out, rt)


def sigmoid(x, out=None):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, elementwise.

    Accurate to 2 ULP over the whole range, including the far left tail
    (``sigmoid(-100)`` is 3.8e-44 in float32, where PyTorch returns 0).
    ``sigmoid(-inf) == 0``, ``sigmoid(inf) == 1``, NaN propagates.

    Parameters
    ----------
    x : array_like of float16, float32 or float64
    out : ndarray, optional
        Output of ``x``'s shape and result dtype; may be ``x`` itself.

    Returns
    -------
    ndarray of ``x``'s shape and dtype.

    See Also
    --------
    torch.sigmoid, scipy.special.expit

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> bce_fast.sigmoid(np.array([-100.0, 0.0, 3.0], dtype=np.float32))
    array([3.7835059e-44, 5.0000000e-01, 9.5257413e-01], dtype=float32)
    """
    return _map(_core.KIND_SIGMOID, x, out)


def log_sigmoid(x, out=None):
    """``log(sigmoid(x)) = -softplus(-x)``, elementwise, stable in both tails.

    ``log_sigmoid(-1e4) == -1e4``; for large positive ``x`` the result is the
    tiny ``-exp(-x)``, not 0.  Within 2 ULP for finite ``x``.

    Parameters
    ----------
    x : array_like of float16, float32 or float64
    out : ndarray, optional
        Output of ``x``'s shape and result dtype; may be ``x`` itself.

    Returns
    -------
    ndarray of ``x``'s shape and dtype.

    See Also
    --------
    torch.nn.functional.logsigmoid, scipy.special.log_expit

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> bce_fast.log_sigmoid(np.array([-1e4, 0.0, 20.0]))
    array([-1.00000000e+04, -6.93147181e-01, -2.06115362e-09])
    """
    return _map(_core.KIND_LOG_SIGMOID, x, out)


def _binary(kind, input, target, weight, pos_weight, reduction, out,
            want_grad=False, grad_out=None, grad_output=None):
    """Shared body of the binary losses and their ``_and_grad`` variants."""
    code = reduction_code(reduction)
    if code is not None and weight is None and pos_weight is None \
            and grad_out is None and grad_output is None:
        fast = _core.binary_canonical(kind, input, target, code, want_grad, out)
        if fast is not None:                      # already canonical: no conversions needed
            return fast
    check_reduction(reduction)
    x = float_array(input, "input")
    y = numeric_array(target, "target")
    if y.shape != x.shape:
        raise ValueError(f"target: expected shape {x.shape} (the shape of input), "
                         f"got {y.shape}")
    w = numeric_array(weight, "weight") if weight is not None else None
    pw = numeric_array(pos_weight, "pos_weight") if pos_weight is not None else None
    if w is not None:
        check_broadcast(w, x.shape, "weight")
    if pw is not None:
        check_broadcast(pw, x.shape, "pos_weight")
    ct, rt = compute_dtypes((input, x), (target, y), (weight, w), (pos_weight, pw))
    shape, n = x.shape, x.size
    inputs = [x, y, w, pw]
    if reduction == "none":
        check_out(out, shape, rt, inputs)
    elif out is not None:
        raise ValueError(f"out: only used with reduction='none', got reduction={reduction!r}")
    g_up = None
    if want_grad:
        check_out(grad_out, shape, rt, inputs, name="grad_out")
        if out is not None and grad_out is not None and np.shares_memory(out, grad_out):
            raise ValueError("grad_out: overlaps out (loss and gradient need separate arrays)")
        if grad_output is not None:
            if reduction != "none":
                raise ValueError("grad_output: only used with reduction='none'")
            g_up = numeric_array(grad_output, "grad_output")
            check_broadcast(g_up, shape, "grad_output")
            # Read while (BCE with logits) or after (BCE) the kernel writes
            # out/grad_out: keep a copy if it lives in either (e.g.
            # grad_out=grad_output, in place).
            if any(b is not None and np.shares_memory(g_up, b) for b in (out, grad_out)):
                g_up = g_up.copy()

    xk, yk = to_kernel(x, ct), to_kernel(y, ct)
    # BCE with logits takes grad_output into its kernel: where exp(-|x|) is
    # subnormal, multiplying the finished gradient by more than 1 would
    # magnify its rounding (float32 x = -103, grad_output 1e20: 24% low)
    g_in = g_up if kind == _core.KIND_BCE_LOGITS else None
    row, wk, w_so, w_si, pwk, pw_so, pw_si, guk, gu_so, gu_si = side_layout(
        [to_kernel(w, ct), to_kernel(pw, ct), to_kernel(g_in, ct)], shape)
    # BCE on probabilities validates as it goes: an error must not leave an
    # input it was computing in place half overwritten.
    avoid = inputs if kind == _core.KIND_BCE else ()
    loss_buf = kernel_out(out, shape, ct, avoid) if reduction == "none" else None
    grad_buf = kernel_out(grad_out, shape, ct, avoid) if want_grad else None
    scale = 1.0 / n if reduction == "mean" and n else 1.0
    total = 0.0
    if n:
        total = _core.elementwise(kind, xk, yk, wk, w_so, w_si, pwk, pw_so, pw_si,
                                  guk, gu_so, gu_si, row, out=loss_buf, grad=grad_buf,
                                  grad_scale=scale, want_sum=reduction != "none")
    if reduction == "none":
        loss = finish_out(loss_buf, out, rt)
    else:
        loss = reduced(total / n if reduction == "mean" and n else
                       (np.nan if reduction == "mean" else total), rt)
    if not want_grad:
        return loss
    if g_up is not None and g_in is None:
        np.multiply(grad_buf, g_up, out=grad_buf, casting="unsafe")
    return loss, finish_out(grad_buf, grad_out, rt)


def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None,
                                     reduction="mean", out=None):
    """Binary cross-entropy on logits, in one fused, numerically stable pass.

    Per element, with ``w = weight`` and ``pw = pos_weight`` (both default 1)::

        l = w * (pw * y * softplus(-x) + (1 - y) * softplus(x))

    computed as two non-negative terms from one ``exp(-|x|)`` and one
    ``log1p``, so it is accurate in both tails (x = -20, y = 0 gives 2.06e-9 in
    float32; PyTorch gives 0), and a term whose coefficient is exactly 0
    contributes 0 even where its softplus is inf (``x=+inf, y=1`` gives 0).

    Parameters
    ----------
    input : array_like of float
        Logits, any shape.
    target : array_like
        Same shape as `input`.  Soft targets in [0, 1] are allowed; integer and
        bool targets are cast (PyTorch rejects them).
    weight : array_like, optional
        Broadcasts to `input`'s shape (may not enlarge it).
    pos_weight : array_like, optional
        Weight of the positive term; broadcasts against the trailing
        dimensions (per class when shaped ``(C,)``), as in PyTorch.
    reduction : {'mean', 'sum', 'none'}
        ``'mean'`` is ``sum(l) / input.size`` (PyTorch's rule: not a weighted
        mean).  Reduced results are NumPy scalars, summed in tiles in the
        input's precision and then in double, bit-identical for any thread
        count.
    out : ndarray, optional
        Output for ``reduction='none'``; may be `input` itself.

    Returns
    -------
    NumPy scalar, or ndarray of `input`'s shape for ``reduction='none'``.

    See Also
    --------
    torch.nn.functional.binary_cross_entropy_with_logits

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> x = np.array([-20.0, 0.0, 3.0], dtype=np.float32)
    >>> y = np.array([0.0, 1.0, 1.0], dtype=np.float32)
    >>> bce_fast.binary_cross_entropy_with_logits(x, y, reduction="none")
    array([2.0611537e-09, 6.9314718e-01, 4.8587348e-02], dtype=float32)
    >>> bce_fast.binary_cross_entropy_with_logits(x, y)
    np.float32(0.24724485)
    """
    return _binary(_core.KIND_BCE_LOGITS, input, target, weight, pos_weight,
                   reduction, out)


def binary_cross_entropy(input, target, weight=None, reduction="mean", out=None):
    """Binary cross-entropy on probabilities.

    Per element, with PyTorch's clamp of the logarithms at -100::

        l = -w * (y * max(log(p), -100) + (1 - y) * max(log1p(-p), -100))

    Parameters
    ----------
    input : array_like of float
        Probabilities in [0, 1]; anything else (or NaN) raises ``ValueError``.
    target : array_like
        Same shape as `input`; integer and bool targets are cast.
    weight : array_like, optional
        Broadcasts to `input`'s shape (may not enlarge it).
    reduction : {'mean', 'sum', 'none'}
        ``'mean'`` is ``sum(l) / input.size``.
    out : ndarray, optional
        Output for ``reduction='none'``; may be `input` itself.

    Returns
    -------
    NumPy scalar, or ndarray of `input`'s shape for ``reduction='none'``.

    See Also
    --------
    torch.nn.functional.binary_cross_entropy

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> p = np.array([0.9, 0.2, 0.0])
    >>> y = np.array([1.0, 0.0, 1.0])
    >>> bce_fast.binary_cross_entropy(p, y, reduction="none")
    array([  0.10536052,   0.22314355, 100.        ])
    """
    return _binary(_core.KIND_BCE, input, target, weight, None, reduction, out)


def binary_cross_entropy_with_logits_and_grad(input, target, weight=None,
                                              pos_weight=None, reduction="mean",
                                              out=None, grad_out=None,
                                              grad_output=None):
    """Loss and gradient of :func:`binary_cross_entropy_with_logits` in one pass.

    The gradient with respect to `input` is
    ``w * ((1 - y) * sigmoid(x) - pw * y * sigmoid(-x))``, divided by
    ``input.size`` for ``reduction='mean'``.  For ``reduction='none'`` it is
    the gradient of ``sum(loss)``, or of ``sum(grad_output * loss)`` when an
    upstream `grad_output` is given (what autograd's ``backward(grad_output)``
    computes).

    Parameters
    ----------
    input, target, weight, pos_weight, reduction, out
        As for :func:`binary_cross_entropy_with_logits`.
    grad_out : ndarray, optional
        Preallocated gradient of `input`'s shape and result dtype.
    grad_output : array_like, optional
        Upstream gradient, broadcast to `input`'s shape (``reduction='none'`` only).

    Returns
    -------
    (loss, grad)

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> x = np.array([0.0, 2.0]); y = np.array([1.0, 0.0])
    >>> loss, grad = bce_fast.binary_cross_entropy_with_logits_and_grad(x, y)
    >>> grad
    array([-0.25      ,  0.44039854])
    """
    return _binary(_core.KIND_BCE_LOGITS, input, target, weight, pos_weight,
                   reduction, out, True, grad_out, grad_output)


def binary_cross_entropy_and_grad(input, target, weight=None, reduction="mean",
                                  out=None, grad_out=None, grad_output=None):
    """Loss and gradient of :func:`binary_cross_entropy` in one pass.

    The gradient is ``w * (p - y) / max(p * (1 - p), 1e-12)`` (PyTorch's
    formula and clamp), scaled by the reduction as in
    :func:`binary_cross_entropy_with_logits_and_grad`.

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> p = np.array([0.5, 0.8]); y = np.array([1.0, 1.0])
    >>> bce_fast.binary_cross_entropy_and_grad(p, y, reduction="sum")[1]
    array([-2.  , -1.25])
    """
    return _binary(_core.KIND_BCE, input, target, weight, None, reduction, out,
                   True, grad_out, grad_output)


def logistic_grad_hess(raw, y, sample_weight=None):
    """Per-sample gradient and Hessian of the half binomial log-loss.

    For ``loss = log(1 + exp(raw)) - y * raw`` (scikit-learn's
    ``HalfBinomialLoss``)::

        grad = sw * (sigmoid(raw) - y),   hess = sw * sigmoid(raw) * sigmoid(-raw)

    with the gradient computed as ``(1 - y) sigmoid(raw) - y sigmoid(-raw)`` so
    that it is accurate in both tails.  This is the custom objective
    XGBoost / LightGBM expect.

    Parameters
    ----------
    raw : array_like of float, shape (n,)
    y : array_like, shape (n,)
    sample_weight : array_like, shape (n,), optional

    Returns
    -------
    (grad, hess) : ndarrays of `raw`'s shape and dtype

    Examples
    --------
    >>> import numpy as np, bce_fast
    >>> g, h = bce_fast.logistic_grad_hess(np.array([0.0, 2.0]), np.array([1.0, 0.0]))
    >>> g, h
    (array([-0.5       ,  0.88079708]), array([0.25      , 0.10499359]))
    """
    if sample_weight is None:
        fast = _core.binary_canonical(_core.KIND_GRAD_HESS, raw, y, _core.REDUCTION_NONE, True)
        if fast is not None:
            return fast
    x = float_array(raw, "raw")
    t = numeric_array(y, "y")
    if t.shape != x.shape:
        raise ValueError(f"y: expected shape {x.shape} (the shape of raw), got {t.shape}")
    sw = None
    if sample_weight is not None:
        sw = numeric_array(sample_weight, "sample_weight")
        check_broadcast(sw, x.shape, "sample_weight", what="raw")
    ct, rt = compute_dtypes((raw, x), (y, t), (sample_weight, sw))
    grad = _core.empty(x.shape, ct)
    hess = _core.empty(x.shape, ct)
    if x.size:
        row, wk, w_so, w_si = side_layout([to_kernel(sw, ct)], x.shape)
        _core.elementwise(_core.KIND_GRAD_HESS, to_kernel(x, ct), to_kernel(t, ct),
                          wk, w_so, w_si, row=row, grad=grad, hess=hess)
    return finish_out(grad, None, rt), finish_out(hess, None, rt)
