"""Bad and unusual input, every public function (issue 6).

One table, ``SPECS``, describes each public function: how to build a valid
call, which arguments are logits/probabilities (must be floating point),
which are targets and broadcast side arrays, which output buffers it takes,
and its pure-NumPy reference (``bce_fast._reference``).  Every test below is
parametrised over that table, so a new function is covered by adding a row.
Rows of functions that do not exist yet (the softmax family while it is being
written) are skipped until ``bce_fast`` has them.

Each case asserts either the exception type and that its message names the
argument, or a correct result against the reference; and, always, that no
input array was modified (compared byte-for-byte with a copy taken before the
call).
"""
import numpy as np
import pytest

import bce_fast
from bce_fast import _reference as ref
from conftest import assert_close, assert_reduced_close, with_layout

SHAPE = (3, 5)
OUT_NAMES = ("out", "grad_out")          # (N, C): rows x classes for the softmax family
BAD_REDUCTIONS = ["avg", "MEAN", "mean ", "", None, 1, b"mean", ("mean",)]


class NoReference(Exception):
    pass


def _ref(name, kw, drop=("out", "grad_out")):
    fn = getattr(ref, name, None)
    if fn is None:
        raise NoReference(name)
    return fn(**{k: v for k, v in kw.items() if k not in drop})


# ------------------------------------------------------------ the table


class Spec:
    """A public function and how to call it.

    make(rng, dtype, shape) -> dict of valid keyword arguments
    reference(kw) -> expected result (float64; a tuple for multi-output)
    floats: arguments that must be floating point (logits/probabilities)
    targets: arguments whose shape is fixed by the first float argument
    sides: broadcast side arrays (weight, pos_weight, sample_weight)
    outs: output-buffer keywords, mapped to the index of the result they
        receive (None: the only result)
    """

    def __init__(self, name, make, reference, floats, targets=(), sides=(),
                 reduction=True, outs=None, probs=False, family="binary",
                 target_shape=None, module=None):
        self.name = name
        self.module = module        # ctor keywords when `name` is a loss class
        self.make = make
        self.reference = reference
        self.floats = floats
        self.targets = targets
        self.sides = sides
        self.reduction = reduction
        self.outs = outs or {}
        self.probs = probs
        self.family = family
        # shape of the target given the input shape (class-index targets
        # drop the class axis)
        self.target_shape = target_shape or (lambda s: s)

    @property
    def fn(self):
        fn = getattr(bce_fast, self.name, None)
        if fn is None:
            pytest.skip(f"bce_fast.{self.name} does not exist yet")
        if self.module is None:
            return fn

        def call_module(input, target, **kw):
            """Cls(**options)(input, target, **rest), as torch.nn losses."""
            options = {k: kw.pop(k) for k in list(kw) if k in self.module}
            return fn(**options)(input, target, **kw)
        return call_module

    def __repr__(self):
        return self.name


def _logits(rng, dtype, shape):
    return (3 * rng.standard_normal(shape)).astype(dtype)


def _probs(rng, dtype, shape):
    return rng.uniform(0.02, 0.98, shape).astype(dtype)


def _hard(rng, dtype, shape):
    return (rng.random(shape) > 0.5).astype(dtype)


def _weights(rng, dtype, shape):
    return rng.uniform(0.5, 2.0, shape).astype(dtype)


def _classes(rng, shape, c):
    return rng.integers(0, c, shape).astype(np.int64)


def _make_map(rng, dtype, shape):
    return {"x": _logits(rng, dtype, shape)}


def _make_bce(rng, dtype, shape):
    return {"input": _probs(rng, dtype, shape), "target": _hard(rng, dtype, shape),
            "weight": _weights(rng, dtype, shape), "reduction": "mean"}


def _make_bce_logits(rng, dtype, shape):
    return {"input": _logits(rng, dtype, shape), "target": _hard(rng, dtype, shape),
            "weight": _weights(rng, dtype, shape[-1:]),
            "pos_weight": _weights(rng, dtype, shape[-1:]), "reduction": "mean"}


def _make_grad_hess(rng, dtype, shape):
    return {"raw": _logits(rng, dtype, shape), "y": _hard(rng, dtype, shape),
            "sample_weight": _weights(rng, dtype, shape)}


def _make_softmax(rng, dtype, shape):
    return {"x": _logits(rng, dtype, shape)}


def _make_ce(rng, dtype, shape):
    return {"input": _logits(rng, dtype, shape),
            "target": _classes(rng, shape[:1], shape[1]),
            "weight": _weights(rng, dtype, shape[1:]), "reduction": "mean"}


def _make_nll(rng, dtype, shape):
    x = _logits(rng, np.float64, shape)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    return {"input": logp.astype(dtype),
            "target": _classes(rng, shape[:1], shape[1]),
            "weight": _weights(rng, dtype, shape[1:]), "reduction": "mean"}


def _make_softmax_grad_hess(rng, dtype, shape):
    return {"raw": _logits(rng, dtype, shape),
            "y": _classes(rng, shape[:1], shape[1]),
            "sample_weight": _weights(rng, dtype, shape[:1])}


def _rows(s):
    return s[:1] if len(s) >= 2 else ()


SPECS = [
    Spec("sigmoid", _make_map, lambda kw: _ref("sigmoid", kw), ("x",),
         reduction=False, outs={"out": None}),
    Spec("log_sigmoid", _make_map, lambda kw: _ref("log_sigmoid", kw), ("x",),
         reduction=False, outs={"out": None}),
    Spec("binary_cross_entropy", _make_bce,
         lambda kw: _ref("binary_cross_entropy", kw), ("input",), ("target",),
         ("weight",), outs={"out": None}, probs=True),
    Spec("binary_cross_entropy_with_logits", _make_bce_logits,
         lambda kw: _ref("binary_cross_entropy_with_logits", kw), ("input",),
         ("target",), ("weight", "pos_weight"), outs={"out": None}),
    Spec("binary_cross_entropy_and_grad", _make_bce,
         lambda kw: (_ref("binary_cross_entropy", kw),
                     _ref("binary_cross_entropy_grad", kw)),
         ("input",), ("target",), ("weight",), outs={"out": 0, "grad_out": 1},
         probs=True),
    Spec("binary_cross_entropy_with_logits_and_grad", _make_bce_logits,
         lambda kw: (_ref("binary_cross_entropy_with_logits", kw),
                     _ref("binary_cross_entropy_with_logits_grad", kw)),
         ("input",), ("target",), ("weight", "pos_weight"),
         outs={"out": 0, "grad_out": 1}),
    Spec("logistic_grad_hess", _make_grad_hess,
         lambda kw: _ref("logistic_grad_hess", kw), ("raw",), ("y",),
         ("sample_weight",), reduction=False),
    # ---- softmax family: run as soon as bce_fast has them
    Spec("softmax", _make_softmax, lambda kw: _ref("softmax", kw), ("x",),
         reduction=False, outs={"out": None}, family="softmax"),
    Spec("log_softmax", _make_softmax, lambda kw: _ref("log_softmax", kw), ("x",),
         reduction=False, outs={"out": None}, family="softmax"),
    Spec("cross_entropy", _make_ce, lambda kw: _ref("cross_entropy", kw),
         ("input",), ("target",), ("weight",), outs={"out": None},
         family="softmax", target_shape=_rows),
    Spec("nll_loss", _make_nll, lambda kw: _ref("nll_loss", kw), ("input",),
         ("target",), ("weight",), outs={"out": None}, family="softmax",
         target_shape=_rows),
    Spec("cross_entropy_and_grad", _make_ce,
         lambda kw: (_ref("cross_entropy", kw), _ref("cross_entropy_grad", kw)),
         ("input",), ("target",), ("weight",), outs={"out": 0, "grad_out": 1},
         family="softmax", target_shape=_rows),
    Spec("nll_loss_and_grad", _make_nll,
         lambda kw: (_ref("nll_loss", kw), _ref("nll_loss_grad", kw)),
         ("input",), ("target",), ("weight",), outs={"out": 0, "grad_out": 1},
         family="softmax", target_shape=_rows),
    Spec("softmax_grad_hess", _make_softmax_grad_hess,
         lambda kw: _ref("softmax_grad_hess", kw), ("raw",), ("y",),
         ("sample_weight",), reduction=False, family="softmax",
         target_shape=_rows),
]
# torch.nn-style loss objects: options at construction, arrays at the call
SPECS += [
    Spec("BCELoss", _make_bce, lambda kw: _ref("binary_cross_entropy", kw), ("input",),
         ("target",), ("weight",), outs={"out": None}, probs=True,
         module=("weight", "reduction")),
    Spec("BCEWithLogitsLoss", _make_bce_logits,
         lambda kw: _ref("binary_cross_entropy_with_logits", kw), ("input",), ("target",),
         ("weight", "pos_weight"), outs={"out": None},
         module=("weight", "reduction", "pos_weight")),
    Spec("CrossEntropyLoss", _make_ce, lambda kw: _ref("cross_entropy", kw), ("input",),
         ("target",), ("weight",), outs={"out": None}, family="softmax",
         target_shape=_rows,
         module=("weight", "ignore_index", "reduction", "label_smoothing", "axis")),
    Spec("NLLLoss", _make_nll, lambda kw: _ref("nll_loss", kw), ("input",), ("target",),
         ("weight",), outs={"out": None}, family="softmax", target_shape=_rows,
         module=("weight", "ignore_index", "reduction")),
]
BY_NAME = {s.name: s for s in SPECS}
BINARY = [s for s in SPECS if s.family == "binary"]
WITH_REDUCTION = [s for s in SPECS if s.reduction]
WITH_OUT = [(s, o) for s in SPECS for o in s.outs]
CE_LIKE = [BY_NAME[n] for n in ("cross_entropy", "nll_loss", "cross_entropy_and_grad",
                                "nll_loss_and_grad", "CrossEntropyLoss", "NLLLoss")]


def _ids(specs):
    return [s.name for s in specs]


def _arg_cases(specs, which):
    return [pytest.param(s, a, id=f"{s.name}-{a}") for s in specs
            for a in getattr(s, which)]


# ------------------------------------------------------------- helpers


def _snapshot(kw):
    return {k: (v.copy(), v.tobytes()) for k, v in kw.items()
            if isinstance(v, np.ndarray)}


def _assert_unchanged(kw, snap, skip=()):
    for k, (copy, raw) in snap.items():
        if k in skip:
            continue
        v = kw[k]
        assert v.dtype == copy.dtype and v.shape == copy.shape and v.tobytes() == raw, \
            f"argument {k!r} was modified by the call"


def call(spec, kw, inplace=()):
    """spec.fn(**kw), checking that no ndarray argument (other than those
    named in `inplace`) changed, whether or not the call raised."""
    fn = spec.fn
    snap = _snapshot({k: v for k, v in kw.items() if k not in OUT_NAMES})
    try:
        return fn(**kw)
    finally:
        _assert_unchanged(kw, snap, skip=inplace)


def expect_error(spec, kw, exc, name):
    """The call raises `exc` whose message names `name`; inputs unchanged."""
    with pytest.raises(exc) as info:
        call(spec, kw)
    assert name.lower() in str(info.value).lower(), \
        f"message does not name {name!r}: {info.value}"
    return info.value


def expected(spec, kw):
    try:
        return spec.reference(kw)
    except NoReference as exc:
        pytest.skip(f"bce_fast._reference.{exc} does not exist yet")


def check_result(got, exp, dtype):
    """`got` matches the float64 reference `exp` (same structure) in `dtype`."""
    if isinstance(exp, tuple):
        assert isinstance(got, tuple) and len(got) == len(exp)
        for g, e in zip(got, exp):
            check_result(g, e, dtype)
        return
    if isinstance(got, np.ndarray):
        assert_close(got, exp, dtype)
    else:
        assert_reduced_close(got, exp, dtype)


def check_call(spec, kw, dtype, inplace=()):
    """Call, compare with the reference computed from copies of the
    arguments (taken before an in-place call overwrites them)."""
    ref_kw = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    exp = expected(spec, ref_kw)
    got = call(spec, kw, inplace=inplace)
    check_result(got, exp, dtype)
    return got


def valid(spec, rng, dtype=np.float64, shape=SHAPE):
    spec.fn     # skip before building arguments when the function is missing
    return spec.make(rng, dtype, shape)


# ------------------------------------------------------------ the tests


@pytest.mark.parametrize("spec", SPECS, ids=_ids(SPECS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_valid_call_matches_reference(spec, dtype, rng):
    """The baseline every other case perturbs."""
    check_call(spec, valid(spec, rng, dtype), dtype)


BAD_FLOAT_KINDS = {
    "int64": lambda a: np.round(a).astype(np.int64),
    "uint8": lambda a: (np.abs(a) > 0.5).astype(np.uint8),
    "bool": lambda a: a > 0.5,
    "complex": lambda a: a.astype(np.complex128),
    "object": lambda a: a.astype(object),
    "str": lambda a: a.astype(str),
    "int-list": lambda a: np.round(a).astype(int).tolist(),
    "datetime": lambda a: np.zeros(a.shape, "datetime64[s]"),
}


@pytest.mark.parametrize("kind", list(BAD_FLOAT_KINDS))
@pytest.mark.parametrize("spec,arg", _arg_cases(SPECS, "floats"))
def test_logits_must_be_floating(spec, arg, kind, rng):
    kw = valid(spec, rng)
    kw[arg] = BAD_FLOAT_KINDS[kind](kw[arg])
    expect_error(spec, kw, TypeError, arg)


@pytest.mark.parametrize("kind", ["complex", "object", "str", "datetime"])
@pytest.mark.parametrize("spec,arg", _arg_cases(SPECS, "targets") + _arg_cases(SPECS, "sides"))
def test_targets_and_weights_must_be_real_numbers(spec, arg, kind, rng):
    kw = valid(spec, rng)
    kw[arg] = BAD_FLOAT_KINDS[kind](kw[arg])
    expect_error(spec, kw, TypeError, arg)


@pytest.mark.parametrize("tdtype", [np.int8, np.uint8, np.int32, np.int64, np.bool_])
@pytest.mark.parametrize("spec,arg", _arg_cases(BINARY, "targets") + _arg_cases(BINARY, "sides"))
def test_integer_and_bool_targets_weights_are_cast(spec, arg, tdtype, rng):
    kw = valid(spec, rng, np.float32)
    kw[arg] = kw[arg].round().astype(tdtype)
    check_call(spec, kw, np.float32)


@pytest.mark.parametrize("tdtype", [np.int8, np.uint8, np.int16, np.int32, np.uint32,
                                    np.int64, np.uint64])
@pytest.mark.parametrize("spec", CE_LIKE, ids=_ids(CE_LIKE))
def test_class_index_targets_of_any_integer_dtype(spec, tdtype, rng):
    kw = valid(spec, rng)
    kw["target"] = kw["target"].astype(tdtype)
    check_call(spec, kw, np.float64)


def _broadcasts(shape, to):
    try:
        return np.broadcast_shapes(shape, to) == tuple(to)
    except ValueError:
        return False


def _wrong_shapes(shape):
    return {
        "extra-leading": (2,) + shape,
        "last+1": shape[:-1] + (shape[-1] + 1,),
        "transposed": shape[::-1],
    }


@pytest.mark.parametrize("variant", ["extra-leading", "last+1", "transposed", "0d", "1d-long"])
@pytest.mark.parametrize("spec,arg", _arg_cases(SPECS, "targets"))
def test_target_shape_mismatch(spec, arg, variant, rng):
    kw = valid(spec, rng)
    shape = kw[arg].shape
    if variant == "0d":
        bad = kw[arg].reshape(-1)[0].copy()
    elif variant == "1d-long":
        bad = np.resize(kw[arg], 2 * kw[arg].size + 1)
    else:
        new = _wrong_shapes(shape)[variant]
        if new == shape:
            pytest.skip("not a different shape here")
        bad = np.resize(kw[arg], new)
    kw[arg] = bad
    expect_error(spec, kw, ValueError, arg)


@pytest.mark.parametrize("variant", ["extra-leading", "last+1", "transposed"])
@pytest.mark.parametrize("spec,arg", _arg_cases(SPECS, "sides"))
def test_side_array_may_not_enlarge_or_mismatch(spec, arg, variant, rng):
    """weight / pos_weight / sample_weight broadcast to the input's shape but
    never enlarge it, and incompatible shapes are refused."""
    kw = valid(spec, rng)
    full = np.broadcast_shapes(kw[arg].shape, spec.target_shape(SHAPE)
                               if arg == "sample_weight" and spec.family == "softmax"
                               else SHAPE)
    new = _wrong_shapes(full)[variant]
    if variant == "transposed" and _broadcasts(new, full):
        pytest.skip("transposed shape still broadcasts")
    kw[arg] = np.ones(new)
    expect_error(spec, kw, ValueError, arg)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1.5, -0.25, -1e-300])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("spec", [s for s in BINARY if s.probs], ids=_ids([s for s in BINARY if s.probs]))
def test_probabilities_outside_0_1_raise(spec, reduction, bad, rng):
    kw = valid(spec, rng)
    kw["reduction"] = reduction
    kw["input"] = kw["input"].copy()
    kw["input"][1, 2] = bad
    expect_error(spec, kw, ValueError, "input")


@pytest.mark.parametrize("spec", [s for s in BINARY if s.probs], ids=_ids([s for s in BINARY if s.probs]))
def test_probability_error_leaves_in_place_input_alone_when_out_differs(spec, rng):
    """A domain error with a separate out= buffer: the input is unchanged
    (checked by `call`), the error names input."""
    kw = valid(spec, rng)
    kw["reduction"] = "none"
    kw["input"][0, 0] = np.nan
    for o in spec.outs:
        kw[o] = np.empty(SHAPE)
    expect_error(spec, kw, ValueError, "input")


NONFINITE = [np.nan, np.inf, -np.inf]
PROBS = [s for s in BINARY if s.probs]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1.5, -0.25], ids=str)
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("spec", PROBS, ids=_ids(PROBS))
def test_bce_targets_outside_0_1_raise(spec, reduction, bad, rng):
    """BCE on probabilities: targets must lie in [0, 1] too (PyTorch 2.13)."""
    kw = valid(spec, rng)
    kw["reduction"] = reduction
    kw["target"][2, 1] = bad
    expect_error(spec, kw, ValueError, "target")


@pytest.mark.parametrize("spec", PROBS, ids=_ids(PROBS))
def test_bce_domain_error_in_place_leaves_input_untouched(spec, rng):
    """out= is the input itself and an element is invalid: the error is
    raised and the input keeps its values (no partial write)."""
    kw = valid(spec, rng)
    kw["reduction"] = "none"
    kw["input"][2, 4] = 2.0
    kw["out"] = kw["input"]
    expect_error(spec, kw, ValueError, "input")


@pytest.mark.parametrize("bad", NONFINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("spec,arg",
                         [p for p in _arg_cases(BINARY, "targets") + _arg_cases(BINARY, "sides")
                          + _arg_cases(BINARY, "floats")
                          if not (p.values[0].probs and p.values[1] in ("input", "target"))])
def test_nonfinite_values_are_computed(spec, arg, bad, rng):
    """NaN/inf in targets, weights and logits propagate the IEEE way (the
    result equals the reference's, NaN where it has NaN)."""
    if arg in spec.sides and np.isinf(bad) and "grad" in spec.name:
        pytest.skip("infinite weight: the kernels give NaN gradients where "
                    "w * (...) in the reference gives inf (0 * inf ordering); "
                    "the loss itself is NaN in both")
    kw = valid(spec, rng)
    if spec.reduction:
        kw["reduction"] = "none"
    kw[arg] = np.array(kw[arg], dtype=np.float64)
    kw[arg].reshape(-1)[1] = bad
    check_call(spec, kw, np.float64)


@pytest.mark.parametrize("shape", [(0,), (0, 5), (4, 0), (0, 0)], ids=str)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("spec", BINARY, ids=_ids(BINARY))
def test_empty_arrays(spec, reduction, shape, rng):
    if not spec.reduction and reduction != "none":
        pytest.skip("no reduction argument")
    kw = spec.make(rng, np.float32, shape)
    if spec.reduction:
        kw["reduction"] = reduction
    got = check_call(spec, kw, np.float32)
    if reduction == "mean":
        loss = got[0] if isinstance(got, tuple) else got
        assert np.isnan(loss)


@pytest.mark.parametrize("shape", [(0, 5), (4, 0)], ids=["no-rows", "no-classes"])
@pytest.mark.parametrize("spec", [BY_NAME["softmax"], BY_NAME["log_softmax"]],
                         ids=["softmax", "log_softmax"])
def test_softmax_empty_arrays(spec, shape, rng):
    kw = valid(spec, rng, np.float64, shape)
    got = check_call(spec, kw, np.float64)
    assert got.shape == shape


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("spec", CE_LIKE, ids=_ids(CE_LIKE))
def test_ce_empty_batch(spec, reduction, rng):
    kw = valid(spec, rng, np.float64, (0, 5))
    kw["reduction"] = reduction
    got = check_call(spec, kw, np.float64)
    loss = got[0] if isinstance(got, tuple) else got
    if reduction == "mean":
        assert np.isnan(loss)
    elif reduction == "sum":
        assert loss == 0


@pytest.mark.parametrize("spec", CE_LIKE, ids=_ids(CE_LIKE))
def test_ce_zero_classes_any_target_is_out_of_bounds(spec, rng):
    spec.fn
    kw = {"input": np.zeros((3, 0)), "target": np.zeros(3, np.int64)}
    expect_error(spec, kw, IndexError, "target")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("spec", BINARY, ids=_ids(BINARY))
def test_zero_d_inputs(spec, reduction, rng):
    if not spec.reduction and reduction != "none":
        pytest.skip("no reduction argument")
    kw = {k: (np.asarray(v) if isinstance(v, np.generic) else v)
          for k, v in spec.make(rng, np.float64, ()).items()}
    assert all(v.ndim == 0 for v in kw.values() if isinstance(v, np.ndarray))
    if spec.reduction:
        kw["reduction"] = reduction
    got = check_call(spec, kw, np.float64)
    first = got[0] if isinstance(got, tuple) else got
    if reduction == "none":
        assert isinstance(first, np.ndarray) and first.shape == ()


@pytest.mark.parametrize("value", BAD_REDUCTIONS, ids=repr)
@pytest.mark.parametrize("spec", WITH_REDUCTION, ids=_ids(WITH_REDUCTION))
def test_bad_reduction(spec, value, rng):
    kw = valid(spec, rng)
    kw["reduction"] = value
    err = expect_error(spec, kw, ValueError, "reduction")
    assert f"{value!r} is not a valid value for reduction" in str(err)


# ------------------------------------------------------------- out=


def _out_kw(spec, rng, out_name, dtype=np.float64):
    """Valid arguments with reduction='none' and the expected shape of
    `out_name`'s result."""
    kw = valid(spec, rng, dtype)
    if spec.reduction:
        kw["reduction"] = "none"
    exp = expected(spec, kw)
    idx = spec.outs[out_name]
    shape = np.shape(exp if idx is None else exp[idx])
    return kw, shape


@pytest.mark.parametrize("spec,out_name", WITH_OUT, ids=[f"{s.name}-{o}" for s, o in WITH_OUT])
def test_out_wrong_shape(spec, out_name, rng):
    kw, shape = _out_kw(spec, rng, out_name)
    for bad in [shape + (1,), shape[::-1] if shape[::-1] != shape else (1,) + shape,
                (), (int(np.prod(shape)),)]:
        if tuple(bad) == tuple(shape):
            continue
        kw[out_name] = np.empty(bad)
        expect_error(spec, kw, ValueError, out_name)


@pytest.mark.parametrize("bad_dtype", [np.float32, np.float16, np.int64, np.complex128,
                                       ">f8"], ids=str)
@pytest.mark.parametrize("spec,out_name", WITH_OUT, ids=[f"{s.name}-{o}" for s, o in WITH_OUT])
def test_out_wrong_dtype(spec, out_name, bad_dtype, rng):
    kw, shape = _out_kw(spec, rng, out_name)
    kw[out_name] = np.empty(shape, dtype=bad_dtype)
    expect_error(spec, kw, TypeError, out_name)


@pytest.mark.parametrize("spec,out_name", WITH_OUT, ids=[f"{s.name}-{o}" for s, o in WITH_OUT])
def test_out_not_an_ndarray(spec, out_name, rng):
    kw, shape = _out_kw(spec, rng, out_name)
    kw[out_name] = np.empty(shape).tolist()
    expect_error(spec, kw, TypeError, out_name)


@pytest.mark.parametrize("spec,out_name", WITH_OUT, ids=[f"{s.name}-{o}" for s, o in WITH_OUT])
def test_out_read_only(spec, out_name, rng):
    kw, shape = _out_kw(spec, rng, out_name)
    out = np.zeros(shape)
    out.flags.writeable = False
    kw[out_name] = out
    expect_error(spec, kw, ValueError, out_name)
    assert not out.any()


@pytest.mark.parametrize("spec,out_name", [(s, o) for s, o in WITH_OUT if s.reduction],
                         ids=[f"{s.name}-{o}" for s, o in WITH_OUT if s.reduction])
def test_loss_out_with_reduced_loss_is_refused(spec, out_name, rng):
    if out_name != "out":
        pytest.skip("grad_out is used with every reduction")
    kw, shape = _out_kw(spec, rng, out_name)
    kw["reduction"] = "mean"
    kw[out_name] = np.empty(shape)
    expect_error(spec, kw, ValueError, out_name)


def _overlap_cases():
    cases = []
    for s, o in WITH_OUT:
        for a in s.floats + s.targets + s.sides:
            cases.append(pytest.param(s, o, a, id=f"{s.name}-{o}-over-{a}"))
    return cases


@pytest.mark.parametrize("spec,out_name,arg", _overlap_cases())
def test_out_partly_overlapping_an_input(spec, out_name, arg, rng):
    """out= shares memory with an input without being that input: refused
    before anything is written (the input is unchanged)."""
    kw, shape = _out_kw(spec, rng, out_name)
    a = np.asarray(kw[arg])
    if a.dtype != np.float64 or a.size < 2:
        pytest.skip("argument is not a float64 array here")
    n = max(a.size, int(np.prod(shape)))
    buf = np.zeros(n + 1)
    buf[:a.size] = a.reshape(-1)
    kw[arg] = buf[:a.size].reshape(a.shape)
    out = buf[1:1 + int(np.prod(shape))].reshape(shape)
    before = out.copy()
    kw[out_name] = out
    expect_error(spec, kw, ValueError, out_name)
    np.testing.assert_array_equal(out, before)


@pytest.mark.parametrize("spec", [s for s in SPECS if len(s.outs) == 2],
                         ids=_ids([s for s in SPECS if len(s.outs) == 2]))
@pytest.mark.parametrize("how", ["same", "partial"])
def test_out_and_grad_out_must_not_overlap(spec, how, rng):
    """The loss and the gradient cannot share a buffer: one would overwrite
    the other and return a silently wrong number."""
    kw, lshape = _out_kw(spec, rng, "out")
    _, gshape = _out_kw(spec, rng, "grad_out")
    if how == "same":
        if lshape != gshape:
            pytest.skip("loss and gradient have different shapes")
        out = grad = np.zeros(gshape)
    else:
        n = int(np.prod(gshape))
        buf = np.zeros(n + int(np.prod(lshape)))
        grad = buf[:n].reshape(gshape)
        out = buf[1:1 + int(np.prod(lshape))].reshape(lshape)
    kw["out"], kw["grad_out"] = out, grad
    with pytest.raises(ValueError, match="out"):
        call(spec, kw)


@pytest.mark.parametrize("layout", ["strided", "negstride", "fortran"])
@pytest.mark.parametrize("spec,out_name", WITH_OUT, ids=[f"{s.name}-{o}" for s, o in WITH_OUT])
def test_out_non_contiguous_works(spec, out_name, layout, rng):
    kw, shape = _out_kw(spec, rng, out_name)
    out = with_layout(np.full(shape, -7.0), layout)
    kw[out_name] = out
    got = check_call(spec, kw, np.float64)
    idx = spec.outs[out_name]
    assert (got if idx is None else got[idx]) is out


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=["f32", "f64", "f16"])
@pytest.mark.parametrize("spec,out_name", WITH_OUT, ids=[f"{s.name}-{o}" for s, o in WITH_OUT])
def test_out_in_place_on_the_input(spec, out_name, dtype, rng):
    """out= may be exactly the (first) input: the result is computed from
    the original values."""
    kw, shape = _out_kw(spec, rng, out_name, dtype)
    arg = spec.floats[0]
    if kw[arg].shape != shape:
        pytest.skip("output and input shapes differ")
    kw[out_name] = kw[arg]
    got = check_call(spec, kw, dtype, inplace=(arg,))
    idx = spec.outs[out_name]
    assert (got if idx is None else got[idx]) is kw[arg]


# ------------------------------------------------------ layouts and types


LAYOUT_CASES = ["strided", "negstride", "readonly", "bigendian", "fortran"]


@pytest.mark.parametrize("layout", LAYOUT_CASES)
@pytest.mark.parametrize("spec,arg", _arg_cases(SPECS, "floats") + _arg_cases(SPECS, "targets")
                         + _arg_cases(SPECS, "sides"))
def test_layouts(spec, arg, layout, rng):
    """Non-native byte order, Fortran order, negative strides, strided and
    read-only views of each argument give the same result."""
    kw = valid(spec, rng, np.float32)
    if kw[arg] is None or np.ndim(kw[arg]) == 0:
        pytest.skip("scalar argument")
    kw[arg] = with_layout(kw[arg], layout)
    check_call(spec, kw, np.float32)


@pytest.mark.parametrize("spec", SPECS, ids=_ids(SPECS))
def test_all_arguments_non_native_and_negative_strides(spec, rng):
    kw = valid(spec, rng, np.float64)
    for k, v in kw.items():
        if isinstance(v, np.ndarray) and v.ndim:
            kw[k] = with_layout(with_layout(v, "bigendian"), "negstride")
    check_call(spec, kw, np.float64)


@pytest.mark.parametrize("spec", SPECS, ids=_ids(SPECS))
def test_memory_mapped_read_only_npy(spec, rng, tmp_path):
    kw = valid(spec, rng, np.float32)
    for k, v in list(kw.items()):
        if isinstance(v, np.ndarray):
            path = tmp_path / f"{k}.npy"
            np.save(path, v)
            kw[k] = np.load(path, mmap_mode="r")
            assert isinstance(kw[k], np.memmap) and not kw[k].flags.writeable
    check_call(spec, kw, np.float32)


@pytest.mark.parametrize("spec", SPECS, ids=_ids(SPECS))
def test_python_lists(spec, rng):
    kw = valid(spec, rng, np.float64)
    ref_kw = dict(kw)
    kw = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    exp = expected(spec, ref_kw)
    check_result(call(spec, kw), exp, np.float64)


@pytest.mark.parametrize("spec", BINARY, ids=_ids(BINARY))
def test_python_scalars(spec, rng):
    kw = spec.make(rng, np.float64, ())
    ref_kw = dict(kw)
    kw = {k: (v.item() if isinstance(v, (np.ndarray, np.generic)) else v)
          for k, v in kw.items()}
    assert all(type(v) in (float, str) for v in kw.values())
    exp = expected(spec, ref_kw)
    check_result(call(spec, kw), exp, np.float64)


def test_python_float_weight_keeps_float32(rng):
    """A Python float side argument does not promote float32 (NEP 50 weak
    scalars), a float64 array does."""
    spec = BY_NAME["binary_cross_entropy_with_logits"]
    kw = valid(spec, rng, np.float32)
    kw["weight"] = 0.5
    check_call(spec, kw, np.float32)
    kw["weight"] = np.float64(0.5)
    assert call(spec, kw).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("spec", SPECS, ids=_ids(SPECS))
def test_torch_tensors(spec, dtype, rng):
    torch = pytest.importorskip("torch")
    kw = valid(spec, rng, dtype)
    ref_kw = dict(kw)
    tkw = {k: (torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v)
           for k, v in kw.items()}
    before = {k: v.clone() for k, v in tkw.items() if isinstance(v, torch.Tensor)}
    got = spec.fn(**tkw)
    check_result(got, expected(spec, ref_kw), dtype)
    for k, v in before.items():
        assert torch.equal(tkw[k], v), f"tensor {k!r} was modified"


@pytest.mark.parametrize("spec,arg", _arg_cases(SPECS, "floats") + _arg_cases(SPECS, "sides"))
def test_torch_tensor_requiring_grad(spec, arg, rng):
    """A tensor that requires grad: a TypeError naming the argument, or the
    correct result -- never a crash."""
    torch = pytest.importorskip("torch")
    kw = valid(spec, rng)
    exp = expected(spec, kw)
    kw[arg] = torch.from_numpy(kw[arg].copy()).requires_grad_(True)
    try:
        got = spec.fn(**kw)
    except TypeError as exc:
        assert arg in str(exc)
    else:
        check_result(got, exp, np.float64)


def test_torch_non_contiguous_and_int_targets(rng):
    torch = pytest.importorskip("torch")
    spec = BY_NAME["binary_cross_entropy_with_logits"]
    kw = valid(spec, rng, np.float32)
    exp = expected(spec, kw)
    kw["input"] = torch.from_numpy(kw["input"].T.copy()).T       # transposed view
    kw["target"] = torch.from_numpy(kw["target"].astype(np.int64))
    check_result(spec.fn(**kw), exp, np.float32)


# ------------------------------------------------- softmax-family specifics


@pytest.mark.parametrize("bad", [-1, 5, 6, 2**31, 2**40, -(2**40), -101])
@pytest.mark.parametrize("spec", CE_LIKE, ids=_ids(CE_LIKE))
def test_class_index_out_of_range(spec, bad, rng):
    kw = valid(spec, rng)
    kw["target"] = kw["target"].copy()
    kw["target"][1] = bad
    err = expect_error(spec, kw, IndexError, "target")
    assert str(bad) in str(err)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("spec", CE_LIKE, ids=_ids(CE_LIKE))
def test_ignore_index_rows_are_skipped(spec, reduction, rng):
    kw = valid(spec, rng)
    kw["reduction"] = reduction
    kw["target"][1] = -100
    check_call(spec, kw, np.float64)
    kw["ignore_index"] = 2**40           # huge ignore_index is just a value
    kw["target"][1] = 2**40
    check_call(spec, kw, np.float64)


@pytest.mark.parametrize("spec", CE_LIKE, ids=_ids(CE_LIKE))
def test_float_targets_that_are_not_probabilities(spec, rng):
    """Float class indices (shape of input minus the class axis) are neither
    valid indices nor a probability array of input's shape."""
    kw = valid(spec, rng)
    kw["target"] = kw["target"].astype(np.float64)
    with pytest.raises((TypeError, ValueError)) as info:
        call(spec, kw)
    assert "target" in str(info.value).lower()


@pytest.mark.parametrize("axis", [2, -3, 1.5, "1"])
@pytest.mark.parametrize("spec", [BY_NAME["softmax"], BY_NAME["log_softmax"],
                                  BY_NAME["cross_entropy"]],
                         ids=["softmax", "log_softmax", "cross_entropy"])
def test_bad_axis(spec, axis, rng):
    kw = valid(spec, rng)
    kw["axis"] = axis
    with pytest.raises((TypeError, ValueError, IndexError)) as info:
        call(spec, kw)
    assert "axis" in str(info.value).lower()


@pytest.mark.parametrize("eps", [-0.1, 1.5, np.nan, np.inf])
@pytest.mark.parametrize("spec", [BY_NAME["cross_entropy"], BY_NAME["cross_entropy_and_grad"]],
                         ids=["cross_entropy", "cross_entropy_and_grad"])
def test_bad_label_smoothing(spec, eps, rng):
    kw = valid(spec, rng)
    kw["label_smoothing"] = eps
    expect_error(spec, kw, ValueError, "label_smoothing")


@pytest.mark.parametrize("value", [1.5, "x", None])
@pytest.mark.parametrize("spec", CE_LIKE, ids=_ids(CE_LIKE))
def test_bad_ignore_index(spec, value, rng):
    kw = valid(spec, rng)
    kw["ignore_index"] = value
    with pytest.raises((TypeError, ValueError)) as info:
        call(spec, kw)
    assert "ignore_index" in str(info.value)


@pytest.mark.parametrize("spec", [BY_NAME["cross_entropy"], BY_NAME["cross_entropy_and_grad"]],
                         ids=["cross_entropy", "cross_entropy_and_grad"])
def test_probability_targets_with_nonnegative_ignore_index(spec, rng):
    kw = valid(spec, rng)
    kw["target"] = rng.dirichlet(np.ones(SHAPE[1]), SHAPE[0])
    kw["ignore_index"] = 0
    expect_error(spec, kw, ValueError, "ignore_index")


@pytest.mark.parametrize("spec", CE_LIKE, ids=_ids(CE_LIKE))
def test_uint64_index_wrapping_to_ignore_index(spec, rng):
    """Regression: uint64 indices >= 2**63 were cast unchecked to int64, so
    2**64 - 100 became -100 == ignore_index and the row was silently
    ignored."""
    kw = valid(spec, rng)
    kw["reduction"] = "none"
    kw["target"] = kw["target"].astype(np.uint64)
    kw["target"][0] = np.uint64(2**64 - 100)
    expect_error(spec, kw, IndexError, "target")


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**70])
@pytest.mark.parametrize("spec", CE_LIKE, ids=_ids(CE_LIKE))
def test_ignore_index_outside_int64(spec, value, rng):
    """An ignore_index no int64 can hold matches no target: either a clear
    error naming ignore_index or the result with nothing ignored.
    (Regression: it reached the binding and raised an unnamed OverflowError.)"""
    kw = valid(spec, rng)
    kw["ignore_index"] = value
    try:
        got = call(spec, kw)
    except (TypeError, ValueError, OverflowError) as exc:
        assert "ignore_index" in str(exc), f"message does not name ignore_index: {exc}"
    else:
        kw["ignore_index"] = -100
        check_result(got, expected(spec, kw), np.float64)


# ------------------------------------------------------------- runtime


@pytest.mark.parametrize("n", [0, -1, 1.5, True, "2", None, 2**40])
def test_set_num_threads_rejects_bad_values(n):
    before = bce_fast.get_num_threads()
    if n == 2**40:
        # huge but valid: capped by OpenMP's limit, not an error
        try:
            bce_fast.set_num_threads(n)
        except (ValueError, OverflowError) as exc:
            assert "n" in str(exc)
        finally:
            bce_fast.set_num_threads(before)
        assert bce_fast.get_num_threads() == before
        return
    with pytest.raises((TypeError, ValueError)) as info:
        bce_fast.set_num_threads(n)
    assert "n:" in str(info.value) or "n " in str(info.value)
    assert bce_fast.get_num_threads() == before


def test_bad_isa_environment_variable_warns_and_falls_back():
    import subprocess
    import sys
    env = dict(__import__("os").environ, BCE_FAST_ISA="avx9000")
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c",
                           "import bce_fast"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "BCE_FAST_ISA" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", "import bce_fast; print(bce_fast.isa())"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() in ("baseline", "avx2", "avx512")


@pytest.mark.parametrize("kwargs, name", [
    ({"label_smoothing": "0.1"}, "label_smoothing"),
    ({"label_smoothing": True}, "label_smoothing"),
    ({"axis": True}, "axis"),
    ({"ignore_index": True}, "ignore_index"),
], ids=["eps-str", "eps-bool", "axis-bool", "ignore-bool"])
def test_cross_entropy_rejects_lenient_arguments(kwargs, name):
    """Strings and bools are not numbers here (float("0.1") and
    operator.index(True) would otherwise accept them)."""
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match=name):
        bce_fast.cross_entropy(x, np.array([0, 1]), **kwargs)
