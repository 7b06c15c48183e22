"""The losses over Dask arrays (optional extra ``bce_fast[dask]``).

Each block runs the in-memory kernel with ``reduction='sum'`` and returns
its partial pair ``(loss sum, denominator)`` -- element count for the binary
losses, ``sum(w[y])`` over non-ignored targets for class-index
cross-entropy / NLL, row count for probability targets -- and Dask's tree
reduction adds the pairs in float64; ``'mean'`` divides at the end.  So the
result follows the in-memory definition for every option and equals it to
the kernels' reduction accuracy (relative 1e-12 in float64).  Reduced results
are lazy 0-d Dask arrays; ``'none'`` gives a lazy array (``map_blocks``).

Blocks are aligned for you: `target` (and full-size weights) are rechunked
to `input`'s chunks.  Cross-entropy needs each row's classes in one block,
so a class axis split over several chunks is **rechunked to a single chunk**
(which merges those blocks; chunk along the batch axis to avoid it).

Dask is imported on first use, not when ``bce_fast`` is imported.
"""
import numpy as np

from ._softmax import class_axis
from ._validation import (check_broadcast, check_float, check_numeric, check_reduction,
                          compute_dtypes)

__all__ = ["binary_cross_entropy", "binary_cross_entropy_with_logits",
           "cross_entropy", "nll_loss"]


def _da():
    try:
        import dask.array as da
    except ImportError as exc:
        raise ImportError("bce_fast.dask needs Dask: pip install 'bce_fast[dask]' "
                          f"(import failed: {exc})") from None
    return da


def _fn(name):
    from .stream import loss_function
    return loss_function(name)


def _dask_array(da, a, name):
    if a is None or isinstance(a, da.Array):
        return a
    arr = np.asarray(a)
    return da.from_array(arr, chunks=arr.shape or ())


def _proxy(a):
    """(original, array) pair telling compute_dtypes `a`'s dtype without data."""
    if isinstance(a, (int, float)):
        return a, np.asarray(a)
    z = np.empty(0, dtype=a.dtype)
    return z, z


def _finish(total, reduction, dtype):
    if reduction == "sum":
        return dtype.type(total[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return dtype.type(np.float64(total[0]) / np.float64(total[1]))


def _reduce(da, parts, n_block_axes, reduction, dtype):
    """Tree-sum the per-block (sum, denominator) pairs, then finish lazily."""
    total = parts.sum(axis=tuple(range(n_block_axes)), dtype=np.float64)
    return da.map_blocks(_finish, total, reduction, dtype, drop_axis=0, dtype=dtype,
                         meta=np.empty((), dtype))


# ------------------------------------------------------------------ binary

def _binary_block(x, y, *sides, loss, keys, reduction, consts):
    fn = _fn(loss)
    kw = dict(consts)
    kw.update(zip(keys, sides))
    if reduction == "none":
        return fn(x, y, reduction="none", **kw)
    from .stream import chunk_sum
    return np.array([chunk_sum(fn, x, y, **kw), float(x.size)]).reshape((1,) * x.ndim + (2,))


def _binary(name, input, target, reduction, **sides):
    da = _da()
    check_reduction(reduction)
    x, y = _dask_array(da, input, "input"), _dask_array(da, target, "target")
    check_float(x, "input")
    check_numeric(y, "target")
    if y.shape != x.shape:
        raise ValueError(f"target: expected shape {x.shape} (the shape of input), got {y.shape}")
    nd = x.ndim
    ind = tuple(range(nd))
    args = [x, ind, y.rechunk(x.chunks), ind]
    keys, consts, pairs = [], {}, [_proxy(x), _proxy(y)]
    for key, s in sides.items():
        if s is None:
            continue
        if isinstance(s, (int, float)):
            consts[key] = s
            pairs.append(_proxy(s))
            continue
        s = check_numeric(_dask_array(da, s, key), key)
        check_broadcast(s, x.shape, key)
        s = s.reshape((1,) * (nd - s.ndim) + s.shape)
        # Full-size axes follow input's chunks; size-1 axes broadcast.
        s = s.rechunk(tuple(x.chunks[d] if s.shape[d] == x.shape[d] else (1,)
                            for d in range(nd)))
        args += [s, ind]
        keys.append(key)
        pairs.append(_proxy(s))
    _, rt = compute_dtypes(*pairs)
    kw = dict(loss=name, keys=tuple(keys), reduction=reduction, consts=consts)
    if reduction == "none":
        return da.blockwise(_binary_block, ind, *args, dtype=rt,
                            meta=np.empty((0,) * nd, rt), **kw)
    parts = da.blockwise(_binary_block, ind + (nd,), *args, new_axes={nd: 2},
                         adjust_chunks={d: 1 for d in ind}, dtype=np.float64,
                         meta=np.empty((0,) * (nd + 1)), **kw)
    return _reduce(da, parts, nd, reduction, rt)


def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None,
                                     reduction="mean"):
    """:func:`bce_fast.binary_cross_entropy_with_logits` over Dask arrays.

    Parameters
    ----------
    input, target : dask.array.Array or array_like
        Same shape; `target` is rechunked to `input`'s chunks.
    weight, pos_weight : dask or NumPy array, or float, optional
        Broadcast to `input`'s shape as in the in-memory function.
    reduction : {'mean', 'sum', 'none'}
        ``'mean'`` is ``sum(l) / input.size``.

    Returns
    -------
    dask.array.Array
        0-d (lazy scalar) for ``'mean'`` / ``'sum'``, `input`'s shape for ``'none'``.

    Examples
    --------
    >>> import numpy as np, dask.array as da, bce_fast, bce_fast.dask
    >>> x = np.linspace(-3, 3, 1000).reshape(100, 10); y = (x > 0.5) * 1.0
    >>> lazy = bce_fast.dask.binary_cross_entropy_with_logits(
    ...     da.from_array(x, chunks=(30, 5)), da.from_array(y, chunks=(50, 10)))
    >>> v = lazy.compute(); ref = bce_fast.binary_cross_entropy_with_logits(x, y)
    >>> bool(abs(v - ref) <= 1e-12 * ref)
    True
    """
    return _binary("binary_cross_entropy_with_logits", input, target, reduction,
                   weight=weight, pos_weight=pos_weight)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """:func:`bce_fast.binary_cross_entropy` (probabilities) over Dask arrays.

    Same conventions as :func:`binary_cross_entropy_with_logits`; a
    probability outside [0, 1] raises ``ValueError`` when the graph runs.

    Examples
    --------
    >>> import numpy as np, dask.array as da, bce_fast.dask
    >>> p = da.from_array(np.array([0.9, 0.2, 0.6, 0.5]), chunks=2)
    >>> y = da.from_array(np.array([1.0, 0.0, 1.0, 0.0]), chunks=2)
    >>> float(bce_fast.dask.binary_cross_entropy(p, y, reduction="sum").compute())
    1.532476871297972
    """
    return _binary("binary_cross_entropy", input, target, reduction, weight=weight)


# ----------------------------------------------------------- cross-entropy

def _class_block(x, t, *, loss, reduction, probs, cax, kwargs):
    fn = _fn(loss)
    if reduction == "none":
        return fn(x, t, reduction="none", **kwargs)
    from .stream import _weight_total, chunk_sum
    s = chunk_sum(fn, x, t, **kwargs)
    if probs:
        d = float(x.size // x.shape[cax]) if x.shape[cax] else 0.0
    else:
        d = _weight_total(t, kwargs.get("weight"), kwargs.get("ignore_index", -100),
                          x.shape[cax])
    return np.array([s, d]).reshape((1,) * (x.ndim - 1) + (2,))


def _classes(name, input, target, reduction, **kwargs):
    da = _da()
    check_reduction(reduction)
    x, t = _dask_array(da, input, "input"), _dask_array(da, target, "target")
    check_float(x, "input")
    if x.ndim == 0:
        raise ValueError("input: expected at least 1 dimension (classes), got a 0-d array")
    nd = x.ndim
    cax = class_axis(kwargs.get("axis"), nd)
    if len(x.chunks[cax]) > 1:
        x = x.rechunk({cax: -1})   # each row's classes must sit in one block
    probs = name == "cross_entropy" and t.dtype.kind == "f"
    rows = tuple(d for d in range(nd) if d != cax)
    xi = tuple(range(nd))
    ti = xi if probs else rows
    want = tuple(x.shape[d] for d in ti)
    if t.shape != want:
        kind = "probability" if probs else "class-index"
        raise ValueError(f"target: expected shape {want} for {kind} targets of input "
                         f"shape {x.shape}, got {t.shape}")
    if not probs and t.dtype.kind not in "iub":
        raise TypeError(f"target: expected integer class indices, got dtype {t.dtype}")
    t = t.rechunk(tuple(x.chunks[d] for d in ti))
    w = kwargs.get("weight")
    if w is not None:
        kwargs["weight"] = np.asarray(w.compute() if isinstance(w, da.Array) else w)
    # Result dtype from the in-memory function on empty arrays of these dtypes.
    C = x.shape[cax]
    probe_x = np.zeros(tuple(0 if d != cax else C for d in range(nd)), x.dtype)
    probe_t = np.zeros(tuple(0 if d != cax else C for d in ti), t.dtype)
    rt = _fn(name)(probe_x, probe_t, reduction="none", **kwargs).dtype
    kw = dict(loss=name, reduction=reduction, probs=probs, cax=cax, kwargs=kwargs)
    if reduction == "none":
        return da.blockwise(_class_block, rows, x, xi, t, ti, concatenate=True,
                            dtype=rt, meta=np.empty((0,) * len(rows), rt), **kw)
    parts = da.blockwise(_class_block, rows + (nd,), x, xi, t, ti, concatenate=True,
                         new_axes={nd: 2}, adjust_chunks={d: 1 for d in rows},
                         dtype=np.float64, meta=np.empty((0,) * (len(rows) + 1)), **kw)
    return _reduce(da, parts, len(rows), reduction, rt)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, axis=None):
    """:func:`bce_fast.cross_entropy` over Dask arrays.

    `input` is ``(C,)``, ``(N, C)`` or ``(N, C, d1, ...)`` (class axis 1, or
    `axis`); `target` holds class indices (input's shape without the class
    axis) or class probabilities (input's shape), rechunked to `input`'s
    chunks.  A class axis split over several chunks is rechunked to one
    chunk.  ``'mean'`` is ``sum(w[y] * l) / sum(w[y])`` over non-ignored
    targets (probabilities: divided by the number of rows), combined from
    per-block partial sums.

    Parameters
    ----------
    weight : array_like of shape (C,), optional
        Class weights (a Dask array is computed first: it is small).
    ignore_index, label_smoothing, axis
        As in the in-memory function.
    reduction : {'mean', 'sum', 'none'}

    Returns
    -------
    dask.array.Array
        0-d for ``'mean'`` / ``'sum'``; input's shape without the class axis
        for ``'none'``.

    Examples
    --------
    >>> import numpy as np, dask.array as da, bce_fast.dask
    >>> x = da.from_array(np.zeros((6, 4)), chunks=(2, 2))
    >>> y = da.from_array(np.array([0, 1, 2, 3, 0, 1]), chunks=3)
    >>> float(bce_fast.dask.cross_entropy(x, y).compute())  # log(4)
    1.3862943611198906
    """
    return _classes("cross_entropy", input, target, reduction, weight=weight,
                    ignore_index=ignore_index, label_smoothing=label_smoothing,
                    **({} if axis is None else {"axis": axis}))


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """:func:`bce_fast.nll_loss` (on log-probabilities) over Dask arrays.

    Same conventions as :func:`cross_entropy` with class-index targets.

    Examples
    --------
    >>> import numpy as np, dask.array as da, bce_fast.dask
    >>> logp = da.from_array(np.log(np.full((4, 2), 0.5)), chunks=(2, 2))
    >>> y = da.from_array(np.array([0, 1, 1, -100]), chunks=2)
    >>> float(bce_fast.dask.nll_loss(logp, y).compute())  # log(2)
    0.6931471805599453
    """
    return _classes("nll_loss", input, target, reduction, weight=weight,
                    ignore_index=ignore_index)
