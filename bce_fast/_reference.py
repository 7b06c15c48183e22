"""Pure-NumPy float64 references of the public functions (bottleneck's
``slow/`` twin): same signatures and semantics as SEMANTICS.md, written for
clarity, not speed.  The tests compare the kernels against them and the
benchmark uses them as the NumPy baseline.

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
    c_pos = w * pw * y           # coefficient of softplus(-x)
    c_neg = w * (1.0 - y)        # coefficient of softplus(x)
    with np.errstate(invalid="ignore"):
        t_pos = np.where(c_pos == 0, 0.0, c_pos * _softplus(-x))
        t_neg = np.where(c_neg == 0, 0.0, c_neg * _softplus(x))
    loss = np.where(np.isnan(x), np.nan, t_pos + t_neg)
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
    w * (p - y) / max(p (1 - p), BCE_GRAD_EPS)."""
    p, y = _f64(input), _f64(target)
    w = 1.0 if weight is None else _f64(weight)
    g = w * (p - y) / np.maximum(p * (1.0 - p), BCE_GRAD_EPS)
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
