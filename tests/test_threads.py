"""Threads and processes (issue 6).

* 8 Python threads calling every function at once (the kernels release the
  GIL) get results bit-identical to serial calls.
* Calls from a ThreadPoolExecutor while bce_fast's OpenMP workers run do not
  oversubscribe: concurrent calls share one budget of get_num_threads() - 1
  worker threads (csrc/bf_runtime.c, bf_claim_threads).  Measured from the
  outside: a child process started with OMP_WAIT_POLICY=passive (idle OpenMP
  workers sleep instead of spinning, so a runnable thread is one doing work)
  runs the executor while this process samples how many of its threads are
  runnable (state 'R' in /proc/<pid>/task/*/stat).
* A child made by os.fork() after the parent ran a parallel region computes
  the same results (libgomp's thread pool does not survive fork; bce_fast
  falls back to one thread there) instead of hanging; a timeout turns a hang
  into a failure.
"""
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import bce_fast

N_BIG = 300_000        # above the parallel threshold (2 chunks of 32768 per thread)
N_SMALL = 1000


def _calls(n, rng):
    """(label, thunk) pairs covering every public function that exists."""
    x = (4 * rng.standard_normal(n)).astype(np.float32)
    y = (rng.random(n) > 0.5).astype(np.float32)
    p = rng.uniform(0.01, 0.99, n)
    w = rng.uniform(0.5, 2, n).astype(np.float32)
    yd = y.astype(np.float64)
    calls = [
        ("sigmoid", lambda: bce_fast.sigmoid(x)),
        ("log_sigmoid", lambda: bce_fast.log_sigmoid(p)),
        ("bce_logits_sum", lambda: bce_fast.binary_cross_entropy_with_logits(x, y, w, reduction="sum")),
        ("bce_logits_none", lambda: bce_fast.binary_cross_entropy_with_logits(x, y, reduction="none")),
        ("bce_mean", lambda: bce_fast.binary_cross_entropy(p, yd)),
        ("bce_logits_and_grad", lambda: bce_fast.binary_cross_entropy_with_logits_and_grad(x, y, w)),
        ("bce_and_grad", lambda: bce_fast.binary_cross_entropy_and_grad(p, yd, reduction="sum")),
        ("logistic_grad_hess", lambda: bce_fast.logistic_grad_hess(x, y, w)),
    ]
    rows = n // 10
    xs = (3 * rng.standard_normal((rows, 10))).astype(np.float32)
    t = rng.integers(0, 10, rows)
    for name, thunk in [
        ("softmax", lambda f: f(xs)),
        ("log_softmax", lambda f: f(xs)),
        ("cross_entropy", lambda f: f(xs, t, reduction="sum")),
        ("cross_entropy_and_grad", lambda f: f(xs, t)),
        ("nll_loss", lambda f: f(xs, t)),
        ("softmax_grad_hess", lambda f: f(xs, t)),
    ]:
        fn = getattr(bce_fast, name, None)
        if fn is not None:
            calls.append((name, lambda fn=fn, thunk=thunk: thunk(fn)))
    return calls


def _as_bytes(result):
    """Byte-exact fingerprint of a result (scalar, array or tuple)."""
    if isinstance(result, tuple):
        return tuple(_as_bytes(r) for r in result)
    a = np.asarray(result)
    return (a.dtype.str, a.shape, a.tobytes())


@pytest.mark.parametrize("n", [N_SMALL, N_BIG], ids=["small", "parallel"])
def test_eight_threads_match_serial(n, rng):
    calls = _calls(n, rng)
    serial = {label: _as_bytes(f()) for label, f in calls}
    barrier = threading.Barrier(8)
    errors, mismatches = [], []

    def worker(k):
        try:
            barrier.wait()
            # each thread walks the table from a different start, so
            # different kernels overlap in time
            for r in range(3):
                for i in range(len(calls)):
                    label, f = calls[(i + k) % len(calls)]
                    if _as_bytes(f()) != serial[label]:
                        mismatches.append((k, r, label))
        except Exception as exc:          # reported below, not swallowed
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    assert not mismatches, f"results differ from serial: {mismatches[:5]}"


def test_threads_with_changing_thread_count(rng):
    """set_num_threads from another thread while calls run: results stay
    bit-identical (chunking never depends on the thread count)."""
    x = rng.standard_normal(N_BIG)
    y = (rng.random(N_BIG) > 0.5) * 1.0
    want = bce_fast.binary_cross_entropy_with_logits(x, y, reduction="sum")
    before = bce_fast.get_num_threads()
    stop = threading.Event()
    got = []

    def caller():
        while not stop.is_set():
            got.append(bce_fast.binary_cross_entropy_with_logits(x, y, reduction="sum"))

    ts = [threading.Thread(target=caller) for _ in range(3)]
    for t in ts:
        t.start()
    try:
        for k in range(40):
            bce_fast.set_num_threads(1 + k % 2)
            time.sleep(0.005)
    finally:
        stop.set()
        for t in ts:
            t.join(timeout=60)
        bce_fast.set_num_threads(before)
    assert got and all(g == want for g in got)


# ------------------------------------------------------ oversubscription

_OVERSUB_CHILD = textwrap.dedent("""
    import sys
    import time
    from concurrent.futures import ThreadPoolExecutor
    import numpy as np
    import bce_fast

    callers = int(sys.argv[1])
    rng = np.random.default_rng(0)
    x = rng.standard_normal(2_000_000).astype(np.float32)
    y = (rng.random(x.size) > 0.5).astype(np.float32)
    bce_fast.binary_cross_entropy_with_logits(x, y)     # start the OpenMP pool
    print(bce_fast.get_num_threads(), flush=True)
    sys.stdin.readline()                                # the sampler is ready

    def work(_):
        # A fixed duration, not a fixed call count: the sampler needs the
        # callers busy long enough on fast and slow CPUs alike.
        stop = time.monotonic() + 1.5
        while time.monotonic() < stop:
            bce_fast.binary_cross_entropy_with_logits(x, y)
            bce_fast.sigmoid(x)

    with ThreadPoolExecutor(callers) as ex:
        list(ex.map(work, range(callers)))
""")


def _runnable_threads(pid):
    """Threads of process `pid` in state R (running or waiting for a CPU)."""
    n = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        n += stat[stat.rfind(")") + 2] == "R"
    return n


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/task")
@pytest.mark.skipif(not bce_fast._core.openmp_enabled(), reason="built without OpenMP")
def test_executor_does_not_oversubscribe():
    """4 executor threads calling at once: runnable threads stay within
    callers + get_num_threads() - 1 (the callers plus one shared worker
    budget).  Without the shared budget every caller brings its own team and
    a third of the samples exceed that (measured on 2 cores: up to
    callers * get_num_threads() runnable)."""
    callers = 4
    env = dict(os.environ, OMP_WAIT_POLICY="passive", OMP_NUM_THREADS="2")
    proc = subprocess.Popen([sys.executable, "-c", _OVERSUB_CHILD, str(callers)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)
    samples = []
    try:
        threads = int(proc.stdout.readline())
        proc.stdin.write("go\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            r = _runnable_threads(proc.pid)
            if r is not None:
                samples.append(r)
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0
    samples = np.array(samples)
    assert samples.size > 100, "too few samples to judge"
    bound = callers + threads - 1
    # /proc is read one task at a time, so a snapshot can catch a worker
    # handing over to the next call's; allow that for a sliver of samples.
    over = np.mean(samples > bound)
    assert over < 0.05, \
        f"runnable threads above {bound} in {over:.1%} of samples " \
        f"(histogram {np.bincount(samples).tolist()})"


def test_threadpoolctl_limits_the_calling_thread(rng):
    """threadpoolctl lowers OpenMP's limit, which get_num_threads obeys (for
    the thread that set it: OpenMP's nthreads-var is per thread)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not bce_fast._core.openmp_enabled():
        pytest.skip("built without OpenMP")
    x = rng.standard_normal(N_BIG)
    y = (rng.random(N_BIG) > 0.5) * 1.0
    want = bce_fast.binary_cross_entropy_with_logits(x, y, reduction="sum")
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert bce_fast.get_num_threads() == 1
        assert bce_fast.binary_cross_entropy_with_logits(x, y, reduction="sum") == want


# ------------------------------------------------------------------ fork


def _run_in_fork(fn, timeout=60):
    """fn() in a forked child; returns its bytes result, fails on a hang or
    a crash (the child is killed after `timeout` seconds)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # child
        code = 1
        try:
            os.close(r)
            data = fn()
            os.write(w, len(data).to_bytes(8, "little"))
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([r], [], [], max(left, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"forked child hung for {timeout} s")
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, \
        f"child exited abnormally (status {status})"
    data = b"".join(chunks)
    assert int.from_bytes(data[:8], "little") == len(data) - 8
    return data[8:]


def test_works_after_fork(rng):
    before = bce_fast.get_num_threads()
    bce_fast.set_num_threads(2)
    try:
        calls = _calls(N_BIG, rng)
        parent = {label: _as_bytes(f()) for label, f in calls}   # pool is live now

        def child():
            import pickle
            return pickle.dumps({label: _as_bytes(f()) for label, f in calls})

        import pickle
        got = pickle.loads(_run_in_fork(child))
        assert set(got) == set(parent)
        for label in parent:
            assert got[label] == parent[label], f"{label} differs in the forked child"
        # the parent still works, with its threads, after forking
        assert {label: _as_bytes(f()) for label, f in calls} == parent
    finally:
        bce_fast.set_num_threads(before)
