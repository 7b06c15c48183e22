"""The ``bce-fast`` console script, run as a real subprocess (the installed
script when it is on PATH, else ``python -m bce_fast.cli``)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import bce_fast
from bce_fast import _reference as ref
from conftest import assert_reduced_close

SCRIPT = shutil.which("bce-fast")
CMD = [SCRIPT] if SCRIPT else [sys.executable, "-m", "bce_fast.cli"]
HAS_CE = getattr(bce_fast, "cross_entropy", None) is not None


def run(*args, cwd=None):
    return subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(11)
    x = rng.normal(scale=2.0, size=(3000, 4)).astype(np.float32)
    y = (rng.random((3000, 4)) < 0.3).astype(np.float32)
    pw = np.array([0.5, 1.0, 2.0, 3.0], np.float32)
    w = rng.random((3000, 1)).astype(np.float32)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    np.save(d / "pw.npy", pw)
    np.save(d / "w.npy", w)
    np.save(d / "xi.npy", x.astype(np.int32))
    np.save(d / "y_short.npy", y[:-1])
    np.savez(d / "both.npz", x=x, y=y)
    (d / "empty.npy").write_bytes(b"")
    return d, x, y, pw, w


def test_help_for_each_command():
    top = run("--help")
    assert top.returncode == 0 and "eval" in top.stdout and "info" in top.stdout \
        and "bench" in top.stdout
    for cmd, words in (("eval", ["--input", "--target", "--reduction", "--json",
                                 "--chunk-size", "--ignore-index", "--label-smoothing"]),
                       ("info", ["version"]),
                       ("bench", ["bench/run.py"])):
        res = run(cmd, "--help")
        assert res.returncode == 0, res.stderr
        assert f"usage: bce-fast {cmd}" in res.stdout
        for w in words:
            assert w in res.stdout, (cmd, w)


def test_info_prints_config():
    res = run("info")
    assert res.returncode == 0, res.stderr
    assert f"bce_fast {bce_fast.__version__}" in res.stdout
    assert f"isa: {bce_fast.isa()}" in res.stdout
    assert "openmp:" in res.stdout and "threads:" in res.stdout


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_eval_json_matches_in_memory(files, reduction):
    d, x, y, pw, w = files
    res = run("eval", "binary_cross_entropy_with_logits", "--input", d / "x.npy",
              "--target", d / "y.npy", "--pos-weight", d / "pw.npy", "--weight", d / "w.npy",
              "--reduction", reduction, "--chunk-size", 123, "--json")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""          # no progress bar when stderr is not a terminal
    doc = json.loads(res.stdout)
    assert doc["loss"] == "binary_cross_entropy_with_logits"
    assert doc["reduction"] == reduction and doc["n"] == x.size
    want = ref.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw,
                                                reduction=reduction)
    assert_reduced_close(np.float32(doc["value"]), want, np.float32)
    mem = bce_fast.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw,
                                                    reduction=reduction)
    assert abs(doc["value"] - float(mem)) <= 1e-6 * abs(float(mem))


def test_eval_plain_output_alias_and_npz(files):
    d, x, y, _, _ = files
    res = run("eval", "bce-with-logits", "--input", f"{d / 'both.npz'}:x",
              "--target", f"{d / 'both.npz'}:y")
    assert res.returncode == 0, res.stderr
    value = float(res.stdout.strip())
    assert_reduced_close(np.float32(value), ref.binary_cross_entropy_with_logits(x, y),
                         np.float32)


def test_eval_none_writes_out(files, tmp_path):
    d, x, y, pw, _ = files
    out = tmp_path / "losses.npy"
    res = run("eval", "bce_with_logits", "--input", d / "x.npy", "--target", d / "y.npy",
              "--pos-weight", d / "pw.npy", "--reduction", "none", "--out", out, "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["value"] is None and doc["n"] == x.size and doc["out"] == str(out)
    got = np.load(out)
    np.testing.assert_array_equal(got, bce_fast.binary_cross_entropy_with_logits(
        x, y, pos_weight=pw, reduction="none"))


@pytest.mark.skipif(not HAS_CE, reason="cross_entropy not built yet")
def test_eval_cross_entropy_options(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 5))
    t = rng.integers(0, 5, size=500)
    t[::4] = 1
    w = rng.random(5) + 0.5
    for name, a in (("x", x), ("t", t), ("w", w)):
        np.save(tmp_path / f"{name}.npy", a)
    res = run("eval", "cross_entropy", "--input", tmp_path / "x.npy", "--target",
              tmp_path / "t.npy", "--weight", tmp_path / "w.npy", "--ignore-index", 1,
              "--label-smoothing", 0.1, "--chunk-size", 64, "--json")
    assert res.returncode == 0, res.stderr
    want = bce_fast.cross_entropy(x, t, weight=w, ignore_index=1, label_smoothing=0.1)
    assert abs(json.loads(res.stdout)["value"] - float(want)) <= 1e-12 * abs(float(want))


@pytest.mark.parametrize("case, code, message", [
    ("missing", 1, "input: no such file"),
    ("shape", 1, "target: expected shape (3000, 4)"),
    ("dtype", 1, "input: expected a floating-point array, got dtype int32"),
    ("range", 1, "between 0 and 1"),
    ("loss", 2, "unknown loss 'hinge'"),
    ("none-no-out", 2, "--reduction none needs --out"),
    ("out-with-mean", 2, "--out is only used with --reduction none"),
    ("pos-weight-bce", 2, "--pos-weight does not apply to binary_cross_entropy"),
    ("bad-reduction", 2, "invalid choice: 'avg'"),
    ("no-target", 2, "the following arguments are required: --target"),
    ("bad-chunk", 2, "--chunk-size: expected an integer >= 1"),
    ("smoothing", 2, "--label-smoothing: expected a value in [0, 1], got 1.5"),
    ("empty-file", 1, "input: cannot read"),
    ("missing-npz", 1, "target: no such file"),
    ("unknown-option", 2, "unrecognized arguments: --bogus"),
], ids=lambda v: v if isinstance(v, str) and " " not in v else "")
def test_eval_errors(files, case, code, message):
    d = files[0]
    x, y = d / "x.npy", d / "y.npy"
    args = {
        "missing": ["bce_with_logits", "--input", d / "nope.npy", "--target", y],
        "shape": ["bce_with_logits", "--input", x, "--target", d / "y_short.npy"],
        "dtype": ["bce_with_logits", "--input", d / "xi.npy", "--target", y],
        "range": ["bce", "--input", x, "--target", y],
        "loss": ["hinge", "--input", x, "--target", y],
        "none-no-out": ["bce", "--input", x, "--target", y, "--reduction", "none"],
        "out-with-mean": ["bce", "--input", x, "--target", y, "--out", d / "o.npy"],
        "pos-weight-bce": ["bce", "--input", x, "--target", y, "--pos-weight", d / "pw.npy"],
        "bad-reduction": ["bce", "--input", x, "--target", y, "--reduction", "avg"],
        "no-target": ["bce", "--input", x],
        "bad-chunk": ["bce", "--input", x, "--target", y, "--chunk-size", 0],
        "smoothing": ["ce", "--input", x, "--target", y, "--label-smoothing", 1.5],
        "empty-file": ["bce_with_logits", "--input", d / "empty.npy", "--target", y],
        "missing-npz": ["bce_with_logits", "--input", x, "--target", f"{d / 'no.npz'}:y"],
        "unknown-option": ["bce", "--input", x, "--target", y, "--bogus"],
    }[case]
    res = run("eval", *args)
    assert res.returncode == code, (res.stdout, res.stderr)
    assert message in res.stderr
    assert res.stdout == ""
    assert "Traceback" not in res.stderr


def test_bench_runs_the_source_tree_harness_or_says_why():
    root = os.path.dirname(os.path.dirname(os.path.abspath(bce_fast.__file__)))
    script = os.path.join(root, "bench", "run.py")
    res = run("bench", "--", "--help")
    if os.path.isfile(script):
        # bce-fast bench forwards its arguments to bench/run.py: this is the
        # harness's own help, not bce-fast's.
        assert res.returncode == 0, res.stderr
        assert "usage: run.py" in res.stdout
        assert "Run bench/run.py from the bce_fast source tree" not in res.stdout
    else:
        assert res.returncode == 1
        assert "benchmark harness not found" in res.stderr and script in res.stderr


def test_bench_missing_harness_message(monkeypatch, capsys):
    from bce_fast import cli
    monkeypatch.setattr(cli, "_bench_script", lambda: None)
    assert cli.main(["bench"]) == 1
    assert "it ships with the source tree, not with wheels" in capsys.readouterr().err


def test_no_command_is_a_usage_error():
    res = run()
    assert res.returncode == 2 and "usage: bce-fast" in res.stderr


def test_progress_bar_on_a_terminal_only(files):
    pytest.importorskip("tqdm")
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios
    import threading
    d = files[0]
    args = ["eval", "bce_with_logits", "--input", str(d / "x.npy"), "--target",
            str(d / "y.npy"), "--chunk-size", "100"]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:          # EIO once the child has closed the terminal
                break
            if not data:
                break
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        proc = subprocess.run(CMD + args, stdout=subprocess.PIPE, stderr=slave, timeout=120)
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)
    assert proc.returncode == 0
    float(proc.stdout)                        # stdout holds only the value
    err = b"".join(chunks).decode(errors="replace")
    assert "binary_cross_entropy_with_logits" in err and "/3.00k" in err, err
