"""The benchmark's workload: the data, the functions timed and their peers.

Each entry of CASES names a bce_fast function, the data it takes (keys of
GENERATORS, passed positionally) and its peers: the same computation written
with NumPy (the naive textbook formula and the numerically stable
expression), PyTorch, numexpr, SciPy and scikit-learn.  A peer takes the same
positional arguments as the bce_fast function (PyTorch peers get zero-copy
tensors of them) and returns the same quantities, so the harness treats all
alike.  A peer whose library is not importable is left out.  The
``numpy_stable`` peer (else ``numpy``), evaluated in float64, is the reference
each bce_fast result is checked against before anything is timed.

Row cases take (N, C) logits with the classes on axis 1; the other cases take
1-D arrays.  Reduced losses use ``reduction='mean'`` throughout.
"""
from dataclasses import dataclass

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None
try:
    import numexpr as ne
except ImportError:
    ne = None
try:
    import scipy.special as sp
except ImportError:
    sp = None
try:
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss
except ImportError:
    HalfBinomialLoss = HalfMultinomialLoss = None

import bce_fast

#: Peer columns, in table order.
PEERS = ("numpy", "numpy_stable", "torch", "numexpr", "scipy", "sklearn")

SIZES = (10**3, 10**5, 10**7)
SHAPES = ((16384, 1000), (512, 32768), (8, 262144))
QUICK_SIZES = (10**3, 10**5, 10**6)
QUICK_SHAPES = ((2048, 1000),)

_threads = 1


def set_threads(n):
    """Give bce_fast and every threaded peer the same thread count."""
    global _threads
    _threads = n
    bce_fast.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    if ne is not None:
        ne.set_num_threads(n)


# ---------------------------------------------------------------- data
# shape is (n,) for 1-D cases and (N, C) for row cases.

def _logits(rng, shape, dtype):
    return (3.0 * rng.standard_normal(shape)).astype(dtype)


def _labels(rng, shape, dtype):
    return (rng.random(shape) < 0.5).astype(dtype)


def _probs(rng, shape, dtype):
    return rng.uniform(1e-4, 1 - 1e-4, shape).astype(dtype)


def _classes(rng, shape, dtype):
    return rng.integers(0, shape[-1], shape[:-1])


def _log_probs(rng, shape, dtype):
    return _np_log_softmax_stable(_logits(rng, shape, np.float64)).astype(dtype)


GENERATORS = {"x": _logits, "y": _labels, "p": _probs, "t": _classes,
              "lp": _log_probs}


def make_args(case, shape, dtype, seed=20261123):
    """The positional arguments of `case` for one cell, the same for every run."""
    return [GENERATORS[key](np.random.default_rng(seed), shape, dtype) for key in case.args]


# ------------------------------------------------------------ NumPy peers

def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _np_sigmoid_stable(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def _np_log_sigmoid_stable(x):
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def _np_bce(p, y):
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def _np_bce_stable(p, y):
    return -np.mean(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))


def _np_bce_logits_stable(x, y):
    return np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x))))


def _np_bce_logits_grad(x, y):
    p = _np_sigmoid(x)
    return _np_bce(p, y), _scaled(p - y, x.size)


def _np_bce_logits_grad_stable(x, y):
    e = np.exp(-np.abs(x))
    loss = np.mean(np.maximum(x, 0) - x * y + np.log1p(e))
    return loss, _scaled(np.where(x >= 0, 1, e) / (1 + e) - y, x.size)


def _np_grad_hess(x, y):
    p = _np_sigmoid(x)
    return p - y, p * (1 - p)


def _np_grad_hess_stable(x, y):
    e = np.exp(-np.abs(x))
    d = 1 + e
    return np.where(x >= 0, 1, e) / d - y, e / (d * d)


def _pick(a, t):
    return a[np.arange(len(t)), t]


def _minus_onehot(p, t):
    p[np.arange(len(t)), t] -= 1
    return p


def _scaled(g, n):
    """g / n in place: a user would not allocate a second gradient."""
    g /= n
    return g


def _np_softmax(x):
    e = np.exp(x)
    return e / np.sum(e, axis=1, keepdims=True)


def _np_softmax_stable(x):
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    e /= np.sum(e, axis=1, keepdims=True)
    return e


def _np_log_softmax(x):
    return x - np.log(np.sum(np.exp(x), axis=1, keepdims=True))


def _np_log_softmax_stable(x):
    s = x - np.max(x, axis=1, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=1, keepdims=True))


def _np_ce(x, t):
    return -np.mean(_pick(_np_log_softmax(x), t))


def _np_ce_stable(x, t):
    m = np.max(x, axis=1)
    lse = m + np.log(np.sum(np.exp(x - m[:, None]), axis=1))
    return np.mean(lse - _pick(x, t))


def _np_ce_grad(x, t):
    e = np.exp(x)
    s = np.sum(e, axis=1, keepdims=True)
    loss = np.mean(np.log(s[:, 0]) - _pick(x, t))
    return loss, _scaled(_minus_onehot(e / s, t), len(t))


def _np_ce_grad_stable(x, t):
    m = np.max(x, axis=1, keepdims=True)
    e = np.exp(x - m)
    s = np.sum(e, axis=1, keepdims=True)
    loss = np.mean(m[:, 0] + np.log(s[:, 0]) - _pick(x, t))
    return loss, _scaled(_minus_onehot(e / s, t), len(t))


def _np_nll(lp, t):
    return -np.mean(_pick(lp, t))


def _np_softmax_grad_hess(x, t):
    p = _np_softmax(x)
    h = p * (1 - p)
    return _minus_onehot(p, t), h


def _np_softmax_grad_hess_stable(x, t):
    p = _np_softmax_stable(x)
    h = p * (1 - p)
    return _minus_onehot(p, t), h


# ------------------------------------------------------------ other peers

def _torch_backward(loss_fn):
    """Forward + backward through autograd, as a PyTorch user would train."""
    def run(x, *rest):
        x = x.detach().requires_grad_()
        loss = loss_fn(x, *rest)
        loss.backward()
        return loss, x.grad
    return run


def _torch_grad_hess(x, y):
    p = torch.sigmoid(x)
    return p - y, p * (1 - p)


def _torch_softmax_grad_hess(x, t):
    p = F.softmax(x, dim=1)
    h = p * (1 - p)
    p[torch.arange(len(t)), t] -= 1
    return p, h


def _ne_bce(p, y):
    return -ne.evaluate("sum(y * log(p) + (1 - y) * log(1 - p))") / p.size


def _ne_bce_logits(x, y):
    return ne.evaluate("sum(where(x > 0, x, 0) - x * y + log1p(exp(-abs(x))))") / x.size


def _ne_bce_logits_grad(x, y):
    s = np.array(1 / x.size, x.dtype)
    return _ne_bce_logits(x, y), ne.evaluate("(1 / (1 + exp(-x)) - y) * s")


def _ne_grad_hess(x, y):
    p = ne.evaluate("1 / (1 + exp(-x))")
    return ne.evaluate("p - y"), ne.evaluate("p * (1 - p)")


def _sp_bce_logits(x, y):
    return -np.mean(y * sp.log_expit(x) + (1 - y) * sp.log_expit(-x))


def _sp_grad_hess(x, y):
    p = sp.expit(x)
    return p - y, p * (1 - p)


def _sp_ce(x, t):
    return np.mean(sp.logsumexp(x, axis=1) - _pick(x, t))


def _sp_ce_grad(x, t):
    lse = sp.logsumexp(x, axis=1, keepdims=True)
    loss = np.mean(lse[:, 0] - _pick(x, t))
    return loss, _scaled(_minus_onehot(np.exp(x - lse), t), len(t))


def _sp_softmax_grad_hess(x, t):
    p = sp.softmax(x, axis=1)
    h = p * (1 - p)
    return _minus_onehot(p, t), h


def _sk_binomial(method):
    """scikit-learn's HalfBinomialLoss: `method` is loss, gradient or both."""
    def run(x, y):
        loss = HalfBinomialLoss()
        if method == "loss":
            return loss(y, x, n_threads=_threads)
        if method == "loss_gradient":
            l, g = loss.loss_gradient(y, x, n_threads=_threads)
            g /= x.size
            return l.mean(), g
        return loss.gradient_hessian(y, x, n_threads=_threads)
    return run


def _sk_multinomial(method):
    """scikit-learn's HalfMultinomialLoss (labels as floats, as it wants them)."""
    def run(x, t):
        loss = HalfMultinomialLoss(n_classes=x.shape[1])
        y = t.astype(x.dtype)
        if method == "loss":
            return loss(y, x, n_threads=_threads)
        if method == "loss_gradient":
            l, g = loss.loss_gradient(y, x, n_threads=_threads)
            g /= len(t)
            return l.mean(), g
        return loss.gradient_hessian(y, x, n_threads=_threads)
    return run


# ------------------------------------------------------------------ cases

@dataclass(frozen=True)
class Case:
    """One bce_fast function and its peers.

    `reads`, if given, maps the arguments to (elements, bytes read) when the
    kernel touches less than all of its input (nll_loss reads one entry a row).
    """
    name: str
    args: tuple
    peers: dict
    rows: bool = False
    reads: object = None

    def function(self):
        """The bce_fast callable, or None if this build does not have it."""
        return getattr(bce_fast, self.name, None)

    def work(self, args):
        if self.reads is not None:
            return self.reads(*args)
        return args[0].size, sum(a.nbytes for a in args)


def _lazy(lib, fn):
    """`fn` as a peer, or None when `lib` is not importable."""
    return fn if lib is not None else None


CASES = [
    Case("sigmoid", ("x",), {
        "numpy": _np_sigmoid, "numpy_stable": _np_sigmoid_stable,
        "torch": _lazy(torch, lambda x: torch.sigmoid(x)),
        "numexpr": _lazy(ne, lambda x: ne.evaluate("1 / (1 + exp(-x))")),
        "scipy": _lazy(sp, lambda x: sp.expit(x))}),
    Case("log_sigmoid", ("x",), {
        "numpy": lambda x: np.log(_np_sigmoid(x)), "numpy_stable": _np_log_sigmoid_stable,
        "torch": _lazy(torch, lambda x: F.logsigmoid(x)),
        "numexpr": _lazy(ne, lambda x: ne.evaluate("where(x < 0, x, 0) - log1p(exp(-abs(x)))")),
        "scipy": _lazy(sp, lambda x: sp.log_expit(x))}),
    Case("binary_cross_entropy", ("p", "y"), {
        "numpy": _np_bce, "numpy_stable": _np_bce_stable,
        "torch": _lazy(torch, lambda p, y: F.binary_cross_entropy(p, y)),
        "numexpr": _lazy(ne, _ne_bce),
        "scipy": _lazy(sp, lambda p, y: -np.mean(sp.xlogy(y, p) + sp.xlog1py(1 - y, -p)))}),
    Case("binary_cross_entropy_with_logits", ("x", "y"), {
        "numpy": lambda x, y: _np_bce(_np_sigmoid(x), y), "numpy_stable": _np_bce_logits_stable,
        "torch": _lazy(torch, lambda x, y: F.binary_cross_entropy_with_logits(x, y)),
        "numexpr": _lazy(ne, _ne_bce_logits), "scipy": _lazy(sp, _sp_bce_logits),
        "sklearn": _lazy(HalfBinomialLoss, _sk_binomial("loss"))}),
    Case("binary_cross_entropy_with_logits_and_grad", ("x", "y"), {
        "numpy": _np_bce_logits_grad, "numpy_stable": _np_bce_logits_grad_stable,
        "torch": _lazy(torch, _torch_backward(
            lambda x, y: F.binary_cross_entropy_with_logits(x, y))),
        "numexpr": _lazy(ne, _ne_bce_logits_grad),
        "scipy": _lazy(sp, lambda x, y: (_sp_bce_logits(x, y), _scaled(sp.expit(x) - y, x.size))),
        "sklearn": _lazy(HalfBinomialLoss, _sk_binomial("loss_gradient"))}),
    Case("logistic_grad_hess", ("x", "y"), {
        "numpy": _np_grad_hess, "numpy_stable": _np_grad_hess_stable,
        "torch": _lazy(torch, _torch_grad_hess), "numexpr": _lazy(ne, _ne_grad_hess),
        "scipy": _lazy(sp, _sp_grad_hess),
        "sklearn": _lazy(HalfBinomialLoss, _sk_binomial("gradient_hessian"))}),
    Case("softmax", ("x",), rows=True, peers={
        "numpy": _np_softmax, "numpy_stable": _np_softmax_stable,
        "torch": _lazy(torch, lambda x: F.softmax(x, dim=1)),
        "scipy": _lazy(sp, lambda x: sp.softmax(x, axis=1))}),
    Case("log_softmax", ("x",), rows=True, peers={
        "numpy": _np_log_softmax, "numpy_stable": _np_log_softmax_stable,
        "torch": _lazy(torch, lambda x: F.log_softmax(x, dim=1)),
        "scipy": _lazy(sp, lambda x: sp.log_softmax(x, axis=1))}),
    Case("cross_entropy", ("x", "t"), rows=True, peers={
        "numpy": _np_ce, "numpy_stable": _np_ce_stable,
        "torch": _lazy(torch, lambda x, t: F.cross_entropy(x, t)),
        "scipy": _lazy(sp, _sp_ce),
        "sklearn": _lazy(HalfMultinomialLoss, _sk_multinomial("loss"))}),
    Case("nll_loss", ("lp", "t"), rows=True,
         reads=lambda lp, t: (t.size, t.size * lp.itemsize + t.nbytes), peers={
             "numpy": _np_nll, "torch": _lazy(torch, lambda lp, t: F.nll_loss(lp, t))}),
    Case("cross_entropy_and_grad", ("x", "t"), rows=True, peers={
        "numpy": _np_ce_grad, "numpy_stable": _np_ce_grad_stable,
        "torch": _lazy(torch, _torch_backward(lambda x, t: F.cross_entropy(x, t))),
        "scipy": _lazy(sp, _sp_ce_grad),
        "sklearn": _lazy(HalfMultinomialLoss, _sk_multinomial("loss_gradient"))}),
    Case("softmax_grad_hess", ("x", "t"), rows=True, peers={
        "numpy": _np_softmax_grad_hess, "numpy_stable": _np_softmax_grad_hess_stable,
        "torch": _lazy(torch, _torch_softmax_grad_hess), "scipy": _lazy(sp, _sp_softmax_grad_hess),
        "sklearn": _lazy(HalfMultinomialLoss, _sk_multinomial("gradient_hessian"))}),
]


def reference(case):
    """The NumPy expression bce_fast is checked against."""
    return case.peers.get("numpy_stable") or case.peers["numpy"]


def peer_callables(case, args):
    """Zero-argument callables of every available peer on `args`."""
    tensors = [torch.from_numpy(a) for a in args] if torch is not None else None
    return {name: (lambda fn=fn, a=(tensors if name == "torch" else args): fn(*a))
            for name, fn in case.peers.items() if fn is not None}


def versions():
    """Versions of bce_fast and of every importable peer library."""
    out = {"bce_fast": bce_fast.__version__, "numpy": np.__version__}
    if torch is not None:
        out["torch"] = torch.__version__
    if ne is not None:
        out["numexpr"] = ne.__version__
    if sp is not None:
        import scipy
        out["scipy"] = scipy.__version__
    if HalfBinomialLoss is not None:
        import sklearn
        out["scikit-learn"] = sklearn.__version__
    return out


CASES_BY_NAME = {case.name: case for case in CASES}
