"""Out-of-core evaluation: any loss over arrays or ``.npy`` / ``.npz`` files,
in chunks along the batch axis (axis 0), with bounded memory.

Every loss reduces a chunk to partial sums (its kernel's sum, rounded to
the result dtype; a float32 sum past float32's range is taken again in
float64), and the partials of all chunks are added in float64 with
``math.fsum`` (exactly rounded, so the order of chunks does not matter):

=============================  ==============================  =================
loss                           numerator per chunk             denominator
=============================  ==============================  =================
binary losses                  ``sum(w * l)``                  element count
cross_entropy / nll_loss,      ``sum(w[y] * l)`` over          ``sum(w[y])`` over
class-index targets            non-ignored elements            non-ignored
cross_entropy, probabilities   ``sum(l)``                      row count
=============================  ==============================  =================

so ``reduction='mean'`` is numerator / denominator exactly as the in-memory
functions define it (PyTorch's rules: the binary mean is *not* a weighted
mean; class weights and ``ignore_index`` are), and ``'sum'`` is the
numerator.  The per-chunk sums come from the same kernels (``reduction='sum'``),
so results agree with the in-memory ones to the accuracy the kernels promise
(relative 1e-12 in float64, 1e-6 in float32) and are bit-identical run to run
for a given chunk size.

A C-ordered ``.npy`` (or an uncompressed member of an ``.npz``) is mapped
one chunk window at a time, and a compressed ``.npz`` member is
decompressed sequentially, so the address space used is a few chunks,
whatever the file size.  Unusual layouts (Fortran order, 0-d, object
arrays, format 3.0) are mapped by NumPy as a whole (an ``.npz`` member of
that kind is read whole).
"""
import math
import os
import struct
import sys
import tokenize
import zipfile
import zlib

import numpy as np

from ._softmax import class_axis
from ._validation import as_array, check_broadcast, check_reduction

__all__ = ["evaluate", "LOSSES"]

#: Loss names :func:`evaluate` accepts, with their short aliases.
LOSSES = {
    "binary_cross_entropy": "binary_cross_entropy",
    "bce": "binary_cross_entropy",
    "binary_cross_entropy_with_logits": "binary_cross_entropy_with_logits",
    "bce_with_logits": "binary_cross_entropy_with_logits",
    "bce_logits": "binary_cross_entropy_with_logits",
    "cross_entropy": "cross_entropy",
    "ce": "cross_entropy",
    "nll_loss": "nll_loss",
    "nll": "nll_loss",
}

_BINARY = {"binary_cross_entropy": ("weight",),
           "binary_cross_entropy_with_logits": ("weight", "pos_weight")}
_CLASSES = {"cross_entropy": ("weight", "ignore_index", "label_smoothing", "axis"),
            "nll_loss": ("weight", "ignore_index")}

#: Elements per chunk when `chunk_size` is not given (16 MB of float32): large
#: enough that per-call costs (thread wake-up, validation) stay small.
_CHUNK_ELEMENTS = 1 << 22


def canonical_loss(name):
    """Full function name for a loss name or alias (``'bce'``,
    ``'bce-with-logits'``, ...); ``ValueError`` for anything else."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in LOSSES:
        names = ", ".join(sorted(set(LOSSES.values())))
        raise ValueError(f"loss: unknown loss {name!r} (expected one of {names}, "
                         f"or an alias: bce, bce_with_logits, ce, nll)")
    return LOSSES[key]


def loss_function(name):
    """The in-memory function for a canonical loss name."""
    import bce_fast
    return getattr(bce_fast, name)


# ---------------------------------------------------------------- sources

class _Source:
    """An array read in row ranges along axis 0."""

    def __init__(self, shape, dtype, name):
        self.shape, self.dtype, self.name = tuple(shape), np.dtype(dtype), name

    @property
    def ndim(self):
        return len(self.shape)

    def rows(self, lo, hi):
        raise NotImplementedError

    def whole(self):
        return self.rows(0, self.shape[0]) if self.shape else self.rows(0, 0)


class _ArraySource(_Source):
    """An array already in memory (or a memory map the caller made)."""

    def __init__(self, arr, name):
        super().__init__(arr.shape, arr.dtype, name)
        self.arr = arr

    def rows(self, lo, hi):
        return self.arr[lo:hi] if self.arr.ndim else self.arr

    def whole(self):
        return self.arr


class _WindowSource(_Source):
    """C-ordered array data at byte `base` of a file, mapped one row window
    at a time (never the whole file)."""

    def __init__(self, path, base, shape, dtype, name):
        super().__init__(shape, dtype, name)
        self.path, self.base = path, base
        self.row_items = math.prod(self.shape[1:])
        self.row_bytes = self.row_items * self.dtype.itemsize

    def rows(self, lo, hi):
        shape = (hi - lo,) + self.shape[1:]
        if hi <= lo or self.row_bytes == 0:
            return np.empty(shape, self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=shape,
                         offset=self.base + lo * self.row_bytes)


class _StreamSource(_Source):
    """A C-ordered array inside a compressed ``.npz``, decompressed
    sequentially (a backward read reopens the member)."""

    def __init__(self, path, member, name):
        self.path, self.member = path, member
        self._open()
        super().__init__(self._shape, self._dtype, name)
        self.row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize

    def _open(self):
        self.zf = zipfile.ZipFile(self.path)
        self.fp = self.zf.open(self.member)
        self._shape, fortran, self._dtype = _read_npy_header(self.fp, self.path)
        self.pos = 0

    def rows(self, lo, hi):
        shape = (hi - lo,) + self.shape[1:]
        if lo < self.pos:
            self.close()
            self._open()
        if lo > self.pos:
            self._read((lo - self.pos) * self.row_bytes)
        data = self._read((hi - lo) * self.row_bytes)
        self.pos = hi
        return np.frombuffer(data, dtype=self.dtype).reshape(shape)

    def _read(self, nbytes):
        parts, left = [], nbytes
        while left > 0:
            try:
                part = self.fp.read(min(left, 1 << 26))
            except _UNREADABLE as exc:
                raise ValueError(f"{self.name}: cannot read {self.path}:{self.member} "
                                 f"({exc})") from None
            if not part:
                raise ValueError(f"{self.name}: {self.path}:{self.member} is truncated")
            parts.append(part)
            left -= len(part)
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def close(self):
        self.fp.close()
        self.zf.close()


def _read_npy_header(fp, where):
    """(shape, fortran_order, dtype) of the ``.npy`` data starting at `fp`'s
    position; leaves `fp` at the first data byte."""
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, SyntaxError, tokenize.TokenError, *_UNREADABLE) as exc:
        # NumPy parses the header with ast: a damaged one can raise
        # SyntaxError or tokenize.TokenError as well as ValueError
        raise ValueError(f"{where}: not a readable .npy array ({exc})") from None
    return shape, fortran, np.dtype(dtype)


def _npy_source(path, name):
    with open(path, "rb") as fp:
        try:
            shape, fortran, dtype = _read_npy_header(fp, path)
        except ValueError:
            shape = None
        base = fp.tell()
    if shape is None or dtype.hasobject or (fortran and len(shape) > 1) or not shape:
        # Unusual layouts (Fortran order, object arrays, 0-d, format 3.0):
        # let NumPy map (or load) the file and slice it.
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{name}: cannot read {path} as a .npy array ({exc})") from None
        return _ArraySource(arr, name)
    need = base + math.prod(shape) * dtype.itemsize
    if os.path.getsize(path) < need:
        raise ValueError(f"{name}: {path} is truncated (expected {need} bytes, "
                         f"got {os.path.getsize(path)})")
    return _WindowSource(path, base, shape, dtype, name)


def _npz_source(path, key, name):
    path = os.fspath(path)
    with zipfile.ZipFile(path) as zf:
        members = [m for m in zf.namelist() if m.endswith(".npy")]
        keys = [m[:-4] for m in members]
        if key is None:
            if len(keys) != 1:
                raise ValueError(f"{name}: {path} holds {len(keys)} arrays "
                                 f"({', '.join(keys)}); name one as PATH:KEY")
            key = keys[0]
        if key not in keys:
            raise KeyError(f"{name}: {path} has no array {key!r} "
                           f"(it has: {', '.join(keys) or 'none'})")
        info = zf.getinfo(key + ".npy")
        with zf.open(info) as fp:
            shape, fortran, dtype = _read_npy_header(fp, f"{path}:{key}")
        if dtype.hasobject or (fortran and len(shape) > 1) or not shape:
            with zf.open(info) as fp:
                return _ArraySource(np.lib.format.read_array(fp, allow_pickle=False), name)
    if info.compress_type != zipfile.ZIP_STORED:
        return _StreamSource(path, key + ".npy", name)
    # A stored member is the .npy file verbatim inside the zip: map it in place.
    with open(path, "rb") as fp:
        fp.seek(info.header_offset)
        local = fp.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"{name}: {path} is not a valid zip file")
        n_name, n_extra = struct.unpack("<HH", local[26:30])
        fp.seek(info.header_offset + 30 + n_name + n_extra)
        _read_npy_header(fp, f"{path}:{key}")
        base = fp.tell()
    return _WindowSource(path, base, shape, dtype, name)


#: What reading a damaged file raises besides ValueError (an empty .npy, a
#: truncated zip, a corrupt compressed member): reported as ValueError
#: naming the argument.
_UNREADABLE = (EOFError, zipfile.BadZipFile, zlib.error)


def open_source(spec, name):
    """A row-range reader for an array-like, a ``.npy`` path, an ``.npz``
    path holding one array, or ``(npz_path, key)``."""
    if isinstance(spec, _Source):
        return spec
    key = None
    if (isinstance(spec, tuple) and len(spec) == 2
            and isinstance(spec[0], (str, os.PathLike)) and isinstance(spec[1], str)):
        spec, key = spec
    if not isinstance(spec, (str, os.PathLike)):
        return _ArraySource(as_array(spec, name), name)
    path = os.fspath(spec)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no such file: {path}")
    try:
        if key is not None or zipfile.is_zipfile(path):
            return _npz_source(path, key, name)
        return _npy_source(path, name)
    except _UNREADABLE as exc:
        raise ValueError(f"{name}: cannot read {path} ({exc or type(exc).__name__})") from None


def _side(spec, name, shape):
    """A side array (weight, pos_weight): chunked with the input when it has
    the batch axis (aligned to the input's dimensions), else read whole."""
    if spec is None or isinstance(spec, (int, float)):
        return spec, False
    src = open_source(spec, name)
    check_broadcast(src, shape, name)
    ndim, n = len(shape), (shape[0] if shape else 1)
    if src.ndim == ndim and ndim and src.shape[0] == n and n != 1:
        return src, True
    return np.asarray(src.whole()), False


# ------------------------------------------------------------------ output

class _NpyOut:
    """A new ``.npy`` file written one row window at a time, under a
    temporary name beside it until :meth:`commit` moves it into place: the
    path may name an input still being read (once, writing over it lost the
    input and the losses both), and a failed run leaves no file that looks
    complete (:meth:`discard`)."""

    def __init__(self, path, shape, dtype):
        self.path, self.shape, self.dtype = os.fspath(path), tuple(shape), np.dtype(dtype)
        self.tmp = f"{self.path}.{os.getpid()}.part"
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype),
                  "fortran_order": False, "shape": self.shape}
        with open(self.tmp, "wb") as fp:
            np.lib.format.write_array_header_1_0(fp, header)
            self.base = fp.tell()
            fp.truncate(self.base + math.prod(self.shape) * self.dtype.itemsize)
        self.row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize

    def rows(self, lo, hi):
        shape = (hi - lo,) + self.shape[1:]
        if hi <= lo or self.row_bytes == 0:
            return np.empty(shape, self.dtype)
        return np.memmap(self.tmp, dtype=self.dtype, mode="r+", shape=shape,
                         offset=self.base + lo * self.row_bytes)

    def commit(self):
        os.replace(self.tmp, self.path)

    def discard(self):
        try:
            os.remove(self.tmp)
        except OSError:
            pass


def _out_array(out, shape, dtype):
    """`out` checked as the array a ``'none'`` result goes into."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out: expected a numpy.ndarray or a .npy path, "
                        f"got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"out: expected shape {tuple(shape)}, got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"out: expected dtype {dtype}, got {out.dtype}")
    return out


def _progress_bar(progress, total, desc):
    if progress is None:
        stream = sys.stderr
        progress = stream is not None and hasattr(stream, "isatty") and stream.isatty()
        explicit = False
    else:
        explicit = bool(progress)
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        if explicit:
            raise ImportError("progress=True needs tqdm: pip install 'bce_fast[stream]'") \
                from None
        return None
    return tqdm(total=total, desc=desc, unit="row", unit_scale=True, file=sys.stderr,
                leave=False, dynamic_ncols=True)


# ------------------------------------------------------------------ driver

class StreamResult:
    """What :func:`run` computed: `value` (NumPy scalar, or the output
    array for ``'none'``; None when the output went to the file `path`, which
    :func:`run` does not map whole), the float64 `numerator` and
    `denominator` of the mean, `n` (number of per-element loss terms), and
    the result `dtype` and `shape`."""

    def __init__(self, value, numerator, denominator, n, dtype, shape, path=None):
        self.value, self.numerator, self.denominator, self.n = value, numerator, denominator, n
        self.dtype, self.shape, self.path = np.dtype(dtype), tuple(shape), path


def _close(*sources):
    for src in sources:
        if isinstance(src, _StreamSource):
            src.close()


def _check_shapes(name, x, t, kwargs):
    """Whole-array shape checks (the per-chunk calls would only see the
    chunk's shapes).  Returns (class axis or None, probability targets?,
    output shape of ``'none'``)."""
    if name in _BINARY:
        if t.shape != x.shape:
            raise ValueError(f"target: expected shape {x.shape} (the shape of input), "
                             f"got {t.shape}")
        return None, False, x.shape
    if x.ndim == 0:
        raise ValueError("input: expected at least 1 dimension (classes), got a 0-d array")
    cax = class_axis(kwargs.get("axis"), x.ndim)
    rows = x.shape[:cax] + x.shape[cax + 1:]
    probs = name == "cross_entropy" and t.dtype.kind == "f"
    want = x.shape if probs else rows
    if t.shape != want:
        kind = "probability" if probs else "class-index"
        raise ValueError(f"target: expected shape {want} for {kind} targets of input "
                         f"shape {x.shape}, got {t.shape}")
    return cax, probs, rows


def chunk_sum(fn, x, t, **kwargs):
    """`fn`'s ``reduction='sum'`` over one chunk, as a float for adding in
    float64.  float16 is computed in float32 (its sum would round to float16),
    and a float32 sum past float32's range, where the kernel's double total
    did not fit the result (weights near 1e36: an in-memory mean of 8e35
    streamed as inf), is taken again in float64."""
    if x.dtype == np.float16:
        x = x.astype(np.float32)
    with np.errstate(over="ignore"):              # the float32 result's cast
        s = fn(x, t, reduction="sum", **kwargs)
    if s.dtype == np.float32 and np.isinf(s):
        s = fn(x.astype(np.float64), t, reduction="sum", **kwargs)
    return float(s)


def _weight_total(t, weight, ignore_index, n_classes):
    """sum(w[y]) over the non-ignored class indices `t` of one chunk."""
    t = np.asarray(t).reshape(-1)
    keep = t != ignore_index if ignore_index is not None else slice(None)
    idx = t[keep]
    if weight is None:
        return float(idx.size)
    counts = np.bincount(idx.astype(np.intp), minlength=n_classes)
    return math.fsum(counts * np.asarray(weight, dtype=np.float64).reshape(-1))


def run(loss, input, target, chunk_size=None, reduction="mean", out=None,
        progress=None, **loss_kwargs):
    """Engine behind :func:`evaluate` and ``bce-fast eval``; returns a
    :class:`StreamResult`.  Same arguments as :func:`evaluate`."""
    name = canonical_loss(loss)
    check_reduction(reduction)
    allowed = _BINARY.get(name) or _CLASSES[name]
    for key in loss_kwargs:
        if key not in allowed:
            raise TypeError(f"{name}() got an unexpected keyword argument {key!r} "
                            f"(accepted: {', '.join(allowed)})")
    if chunk_size is not None and (isinstance(chunk_size, bool) or
                                   not isinstance(chunk_size, (int, np.integer))
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size: expected an integer >= 1 (rows), got {chunk_size!r}")
    if out is not None and reduction != "none":
        raise ValueError(f"out: only used with reduction='none', got reduction={reduction!r}")
    fn = loss_function(name)

    x = open_source(input, "input")
    t = open_source(target, "target")
    cax, probs, out_shape = _check_shapes(name, x, t, loss_kwargs)
    n_rows = x.shape[0] if x.ndim else 1
    chunked = x.ndim >= 1 if name in _BINARY else cax not in (None, 0)
    kwargs = dict(loss_kwargs)
    sides = {}
    for key in ("weight", "pos_weight"):
        if key in kwargs and name in _BINARY:
            val, split = _side(kwargs[key], key, x.shape)
            if split:
                sides[key] = val
                del kwargs[key]
            else:
                kwargs[key] = val
    if name in _CLASSES and kwargs.get("weight") is not None:
        kwargs["weight"] = np.asarray(open_source(kwargs["weight"], "weight").whole())
    n_terms = math.prod(out_shape)

    if not chunked:   # class axis first: one call on the whole arrays
        xs, ts = x.whole(), t.whole()
        _close(x, t)
        if reduction == "none":
            value = fn(xs, ts, reduction="none", **kwargs)
            dtype, shape, path = value.dtype, value.shape, None
            if isinstance(out, (str, os.PathLike)):
                dest = _NpyOut(out, shape, dtype)
                try:
                    dest.rows(0, shape[0] if shape else 1).reshape(shape)[...] = value
                except BaseException:
                    dest.discard()
                    raise
                dest.commit()
                value, path = None, dest.path
            elif out is not None:
                np.copyto(_out_array(out, shape, dtype), value)
                value = out
            return StreamResult(value, math.nan, math.nan, n_terms, dtype, shape, path)
        value = fn(xs, ts, reduction=reduction, **kwargs)
        return StreamResult(value, math.nan, math.nan, n_terms, value.dtype, ())

    row_items = math.prod(x.shape[1:])
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // max(row_items, 1))
    chunk_size = int(chunk_size)
    C = x.shape[cax] if cax is not None else None
    ignore = kwargs.get("ignore_index", -100) if name in _CLASSES and not probs else None

    def call(lo, hi, reduction, out=None):
        xc, tc = x.rows(lo, hi), t.rows(lo, hi)
        kw = dict(kwargs)
        for key, src in sides.items():
            kw[key] = src.rows(lo, hi)
        if reduction == "sum":
            return chunk_sum(fn, xc, tc, **kw), tc
        if out is not None:
            kw["out"] = out
        return fn(xc, tc, reduction=reduction, **kw), tc

    # A one-row probe fixes the result dtype and surfaces argument errors
    # before any long run.
    try:
        probe, _ = call(0, min(1, n_rows), "none")
    except (ValueError, IndexError) as exc:
        if n_rows > 1:
            raise type(exc)(f"{exc} (in rows 0:1 of {n_rows})") from exc
        raise
    rt = probe.dtype

    dest = None
    if reduction == "none":
        if out is None:
            dest = np.empty(out_shape, rt)
        elif isinstance(out, (str, os.PathLike)):
            dest = _NpyOut(out, out_shape, rt)
        else:
            dest = _out_array(out, out_shape, rt)

    sums, weights, count = [], [], 0
    bar = _progress_bar(progress, n_rows, name)
    done = False
    try:
        for lo in range(0, n_rows, chunk_size):
            hi = min(lo + chunk_size, n_rows)
            try:
                if reduction == "none":
                    window = dest.rows(lo, hi) if isinstance(dest, _NpyOut) else dest[lo:hi]
                    call(lo, hi, "none", out=window)
                    del window
                else:
                    s, tc = call(lo, hi, "sum")
                    sums.append(s)
                    if name in _BINARY:
                        count += (hi - lo) * row_items
                    elif probs:
                        count += (hi - lo) * (row_items // C if C else 0)
                    else:
                        weights.append(_weight_total(tc, kwargs.get("weight"), ignore, C))
            except (ValueError, IndexError) as exc:
                if n_rows > chunk_size:
                    raise type(exc)(f"{exc} (in rows {lo}:{hi} of {n_rows})") from exc
                raise
            if bar is not None:
                bar.update(hi - lo)
        done = True
    finally:
        if bar is not None:
            bar.close()
        _close(x, t, *sides.values())
        if isinstance(dest, _NpyOut) and done:
            dest.commit()
        elif isinstance(dest, _NpyOut):
            dest.discard()

    if reduction == "none":
        if isinstance(dest, _NpyOut):
            return StreamResult(None, math.nan, math.nan, n_terms, rt, out_shape, dest.path)
        return StreamResult(dest, math.nan, math.nan, n_terms, rt, out_shape)
    numerator = math.fsum(sums)
    denominator = math.fsum(weights) if weights else float(count)
    if reduction == "sum":
        value = numerator
    elif denominator == 0:
        value = math.nan
    else:
        value = numerator / denominator
    with np.errstate(over="ignore"):   # a float16 sum may round to inf, like in memory
        value = rt.type(value)
    return StreamResult(value, numerator, denominator, n_terms, rt, ())


def evaluate(loss, input, target, chunk_size=None, reduction="mean", out=None,
             progress=None, **loss_kwargs):
    """Evaluate a loss over arrays or files in chunks of rows, with bounded memory.

    The batch axis (axis 0) is cut into chunks of `chunk_size` rows; each
    chunk is reduced by the in-memory kernel to partial sums (loss sum
    and weight total, see the module docstring) that are combined in float64
    with ``math.fsum``, so ``'mean'`` follows the in-memory definition for
    every option (class weights, ``ignore_index``, ``label_smoothing``,
    ``pos_weight``).  Results are deterministic for a given chunk size and
    equal the in-memory ones within the kernels' reduction accuracy
    (relative 1e-12 for float64, 1e-6 for float32).

    Parameters
    ----------
    loss : str
        ``'binary_cross_entropy'`` (``'bce'``),
        ``'binary_cross_entropy_with_logits'`` (``'bce_with_logits'``),
        ``'cross_entropy'`` (``'ce'``) or ``'nll_loss'`` (``'nll'``).
    input, target : array_like, path, or (npz_path, key)
        Arrays (including ``np.memmap``), paths to ``.npy`` files, paths to
        ``.npz`` files holding one array, or ``(npz_path, key)``.  Files are
        read one chunk at a time: C-ordered ``.npy`` and uncompressed
        ``.npz`` members are memory-mapped per chunk, compressed ``.npz``
        members are decompressed sequentially.
    chunk_size : int, optional
        Rows per chunk (default: about 2**22 elements of `input` per chunk).
    reduction : {'mean', 'sum', 'none'}
    out : ndarray or path, optional
        For ``'none'``: an array of the result shape and dtype, or the path
        of a ``.npy`` file to create (written chunk by chunk).
    progress : bool, optional
        Show a tqdm progress bar on stderr.  Default: only when stderr is a
        terminal.
    **loss_kwargs
        Passed to the loss: ``weight``, ``pos_weight`` (binary; arrays or
        paths, chunked with the input when they have its batch axis),
        ``ignore_index``, ``label_smoothing``, ``axis`` (cross-entropy).

    Returns
    -------
    NumPy scalar of the result dtype for ``'mean'`` / ``'sum'``; for
    ``'none'`` the filled `out` (a read-only memory map when `out` is a
    path, a new array when `out` is None).

    Notes
    -----
    Cross-entropy chunks along the batch axis; when the class axis is axis 0
    (1-D input, or ``axis=0``) the arrays are evaluated in one call.
    float32 partial sums are rounded to float32 per chunk before the float64
    combination, which stays well inside the 1e-6 float32 contract (a sum
    past float32's range is taken again in float64).

    Examples
    --------
    >>> import numpy as np, bce_fast, bce_fast.stream
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(1000, 3)); y = (rng.random((1000, 3)) < 0.5) * 1.0
    >>> s = bce_fast.stream.evaluate("bce_with_logits", x, y, chunk_size=64)
    >>> m = bce_fast.binary_cross_entropy_with_logits(x, y)
    >>> bool(abs(s - m) <= 1e-12 * m)
    True
    """
    res = run(loss, input, target, chunk_size=chunk_size, reduction=reduction,
              out=out, progress=progress, **loss_kwargs)
    if res.path is not None:
        return np.load(res.path, mmap_mode="r")
    return res.value
