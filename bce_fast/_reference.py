"""Pure-NumPy float64 references of the public functions (bottleneck's
``slow/`` twin): their signatures and semantics (SEMANTICS.md), written for
clarity, not speed, for what the tests exercise through them -- a single
integer class axis for the softmax maps (the tests reach axis tuples and
None through SciPy), and ``out=`` is accepted and ignored.  The tests
compare the kernels against them; the benchmark's NumPy baselines are the
expressions users would write (bench/cases.py).

Every reference computes in float64 whatever the input dtype and returns
float64 (a NumPy float64 scalar for reduced losses); callers round to the
dtype under test.  Arguments are not validated beyond what the formulas need.
"""
import numpy as np

# ------------------------------------------------------------------ binary


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.float64(loss.sum())
    if reduction == "mean":
        return np.float64(loss.sum() / loss.size) if loss.size else np.float64(np.nan)
    raise ValueError(f"{reduction!r} is not a valid value for reduction")


def _softplus(x):
    """log(1 + exp(x)), stable for either sign: max(x, 0) + log1p(exp(-|x|))."""
    with np.errstate(invalid="ignore"):
        return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def sigmoid(x, out=None):
    """1 / (1 + exp(-x)) via exp(-|x|), so neither tail overflows."""
    x = _f64(x)
    e = np.exp(-np.abs(x))
    res = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    if out is not None:
        out[...] = res
        return out
    return res


def log_sigmoid(x, out=None):
    """log(sigmoid(x)) = -softplus(-x)."""
    res = -_softplus(-_f64(x))
    if out is not None:
        out[...] = res
        return out
    return res


def binary_cross_entropy(input, target, weight=None, reduction="mean", out=None):
    """-w * (y * max(log p, -100) + (1 - y) * max(log(1 - p), -100))."""
    p, y = _f64(input), _f64(target)
    if np.any(~((p >= 0) & (p <= 1))):
        raise ValueError("all elements of input should be between 0 and 1")
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p), -100.0)
        log_q = np.maximum(np.log1p(-p), -100.0)
    loss = -(y * log_p + (1.0 - y) * log_q)
    if weight is not None:
        loss = loss * _f64(weight)
    loss = _reduce(np.broadcast_to(loss, p.shape) * 1.0, reduction)
    if out is not None:
        out[...] = loss
        return out
    return loss


def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None,
                                     reduction="mean", out=None):
    """w * (pw * y * softplus(-x) + (1 - y) * softplus(x)); a term whose
    coefficient is exactly zero contributes zero even when its softplus is
    inf (so (x=+inf, y=1) and (x=-inf, y=0) give 0)."""
    x, y = _f64(input), _f64(target)
    w = 1.0 if weight is None else _f64(weight)
    pw = 1.0 if pos_weight is None else _f64(pos_weight)
    # the products in long double (x86: 80-bit), so that tiny or huge weights
    # neither underflow nor overflow before the loss itself does
    ld = np.longdouble
    c_pos = np.asarray(w, ld) * np.asarray(pw, ld) * np.asarray(y, ld)  # of softplus(-x)
    c_neg = np.asarray(w, ld) * (1.0 - np.asarray(y, ld))               # of softplus(x)
    with np.errstate(invalid="ignore", over="ignore"):
        t_pos = np.where(c_pos == 0, 0.0, c_pos * np.asarray(_softplus(-x), ld))
        t_neg = np.where(c_neg == 0, 0.0, c_neg * np.asarray(_softplus(x), ld))
        loss = np.where(np.isnan(x), np.nan, (t_pos + t_neg).astype(np.float64))
    loss = _reduce(np.broadcast_to(loss, x.shape) * 1.0, reduction)
    if out is not None:
        out[...] = loss
        return out
    return loss


def _grad_scale(shape, reduction):
    n = int(np.prod(shape))
    return 1.0 / n if reduction == "mean" and n else 1.0


def binary_cross_entropy_with_logits_grad(input, target, weight=None, pos_weight=None,
                                          reduction="mean"):
    """d(loss)/d(input): w * ((1 - y) * sigmoid(x) - pw * y * sigmoid(-x)),
    divided by input.size for 'mean'."""
    x, y = _f64(input), _f64(target)
    w = 1.0 if weight is None else _f64(weight)
    pw = 1.0 if pos_weight is None else _f64(pos_weight)
    g = w * ((1.0 - y) * sigmoid(x) - pw * y * sigmoid(-x))
    return np.broadcast_to(g, x.shape) * _grad_scale(x.shape, reduction)


# PyTorch's clamp of p (1 - p) in the BCE gradient is the float32 value of
# 1e-12 (9.99999996e-13) for every dtype, float64 included.
BCE_GRAD_EPS = float(np.float32(1e-12))


def binary_cross_entropy_grad(input, target, weight=None, reduction="mean"):
    """d(loss)/d(input) with PyTorch's clamp:
    w * (p - y) / max(p (1 - p), BCE_GRAD_EPS), dividing first (w (p - y)
    rounds to a coarse subnormal when p is one)."""
    p, y = _f64(input), _f64(target)
    w = 1.0 if weight is None else _f64(weight)
    g = w * ((p - y) / np.maximum(p * (1.0 - p), BCE_GRAD_EPS))
    return np.broadcast_to(g, p.shape) * _grad_scale(p.shape, reduction)


def logistic_grad_hess(raw, y, sample_weight=None):
    """Half binomial log-loss: grad = sw (sigmoid(raw) - y),
    hess = sw sigmoid(raw) sigmoid(-raw)."""
    x, t = _f64(raw), _f64(y)
    sw = 1.0 if sample_weight is None else _f64(sample_weight)
    s = sigmoid(x)
    grad = sw * ((1.0 - t) * s - t * sigmoid(-x))
    hess = sw * s * sigmoid(-x)
    return np.broadcast_to(grad, x.shape) * 1.0, np.broadcast_to(hess, x.shape) * 1.0


# ----------------------------------------------------------- end of binary


# ----------------------------------------------------------------- softmax
# softmax, log_softmax, cross_entropy, nll_loss: float64, PyTorch's formulas
# written out with NumPy, the class axis moved last for clarity.


def _lse_parts(z):
    """For z = x - max along the last axis: s = sum of exp(z) over all
    entries but the first occurrence of the max (so a confident row keeps
    its tiny s, which ``sum(exp(z)) - 1`` would lose)."""
    e = np.exp(z)
    if z.size == 0:
        return e.sum(axis=-1, keepdims=True)
    first = np.argmax(z, axis=-1)[..., None]
    np.put_along_axis(e, first, 0.0, axis=-1)
    return e.sum(axis=-1, keepdims=True)


def log_softmax(x, axis=-1, out=None, *, dim=None):
    """(x - m) - log1p(s) along `axis` (`dim` is an alias)."""
    x = np.moveaxis(_f64(x), axis if dim is None else dim, -1)
    z = x - x.max(axis=-1, keepdims=True, initial=-np.inf)
    return np.moveaxis(z - np.log1p(_lse_parts(z)), -1, axis if dim is None else dim)


def softmax(x, axis=-1, out=None, *, dim=None):
    """exp(x - m) / (1 + s) along `axis` (`dim` is an alias)."""
    x = np.moveaxis(_f64(x), axis if dim is None else dim, -1)
    z = x - x.max(axis=-1, keepdims=True, initial=-np.inf)
    return np.moveaxis(np.exp(z) / (1.0 + _lse_parts(z)), -1, axis if dim is None else dim)


def _class_last(input, axis):
    x = _f64(input)
    ax = (1 if x.ndim > 1 else 0) if axis is None else axis % x.ndim
    return np.moveaxis(x, ax, -1), ax


def _index_loss(logp, target, weight, ignore_index, reduction, label_smoothing):
    """PyTorch's nll_loss (+ label smoothing) on log-probabilities whose class
    axis is last; returns the loss per position or its reduction."""
    C = logp.shape[-1]
    w = np.ones(C) if weight is None else _f64(weight)
    t = np.asarray(target).astype(np.int64)
    valid = t != ignore_index
    if np.any(valid & ((t < 0) | (t >= C))):
        bad = t[valid & ((t < 0) | (t >= C))][0]
        raise IndexError(f"Target {bad} is out of bounds.")
    tc = np.where(valid, t, 0)
    wt = np.where(valid, w[tc], 0.0)
    picked = np.take_along_axis(logp, tc[..., None], axis=-1)[..., 0] if C else np.zeros(t.shape)
    nll = np.where(valid, -wt * picked, 0.0)
    eps = float(label_smoothing)
    loss = nll
    if eps:
        smooth = np.where(valid, -(logp * w).sum(axis=-1), 0.0)
        loss = (1 - eps) * nll + eps / C * smooth
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.float64(loss.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(loss.sum()) / wt.sum()        # 0/0 NaN, x/0 +-inf


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, axis=None, out=None):
    """PyTorch's cross_entropy with class-index or probability targets; the
    class axis is `axis` (default 1, or 0 for 1-D input)."""
    x, ax = _class_last(input, axis)
    logp = log_softmax(x, axis=-1) if x.shape[-1] else x
    t = np.asarray(target)
    if t.dtype.kind != "f":
        return _index_loss(logp, t, weight, ignore_index, reduction, label_smoothing)
    C = x.shape[-1]
    w = np.ones(C) if weight is None else _f64(weight)
    p = np.moveaxis(_f64(t), ax, -1)
    eps = float(label_smoothing)
    if eps:
        p = p * (1 - eps) + eps / C
    loss = -(w * p * logp).sum(axis=-1)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.float64(loss.sum())
    return np.float64(loss.sum() / loss.size) if loss.size else np.float64(np.nan)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean", out=None):
    """PyTorch's nll_loss: -w[t] * input[t] along class axis 1 (0 for 1-D)."""
    x, _ = _class_last(input, None)
    return _index_loss(x, target, weight, ignore_index, reduction, 0.0)

# ---------------------------------------------------------- end of softmax


# ------------------------------------------------------- softmax gradients
# d(loss)/d(input) of cross_entropy / nll_loss for the given reduction ('none':
# the gradient of sum(loss)), and softmax_grad_hess; 1 - p at a row's max is
# s / (1 + s), so confident rows keep their small gradient.


def _softmax_and_complement(x):
    """softmax p along the last axis and q = 1 - p without cancellation."""
    z = x - x.max(axis=-1, keepdims=True, initial=-np.inf)
    s = _lse_parts(z)
    p = np.exp(z) / (1.0 + s)
    q = 1.0 - p
    if z.size:
        first = np.argmax(z, axis=-1)[..., None]
        np.put_along_axis(q, first, s / (1.0 + s), axis=-1)
    return p, q


def _checked_index(target, C, ignore_index):
    t = np.asarray(target)
    bad = (t != ignore_index) & ((t < 0) | (t >= C))
    if np.any(bad):
        raise IndexError(f"Target {t[bad][0]} is out of bounds.")
    valid = t != ignore_index
    return np.where(valid, t, 0).astype(np.int64), valid


def cross_entropy_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                       label_smoothing=0.0, axis=None):
    """Class indices: (1-eps) w[t] (p - onehot) + eps/C (sum(w) p - w) per
    non-ignored position, divided by sum(w[t]) for 'mean'.  Probabilities q
    (smoothed to (1-eps) q + eps/C): p sum(w q) - w q, divided by the number
    of positions for 'mean'."""
    x, ax = _class_last(input, axis)
    C = x.shape[-1]
    w = np.ones(C) if weight is None else _f64(weight)
    p, q = _softmax_and_complement(x)
    eps = float(label_smoothing)
    t = np.asarray(target)
    if t.dtype.kind == "f":
        tq = np.moveaxis(_f64(t), ax, -1)
        if eps:
            tq = tq * (1 - eps) + eps / C
        wq = w * tq
        g = p * wq.sum(axis=-1, keepdims=True) - wq
        npos = g.size // C if C else 0
        if reduction == "mean" and npos:
            g = g / npos
        return np.moveaxis(g, -1, ax)
    tc, valid = _checked_index(t, C, ignore_index)
    wt = np.where(valid, w[tc], 0.0) if C else np.zeros(t.shape)
    onehot = np.arange(C) == tc[..., None]
    g = (1 - eps) * wt[..., None] * np.where(onehot, -q, p)
    if eps:
        g = g + (eps / C) * (w.sum() * p - w) * valid[..., None]
    if reduction == "mean":
        g = _mean_grad(g, wt.sum(), valid)
    return np.moveaxis(g, -1, ax)


def _mean_grad(g, den, valid, where=True):
    """g / den; with den = 0, NaN on the counted rows (at `where` in them)
    and 0 on the others: the mean is undefined, its gradient too."""
    if den:
        return g / den
    return np.where(valid[..., None] & where, np.nan, np.zeros_like(g))


def nll_loss_grad(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """-w[t] at the target class of each non-ignored position, 0 elsewhere;
    divided by sum(w[t]) for 'mean'."""
    x, ax = _class_last(input, None)
    C = x.shape[-1]
    w = np.ones(C) if weight is None else _f64(weight)
    tc, valid = _checked_index(target, C, ignore_index)
    wt = np.where(valid, w[tc], 0.0) if C else np.zeros(np.shape(target))
    onehot = np.arange(C) == tc[..., None]
    g = -(wt[..., None] * onehot)
    if reduction == "mean":
        g = _mean_grad(g, wt.sum(), valid, onehot)
    return np.moveaxis(g, -1, ax)


def softmax_grad_hess(raw, y, sample_weight=None):
    """Half multinomial log-loss (scikit-learn's HalfMultinomialLoss):
    grad = sw (p - onehot(y)), hess = sw p (1 - p), for raw of shape (n, K)."""
    x = _f64(raw)
    p, q = _softmax_and_complement(x)
    yk = np.asarray(y).astype(np.int64)
    onehot = np.arange(x.shape[-1]) == yk[:, None]
    sw = 1.0 if sample_weight is None else _f64(sample_weight)[:, None]
    return sw * np.where(onehot, -q, p), sw * p * q

# ------------------------------------------------- end of softmax gradients
