"""bce_fast: fused, accurate loss kernels for NumPy arrays.

Sigmoid / log-sigmoid, binary cross-entropy (on probabilities and on logits),
softmax / log-softmax, softmax cross-entropy and NLL, with ``'none'`` /
``'mean'`` / ``'sum'`` reductions and their gradients, for float32 and float64,
each in one pass over memory on every core.  The API mirrors
``torch.nn.functional``; see the README for the numerical contract.
"""
import operator as _operator
import os as _os
import warnings as _warnings

from . import _core
from ._binary import (binary_cross_entropy, binary_cross_entropy_and_grad,
                      binary_cross_entropy_with_logits,
                      binary_cross_entropy_with_logits_and_grad, log_sigmoid,
                      logistic_grad_hess, sigmoid)
from ._softmax import (cross_entropy, cross_entropy_and_grad, log_softmax,
                       nll_loss, nll_loss_and_grad, softmax, softmax_grad_hess)
from ._modules import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, NLLLoss

__version__ = "0.1.0"

__all__ = [
    "sigmoid", "log_sigmoid",
    "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "binary_cross_entropy_and_grad", "binary_cross_entropy_with_logits_and_grad",
    "logistic_grad_hess",
    "BCELoss", "BCEWithLogitsLoss",
    "softmax", "log_softmax", "cross_entropy", "nll_loss",
    "cross_entropy_and_grad", "nll_loss_and_grad", "softmax_grad_hess",
    "CrossEntropyLoss", "NLLLoss",
    "get_num_threads", "set_num_threads", "set_output_cache", "show_config", "isa",
]


def _select_isa_from_env():
    level = _os.environ.get("BCE_FAST_ISA", "").strip().lower() or None
    try:
        _core.select_isa(level)
    except ValueError as exc:
        _warnings.warn(f"BCE_FAST_ISA={level!r} ignored: {exc}", RuntimeWarning, stacklevel=3)
        _core.select_isa(None)


_select_isa_from_env()


def _output_cache_from_env():
    value = _os.environ.get("BCE_FAST_OUTPUT_CACHE", "").strip()
    if not value:
        return
    try:
        set_output_cache(int(value))
    except ValueError as exc:
        _warnings.warn(f"BCE_FAST_OUTPUT_CACHE={value!r} ignored: {exc}", RuntimeWarning,
                       stacklevel=3)


def isa():
    """Instruction set of the kernels in use: 'baseline', 'avx2' or 'avx512'
    (the best the CPU has, unless ``BCE_FAST_ISA`` forces one)."""
    return _core.isa_name()


def get_num_threads():
    """Threads a large call may use: ``set_num_threads``'s value, capped by
    OpenMP's limit (which ``threadpoolctl.threadpool_limits`` lowers)."""
    return _core.get_num_threads()


def set_num_threads(n):
    """Use at most `n` threads (n >= 1) in later calls.  Results do not depend
    on it: reductions are bit-identical for any thread count."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    _core.set_num_threads(n)


def set_output_cache(max_bytes):
    """Keep at most `max_bytes` of freed result arrays for reuse (default
    512 MiB; 0 turns the cache off); returns the previous limit.

    Results of 1 MiB and more are allocated through a NumPy memory handler
    that holds their blocks when they are freed and gives them to later calls
    of about the same size, which then skip the page faults of fresh memory
    (as costly as the kernel itself for a 40 MB float32 sigmoid).  Only blocks
    this package allocated are held; lowering the limit releases them now.
    ``BCE_FAST_OUTPUT_CACHE`` sets the limit at import.
    """
    try:
        limit = None if isinstance(max_bytes, bool) else _operator.index(max_bytes)
    except TypeError:
        limit = None
    if limit is None or limit < 0:
        raise ValueError(f"max_bytes: expected an integer >= 0, got {max_bytes!r}")
    return _core.set_output_cache(min(limit, 2**63 - 1))


_output_cache_from_env()


def show_config(file=None):
    """Print version, instruction set, OpenMP, threads and the output cache
    (``bce-fast info``)."""
    import numpy as np
    limit, held, blocks = _core.output_cache_info()
    lines = [
        f"bce_fast {__version__}",
        f"numpy {np.__version__}",
        f"isa: {isa()} (supported: "
        f"{', '.join(l for l in _core.ISA_LEVELS if _core.isa_supported(l))})",
        f"openmp: {'on' if _core.openmp_enabled() else 'off'}",
        f"threads: {get_num_threads()}",
        "output cache: {:.0f} MiB limit, {:.1f} MiB held in {} blocks".format(
            limit / 2**20, held / 2**20, blocks),
    ]
    print("\n".join(lines), file=file)
