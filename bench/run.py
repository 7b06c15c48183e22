"""Benchmark bce_fast against NumPy, PyTorch, numexpr, SciPy and scikit-learn.

    python bench/run.py                  # default suite: 1 thread, float32 and float64
                                         # (4-7 minutes on a 2-core VM, 1.7 GB peak)
    python bench/run.py --quick          # a small subset, under a minute
    python bench/run.py --only cross_entropy,softmax --threads 2 --json r.json --plot r.png

For every function x dtype x size ("cell") the bce_fast result is first
checked against the NumPy reference evaluated in float64 (the run aborts on
any mismatch).  Then bce_fast, every available peer and a plain NumPy sum over
as many bytes as the kernel reads (the memory roofline) are timed
interleaved: a warm-up call each, then rounds in rotating order until the
cell's time budget is spent (at least 3 rounds), each round timing a batch
of calls long enough for the clock.  Times are medians over rounds; a
speedup is a peer's median time over bce_fast's.  Cells that return arrays
also time the memory floor: the roofline's sum plus a NumPy fill of as many
bytes as the kernel writes.  The targets quote, beside each speedup, the
speedup a kernel running at that floor would show.

After the table: the call overhead at 1000 elements, the speed at each
instruction-set level the CPU supports, thread scaling (with --threads >= 2
or --scaling, checking results are bit-identical) and the issue targets.
"""
import argparse
import gc
import json
import os
import subprocess
import sys

# Idle OpenMP threads of bce_fast and PyTorch sleep at once instead of spinning,
# so that with --threads > 1 one library's spinning workers do not steal the
# core the next library timed in the same round needs.  Set before any import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from time import perf_counter

import numpy as np
from tqdm import tqdm

import bce_fast
import cases
import report
from bce_fast import _core

RTOL = {"float32": 1e-4, "float64": 1e-10}
BATCH_SECONDS = 2e-3     # shortest timed batch: clock overhead stays < 0.1 %
MAX_ROUNDS = 500
OVERHEAD_CASE = "binary_cross_entropy_with_logits"
SCALING_PASSES = 5       # the thread-scaling rows: median over this many passes


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1,
                   help="threads for bce_fast and every threaded peer (default 1)")
    p.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    p.add_argument("--quick", action="store_true",
                   help="sizes 1e3/1e5/1e6 and 2048x1000 rows, 0.2 s per cell")
    p.add_argument("--only", metavar="NAME[,NAME]", help="functions to run")
    p.add_argument("--budget", type=float, help="seconds of timing rounds per cell "
                   "(default 1.0, --quick 0.2)")
    p.add_argument("--scaling", action="store_true",
                   help="also time 1 thread against max(2, --threads) threads")
    p.add_argument("--json", metavar="FILE", help="write every raw number and the environment")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart of the speedups")
    p.add_argument("--markdown", action="store_true", help="print the table as GitHub markdown")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads: expected an integer >= 1")
    names = [c.name for c in cases.CASES]
    args.only = args.only.split(",") if args.only else names
    unknown = sorted(set(args.only) - set(names))
    if unknown:
        p.error(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(names)}")
    args.dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    args.budget = args.budget or (0.2 if args.quick else 1.0)
    # the largest cells: about 1 + 7 calls of each peer.  With 3, a median of
    # three single calls, targets flipped between runs more often; with 5, two or
    # three of a cell's calls could fall into one of the shared VM's slow spells
    # (BCE float32 at 10^7: 4.4 4.4 5.4 5.9 5.8 ms, the plain sum beside it
    # 2.9 to 32 ms), and the median with them; 7 outlast three.
    args.min_rounds = 7
    args.sizes = cases.QUICK_SIZES if args.quick else cases.SIZES
    args.shapes = cases.QUICK_SHAPES if args.quick else cases.SHAPES
    return args


# ---------------------------------------------------------------- timing

def measure(fns, budget, min_rounds):
    """Per-call seconds of each zero-argument callable, one sample per round.

    The callables are timed interleaved, in an order rotated every round, so
    that drift of the machine's speed hits them all alike.
    """
    estimate = {}
    for name, fn in fns.items():
        t0 = perf_counter()
        fn()
        estimate[name] = perf_counter() - t0
        if estimate[name] < 0.01:     # the first call may carry one-off costs
            t0 = perf_counter()
            fn()
            estimate[name] = perf_counter() - t0
    batch = {name: max(1, int(BATCH_SECONDS / max(t, 1e-7))) for name, t in estimate.items()}
    per_round = sum(batch[name] * estimate[name] for name in fns)
    rounds = max(min_rounds, min(MAX_ROUNDS, int(budget / per_round)))
    names = list(fns)
    samples = {name: [] for name in names}
    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                fn, n = fns[name], batch[name]
                t0 = perf_counter()
                for _ in range(n):
                    fn()
                samples[name].append((perf_counter() - t0) / n)
    finally:
        if gc_enabled:
            gc.enable()
    return samples


_buffers = {}
_pool = None


def _buffer(role, nbytes, dtype):
    """A reused array of ones of `nbytes` for `role` ("read" or "write")."""
    n = max(1, nbytes // np.dtype(dtype).itemsize)
    if _buffers.get((role, dtype), np.empty(0)).size < n:
        _buffers[role, dtype] = np.ones(n, dtype)
    return _buffers[role, dtype][:n]


def _split(fn, a, threads):
    """fn(a), or fn over `threads` parts of `a` in threads (NumPy releases the
    GIL in reductions and fills) when there is enough to split."""
    global _pool
    if threads == 1 or a.nbytes < 1 << 20:
        return partial(fn, a)
    _pool = _pool or ThreadPoolExecutor(threads)
    parts = np.array_split(a, threads)
    return lambda: list(_pool.map(fn, parts))


def roofline(nbytes, dtype, threads):
    """A plain NumPy sum over `nbytes` (the roof% column), read as float64
    whatever `dtype`: NumPy's float32 sum is slower than memory on the
    project machine (22 GB/s against 35 for float64 over the same 80 MB),
    which made float32 kernels look closer to the roof than they are."""
    return _split(np.sum, _buffer("read", nbytes, np.float64), threads)


def memory_floor(nread, nwritten, dtype, threads):
    """The roofline's sum over `nread` bytes, then a fill of `nwritten` bytes
    of another array: about the least time any kernel needs to move a cell's
    bytes (a NumPy copy measured slower than sum + fill here), so a peer's
    time over it estimates the most speedup any implementation could show.
    For nll_loss, whose reads are scattered, it is no floor at all."""
    read = roofline(nread, dtype, threads)
    if not nwritten:
        return read
    write = _split(_fill_ones, _buffer("write", nwritten, dtype), threads)
    return lambda: (read(), write())


def _fill_ones(a):
    a.fill(1)


# ----------------------------------------------------------------- cells

def outputs(result):
    return result if isinstance(result, tuple) else (result,)


def written(result):
    """Bytes of the arrays a call returns (a reduced loss writes nothing)."""
    return sum(np.asarray(o).nbytes for o in outputs(result) if np.ndim(o))


def check(case, dtype, shape, args, got):
    """Exit loudly unless `got` matches the NumPy reference run in float64."""
    ref = cases.reference(case)(*[a.astype(np.float64) if a.dtype.kind == "f" else a
                                  for a in args])
    rtol = RTOL[dtype]
    where = f"bce_fast.{case.name}, {dtype}, {report.size_label(shape)}"
    if len(outputs(got)) != len(outputs(ref)):
        sys.exit(f"\nRESULT MISMATCH in {where}: {len(outputs(got))} outputs, "
                 f"the NumPy reference has {len(outputs(ref))}")
    for i, (g, r) in enumerate(zip(outputs(got), outputs(ref))):
        g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
        atol = 1e-2 * rtol * (np.max(np.abs(r)) if r.size else 0.0)
        if g.shape != r.shape:
            sys.exit(f"\nRESULT MISMATCH in {where}: output {i} has shape {g.shape}, "
                     f"the NumPy reference {r.shape}")
        if not np.allclose(g, r, rtol=rtol, atol=atol):
            err = np.abs(g - r) - rtol * np.abs(r)
            j = np.unravel_index(np.nanargmax(np.where(np.isnan(err), np.inf, err)), r.shape)
            sys.exit(f"\nRESULT MISMATCH in {where}: output {i} differs from the NumPy "
                     f"reference beyond rtol={rtol:g}, atol={atol:.3g}; worst at index "
                     f"{tuple(map(int, j))}: {float(g[j])!r} vs {float(r[j])!r}")


def peak_allocation(fn):
    """Peak bytes NumPy (and Python) allocate during one call of `fn`."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run_cell(case, dtype, shape, opts, peers=None, budget=None, **extra):
    """Check, then time bce_fast, its peers (all, or those named) and the roofline."""
    args = cases.make_args(case, shape, dtype)
    ours = case.function()
    got = ours(*args)
    check(case, dtype, shape, args, got)
    elements, nread = case.work(args)
    nwritten = written(got)
    fns = {"bce_fast": lambda: ours(*args)}
    fns.update((name, fn) for name, fn in cases.peer_callables(case, args).items()
               if peers is None or name in peers)
    fns["roof"] = roofline(nread, dtype, opts.threads)
    if nwritten:        # else the floor is the roofline itself
        fns["floor"] = memory_floor(nread, nwritten, dtype, opts.threads)
    samples = measure(fns, budget or opts.budget, opts.min_rounds)
    return dict(function=case.name, dtype=dtype, size=report.size_label(shape),
                shape=list(shape), elements=int(elements), bytes_read=int(nread),
                bytes_written=int(nwritten),
                reduced=all(np.ndim(o) == 0 for o in outputs(got)),
                peak_alloc=peak_allocation(fns["bce_fast"]),
                median={name: float(np.median(s)) for name, s in samples.items()},
                samples=samples, **extra)


def run_isa(level, shape, opts, numpy_simd="all"):
    """The headline loss at one instruction-set level, against NumPy."""
    previous = bce_fast.isa()
    _core.select_isa(level)
    try:
        return run_cell(cases.CASES_BY_NAME[OVERHEAD_CASE], "float32", shape, opts,
                        peers=("numpy_stable",), isa=level, numpy_simd=numpy_simd)
    finally:
        _core.select_isa(previous)


def numpy_dispatch_targets():
    """The SIMD targets NumPy picks at run time above its build baseline, or
    None if this NumPy does not say."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_dispatch__
        except ImportError:
            return None
    return list(__cpu_dispatch__)


def run_isa_without_simd(shape, opts):
    """bce_fast's baseline kernels against NumPy held to its own baseline, as
    both would run on a CPU without AVX2.  NumPy's dispatch can only be
    limited before it is imported (NPY_DISABLE_CPU_FEATURES), hence a child
    process; the cell comes back as JSON."""
    env = dict(os.environ, BCE_FAST_ISA="baseline",
               NPY_DISABLE_CPU_FEATURES=" ".join(numpy_dispatch_targets()))
    argv = ["--threads", str(opts.threads), "--budget", str(opts.budget)]
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import run; "
            "opts = run.parse_args(sys.argv[3:]); run.cases.set_threads(opts.threads); "
            "cell = run.run_isa('baseline', tuple(json.loads(sys.argv[2])), opts, 'baseline'); "
            "print(json.dumps(cell))")
    child = subprocess.run([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)),
                            json.dumps(list(shape))] + argv,
                           env=env, capture_output=True, text=True, check=True)
    return json.loads(child.stdout.splitlines()[-1])


def run_scaling(case, dtype, shape, threads, opts):
    """One thread against `threads` threads; the results must be bit-identical."""
    args = cases.make_args(case, shape, dtype)
    fn = case.function()

    def at(n):
        bce_fast.set_num_threads(n)
        return fn(*args)

    try:
        identical = all(np.asarray(a).tobytes() == np.asarray(b).tobytes()
                        for a, b in zip(outputs(at(1)), outputs(at(threads))))
        allowed = bce_fast.get_num_threads()     # OpenMP's limit may cap `threads`
        samples = measure({1: partial(at, 1), threads: partial(at, threads)},
                          opts.budget, opts.min_rounds)
    finally:
        bce_fast.set_num_threads(opts.threads)
    t1, tn = (float(np.median(samples[n])) for n in (1, threads))
    return dict(function=case.name, dtype=dtype, size=report.size_label(shape),
                threads=threads, time_1=t1, time_n=tn, speedup=t1 / tn,
                bit_identical=identical,
                threads_allowed=allowed)


def plan(opts):
    """Every measurement of the run as (section, label, thunk)."""
    selected = [c for c in cases.CASES if c.name in opts.only]
    missing = [c.name for c in selected if c.function() is None]
    present = [c for c in selected if c.function() is not None]
    jobs = []
    for case in present:
        for dtype in opts.dtypes:
            for shape in (opts.shapes if case.rows else [(n,) for n in opts.sizes]):
                jobs.append(("table", f"{case.name} {dtype} {report.size_label(shape)}",
                             partial(run_cell, case, dtype, shape, opts)))
    big = (max(opts.sizes),)
    if OVERHEAD_CASE in [c.name for c in present]:
        jobs.append(("overhead", "call overhead",
                     partial(run_cell, cases.CASES_BY_NAME[OVERHEAD_CASE], "float32", (1000,),
                             opts, peers=("numpy", "numpy_stable", "torch"),
                             budget=max(opts.budget, 0.5))))
        for level in _core.ISA_LEVELS:
            if _core.isa_supported(level):
                jobs.append(("isa", f"isa {level}", partial(run_isa, level, big, opts)))
        if numpy_dispatch_targets():
            jobs.append(("isa", "isa baseline, NumPy baseline",
                         partial(run_isa_without_simd, big, opts)))
    if opts.threads >= 2 or opts.scaling:
        # Passes over all functions, not repeats of one: a slow spell of a
        # shared machine (memory bandwidth taken by a neighbour) then hits one
        # pass of several functions rather than every sample of one.
        threads = max(2, opts.threads)
        for k in range(SCALING_PASSES):
            for case in present:
                shape = opts.shapes[0] if case.rows else big
                jobs.append(("scaling", f"scaling {case.name} ({k + 1}/{SCALING_PASSES})",
                             partial(run_scaling, case, opts.dtypes[0], shape, threads, opts)))
    return jobs, missing


def main(argv=None):
    opts = parse_args(argv)
    cases.set_threads(opts.threads)
    env = report.environment(opts)
    print(report.header(env), flush=True)
    jobs, missing = plan(opts)
    if missing:
        print(f"not in this build of bce_fast, skipped: {', '.join(missing)}")
    results = {"table": [], "overhead": [], "isa": [], "scaling": []}
    with np.errstate(all="ignore"), tqdm(jobs, file=sys.stderr, unit="cell",
                                         dynamic_ncols=True) as bar:
        for section, label, job in bar:
            bar.set_postfix_str(label, refresh=True)
            try:
                results[section].append(job())
            except BaseException:       # a mismatch or an error: abort, keeping what ran
                bar.close()
                if results["table"]:
                    print(f"\nRUN ABORTED at {label}; the cells measured before it:\n"
                          f"{report.table(results['table'], markdown=opts.markdown)}",
                          flush=True)
                raise
    results["scaling"] = report.merge_scaling(results["scaling"])
    print()
    print(report.table(results["table"], markdown=opts.markdown))
    targets = report.targets(results, opts.threads)
    print(report.extras(results, targets))
    if opts.json:
        report.write_json(opts.json, env, vars(opts), results, targets)
        print(f"raw numbers: {opts.json}")
    if opts.plot:
        report.plot(opts.plot, env, results["table"])
        print(f"chart: {opts.plot}")


if __name__ == "__main__":
    main()
