# Stub of the compiled binding bce_fast._core (bce_fast/_core.pyx with
# _softmax.pxi).  Arrays passed to the kernels must be C-contiguous, native
# and of the compute dtype (float32 -> C float, float64 -> C double); class
# indices int64 (C int64_t).  The public API in bce_fast/*.py guarantees that.
from typing import Final

import numpy as np
import numpy.typing as npt

ISA_LEVELS: Final[tuple[str, str, str]]

def select_isa(level: str | None = ...) -> None: ...
def isa_name() -> str: ...
def isa_supported(level: str) -> bool: ...
def openmp_enabled() -> bool: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...

# output cache (_outcache.pxi): a NumPy memory handler keeping freed blocks
def empty(shape: tuple[int, ...], dtype: npt.DTypeLike) -> npt.NDArray[np.floating]: ...
def set_output_cache(limit: int) -> int: ...                 # size_t bytes
def output_cache_info() -> tuple[int, int, int]: ...         # limit, bytes held, blocks held

# elementwise family (csrc/bf_binary.h)
KIND_SIGMOID: Final[int]
KIND_LOG_SIGMOID: Final[int]
KIND_BCE_LOGITS: Final[int]
KIND_BCE: Final[int]
KIND_GRAD_HESS: Final[int]

_F = npt.NDArray[np.floating]

def elementwise(
    kind: int,
    x: _F,
    y: _F | None = ...,
    w: _F | None = ...,        # read at (i // row) * w_so + (i % row) * w_si
    w_so: int = ...,           # int64_t
    w_si: int = ...,           # int64_t, 0 or 1
    pw: _F | None = ...,
    pw_so: int = ...,
    pw_si: int = ...,
    gu: _F | None = ...,       # grad_output (KIND_BCE_LOGITS only)
    gu_so: int = ...,
    gu_si: int = ...,
    row: int = ...,            # int64_t, divides x.size
    out: _F | None = ...,
    grad: _F | None = ...,
    hess: _F | None = ...,
    grad_scale: float = ...,   # double
    want_sum: bool = ...,
) -> float | None: ...

def map_canonical(kind: int, x: object, out: object = ...) -> np.ndarray | None: ...
def sm_map_canonical(kind: int, x: object, axis: int, out: object = ...) -> np.ndarray | None: ...
def sm_loss_canonical(kind: int, x: object, target: object, ignore_index: int, reduction: int, want_grad: bool) -> object | None: ...
def sm_grad_hess_canonical(x: object, y: object) -> tuple[np.ndarray, np.ndarray] | None: ...

REDUCTION_NONE: Final[int]
REDUCTION_MEAN: Final[int]
REDUCTION_SUM: Final[int]
def binary_canonical(kind: int, x: object, y: object, reduction: int, want_grad: bool,
                     out: object = ...) -> object | None: ...

# softmax family (csrc/bf_softmax.h)
SM_SOFTMAX: Final[int]
SM_LOG_SOFTMAX: Final[int]
SM_CE: Final[int]
SM_CE_PROB: Final[int]
SM_NLL: Final[int]

def softmax_family(
    kind: int,
    x: _F,                     # seen as (outer, C, inner)
    outer: int,
    C: int,
    inner: int,
    target: npt.NDArray[np.int64] | None = ...,
    ptarget: _F | None = ...,
    w: _F | None = ...,        # (C,) class weights; None reads as all 1
    ignore_index: int = ...,
    eps: float = ...,          # label smoothing
    wsum: float = ...,
    out: _F | None = ...,
    grad: _F | None = ...,
    hess: _F | None = ...,
    grad_up: _F | None = ...,
    grad_scale: float = ...,
    want_sum: bool = ...,
) -> tuple[int, float, float]: ...
