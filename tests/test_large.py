"""64-bit sizes (issue 6): reductions over more than 2**31 elements.

Every index and count in csrc/ is int64_t; these tests prove it end to end
by reducing arrays of 2**31 + 65539 float32 elements, with distinctive values
placed beyond index 2**31 so that any 32-bit truncation of a size or an
index (a wrapped loop bound, a chunk offset computed in int) changes the sum
by far more than the tolerance -- or crashes.

They are skipped unless ``BCE_FAST_LARGE=1`` (each takes tens of seconds)
and skipped when the machine lacks the memory: the arrays come from
``np.zeros``, whose untouched pages the kernel reads as the shared zero page
on Linux, so the resident cost is small, but the check asks for the full
virtual size in available memory so that it also holds where zeroed memory
is committed eagerly.  Run::

    BCE_FAST_LARGE=1 python -m pytest tests/test_large.py -v

Expected sums are computed in closed form (math.fsum over a handful of
terms), independent of the kernels.
"""
import math
import os

import numpy as np
import pytest

import bce_fast

psutil = pytest.importorskip("psutil")

N = 2**31 + 65539          # > 2**31, odd, not a multiple of any chunk size
GIB = 2**30

pytestmark = pytest.mark.skipif(os.environ.get("BCE_FAST_LARGE") != "1",
                                reason="set BCE_FAST_LARGE=1 to run the >2**31-element tests")


def _need(nbytes):
    avail = psutil.virtual_memory().available
    if avail < nbytes + 2 * GIB:
        pytest.skip(f"needs {(nbytes + 2 * GIB) / GIB:.1f} GiB available, "
                    f"have {avail / GIB:.1f} GiB")


def _softplus(v):
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def test_bce_with_logits_sum_over_2_31_elements():
    _need(2 * 4 * N)
    x = np.zeros(N, np.float32)
    y = np.zeros(N, np.float32)
    # the tail beyond 2**31: 10**4 confident wrong answers (loss ~30 each,
    # 2e-4 of the total: 200 times the tolerance)
    k = 10**4
    x[-k:] = 30.0
    # one positive just past 2**31 (loss softplus(20)), one at the very end
    x[2**31 + 5], y[2**31 + 5] = -20.0, 1.0
    x[-1], y[-1] = -25.0, 1.0
    # 0-elements: x = 0, y = 0 -> log 2 each
    n_zero = N - k - 1
    want = math.fsum([n_zero * math.log(2.0), (k - 1) * _softplus(30.0),
                      _softplus(20.0), _softplus(25.0)])
    got = bce_fast.binary_cross_entropy_with_logits(x, y, reduction="sum")
    assert got.dtype == np.float32
    assert abs(float(got) - want) <= 1e-6 * want, (float(got), want)
    got_mean = bce_fast.binary_cross_entropy_with_logits(x, y)
    assert abs(float(got_mean) - want / N) <= 1e-6 * want / N


def test_cross_entropy_sum_over_2_31_elements():
    if not hasattr(bce_fast, "cross_entropy"):
        pytest.skip("bce_fast.cross_entropy does not exist yet")
    C = 1024
    rows = N // C + 1                      # rows * C > 2**31
    _need(4 * rows * C + 8 * rows)
    x = np.zeros((rows, C), np.float32)
    t = np.zeros(rows, np.int64)
    # the last 1000 rows (all beyond element 2**31) are confidently right:
    # loss = log1p((C - 1) * exp(-30)); all-zero rows cost log(C)
    k = 1000
    t[-k:] = np.arange(k) % C
    x[np.arange(rows - k, rows), t[-k:]] = 30.0
    want = math.fsum([(rows - k) * math.log(C), k * math.log1p((C - 1) * math.exp(-30.0))])
    got = bce_fast.cross_entropy(x, t, reduction="sum")
    assert abs(float(got) - want) <= 1e-6 * want, (float(got), want)
    # the last 100 rows (past 2**31 elements) confidently wrong instead
    j = 100
    rr = np.arange(rows - j, rows)
    x[rr, (t[-j:] + 1) % C] = 60.0
    wrong = (60.0 - 30.0) + math.log1p(math.exp(-30.0) + (C - 2) * math.exp(-60.0))
    want2 = math.fsum([(rows - k) * math.log(C),
                       (k - j) * math.log1p((C - 1) * math.exp(-30.0)), j * wrong])
    got2 = bce_fast.cross_entropy(x, t, reduction="sum")
    assert abs(float(got2) - want2) <= 1e-6 * want2, (float(got2), want2)


def test_cross_entropy_one_row_of_more_than_2_31_classes():
    """One row with C > 2**31 classes (the split-row path): the class index
    itself and the position within the row need 64 bits."""
    if not hasattr(bce_fast, "cross_entropy"):
        pytest.skip("bce_fast.cross_entropy does not exist yet")
    C = N
    _need(4 * C)
    x = np.zeros((1, C), np.float32)
    t = np.array([C - 7], np.int64)          # past 2**31
    x[0, C - 7] = 30.0
    x[0, -3:] = 29.0                          # three near-ties past 2**31 too
    s = (C - 4) * math.exp(-30.0) + 3 * math.exp(-1.0)
    want = math.log1p(s)
    got = bce_fast.cross_entropy(x, t, reduction="sum")
    assert abs(float(got) - want) <= 1e-5 * want, (float(got), want)
    # the same row with the target on a zero entry: (m - x_t) + log1p(s)
    t2 = np.array([2**31 + 11], np.int64)
    got2 = bce_fast.cross_entropy(x, t2, reduction="sum")
    want2 = 30.0 + want
    assert abs(float(got2) - want2) <= 1e-6 * want2, (float(got2), want2)
