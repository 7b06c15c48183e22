"""The output cache (bce_fast/_outcache.pxi, issue 5): large results are
allocated through a NumPy memory handler that keeps freed blocks for reuse.

* Every function returning a large array gives results bit-identical to the
  cache turned off, even when its blocks were filled with NaN by the previous
  user: a recycled block is written in full.
* A block is reused by a later call of about the same size, never by a much
  smaller one; the cache holds at most its limit and releases blocks larger
  than it.
* Cached arrays behave like NumPy's own (owndata, resize, pickle); NumPy's
  allocator is back in place after every call, failed ones included.
"""
import os
import pickle
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import bce_fast
from bce_fast import _core

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:                                   # NumPy 1.x
    from numpy.core.multiarray import get_handler_name

CACHE = "bce_fast_output_cache"
N = 300_000                    # 1.2 MB of float32: above the 1 MiB threshold
ROWS, C = 3000, 100


@pytest.fixture(autouse=True)
def _restore_limit():
    """Each test starts from an empty cache with the default limit."""
    limit = bce_fast.set_output_cache(0)
    bce_fast.set_output_cache(limit)
    yield
    bce_fast.set_output_cache(0)
    bce_fast.set_output_cache(limit)


def _producers(dtype):
    """(name, thunk) for every public function that returns large arrays."""
    rng = np.random.default_rng(11)
    x = (4 * rng.standard_normal(N)).astype(dtype)
    y = (rng.random(N) > 0.5).astype(dtype)
    p = rng.uniform(0.01, 0.99, N).astype(dtype)
    xs = (3 * rng.standard_normal((ROWS, C))).astype(dtype)
    t = rng.integers(0, C, ROWS)
    ts = rng.dirichlet(np.ones(C), ROWS).astype(dtype)
    return [
        ("sigmoid", lambda: bce_fast.sigmoid(x)),
        ("log_sigmoid", lambda: bce_fast.log_sigmoid(x)),
        ("bce_none", lambda: bce_fast.binary_cross_entropy(p, y, reduction="none")),
        ("bce_logits_none", lambda: bce_fast.binary_cross_entropy_with_logits(
            x, y, reduction="none")),
        ("bce_and_grad", lambda: bce_fast.binary_cross_entropy_and_grad(p, y)),
        ("bce_logits_and_grad", lambda: bce_fast.binary_cross_entropy_with_logits_and_grad(
            x, y, reduction="none")),
        ("logistic_grad_hess", lambda: bce_fast.logistic_grad_hess(x, y)),
        ("softmax", lambda: bce_fast.softmax(xs)),
        ("log_softmax", lambda: bce_fast.log_softmax(xs)),
        ("cross_entropy_and_grad", lambda: bce_fast.cross_entropy_and_grad(xs, t)),
        ("cross_entropy_prob_and_grad", lambda: bce_fast.cross_entropy_and_grad(xs, ts)),
        ("nll_loss_and_grad", lambda: bce_fast.nll_loss_and_grad(xs, t)),
        ("softmax_grad_hess", lambda: bce_fast.softmax_grad_hess(xs, t)),
    ]


def _arrays(result):
    items = result if isinstance(result, tuple) else (result,)
    return [a for a in items if isinstance(a, np.ndarray) and a.nbytes >= 2**20]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", range(13), ids=[n for n, _ in _producers(np.float32)])
def test_recycled_blocks_are_overwritten(case, dtype):
    name, call = _producers(dtype)[case]
    bce_fast.set_output_cache(0)
    fresh = call()
    bce_fast.set_output_cache(512 << 20)
    first = _arrays(call())
    assert first and all(get_handler_name(a) == CACHE for a in first), name
    addresses = {a.ctypes.data for a in first}
    for a in first:
        a.fill(np.nan)                # what a recycled block may hold
    del a, first
    again = call()
    assert addresses & {a.ctypes.data for a in _arrays(again)}, "no block was reused"
    for got, want in zip(again if isinstance(again, tuple) else (again,),
                         fresh if isinstance(fresh, tuple) else (fresh,)):
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert not np.isnan(np.asarray(got)).any(), name


def test_small_results_use_numpy_allocator():
    y = bce_fast.sigmoid(np.zeros(1000, np.float32))
    assert get_handler_name(y) == "default_allocator"
    assert _core.output_cache_info()[1:] == (0, 0)


def test_cached_array_behaves_like_numpy():
    x = np.linspace(-5, 5, N)
    y = bce_fast.sigmoid(x)
    assert get_handler_name(y) == CACHE
    assert y.flags.owndata and y.flags.writeable and y.base is None
    want = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(pickle.loads(pickle.dumps(y)), want, rtol=1e-15)
    y.resize(2 * N, refcheck=False)             # grows: a new block, contents kept
    np.testing.assert_allclose(y[:N], want, rtol=1e-15)
    y.resize(N // 3, refcheck=False)            # shrinks well below the block
    np.testing.assert_allclose(y, want[:N // 3], rtol=1e-15)
    del y
    assert get_handler_name() == "default_allocator"


def test_tracemalloc_sees_cached_arrays():
    x = np.zeros(N)
    bce_fast.sigmoid(x)                         # leaves a block in the cache
    tracemalloc.start()
    try:
        y = bce_fast.sigmoid(x)                 # reuses it
        assert get_handler_name(y) == CACHE
        assert tracemalloc.get_traced_memory()[0] >= y.nbytes
        del y
        assert tracemalloc.get_traced_memory()[0] < N
    finally:
        tracemalloc.stop()


def test_reuse_needs_a_snug_fit():
    x = np.zeros(4 * N, np.float32)
    big = bce_fast.sigmoid(x)
    address = big.ctypes.data
    del big
    assert _core.output_cache_info()[1:] == (4 * N * 4 + 4096 - (4 * N * 4) % 4096, 1)
    small = bce_fast.sigmoid(x[:N])             # a quarter: must not pin the big block
    assert small.ctypes.data != address
    same = bce_fast.sigmoid(x[:4 * N - 100])    # within 25%: takes it
    assert same.ctypes.data == address


def test_limit_bounds_what_is_held():
    limit = 8 << 20
    bce_fast.set_output_cache(limit)
    rng = np.random.default_rng(3)
    for n in rng.integers(300_000, 900_000, 60):
        bce_fast.sigmoid(np.ones(int(n), np.float32))
        _, held, blocks = _core.output_cache_info()
        assert held <= limit and blocks <= 8
    y = bce_fast.sigmoid(np.ones(3 << 20, np.float32))   # 12 MiB: above the limit
    assert get_handler_name(y) == CACHE
    held_before = _core.output_cache_info()[1]
    del y
    assert _core.output_cache_info()[1] == held_before    # released, not held
    assert bce_fast.set_output_cache(0) == limit
    assert _core.output_cache_info()[1:] == (0, 0)
    assert get_handler_name(bce_fast.sigmoid(np.ones(N, np.float32))) == "default_allocator"


def test_allocator_restored_after_failures():
    with pytest.raises(MemoryError):
        _core.empty((2**40,), np.float64)       # 8 TiB: the handler returns NULL
    with pytest.raises(ValueError, match="between 0 and 1"):
        bce_fast.binary_cross_entropy(np.full(N, 2.0), np.zeros(N), reduction="none")
    assert get_handler_name() == "default_allocator"
    assert get_handler_name(np.empty(N)) == "default_allocator"


def test_threads_share_the_cache():
    """Eight threads allocating and freeing results of nearby sizes at once:
    every result right, the cache within its bounds."""
    rng = np.random.default_rng(5)
    inputs = [rng.standard_normal(int(n)) for n in rng.integers(140_000, 170_000, 8)]
    wants = [1 / (1 + np.exp(-x)) for x in inputs]
    errors = []

    def work(k):
        for _ in range(100):
            got = bce_fast.sigmoid(inputs[k])
            if not np.allclose(got, wants[k], rtol=1e-15, atol=0):
                errors.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    limit, held, blocks = _core.output_cache_info()
    assert 0 < blocks <= 8 and held <= limit


def _show_config(env_value):
    env = dict(os.environ, BCE_FAST_OUTPUT_CACHE=env_value)
    res = subprocess.run([sys.executable, "-W", "always", "-c",
                          "import bce_fast; bce_fast.show_config()"],
                         capture_output=True, text=True, env=env, check=True)
    return res


def test_environment_sets_the_limit():
    assert "output cache: 0 MiB limit" in _show_config("0").stdout
    assert "output cache: 64 MiB limit" in _show_config(str(64 << 20)).stdout
    res = _show_config("lots")
    assert "BCE_FAST_OUTPUT_CACHE='lots' ignored" in res.stderr
    assert "output cache: 512 MiB limit" in res.stdout


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_bad_limit(bad):
    with pytest.raises(ValueError, match="max_bytes: expected an integer >= 0"):
        bce_fast.set_output_cache(bad)
