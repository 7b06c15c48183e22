"""bce_fast.dask on a real multi-process dask.distributed LocalCluster:
blockwise kernels + tree reduction equal the in-memory results (float64:
relative 1e-12) for every option and chunking."""
import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import bce_fast                      # noqa: E402
import bce_fast.dask as bd           # noqa: E402
from bce_fast import _reference as ref   # noqa: E402
from conftest import RED_RTOL        # noqa: E402

HAS_CE = getattr(bce_fast, "cross_entropy", None) is not None and \
    getattr(bce_fast, "nll_loss", None) is not None
needs_ce = pytest.mark.skipif(not HAS_CE, reason="cross_entropy / nll_loss not built yet")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _check_all(cases):
    """Compute every lazy result of `cases` [(lazy, want, dtype)] in one
    graph and compare each with its expected value."""
    import dask
    for lazy, _, _ in cases:
        assert isinstance(lazy, da.Array)
    results = dask.compute(*[lazy for lazy, _, _ in cases])
    for got, (lazy, want, dtype) in zip(results, cases):
        if isinstance(want, np.ndarray):         # reduction='none'
            assert isinstance(got, np.ndarray)
            assert got.dtype == np.dtype(dtype) and got.shape == lazy.shape
            np.testing.assert_array_equal(got, want)
            continue
        assert isinstance(got, np.generic) and got.dtype == np.dtype(dtype), (type(got), got)
        if np.isnan(want):
            assert np.isnan(got)
        else:
            rtol = RED_RTOL[np.dtype(dtype)]
            assert abs(float(got) - float(want)) <= rtol * abs(float(want)), (got, want)


def test_runs_on_the_cluster_processes(client):
    # The graph really executes in the worker processes (not in this one).
    import os
    pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids
    x = da.ones((1000, 4), chunks=(100, 4))
    lazy = bd.binary_cross_entropy_with_logits(x, x, reduction="sum")
    got = client.compute(lazy).result()
    assert got == pytest.approx(4000 * np.log1p(np.exp(-1.0)), rel=1e-12)


@pytest.mark.parametrize("chunks", [(100, 7), (37, 3), (400, 7)], ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_bce_with_logits_equals_in_memory(client, rng, dtype, chunks):
    n, c = 400, 7
    x = rng.normal(scale=3.0, size=(n, c)).astype(dtype)
    y = (rng.random((n, c)) < 0.3).astype(dtype)
    w = rng.random((n, 1)).astype(dtype)
    pw = (rng.random(c) + 0.5).astype(dtype)
    X = da.from_array(x, chunks=chunks)
    Y = da.from_array(y, chunks=(250, c))          # misaligned: rechunked to X's
    W = da.from_array(w, chunks=(300, 1))
    cases = []
    for reduction in ("mean", "sum", "none"):
        lazy = bd.binary_cross_entropy_with_logits(X, Y, weight=W, pos_weight=pw,
                                                   reduction=reduction)
        want = bce_fast.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw,
                                                         reduction=reduction)
        cases.append((lazy, want, dtype))
        if reduction != "none":
            cases.append((lazy, ref.binary_cross_entropy_with_logits(
                x, y, weight=w, pos_weight=pw, reduction=reduction), dtype))
    assert cases[-1][0].shape == (n, c)
    _check_all(cases)


def test_bce_probabilities_and_scalar_weight(client, rng):
    p = rng.random((500, 3))
    y = rng.integers(0, 2, size=(500, 3)).astype(np.int8)   # integer targets are cast
    P, Y = da.from_array(p, chunks=(64, 2)), da.from_array(y, chunks=(64, 2))
    _check_all([(bd.binary_cross_entropy(P, Y, weight=0.25, reduction=reduction),
                 bce_fast.binary_cross_entropy(p, y, weight=0.25, reduction=reduction),
                 np.float64) for reduction in ("mean", "sum")])
    bad = p.copy()
    bad[400, 1] = 1.5
    lazy = bd.binary_cross_entropy(da.from_array(bad, chunks=(64, 2)), Y)
    with pytest.raises(ValueError, match="between 0 and 1"):
        lazy.compute()


def test_binary_argument_errors():
    x = da.ones((10, 3), chunks=5)
    with pytest.raises(ValueError, match=r"target: expected shape \(10, 3\)"):
        bd.binary_cross_entropy_with_logits(x, da.ones((10, 2)))
    with pytest.raises(TypeError, match="input: expected a floating-point array"):
        bd.binary_cross_entropy_with_logits(da.ones((10, 3), dtype=int, chunks=5), x)
    with pytest.raises(ValueError, match=r"weight: shape \(4,\) does not broadcast"):
        bd.binary_cross_entropy_with_logits(x, x, weight=np.ones(4))
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction"):
        bd.binary_cross_entropy_with_logits(x, x, reduction="avg")


@needs_ce
@pytest.mark.parametrize("chunks", [(50, 6), (33, 2)], ids=["batch-only", "class-split"])
def test_cross_entropy_equals_in_memory(client, rng, chunks):
    n, c = 400, 6
    x = rng.normal(scale=2.0, size=(n, c))
    t = rng.integers(0, c, size=n)
    t[:60] = 4                     # whole blocks ignored
    w = rng.random(c) + 0.2
    X, T = da.from_array(x, chunks=chunks), da.from_array(t, chunks=80)
    cases = []
    for kw in ({}, dict(weight=w, ignore_index=4), dict(weight=w, label_smoothing=0.2)):
        for reduction in ("mean", "sum", "none"):
            cases.append((bd.cross_entropy(X, T, reduction=reduction, **kw),
                          bce_fast.cross_entropy(x, t, reduction=reduction, **kw), np.float64))
    assert cases[-1][0].shape == (n,)
    cases.append((bd.cross_entropy(X, T, weight=w, ignore_index=4),
                  ref.cross_entropy(x, t, weight=w, ignore_index=4), np.float64))
    _check_all(cases)


@needs_ce
def test_cross_entropy_spatial_probabilities_and_nll(client, rng):
    x = rng.normal(size=(40, 5, 6))
    p = rng.random((40, 5, 6))
    p /= p.sum(axis=1, keepdims=True)
    X, P = da.from_array(x, chunks=(9, 2, 4)), da.from_array(p, chunks=(20, 5, 6))
    cases = [(bd.cross_entropy(X, P, reduction=r, label_smoothing=0.1),
              bce_fast.cross_entropy(x, p, reduction=r, label_smoothing=0.1), np.float64)
             for r in ("mean", "sum")]
    t = rng.integers(0, 5, size=(40, 6))
    cases.append((bd.cross_entropy(X, da.from_array(t, chunks=(10, 3))),
                  bce_fast.cross_entropy(x, t), np.float64))
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    L = da.from_array(logp, chunks=(7, 5, 6))
    cases.append((bd.nll_loss(L, da.from_array(t, chunks=7)), bce_fast.nll_loss(logp, t),
                  np.float64))
    x1 = x[0, :, 0].copy()                  # (C,) input: the class axis is the only axis
    X1 = da.from_array(x1, chunks=2)
    cases.append((bd.cross_entropy(X1, np.int64(3)), bce_fast.cross_entropy(x1, np.int64(3)),
                  np.float64))
    cases.append((bd.cross_entropy(X1, np.int64(3), reduction="none"),
                  bce_fast.cross_entropy(x1, np.int64(3), reduction="none"), np.float64))
    t_ignored = np.full_like(t, -100)
    cases.append((bd.nll_loss(L, da.from_array(t_ignored, chunks=7)), np.nan, np.float64))
    _check_all(cases)


def test_import_error_names_the_extra(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name == "dask.array" or name.startswith("dask.") or name == "dask":
            raise ImportError("No module named 'dask'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(ImportError, match=r"pip install 'bce_fast\[dask\]'"):
        bd.binary_cross_entropy_with_logits(np.ones(3), np.ones(3))


def test_package_import_does_not_import_dask():
    import subprocess
    import sys
    code = ("import sys, bce_fast, bce_fast.stream, bce_fast.dask; "
            "print('dask' in sys.modules, 'tqdm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
