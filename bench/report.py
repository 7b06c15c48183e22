"""What the benchmark prints and writes: header, tables, targets, JSON, chart.

Every function here takes the plain records bench/run.py produces (dicts of
medians in seconds, sizes and byte counts) and only formats them.
"""
import datetime
import json
import os
import platform

import numpy as np

import bce_fast
import cases
from bce_fast import _core

PEER_LABELS = {"numpy": "numpy", "numpy_stable": "np-stable", "torch": "torch",
               "numexpr": "numexpr", "scipy": "scipy", "sklearn": "sklearn"}


def size_label(shape):
    """'1e7' for a power-of-ten length, '16384x1000' for rows, else the number."""
    if len(shape) > 1:
        return "x".join(map(str, shape))
    n = shape[0]
    k = len(str(n)) - 1
    return f"1e{k}" if n == 10**k else str(n)


def _cpu():
    """CPU model and the vector extensions that matter here, from /proc/cpuinfo."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            info = {k.strip(): v.strip() for k, v in
                    (line.split(":", 1) for line in f if ":" in line)}
        model = info.get("model name", model)
        flags = set(info.get("flags", "").split())
    except OSError:
        pass
    return model, [x for x in ("sse4_2", "avx2", "fma", "avx512f") if x in flags]


def _git_revision():
    """Commit of the source tree bce_fast is imported from ('' outside git)."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(bce_fast.__file__)))
    try:
        rev = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return rev.stdout.strip() if rev.returncode == 0 else ""


def environment(opts):
    return {
        "git": _git_revision(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": {**cases.versions(), "python": platform.python_version()},
        "cpu": _cpu()[0], "cpu_flags": _cpu()[1], "logical_cpus": os.cpu_count(),
        "isa": bce_fast.isa(),
        "isa_supported": [level for level in _core.ISA_LEVELS if _core.isa_supported(level)],
        "openmp": bool(_core.openmp_enabled()), "threads": opts.threads,
        "budget_s": opts.budget, "quick": opts.quick,
        "load_average": list(os.getloadavg()),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
    }


def header(env):
    versions = " | ".join(f"{k} {v}" for k, v in env["versions"].items())
    return "\n".join([
        f"bce_fast benchmark, {env['date']}" + (f", source {env['git']}" if env["git"] else ""),
        f"versions: {versions}",
        f"CPU: {env['cpu']} ({' '.join(env['cpu_flags'])}), {env['logical_cpus']} logical "
        f"CPUs | ISA chosen: {env['isa']} "
        f"(supported: {', '.join(env['isa_supported'])}) | OpenMP: "
        f"{'on' if env['openmp'] else 'off'} | threads: {env['threads']} | "
        f"OMP_WAIT_POLICY={env['omp_wait_policy']} | load average at start: "
        f"{env['load_average'][0]:.2f}",
        "time: median over interleaved rounds; Gelem/s and GB/s (bytes read + written) "
        "of bce_fast; roof% = time of a NumPy sum over the bytes read (as float64) / "
        "bce_fast time; "
        "peer columns: speedup = peer time / bce_fast time ('-': not available); "
        "memory floor (in the targets) = the sum plus a fill of the bytes written",
    ])


def _time(seconds):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale or unit == "us":
            return f"{seconds / scale:.3g} {unit}"


def _peer_time(cell, name):
    m = cell["median"]
    names = ("numpy", "numpy_stable") if name == "best_numpy" else (name,)
    return min((m[n] for n in names if n in m), default=None)


def speedup(cell, name):
    """Median time of `name` / median time of bce_fast (times are interleaved,
    so drift hits both alike).  `name` is a peer, "roof", or "best_numpy" (the
    faster of the naive and the stable NumPy expression); None if not timed."""
    t = _peer_time(cell, name)
    return t / cell["median"]["bce_fast"] if t else None


def floor_speedup(cell, name):
    """Median time of `name` / the memory floor's (the roofline where nothing
    is written): about the most any implementation moving the cell's bytes
    could show over `name` (see run.memory_floor)."""
    t, m = _peer_time(cell, name), cell["median"]
    return t / m.get("floor", m["roof"]) if t else None


def _at_floor(cell, name):
    b = floor_speedup(cell, name)
    return f" (at the memory floor: {b:.1f}x)" if b else ""


def _ratio(cell, peer):
    r = speedup(cell, peer)
    return f"{r:.1f}x" if r else "-"


def _roof(cell):
    return f"{100 * speedup(cell, 'roof'):.0f}%"


def cell_row(cell):
    """The table columns of one cell, as strings."""
    t = cell["median"]["bce_fast"]
    moved = cell["bytes_read"] + cell["bytes_written"]
    return [cell["function"], cell["dtype"], cell["size"], _time(t),
            f"{cell['elements'] / t / 1e9:.2f}", f"{moved / t / 1e9:.1f}",
            _roof(cell)] + [_ratio(cell, p) for p in cases.PEERS]


def table(cells, markdown=False):
    head = ["function", "dtype", "size", "time", "Gelem/s", "GB/s", "roof%"] + \
        [PEER_LABELS[p] for p in cases.PEERS]
    rows = [cell_row(c) for c in cells]
    if markdown:
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join([":--"] * 3 + ["--:"] * (len(head) - 3)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*head), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    previous = None
    for cell, row in zip(cells, rows):
        if previous and previous != cell["function"]:
            lines.append("")
        previous = cell["function"]
        lines.append(fmt.format(*row))
    return "\n".join(lines)


# ---------------------------------------------------------------- targets
# Each target as the issue texts state it: (issue, function, dtype, size,
# peer, least speedup).  "best_numpy" is the faster of the naive and the
# stable NumPy expression.

SPEEDUP_TARGETS = [
    ("#2", "binary_cross_entropy_with_logits", "float32", "1e7", "numpy_stable", 8),
    ("#2", "binary_cross_entropy_with_logits", "float32", "1e7", "torch", 8),
    ("#2", "binary_cross_entropy", "float32", "1e7", "numpy", 8),
    ("#3", "cross_entropy", "float32", "16384x1000", "torch", 3),
    ("#3", "cross_entropy", "float32", "512x32768", "torch", 3),
    ("#3", "log_softmax", "float32", "16384x1000", "torch", 2),
    ("#3", "log_softmax", "float32", "512x32768", "torch", 2),
    ("#4", "binary_cross_entropy_with_logits_and_grad", "float32", "1e7", "torch", 8),
    ("#4", "binary_cross_entropy_with_logits_and_grad", "float32", "1e7", "numpy_stable", 8),
    ("#4", "cross_entropy_and_grad", "float32", "16384x1000", "torch", 3),
    ("#5", "binary_cross_entropy_with_logits", "float32", "1e7", "numpy_stable", 10),
    ("#5", "binary_cross_entropy_with_logits", "float32", "1e7", "torch", 10),
    ("#5", "binary_cross_entropy", "float32", "1e7", "numpy", 10),
    ("#5", "binary_cross_entropy", "float32", "1e7", "torch", 10),
    ("#5", "sigmoid", "float32", "1e7", "torch", 3),
    ("#5", "log_sigmoid", "float32", "1e7", "torch", 3),
    ("#5", "cross_entropy", "float32", "16384x1000", "torch", 3),
    ("#5", "cross_entropy", "float32", "512x32768", "torch", 3),
]
ROOF_TARGET = 100 / 2.5       # "within 2.5x of the memory roofline", in roof%
FLOAT64_TARGET = 5
SCALING_TARGET = 1.7
OVERHEAD_US, OVERHEAD_RATIO = 3.0, 5
BASELINE_ISA_RATIO = 3
ALLOC_LIMIT = 64 * 1024       # bytes a reduced loss may allocate, whatever the size


def _find(cells, function, dtype, size):
    """The cell at `size`, else the largest measured (the label says which)."""
    mine = [c for c in cells if c["function"] == function and c["dtype"] == dtype]
    exact = [c for c in mine if c["size"] == size]
    if exact:
        return exact[0], size
    if not mine:
        return None, size
    c = max(mine, key=lambda c: c["elements"])
    return c, f"{c['size']} (not {size})"


def _target(issue, what, ok):
    return {"issue": issue, "what": what, "ok": ok}


def targets(results, threads):
    """Each issue target with what this run measured: ok True, False or None
    (not measured)."""
    cells, out = results["table"], []
    single = threads == 1
    measured = {c["function"] for c in cells}
    absent = sorted({t[1] for t in SPEEDUP_TARGETS if not hasattr(bce_fast, t[1])})
    if absent:
        out.append(_target("", f"not in this build of bce_fast: {', '.join(absent)}", None))
    seen, skipped = set(), 0
    for issue, fn, dtype, size, peer, least in SPEEDUP_TARGETS:
        if fn not in measured or not any(c["function"] == fn and c["dtype"] == dtype
                                         for c in cells):
            skipped += 1
            continue
        cell, label = _find(cells, fn, dtype, size)
        key = (issue, fn, dtype, cell and cell["size"], peer, least)
        if key in seen:     # two targets fell back to the same cell
            continue
        seen.add(key)
        s = speedup(cell, peer) if cell and single else None
        what = f"{fn} {dtype} {label}: >= {least}x {PEER_LABELS[peer]}"
        out.append(_target(issue, what + (f", measured {s:.1f}x{_at_floor(cell, peer)}"
                                          if s else ""),
                           None if s is None else s >= least))
    cell, label = _find(cells, "binary_cross_entropy_with_logits", "float32", "1e7")
    if cell and single:
        roof = 100 * speedup(cell, "roof")
        out.append(_target("#5", f"binary_cross_entropy_with_logits float32 {label}: within "
                           f"2.5x of the memory roofline (roof% >= {ROOF_TARGET:.0f}), "
                           f"measured {roof:.0f}%", roof >= ROOF_TARGET))
    for fn in dict.fromkeys(c["function"] for c in cells if c["dtype"] == "float64"):
        mine = [c for c in cells if c["function"] == fn and c["dtype"] == "float64"]
        cell = max(mine, key=lambda c: c["elements"])
        s = speedup(cell, "best_numpy")
        if s and single:
            out.append(_target("#5", f"{fn} float64 {cell['size']}: >= {FLOAT64_TARGET}x the "
                               f"faster NumPy expression, measured {s:.1f}x"
                               f"{_at_floor(cell, 'best_numpy')}", s >= FLOAT64_TARGET))
    if skipped:
        out.append(_target("", f"{skipped} speedup targets not measured here (--only / "
                           "--dtype left their cells out)", None))
    if not results["scaling"]:
        out.append(_target("#5", "two threads >= 1.7x one thread, bit-identical (one line "
                           "per function): not measured, run with --scaling", None))
    for row in results["scaling"]:
        out.append(_target("#5", f"{row['function']} {row['dtype']} {row['size']}: "
                           f"{row['threads']} threads >= {SCALING_TARGET}x one thread and "
                           f"bit-identical, measured {row['speedup']:.2f}x (median of "
                           f"passes {_passes(row)}), "
                           f"{'identical' if row['bit_identical'] else 'DIFFERENT'}",
                           row["speedup"] >= SCALING_TARGET and row["bit_identical"]))
    for cell in results["overhead"]:
        us = cell["median"]["bce_fast"] * 1e6
        np_s, torch_s = speedup(cell, "best_numpy"), speedup(cell, "torch")
        ok = us <= OVERHEAD_US and np_s >= OVERHEAD_RATIO and \
            (torch_s is None or torch_s >= OVERHEAD_RATIO)
        out.append(_target("#5", f"call overhead, {cell['function']} 1000 float32: <= "
                           f"{OVERHEAD_US:g} us and >= {OVERHEAD_RATIO}x NumPy and torch, "
                           f"measured {us:.2f} us, {np_s:.1f}x NumPy, "
                           f"{f'{torch_s:.1f}x' if torch_s else '-'} torch", ok))
    # A CPU without AVX2 holds NumPy to its baseline too: the cell measured
    # that way (in a child process) decides, where there is one.
    baseline = [c for c in results["isa"] if c["isa"] == "baseline"]
    fair = [c for c in baseline if c.get("numpy_simd") == "baseline"] or baseline
    for cell in fair[:1]:
        s = speedup(cell, "numpy_stable")
        held = ", NumPy at its baseline too" if cell.get("numpy_simd") == "baseline" else ""
        # the other reading, shown beside it: NumPy with its AVX-512 dispatch on
        plain = [c for c in baseline if c is not cell][:1]
        also = (f" (against NumPy's own AVX-512 dispatch: "
                f"{speedup(plain[0], 'numpy_stable'):.1f}x)" if plain else "")
        out.append(_target("#5", f"ISA baseline{held}, {cell['function']} float32 "
                           f"{cell['size']}: >= {BASELINE_ISA_RATIO}x np-stable, "
                           f"measured {s:.1f}x{also}", s >= BASELINE_ISA_RATIO))
    reduced = [c for c in cells if c["reduced"]]
    if reduced:
        worst = max(reduced, key=lambda c: c["peak_alloc"])
        out.append(_target("#5", f"reduced losses allocate nothing proportional to the input "
                           f"(peak <= {ALLOC_LIMIT // 1024} KiB): worst {worst['function']} "
                           f"{worst['dtype']} {worst['size']} {worst['peak_alloc'] / 1024:.1f} KiB",
                           worst["peak_alloc"] <= ALLOC_LIMIT))
    if not single:
        out.append(_target("", "single-thread speed targets: run with --threads 1", None))
    return out


# ----------------------------------------------------------------- extras

def extras(results, target_list):
    """The sections after the table: overhead, ISA levels, scaling, targets."""
    lines = []
    for cell in results["overhead"]:
        t = cell["median"]["bce_fast"]
        peers = " | ".join(f"{PEER_LABELS[p]} {cell['median'][p] * 1e6:.2f} us "
                           f"({_ratio(cell, p)})" for p in cases.PEERS if p in cell["median"])
        lines += ["", f"call overhead, {cell['function']} on 1000 float32 elements "
                  f"(median): bce_fast {t * 1e6:.2f} us | {peers}"]
    if results["isa"]:
        c0 = results["isa"][0]
        lines += ["", f"instruction-set levels, {c0['function']} {c0['dtype']} {c0['size']}:"]
        for cell in results["isa"]:
            t = cell["median"]["bce_fast"]
            held = ("  (NumPy's run-time SIMD dispatch off too, as on a CPU without AVX2)"
                    if cell.get("numpy_simd") == "baseline" else "")
            lines.append(f"  {cell['isa']:<9} {_time(t):>9}  {_ratio(cell, 'numpy_stable'):>6} "
                         f"np-stable  roof {_roof(cell)}{held}")
    if results["scaling"]:
        n = results["scaling"][0]["threads"]
        width = max(len(r["function"]) for r in results["scaling"] + [{"function": "function"}])
        lines += ["", f"threads, 1 vs {n} (medians over passes through all functions):",
                  f"  {'function':<{width}}  {'dtype':<7}  {'size':<10}  {'1 thread':>9}  "
                  f"{f'{n} threads':>9}  speedup  bit-identical  each pass"]
        for r in results["scaling"]:
            lines.append(f"  {r['function']:<{width}}  {r['dtype']:<7}  {r['size']:<10}  "
                         f"{_time(r['time_1']):>9}  {_time(r['time_n']):>9}  "
                         f"{r['speedup']:>6.2f}x  {'yes' if r['bit_identical'] else 'NO ':<13}"
                         f"  {_passes(r)}"
                         + (f"  (OpenMP allows only {r['threads_allowed']} threads)"
                            if r["threads_allowed"] < n else ""))
    if target_list:
        lines += ["", "targets (issue texts; single thread unless said):"]
        mark = {True: "PASS", False: "FAIL", None: "n/a "}
        lines += [f"  {mark[t['ok']]}  {t['issue']:<3} {t['what']}" for t in target_list]
    return "\n".join(lines)


def merge_scaling(rows):
    """One row per (function, dtype, size) from the scaling passes: median
    times and speedup, every pass's speedup kept in 'speedups'."""
    groups = {}
    for r in rows:
        groups.setdefault((r["function"], r["dtype"], r["size"]), []).append(r)
    merged = []
    for runs in groups.values():
        m = dict(runs[0])
        m.update(time_1=float(np.median([r["time_1"] for r in runs])),
                 time_n=float(np.median([r["time_n"] for r in runs])),
                 speedup=float(np.median([r["speedup"] for r in runs])),
                 speedups=[r["speedup"] for r in runs],
                 bit_identical=all(r["bit_identical"] for r in runs),
                 threads_allowed=min(r["threads_allowed"] for r in runs))
        merged.append(m)
    return merged


def _passes(row):
    return " ".join(f"{s:.2f}" for s in row.get("speedups", [row["speedup"]]))


def write_json(path, env, options, results, target_list):
    with open(path, "w") as f:
        json.dump({"environment": env, "options": options, "results": results,
                   "targets": target_list}, f, indent=1, default=str)


def _short(name):
    return (name.replace("binary_cross_entropy", "bce").replace("cross_entropy", "ce")
            .replace("_with_logits", "_logits").replace("_and_grad", "+grad"))


def plot(path, env, cells):
    """Bars of the speedup over NumPy and over PyTorch per function and dtype,
    at the headline size (the largest 1-D size, the first row shape)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    dtypes = list(dict.fromkeys(c["dtype"] for c in cells))
    fig, axes = plt.subplots(len(dtypes), 1, figsize=(12, 5 * len(dtypes)), squeeze=False)
    for ax, dtype in zip(axes[:, 0], dtypes):
        picked = {}
        for c in cells:
            if c["dtype"] == dtype and (c["function"] not in picked or len(c["shape"]) == 1):
                picked[c["function"]] = c
        x = np.arange(len(picked))
        shown = []
        for offset, peer, name in ((-0.2, "best_numpy", "NumPy (faster of naive / stable)"),
                                   (0.2, "torch", "PyTorch")):
            values = [speedup(c, peer) or np.nan for c in picked.values()]
            bars = ax.bar(x + offset, values, 0.4, label=f"vs {name}")
            ax.bar_label(bars, [f"{v:.1f}x" if v == v else "" for v in values], fontsize=8)
            shown += [v for v in values if v == v]
        ax.axhline(1, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylim(min(0.5, min(shown, default=1) / 1.5), max(shown, default=1) * 4)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(x, [f"{_short(fn)}\n{c['size']}" for fn, c in picked.items()],
                      fontsize=8, rotation=20, ha="right", rotation_mode="anchor")
        ax.set_xlabel("function, size (elements, or rows x classes)")
        ax.set_ylabel("speedup = peer time / bce_fast time\n(log scale; above 1x bce_fast wins)")
        ax.set_title(f"{dtype}: largest 1-D size, first row shape")
        ax.legend(loc="upper left", ncol=2, fontsize=8)
    fig.suptitle(f"bce_fast {env['versions']['bce_fast']} speedup over NumPy and PyTorch\n"
                 f"{env['cpu']}, ISA {env['isa']}, {env['threads']} thread(s), {env['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
