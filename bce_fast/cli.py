"""The ``bce-fast`` console script.

``bce-fast eval LOSS --input X --target Y [...]``  evaluate a loss over
    ``.npy`` / ``.npz`` files in chunks (bce_fast.stream), printing the value
    or writing the per-element losses to ``--out``;
``bce-fast info``   version, instruction set, OpenMP, threads, output cache;
``bce-fast bench``  run the benchmark harness (bench/run.py of a source tree).

Exit codes: 0 success, 1 a data error (missing or unreadable file, bad shape
or dtype, value out of range), 2 a usage error (unknown loss, bad option).
"""
import argparse
import json
import math
import os
import subprocess
import sys

PROG = "bce-fast"


class _UsageError(Exception):
    pass


def _file_arg(text):
    """``path.npy``, ``path.npz`` (one array) or ``path.npz:key``."""
    if not os.path.exists(text) and ":" in text:
        path, key = text.rsplit(":", 1)
        if path.endswith(".npz") and key:
            return (path, key)
    return text


def _build_parser():
    from bce_fast.stream import LOSSES

    parser = argparse.ArgumentParser(
        prog=PROG, description="Fused, accurate loss kernels for NumPy arrays: "
        "evaluate losses over .npy/.npz files, show the build, run the benchmark.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    names = sorted(set(LOSSES.values()))
    ev = sub.add_parser(
        "eval", help="evaluate a loss over .npy/.npz files in chunks",
        description="Evaluate a loss over arrays stored in .npy or .npz files, chunk by "
        "chunk along the first axis (memory stays bounded whatever the file size). "
        "Files: path.npy, path.npz (one array) or path.npz:key.",
        epilog=f"losses: {', '.join(names)} (aliases: bce, bce_with_logits, ce, nll). "
        "Example: bce-fast eval bce_with_logits --input logits.npy --target labels.npy --json")
    ev.add_argument("loss", metavar="LOSS", help="loss name, e.g. binary_cross_entropy_with_logits")
    ev.add_argument("--input", required=True, type=_file_arg, metavar="FILE",
                    help="predictions: logits, probabilities or log-probabilities")
    ev.add_argument("--target", required=True, type=_file_arg, metavar="FILE",
                    help="targets: labels/probabilities (binary), class indices or "
                    "class probabilities (cross_entropy)")
    ev.add_argument("--weight", type=_file_arg, metavar="FILE",
                    help="element weights (binary, broadcast to input) or class weights (C,)")
    ev.add_argument("--pos-weight", type=_file_arg, metavar="FILE",
                    help="positive-class weight (binary_cross_entropy_with_logits)")
    ev.add_argument("--reduction", choices=("mean", "sum", "none"), default="mean")
    ev.add_argument("--out", metavar="FILE.npy",
                    help="where --reduction none writes the per-element losses")
    ev.add_argument("--chunk-size", type=int, metavar="N",
                    help="rows per chunk (default: about 2**22 elements)")
    ev.add_argument("--ignore-index", type=int, metavar="I",
                    help="class index to ignore (cross_entropy, nll_loss; default -100)")
    ev.add_argument("--label-smoothing", type=float, metavar="E",
                    help="label smoothing in [0, 1] (cross_entropy)")
    ev.add_argument("--json", action="store_true",
                    help='print {"loss", "reduction", "value", "n"} as JSON')
    prog = ev.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="always show a progress bar on stderr")
    prog.add_argument("--no-progress", dest="progress", action="store_false",
                      help="never show it (default: only when stderr is a terminal)")

    sub.add_parser("info", help="version, instruction set, OpenMP, threads, output cache",
                   description="Print bce_fast's version, the instruction set in use, "
                   "OpenMP support, the thread count and the output cache's state.")

    sub.add_parser("bench", help="run the benchmark (bench/run.py of a source tree)",
                   description="Run bench/run.py from the bce_fast source tree; any "
                   "further arguments are passed to it (use `bce-fast bench -- --help` "
                   "for its own help).")
    return parser


def _eval(args):
    from bce_fast import stream

    try:
        name = stream.canonical_loss(args.loss)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    if args.reduction == "none" and not args.out:
        raise _UsageError("--reduction none needs --out FILE.npy")
    if args.out and args.reduction != "none":
        raise _UsageError("--out is only used with --reduction none")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise _UsageError(f"--chunk-size: expected an integer >= 1, got {args.chunk_size}")
    if args.label_smoothing is not None and not 0 <= args.label_smoothing <= 1:
        raise _UsageError(f"--label-smoothing: expected a value in [0, 1], "
                          f"got {args.label_smoothing}")
    kwargs = {}
    for opt, key, allowed in (("--weight", "weight", None),
                              ("--pos-weight", "pos_weight", ("binary_cross_entropy_with_logits",)),
                              ("--ignore-index", "ignore_index", ("cross_entropy", "nll_loss")),
                              ("--label-smoothing", "label_smoothing", ("cross_entropy",))):
        value = getattr(args, key)
        if value is None:
            continue
        if allowed is not None and name not in allowed:
            raise _UsageError(f"{opt} does not apply to {name}")
        kwargs[key] = value
    out = args.out
    if out is not None and not out.endswith(".npy"):
        out += ".npy"   # what numpy.save would write
    res = stream.run(name, args.input, args.target, chunk_size=args.chunk_size,
                     reduction=args.reduction, out=out, progress=args.progress, **kwargs)
    if args.reduction == "none":
        value = None
        msg = f"wrote {res.n} {name} losses ({res.dtype}, shape {res.shape}) to {out}"
    else:
        value = float(res.value)
        msg = str(res.value)   # shortest repr in the result dtype (float32: 8 digits)
    if args.json:
        doc = {"loss": name, "reduction": args.reduction,
               "value": value if value is None or math.isfinite(value) else None,
               "n": res.n}
        if args.reduction == "none":
            doc["out"] = out
        elif not math.isfinite(value):
            doc["nonfinite"] = repr(value)
        print(json.dumps(doc))
    else:
        print(msg)
    return 0


def _bench_script():
    """bench/run.py of the source tree this package lives in, or None."""
    import bce_fast
    root = os.path.dirname(os.path.dirname(os.path.abspath(bce_fast.__file__)))
    path = os.path.join(root, "bench", "run.py")
    return path if os.path.isfile(path) else None


def _bench(extra):
    script = _bench_script()
    if script is None:
        import bce_fast
        root = os.path.dirname(os.path.dirname(os.path.abspath(bce_fast.__file__)))
        print(f"{PROG} bench: error: benchmark harness not found at "
              f"{os.path.join(root, 'bench', 'run.py')}; it ships with the source tree, "
              "not with wheels: run it from a git clone installed with `pip install -e .`",
              file=sys.stderr)
        return 1
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return subprocess.call([sys.executable, script, *extra])


def main(argv=None):
    """Entry point of the ``bce-fast`` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        return _bench(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "info":
        import bce_fast
        bce_fast.show_config()
        return 0
    try:
        return _eval(args)
    except (_UsageError, ImportError) as exc:     # ImportError: --progress without tqdm
        parser.exit(2, f"{PROG} eval: error: {exc}\n")
    except (OSError, ValueError, TypeError, IndexError, KeyError,
            NotImplementedError, MemoryError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in str(msg):
            msg = f"{exc.filename}: {exc.strerror or exc}"
        print(f"{PROG} eval: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
