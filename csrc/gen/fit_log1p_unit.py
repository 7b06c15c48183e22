"""Derive the float32 coefficients of bf_log1p_unit_f32 (csrc/bf_math.h).

log1p(e) = e - e^2 R(e) on [0, 1], R(e) = (e - log1p(e)) / e^2, with R
approximated by a polynomial of degree DEG in u = e - 1/2.  The fit minimises
the maximum relative error of R over Chebyshev nodes by Lawson's iteratively
reweighted least squares; the coefficients are then rounded to float32 and
the whole float32 evaluation (Horner with FMA, then fma(-e*e, R, e)) is
checked against a float64 log1p.  Run:  python csrc/gen/fit_log1p_unit.py
Needs numpy and mpmath (both in the `test` extra).
"""
import mpmath as mp
import numpy as np

DEG = 9
NODES = 4000


def r_exact(e):
    e = mp.mpf(e)
    return mp.mpf(1) / 2 if e == 0 else (e - mp.log1p(e)) / e**2


def fit():
    mp.mp.dps = 40
    t = np.cos(np.pi * (np.arange(NODES) + 0.5) / NODES)
    u = t / 2
    r = np.array([float(r_exact(v + 0.5)) for v in u])
    v = np.vander(u, DEG + 1, increasing=True) / r[:, None]
    w = np.full(NODES, 1.0 / NODES)
    for _ in range(300):
        s = np.sqrt(w)
        c, *_ = np.linalg.lstsq(v * s[:, None], s, rcond=None)
        err = v @ c - 1
        w = w * np.abs(err)
        w /= w.sum()
    return c, np.abs(err).max()


def fma32(a, b, c):
    """float32 fma: the float64 product of two floats is exact."""
    return (a.astype(np.float64) * b + c).astype(np.float32)


def check(c32):
    rng = np.random.default_rng(1)
    e = np.concatenate([rng.random(3_000_000, dtype=np.float32),
                        (2.0 ** -rng.uniform(0, 30, 1_000_000)).astype(np.float32),
                        np.float32(1) - rng.random(500_000, dtype=np.float32) / 1000,
                        np.array([0, 1], np.float32)])
    u = e - np.float32(0.5)
    r = np.full_like(e, c32[-1])
    for k in range(DEG - 1, -1, -1):
        r = fma32(r, u, np.float32(c32[k]))
    got = fma32(-(e * e), r, e).astype(np.float64)
    exact = np.log1p(e.astype(np.float64))
    ulp = np.spacing(np.maximum(exact, 1e-45).astype(np.float32)).astype(np.float64)
    return (np.abs(got - exact) / ulp).max()


if __name__ == "__main__":
    c, rel = fit()
    c32 = c.astype(np.float32)
    print(f"degree {DEG}: max relative error of R {rel:.2e}; "
          f"float32 log1p within {check(c32):.2f} ULP")
    for k in range(DEG, -1, -1):
        print(f"  u^{k}: {c32[k]:.10e}f")
