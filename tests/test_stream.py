"""bce_fast.stream: chunked evaluation equals the in-memory functions (and the
float64 reference) for every loss option, over arrays, .npy and .npz files,
with bounded memory (the out-of-core test runs under RLIMIT_AS)."""
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bce_fast
import bce_fast.stream as stream
from bce_fast import _reference as ref
from conftest import RED_RTOL, assert_reduced_close

CE = getattr(bce_fast, "cross_entropy", None)
NLL = getattr(bce_fast, "nll_loss", None)
needs_ce = pytest.mark.skipif(CE is None or NLL is None,
                              reason="cross_entropy / nll_loss not built yet")

BINARY = {"bce": bce_fast.binary_cross_entropy,
          "bce_with_logits": bce_fast.binary_cross_entropy_with_logits}
REF = {"bce": ref.binary_cross_entropy,
       "bce_with_logits": ref.binary_cross_entropy_with_logits}


def _binary_data(rng, loss, shape, dtype):
    x = rng.normal(scale=3.0, size=shape)
    if loss == "bce":
        x = 1.0 / (1.0 + np.exp(-x))
    y = (rng.random(shape) < 0.4).astype(dtype)
    return x.astype(dtype), y


def _weights(rng, kind, shape, dtype):
    n, c = shape
    return {"none": None,
            "scalar": 0.75,
            "full": rng.random(shape).astype(dtype),
            "rows": rng.random((n, 1)).astype(dtype),
            "cols": rng.random(c).astype(dtype)}[kind]


def _close(got, want, dtype):
    """Reduced results: same dtype, within the reduction contract."""
    assert isinstance(got, np.generic) and got.dtype == np.dtype(dtype)
    if np.isnan(want):
        assert np.isnan(got)
    else:
        assert abs(float(got) - float(want)) <= RED_RTOL[np.dtype(dtype)] * abs(float(want))


# ------------------------------------------------------------ binary losses

@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000], ids=lambda c: f"chunk{c}")
@pytest.mark.parametrize("wkind", ["none", "scalar", "full", "rows", "cols"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("loss", ["bce", "bce_with_logits"])
def test_binary_equals_in_memory(rng, loss, dtype, wkind, chunk):
    shape = (203, 5)
    x, y = _binary_data(rng, loss, shape, dtype)
    kw = {}
    w = _weights(rng, wkind, shape, dtype)
    if w is not None:
        kw["weight"] = w
    if loss == "bce_with_logits":
        kw["pos_weight"] = (rng.random(5) + 0.5).astype(dtype)
    for reduction in ("mean", "sum"):
        got = stream.evaluate(loss, x, y, chunk_size=chunk, reduction=reduction, **kw)
        _close(got, BINARY[loss](x, y, reduction=reduction, **kw), dtype)
        assert_reduced_close(got, REF[loss](x, y, reduction=reduction, **kw), dtype)
    # Elementwise losses do not depend on chunking at all.
    none = stream.evaluate(loss, x, y, chunk_size=chunk, reduction="none", **kw)
    np.testing.assert_array_equal(none, BINARY[loss](x, y, reduction="none", **kw))


def test_binary_1d_pos_weight_and_weight_chunked_with_input(rng):
    # 1-D input: pos_weight (N,) broadcasts along the batch axis, so it is
    # chunked together with the input.
    x = rng.normal(size=1001)
    y = (rng.random(1001) < 0.5) * 1.0
    pw, w = rng.random(1001) + 0.5, rng.random(1001)
    got = stream.evaluate("bce_with_logits", x, y, chunk_size=100, weight=w, pos_weight=pw)
    want = ref.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw)
    assert_reduced_close(got, want, np.float64)


def test_float16_partials_stay_out_of_float16(rng):
    # 300k elements of loss ~0.7: a float16 chunk sum would overflow (>65504).
    x = rng.normal(size=(300_000,)).astype(np.float16)
    y = (rng.random(300_000) < 0.5).astype(np.float16)
    got = stream.evaluate("bce_with_logits", x, y, chunk_size=150_000)
    assert got.dtype == np.float16 and np.isfinite(got)
    assert_reduced_close(got, ref.binary_cross_entropy_with_logits(x, y), np.float16)
    s = stream.evaluate("bce_with_logits", x, y, chunk_size=150_000, reduction="sum")
    assert s.dtype == np.float16 and np.isinf(s)   # the true sum exceeds float16
    assert ref.binary_cross_entropy_with_logits(x, y, reduction="sum") > 65504


def test_deterministic_for_a_chunk_size(rng):
    x = rng.normal(size=(5000, 3)).astype(np.float32)
    y = rng.random((5000, 3)).astype(np.float32)
    a = [stream.evaluate("bce_with_logits", x, y, chunk_size=333) for _ in range(3)]
    assert a[0].tobytes() == a[1].tobytes() == a[2].tobytes()
    b = stream.evaluate("bce_with_logits", x, y, chunk_size=1000)
    assert_reduced_close(b, ref.binary_cross_entropy_with_logits(x, y), np.float32)


def test_empty_input():
    x = np.empty((0, 4))
    assert np.isnan(stream.evaluate("bce_with_logits", x, x))
    assert stream.evaluate("bce_with_logits", x, x, reduction="sum") == 0.0
    assert stream.evaluate("bce_with_logits", x, x, reduction="none").shape == (0, 4)


def test_zero_d_input():
    got = stream.evaluate("bce_with_logits", np.float64(2.0), np.float64(1.0))
    assert_reduced_close(got, ref.binary_cross_entropy_with_logits(2.0, 1.0), np.float64)


# ---------------------------------------------------------------- files

@pytest.fixture
def binary_files(tmp_path, rng):
    x, y = _binary_data(rng, "bce_with_logits", (1234, 6), np.float32)
    w = rng.random((1234, 6)).astype(np.float64)
    paths = {"x": tmp_path / "x.npy", "y": tmp_path / "y.npy", "w": tmp_path / "w.npy"}
    np.save(paths["x"], x)
    np.save(paths["y"], y)
    np.save(paths["w"], w)
    np.savez(tmp_path / "stored.npz", x=x, y=y)
    np.savez_compressed(tmp_path / "packed.npz", x=x, y=y)
    np.savez(tmp_path / "one.npz", x)
    np.save(tmp_path / "xf.npy", np.asfortranarray(x))
    np.save(tmp_path / "xbig.npy", x.astype(">f4"))
    return tmp_path, x, y, w


@pytest.mark.parametrize("form", ["npy", "npy-str", "npz-stored", "npz-compressed",
                                  "npz-single", "fortran", "bigendian", "memmap"])
def test_file_inputs(binary_files, form):
    d, x, y, _ = binary_files
    inp, tgt = {
        "npy": (d / "x.npy", d / "y.npy"),
        "npy-str": (str(d / "x.npy"), str(d / "y.npy")),
        "npz-stored": ((d / "stored.npz", "x"), (str(d / "stored.npz"), "y")),
        "npz-compressed": ((d / "packed.npz", "x"), (d / "packed.npz", "y")),
        "npz-single": (d / "one.npz", y),
        "fortran": (d / "xf.npy", d / "y.npy"),
        "bigendian": (d / "xbig.npy", d / "y.npy"),
        "memmap": (np.load(d / "x.npy", mmap_mode="r"), np.load(d / "y.npy", mmap_mode="r")),
    }[form]
    want = bce_fast.binary_cross_entropy_with_logits(x, y)
    got = stream.evaluate("bce_with_logits", inp, tgt, chunk_size=100)
    _close(got, want, np.float32)
    assert_reduced_close(got, ref.binary_cross_entropy_with_logits(x, y), np.float32)
    # The compressed reader is sequential: a second pass must reopen it.
    none = stream.evaluate("bce_with_logits", inp, tgt, chunk_size=300, reduction="none")
    np.testing.assert_array_equal(none, bce_fast.binary_cross_entropy_with_logits(
        x, y, reduction="none"))


def test_weight_file_chunked_and_none_to_npy(binary_files):
    d, x, y, w = binary_files
    out = d / "losses.npy"
    res = stream.evaluate("bce_with_logits", d / "x.npy", d / "y.npy", chunk_size=97,
                          reduction="none", out=out, weight=d / "w.npy")
    want = bce_fast.binary_cross_entropy_with_logits(x, y, weight=w, reduction="none")
    assert want.dtype == np.float64       # float64 weight promotes
    assert isinstance(res, np.memmap) and not res.flags.writeable
    np.testing.assert_array_equal(res, want)
    np.testing.assert_array_equal(np.load(out), want)   # a valid .npy file
    got = stream.evaluate("bce_with_logits", d / "x.npy", d / "y.npy", chunk_size=97,
                          weight=d / "w.npy")
    assert_reduced_close(got, ref.binary_cross_entropy_with_logits(x, y, weight=w),
                         np.float64)


def test_none_into_given_array(rng):
    x, y = _binary_data(rng, "bce_with_logits", (300, 4), np.float64)
    want = bce_fast.binary_cross_entropy_with_logits(x, y, reduction="none")
    out = np.full((300, 4), -1.0)
    res = stream.evaluate("bce_with_logits", x, y, chunk_size=64, reduction="none", out=out)
    assert res is out
    np.testing.assert_array_equal(out, want)
    strided = np.zeros((300, 8))[:, ::2]        # non-contiguous out
    stream.evaluate("bce_with_logits", x, y, chunk_size=64, reduction="none", out=strided)
    np.testing.assert_array_equal(strided, want)


# ------------------------------------------------------------- errors

def test_errors(tmp_path, rng):
    x = rng.normal(size=(50, 3))
    y = rng.random((50, 3))
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        stream.evaluate("hinge", x, y)
    with pytest.raises(ValueError, match=r"target: expected shape \(50, 3\).*got \(50, 2\)"):
        stream.evaluate("bce_with_logits", x, y[:, :2], chunk_size=7)
    with pytest.raises(TypeError, match="input: expected a floating-point array"):
        stream.evaluate("bce_with_logits", x.astype(np.int32), y)
    with pytest.raises(ValueError, match="chunk_size: expected an integer >= 1"):
        stream.evaluate("bce_with_logits", x, y, chunk_size=0)
    with pytest.raises(ValueError, match="out: only used with reduction='none'"):
        stream.evaluate("bce_with_logits", x, y, out=np.empty((50, 3)))
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction"):
        stream.evaluate("bce_with_logits", x, y, reduction="avg")
    with pytest.raises(TypeError, match="unexpected keyword argument 'pos_weight'"):
        stream.evaluate("bce", 1 / (1 + np.exp(-x)), y, pos_weight=np.ones(3))
    with pytest.raises(ValueError, match=r"weight: shape \(5, 3\) does not broadcast to "
                       r"the input shape \(50, 3\)"):
        stream.evaluate("bce_with_logits", x, y, chunk_size=10, weight=np.ones((5, 3)))
    with pytest.raises(FileNotFoundError, match="input: no such file"):
        stream.evaluate("bce", tmp_path / "missing.npy", y)
    with pytest.raises(ValueError, match=r"out: expected shape \(50, 3\)"):
        stream.evaluate("bce_with_logits", x, y, reduction="none", out=np.empty((50, 4)))
    with pytest.raises(TypeError, match="out: expected dtype float64"):
        stream.evaluate("bce_with_logits", x, y, reduction="none",
                        out=np.empty((50, 3), np.float32))
    p = 1 / (1 + np.exp(-x))
    p[33, 1] = 1.5
    with pytest.raises(ValueError, match=r"between 0 and 1 \(in rows 30:40 of 50\)"):
        stream.evaluate("bce", p, y, chunk_size=10)
    np.savez(tmp_path / "two.npz", a=x, b=y)
    with pytest.raises(ValueError, match="holds 2 arrays"):
        stream.evaluate("bce_with_logits", tmp_path / "two.npz", y)
    with pytest.raises(KeyError, match="has no array 'c'"):
        stream.evaluate("bce_with_logits", (tmp_path / "two.npz", "c"), y)
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file at all")
    with pytest.raises(ValueError, match="cannot read"):
        stream.evaluate("bce_with_logits", tmp_path / "junk.npy", y)
    np.save(tmp_path / "cut.npy", x)
    with open(tmp_path / "cut.npy", "r+b") as f:
        f.truncate(500)
    with pytest.raises(ValueError, match="truncated"):
        stream.evaluate("bce_with_logits", tmp_path / "cut.npy", y)


def test_damaged_files_are_value_errors_naming_the_argument(tmp_path, rng):
    """An empty .npy, a truncated zip, a damaged compressed member: each a
    ValueError naming the argument (they raised EOFError, BadZipFile,
    zlib.error or a tokenizer error, which the CLI printed as tracebacks)."""
    x = rng.normal(size=4000).astype(np.float32)
    y = (rng.random(4000) < 0.5).astype(np.float32)
    (tmp_path / "empty.npy").write_bytes(b"")
    np.savez(tmp_path / "z.npz", x=x)
    whole = (tmp_path / "z.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[:len(whole) // 2])
    np.savez_compressed(tmp_path / "c.npz", x=x)
    packed = (tmp_path / "c.npz").read_bytes()
    for spec in (tmp_path / "empty.npy", (tmp_path / "cut.npz", "x"), tmp_path / "cut.npz"):
        with pytest.raises(ValueError, match="input: "):
            stream.evaluate("bce_with_logits", spec, y)
    for pos in range(0, len(packed), len(packed) // 40):
        damaged = bytearray(packed)
        damaged[pos] ^= 0x5A
        (tmp_path / "d.npz").write_bytes(bytes(damaged))
        try:
            got = stream.evaluate("bce_with_logits", (tmp_path / "d.npz", "x"), y)
        except (ValueError, KeyError):
            continue            # reported; or the damage missed what is read
        assert np.isfinite(got) or np.isnan(got)
    with pytest.raises(FileNotFoundError, match="target: no such file"):
        stream.evaluate("bce_with_logits", x, (tmp_path / "nothere.npz", "y"))


@pytest.mark.parametrize("chunk", [None, 7])
def test_out_path_may_name_an_input(tmp_path, rng, chunk):
    """--out over the input file once zeroed it before reading it: the
    result is written beside it and moved into place at the end."""
    x = rng.normal(size=(300, 4))
    y = (rng.random((300, 4)) < 0.5).astype(np.float64)
    want = bce_fast.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.save(tmp_path / "x.npy", x)
    got = stream.evaluate("bce_with_logits", tmp_path / "x.npy", y, chunk_size=chunk,
                          reduction="none", out=tmp_path / "x.npy")
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), want)
    assert sorted(os.listdir(tmp_path)) == ["x.npy"]


def test_failed_run_leaves_no_output_file(tmp_path, rng):
    p = 1 / (1 + np.exp(-rng.normal(size=(50, 3))))
    p[33, 1] = 1.5
    with pytest.raises(ValueError, match=r"\(in rows 30:40 of 50\)"):
        stream.evaluate("bce", p, np.zeros((50, 3)), chunk_size=10, reduction="none",
                        out=tmp_path / "o.npy")
    assert os.listdir(tmp_path) == []


def test_one_call_path_out_as_the_chunked_one(tmp_path, rng):
    """A (C,) input or axis=0 is evaluated in one call; its out= follows the
    same rules (an exact path, a checked array)."""
    x = rng.normal(size=(4, 6)).astype(np.float32)
    t = rng.integers(0, 4, 6)
    want = bce_fast.cross_entropy(x, t, axis=0, reduction="none")
    got = stream.evaluate("ce", x, t, axis=0, reduction="none", out=tmp_path / "o4")
    np.testing.assert_array_equal(got, want)
    assert os.listdir(tmp_path) == ["o4"]
    with pytest.raises(ValueError, match=r"out: expected shape \(6,\)"):
        stream.evaluate("ce", x, t, axis=0, reduction="none", out=np.zeros((3, 6), np.float32))
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        stream.evaluate("ce", x, t, axis=0, reduction="none", out=np.zeros(6))


def test_float32_chunk_sums_past_float32_range(rng):
    """Chunk sums are taken in float64 when float32 cannot hold them
    (weights near 1e36: the in-memory mean 8e35 was streamed as inf)."""
    x = rng.normal(size=100000).astype(np.float32)
    y = (rng.random(100000) < 0.5).astype(np.float32)
    w = np.full(100000, 1e36, np.float32)
    want = bce_fast.binary_cross_entropy_with_logits(x, y, weight=w)
    got = stream.evaluate("bce_with_logits", x, y, weight=w)
    assert np.isfinite(got) and abs(got / want - 1) < 1e-6
    xc = rng.normal(size=(1000, 5)).astype(np.float32)
    t = rng.integers(0, 5, 1000)
    wc = np.full(5, 1e36, np.float32)
    want = bce_fast.cross_entropy(xc, t, weight=wc, reduction="mean")
    got = stream.evaluate("ce", xc, t, weight=wc, chunk_size=400)
    assert np.isfinite(got) and abs(got / want - 1) < 1e-6


# ------------------------------------------------------------- progress

def test_progress_bar_only_when_asked(rng, capsys):
    pytest.importorskip("tqdm")
    x = rng.normal(size=(400, 2))
    y = rng.random((400, 2))
    stream.evaluate("bce_with_logits", x, y, chunk_size=50)      # stderr is no TTY here
    assert capsys.readouterr().err == ""
    stream.evaluate("bce_with_logits", x, y, chunk_size=50, progress=True)
    err = capsys.readouterr().err
    assert "400" in err and "row" in err
    stream.evaluate("bce_with_logits", x, y, chunk_size=50, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_bar_by_default_on_a_terminal(rng, monkeypatch):
    pytest.importorskip("tqdm")
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for tty, progress, shown in ((True, None, True), (True, False, False)):
        err = Terminal()
        monkeypatch.setattr(sys, "stderr", err)
        stream.evaluate("bce_with_logits", rng.normal(size=(400, 2)), rng.random((400, 2)),
                        chunk_size=50, progress=progress)
        assert ("/400 [" in err.getvalue()) == shown, err.getvalue()


# -------------------------------------------------------- cross-entropy

def _ce_ref(x, t, weight=None, ignore_index=-100):
    """float64 class-index cross-entropy, mean = sum(w[y] l) / sum(w[y])."""
    x = np.moveaxis(np.asarray(x, np.float64), 1, -1).reshape(-1, x.shape[1])
    t = np.asarray(t).reshape(-1)
    m = x.max(axis=1, keepdims=True)
    logp = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    keep = t != ignore_index
    w = np.ones(x.shape[1]) if weight is None else np.asarray(weight, np.float64)
    tk = t[keep]
    l = -w[tk] * logp[keep.nonzero()[0], tk]
    return math.fsum(l), math.fsum(w[tk])


@needs_ce
@pytest.mark.parametrize("chunk", [1, 5, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("opts", ["plain", "weight", "ignore", "weight+ignore+smooth",
                                  "spatial"])
def test_cross_entropy_equals_in_memory(rng, opts, dtype, chunk):
    n, c = 97, 6
    shape = (n, c, 3) if opts == "spatial" else (n, c)
    x = rng.normal(scale=2.0, size=shape).astype(dtype)
    t = rng.integers(0, c, size=(n, 3) if opts == "spatial" else n)
    kw = {}
    if "weight" in opts:
        kw["weight"] = (rng.random(c) + 0.1).astype(dtype)
    if "ignore" in opts:
        kw["ignore_index"] = 2
        t[:7] = 2      # the first chunks are entirely ignored
    if "smooth" in opts:
        kw["label_smoothing"] = 0.15
    for reduction in ("mean", "sum"):
        got = stream.evaluate("cross_entropy", x, t, chunk_size=chunk, reduction=reduction, **kw)
        _close(got, CE(x, t, reduction=reduction, **kw), dtype)
        if "smooth" not in opts:
            s, w = _ce_ref(x, t, kw.get("weight"), kw.get("ignore_index", -100))
            assert_reduced_close(got, s / w if reduction == "mean" else s, dtype)
    none = stream.evaluate("ce", x, t, chunk_size=chunk, reduction="none", **kw)
    np.testing.assert_array_equal(none, CE(x, t, reduction="none", **kw))


@needs_ce
def test_cross_entropy_probability_targets_and_axis(rng):
    x = rng.normal(size=(60, 4, 5))
    p = rng.random((60, 4, 5))
    p /= p.sum(axis=1, keepdims=True)
    w = rng.random(4) + 0.5
    for reduction in ("mean", "sum"):
        got = stream.evaluate("cross_entropy", x, p, chunk_size=7, reduction=reduction,
                              weight=w, label_smoothing=0.1)
        _close(got, CE(x, p, reduction=reduction, weight=w, label_smoothing=0.1), np.float64)
    # (N, L, C) logits with the class axis last
    xl = np.moveaxis(x, 1, -1)
    t = rng.integers(0, 4, size=(60, 5))
    got = stream.evaluate("cross_entropy", xl, t, chunk_size=7, axis=-1)
    _close(got, CE(xl, t, axis=-1), np.float64)


@needs_ce
def test_nll_and_all_ignored(rng):
    x = rng.normal(size=(80, 5))
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    t = rng.integers(0, 5, size=80)
    t[::3] = -100
    w = rng.random(5) + 0.5
    got = stream.evaluate("nll", logp, t, chunk_size=9, weight=w)
    _close(got, NLL(logp, t, weight=w), np.float64)
    s, tw = _ce_ref(x, t, w)
    assert_reduced_close(got, s / tw, np.float64)
    t[:] = -100
    assert np.isnan(stream.evaluate("nll", logp, t, chunk_size=9))
    assert stream.evaluate("nll", logp, t, chunk_size=9, reduction="sum") == 0.0


@needs_ce
def test_cross_entropy_1d_is_one_call_and_errors(rng):
    x = rng.normal(size=7)
    _close(stream.evaluate("ce", x, np.int64(3)), CE(x, np.int64(3)), np.float64)
    with pytest.raises(ValueError, match=r"target: expected shape \(40,\) for class-index"):
        stream.evaluate("ce", rng.normal(size=(40, 3)), np.zeros(41, np.int64), chunk_size=8)
    with pytest.raises(IndexError, match=r"out of bounds.*\(in rows 16:24 of 40\)"):
        t = np.zeros(40, np.int64)
        t[20] = 3
        stream.evaluate("ce", rng.normal(size=(40, 3)), t, chunk_size=8)


# ------------------------------------------------ out of core (done-when)

_CHILD = textwrap.dedent("""
    import contextlib, io, json, math, resource, sys
    import numpy as np
    import bce_fast, bce_fast.stream, bce_fast.cli

    x_path, y_path, pw_path, out_path = sys.argv[1:5]
    headroom = int(sys.argv[5])
    # Warm up: start the kernel's OpenMP threads before measuring, so their
    # stacks are part of the baseline.
    w = np.zeros((4096, 512), np.float32)
    bce_fast.binary_cross_entropy_with_logits(w, w)
    del w

    def vm_size():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    base = vm_size()
    resource.setrlimit(resource.RLIMIT_AS, (base + headroom, resource.RLIM_INFINITY))
    report = {"baseline": base, "limit": base + headroom}
    try:                       # the limit bites: the file does not fit
        np.load(x_path)
        report["whole_load"] = "ok"
    except MemoryError:
        report["whole_load"] = "MemoryError"
    pw = np.load(pw_path)
    v = bce_fast.stream.evaluate("bce_with_logits", x_path, y_path, pos_weight=pw)
    report["value"] = float(v)
    report["dtype"] = str(v.dtype)
    # The console script's code path, per-element losses to a new .npy file.
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        report["cli_rc"] = bce_fast.cli.main([
            "eval", "bce_with_logits", "--input", x_path, "--target", y_path,
            "--pos-weight", pw_path, "--reduction", "none", "--out", out_path, "--json"])
    report["cli"] = json.loads(buf.getvalue())
    report["peak"] = vm_size()
    print(json.dumps(report))
""")


def test_out_of_core_under_rlimit(tmp_path):
    """A 2 x 240 MB .npy pair evaluated in a process whose address space is
    capped at its baseline + 160 MB equals a small in-memory computation;
    in the same process ``bce-fast eval --reduction none`` writes the
    240 MB of per-element losses.

    The files hold 60 blocks, each the same 20000 rows in a different order
    (x and y permuted together), so the exact mean is the mean of one block,
    computed in memory by the float64 reference; a misplaced or misaligned
    chunk window would read a different multiset of (x, y) pairs."""
    pytest.importorskip("resource")
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc/self/status to measure the address space")
    rows_per_block, cols, blocks = 20_000, 50, 60        # 60M float32 per file
    n = rows_per_block * blocks
    headroom = 160 << 20
    rng = np.random.default_rng(7)
    base_x = rng.normal(scale=2.0, size=(rows_per_block, cols)).astype(np.float32)
    base_y = (rng.random((rows_per_block, cols)) < 0.3).astype(np.float32)
    pw = (rng.random(cols) + 0.5).astype(np.float32)
    want = float(ref.binary_cross_entropy_with_logits(base_x, base_y, pos_weight=pw))
    in_memory = bce_fast.binary_cross_entropy_with_logits(base_x, base_y, pos_weight=pw)
    assert abs(float(in_memory) - want) <= 1e-6 * want
    xp, yp, pwp = tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / "pw.npy"
    outp = tmp_path / "losses.npy"
    np.save(pwp, pw)
    orders = {}
    try:
        X = np.lib.format.open_memmap(xp, mode="w+", dtype=np.float32, shape=(n, cols))
        Y = np.lib.format.open_memmap(yp, mode="w+", dtype=np.float32, shape=(n, cols))
        for j in range(blocks):
            order = orders[j] = rng.permutation(rows_per_block)
            X[j * rows_per_block:(j + 1) * rows_per_block] = base_x[order]
            Y[j * rows_per_block:(j + 1) * rows_per_block] = base_y[order]
        X.flush()
        Y.flush()
        del X, Y
        assert os.path.getsize(xp) > headroom and os.path.getsize(yp) > headroom

        proc = subprocess.run([sys.executable, "-c", _CHILD, str(xp), str(yp), str(pwp),
                               str(outp), str(headroom)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["whole_load"] == "MemoryError"     # the input exceeds the limit
        assert report["peak"] <= report["limit"]
        assert report["dtype"] == "float32"
        assert abs(report["value"] - want) <= 1e-6 * want, (report, want)

        assert report["cli_rc"] == 0 and report["cli"]["n"] == n * cols
        assert os.path.getsize(outp) > headroom
        out = np.load(outp, mmap_mode="r")
        assert out.shape == (n, cols) and out.dtype == np.float32
        for j in (0, 37, blocks - 1):        # exact per-element values, block by block
            rows = slice(j * rows_per_block, (j + 1) * rows_per_block)
            np.testing.assert_array_equal(out[rows], bce_fast.binary_cross_entropy_with_logits(
                base_x[orders[j]], base_y[orders[j]], pos_weight=pw, reduction="none"))
        total = math.fsum(float(out[lo:lo + 1_000_000].sum(dtype=np.float64))
                          for lo in range(0, n, 1_000_000))
        assert abs(total / (n * cols) - want) <= 1e-6 * want
        del out
    finally:
        for p in (xp, yp, outp):
            if p.exists():
                p.unlink()
