/*
 * bf_binary.h -- kernel bodies of the elementwise family (sigmoid,
 * log-sigmoid, BCE on logits, BCE on probabilities), written once.
 *
 * Included by bf_isa_body.h with T = float / double and BF_FN(name) naming
 * the per-type function, inside a translation unit compiled for one
 * instruction set.  Each chunk function walks its range in tiles of BF_TILE
 * elements (fewer only at the chunk's end; a tile may span rows, so short
 * rows do not mean short vector loops), gathers broadcast side arrays for the
 * tile into a buffer, computes it with a `#pragma omp simd` loop over inline
 * element functions, and adds the tile's losses into 16 double lanes in a
 * fixed order (tile_lanes_add).
 *
 * Formulas (one per quantity, shared by loss and gradient):
 *   e = exp(-|x|),  L = log1p(e)
 *   softplus(x)  = max(x, 0)  + L,   softplus(-x) = max(-x, 0) + L
 *   sigmoid(x)   = (x >= 0 ? 1 : e) / (1 + e)   (bf_ratio1p: one rounding)
 *   BCE-logits   = c0 softplus(x) + c1 softplus(-x),  c0 = w (1 - y), c1 = w pw y
 *                = (c0 + c1) L + (x >= 0 ? c0 : c1) |x|
 *                  (both terms non-negative for y in [0, 1]: no cancellation,
 *                  unlike max(x,0) - x y + L; a zero coefficient gives 0 even
 *                  when |x| is inf)
 *   its gradient = c0 sigmoid(x) - c1 sigmoid(-x),
 *   its Hessian  = w s (1 - s), s = sigmoid(-|x|);
 *                  weighted, beyond |x| = 87 / 708, where exp(-|x|) is
 *                  subnormal, each product of a coefficient by it is rounded
 *                  once (bce_logits_fix_tail, in the rare tiles with such x)
 *   BCE-probs    = -w (y max(log p, -100) + (1 - y) max(log(1 - p), -100)),
 *                  gradient w (p - y) / max(p (1 - p), 1e-12)  (PyTorch's clamps;
 *                  targets outside [0, 1] are an error, as in PyTorch);
 *                  a tile whose targets are all 0 or 1 takes one logarithm
 *                  per element, of p or of 1 - p, instead of two
 */

#define BF_SIDE BF_FN(side)
#ifndef BF_BCE_CHECK_IN_LOSS        /* set by the bf_isa_*.c file (see bce_pass) */
#define BF_BCE_CHECK_IN_LOSS 0
#endif
/* Clamp bounds opaque to gcc (why: bf_math.h) */
#define BF_EXP_FLOOR ((T)(sizeof(T) == 4 ? bf_exp_floor_f32 : bf_exp_floor_f64))
#define BF_LOG_FLOOR ((T)bf_bce_log_floor)
#define BF_DEN_FLOOR ((T)bf_bce_den_floor)

/* Side-array values (weight, pos_weight, grad_output) of the flat elements [off, off+m):
 * the array itself where it is laid out like the input (so = row, si = 1),
 * else assembled in buf (BF_TILE long) one row segment at a time -- a row
 * reads either a run of the array (si = 1: a per-class vector, so = 0) or
 * one value (si = 0: a per-row or a single weight).  NULL reads as 1.  A
 * single value fills buf once per chunk (*filled): refilled for every tile,
 * it cost a fifth of a call with a scalar pos_weight. */
static inline const T *BF_SIDE(const void *base, int64_t so, int64_t si, int64_t row,
                               int64_t off, int64_t m, T *buf, int *filled)
{
    const T *s = (const T *)base;
    if (s != NULL && si != 0 && so == row)
        return s + off;
    if (s == NULL || (so == 0 && si == 0)) {
        if (!*filled) {
            T v = s != NULL ? s[0] : (T)1;
            for (int64_t j = 0; j < BF_TILE; j++)
                buf[j] = v;
            *filled = 1;
        }
        return buf;
    }
    int64_t r = off / row, c = off % row;
    for (int64_t j = 0; j < m; r++, c = 0) {
        int64_t len = row - c < m - j ? row - c : m - j;
        const T *src = s + r * so;
        if (si != 0)
            for (int64_t k = 0; k < len; k++)
                buf[j + k] = src[c + k];
        else
            for (int64_t k = 0; k < len; k++)
                buf[j + k] = src[0];
        j += len;
    }
    return buf;
}

/* Length of the tile starting at flat offset off: BF_TILE, or up to the
 * end of the chunk. */
static inline int64_t BF_FN(tile_len)(int64_t off, int64_t hi)
{
    return hi - off < BF_TILE ? hi - off : BF_TILE;
}

/* acc[j] += the elements of v[0..n) at j mod BF_LANES (as BF_LANES_ADD); a
 * full tile is first summed in T by a fixed pairwise tree down to BF_LANES
 * values (in float32 at most four roundings on a lane) unless `in_double`.
 * Converting every float32 loss to double on its way into acc cost 9% of
 * BCE-with-logits on Zen 4; what the tree costs in range is taken back by
 * sums_in_double_if_inf. */
static inline void BF_FN(tile_lanes_add)(double *acc, const T *v, int64_t n, int in_double)
{
    if (n != BF_TILE || in_double) {
        BF_LANES_ADD(acc, v, n);
        return;
    }
    T t[BF_TILE / 2];
    for (int64_t i = 0; i < BF_TILE / 2; i++)
        t[i] = v[i] + v[i + BF_TILE / 2];
    for (int64_t i = 0; i < BF_TILE / 4; i++)
        t[i] = t[i] + t[i + BF_TILE / 4];
    for (int64_t i = 0; i < BF_TILE / 8; i++)
        t[i] = t[i] + t[i + BF_TILE / 8];
    for (int64_t i = 0; i < BF_TILE / 16; i++)
        t[i] = t[i] + t[i + BF_TILE / 16];
    for (int j = 0; j < BF_LANES; j++)
        acc[j] += (double)t[j];
}

/* ---------------------------------------------------------------- sigmoid */

/* e[i] = exp(-|x[i]|) for a tile, in a loop of its own.  Every kernel below
 * takes e first and then a division or log1p of it; in one loop the two form
 * a dependency chain of about 90 cycles per vector (float32 BCE-with-logits:
 * a dozen dependent FMAs of 4 cycles in each), longer than Zen 4's FP
 * scheduler (about 64 operations, a vector and a half of this loop) can
 * overlap, so the chain and not the FMA pipes set the pace.  Two loops
 * through a buffer in L1 halve the chain (A/B at 1e5-1e6 elements, AVX-512:
 * BCE-with-logits 1.11-1.21x, log_sigmoid 1.15-1.25x, sigmoid 1.02-1.14x;
 * AVX2 and SSE2 1.22-1.42x).  Returns nonzero if every |x[i]| is at most
 * 86 / 707 (finite, not NaN). */
static inline int BF_FN(exp_neg_abs_tile)(const T *x, T *e, int64_t m)
{
    /* First with the exp for |x| <= 86 / 707 (bf_exp_neg_normal); a tile
     * with any |x| beyond, inf or NaN is taken again whole with the clamped
     * exp (its other elements come out the same) */
    BF_UT over = 0;
#pragma omp simd reduction(| : over)
    for (int64_t i = 0; i < m; i++) {
        T a = bf_fabs(x[i]);
        over |= bf_exp_normal_miss(a);
        e[i] = bf_exp_neg_normal(-a);
    }
    if (!bf_exp_normal_missed(over))
        return 1;
#pragma omp simd
    for (int64_t i = 0; i < m; i++)
        e[i] = bf_exp_neg_floor(-bf_fabs(x[i]), BF_EXP_FLOOR);
    return 0;
}

/* sigmoid(x) from x and e = exp(-|x|) */
BF_ALWAYS_INLINE T BF_FN(sigmoid_elem)(T x, T e)
{
    return bf_ratio1p(x >= 0 ? (T)1 : e, e);
}

/* log_sigmoid(x) = -softplus(-x) */
BF_ALWAYS_INLINE T BF_FN(log_sigmoid_elem)(T x, T e)
{
    return -((x < 0 ? -x : (T)0) + bf_log1p_unit_ls(e));
}

/* Chunk of an elementwise map out[i] = elem(x[i], exp(-|x[i]|)), tile by
 * tile; out may be x itself (each x[i] is read before out[i] is written). */
#define BF_MAP_CHUNK(name, elem)                                              \
    static int BF_FN(name)(const void *prob, int64_t lo, int64_t hi, double *partial) \
    {                                                                         \
        const bf_elementwise *p = (const bf_elementwise *)prob;               \
        const T *x = (const T *)p->x;                                         \
        T *out = (T *)p->out;                                                 \
        T e[BF_TILE];                                                         \
        int64_t m;                                                            \
        (void)partial;                                                        \
        for (int64_t off = lo; off < hi; off += m) {                          \
            m = BF_FN(tile_len)(off, hi);                                     \
            const T *xt = x + off;                                            \
            T *ot = out + off;                                                \
            BF_FN(exp_neg_abs_tile)(xt, e, m);                                \
            _Pragma("omp simd")                                               \
            for (int64_t i = 0; i < m; i++)                                   \
                ot[i] = BF_FN(elem)(xt[i], e[i]);                             \
        }                                                                     \
        return BF_OK;                                                         \
    }

BF_MAP_CHUNK(sigmoid_chunk, sigmoid_elem)
BF_MAP_CHUNK(log_sigmoid_chunk, log_sigmoid_elem)
#undef BF_MAP_CHUNK

/* ------------------------------------------------------- BCE with logits */

/* `weighted` is a constant at each call site: 0 without weight, pos_weight
 * and upstream gradient (the coefficients are 1 - y and y, and their sum is
 * exactly 1); 1 with weight and/or pos_weight; 2 with an upstream gradient u
 * (grad_output), which multiplies the gradient, weights or not (a missing
 * one reads as 1). */
BF_ALWAYS_INLINE void BF_FN(bce_logits_elem)(T x, T e, T y, T w, T pw, T u, T gs,
                                             int weighted, int finite, T *loss, T *grad,
                                             T *hess)
{
    T a = bf_fabs(x);
    T l = bf_log1p_unit(e);
    T c0 = weighted ? w * ((T)1 - y) : (T)1 - y;
    T c1 = weighted ? (w * pw) * y : y;
    /* c0 softplus(x) + c1 softplus(-x) = (c0 + c1) l + t |x|, t = x >= 0 ? c0 : c1,
     * with one FMA spelled out: left to contraction, l + t |x| was fused in
     * the loss-and-gradient loop and not in the loss-only one, whose losses
     * then differed in the last bit.  t = 0 leaves |x| = inf out; where the
     * constant `finite` promises every |x| finite, t |x| is a zero whose sum
     * with lcl is lcl (an lcl of -0 has t = -0), and the select is left out
     * (float32 BCE-with-logits 1.02-1.04x on Zen 4). */
    T t = x >= 0 ? c0 : c1;      /* x >= 0: the sigmoids' compare (at x = 0, t |x| = 0) */
    T lcl = weighted ? (c0 + c1) * l : l;
    *loss = t == 0 && !finite ? lcl : bf_fma(t, a, lcl);
    T d = (T)1 + e;
    /* sigmoid(-|x|) and sigmoid(|x|) = 1 - it, one division instead of two
     * (1 - small is exact or the rounding of the exact difference; worst
     * error unchanged, 2.3 ULP, mean 0.35 -> 0.28 ULP (float32); float64
     * gradient-and-Hessian 1.08x, where the divider was the bottleneck) */
    T small = e / d, big = (T)1 - small;
    T s_pos = x >= 0 ? big : small;             /* sigmoid(x)  */
    T s_neg = x >= 0 ? small : big;             /* sigmoid(-x) */
    *grad = (weighted == 2 ? gs * u : gs) * (c0 * s_pos - c1 * s_neg);
    /* sigmoid(x) sigmoid(-x) = small (1 - small), one FMA: the product
     * big small carried the rounding of d = fl(1 + e) twice (4.2 ULP
     * measured, 2.9 now) */
    *hess = (weighted ? w : (T)1) * bf_fma(-small, small, small);
}

/* |x| beyond which exp(-|x|) = e is subnormal or nearly (e^-87 = 1.6e-38,
 * e^-708 = 3.3e-308).  There 1 + e rounds to 1, so sigmoid(|x|) = 1 and
 * sigmoid(-|x|) = log1p(e) = e to all digits, and every quantity is a
 * coefficient times 1 or times e:
 *   loss = (c0 + c1) e + t |x|,  hess = w e,
 *   grad = gs (x >= 0 ? c0 - c1 e : c0 e - c1).
 * bce_logits_elem's products of e by a weight or upstream gradient above 1
 * magnify e's rounding error (half its ULP: float32 1e20 sigmoid(-103) came
 * out 24% low); bf_mul_exp_neg rounds each once.  Unweighted, the
 * coefficients 1 - y and y do not magnify for targets in [0, 1], and the
 * tail is left alone. */
#define BF_TAIL_X ((T)(sizeof(T) == 4 ? 87.0 : 708.0))

static inline void BF_FN(bce_logits_tail)(T x, T y, T w, T pw, T u, T gs,
                                          T *loss, T *grad, T *hess)
{
    T a = bf_fabs(x);
    T c0 = w * ((T)1 - y), c1 = (w * pw) * y;
    T t = x >= 0 ? c0 : c1;
    T g0 = c0 * u, g1 = c1 * u;         /* u = 1 without an upstream gradient */
    *loss = bf_mul_exp_neg(c0 + c1, -a) + (t == 0 ? (T)0 : t * a);
    *grad = gs * (x >= 0 ? g0 - bf_mul_exp_neg(g1, -a) : bf_mul_exp_neg(g0, -a) - g1);
    *hess = bf_mul_exp_neg(w, -a);
}

/* Rewrite the tail elements (finite |x| > BF_TAIL_X) of a weighted tile
 * that bce_logits_tile has written, from the tile's inputs (kept: an output
 * may be an input).  Rare, so scalar; the other elements keep the vector
 * loop's bits. */
__attribute__((cold, noinline))
static void BF_FN(bce_logits_fix_tail)(const T *x, const T *y, const T *w, const T *pw,
                                       const T *u, T gs, T *l, T *g, T *h, int64_t m)
{
    for (int64_t i = 0; i < m; i++) {
        T lv, gv, hv, a = bf_fabs(x[i]);
        if (!(a > BF_TAIL_X && a - a == 0))        /* a - a: NaN for inf */
            continue;
        BF_FN(bce_logits_tail)(x[i], y[i], w[i], pw[i], u[i], gs, &lv, &gv, &hv);
        if (h == NULL)
            l[i] = lv;
        if (g != NULL)
            g[i] = gv;
        if (h != NULL)
            h[i] = hv;
    }
}

/* max(top, |v|), NaN ignored */
BF_ALWAYS_INLINE T BF_FN(abs_max)(T top, T v)
{
    T a = bf_fabs(v);
    return a > top ? a : top;
}

/* bce_logits_tile's loops without the Hessian, e = exp(-|x|) given; `weighted`
 * and `finite` (every |x| finite) are constants at each call site */
BF_ALWAYS_INLINE T BF_FN(bce_logits_loops)(const T *x, const T *e, const T *y, const T *w,
                                           const T *pw, const T *u, T gs, int weighted,
                                           int finite, T *l, T *g, int64_t m)
{
    T lv, gv, hv, top = 0;
    if (g == NULL) {
#pragma omp simd private(lv, gv, hv) reduction(max : top)
        for (int64_t i = 0; i < m; i++) {
            BF_FN(bce_logits_elem)(x[i], e[i], y[i], w[i], pw[i], u[i], gs, weighted, finite,
                                   &lv, &gv, &hv);
            l[i] = lv;
            if (weighted)
                top = BF_FN(abs_max)(top, x[i]);
        }
    } else {
#pragma omp simd private(lv, gv, hv) reduction(max : top)
        for (int64_t i = 0; i < m; i++) {
            BF_FN(bce_logits_elem)(x[i], e[i], y[i], w[i], pw[i], u[i], gs, weighted, finite,
                                   &lv, &gv, &hv);
            l[i] = lv;
            g[i] = gv;
            if (weighted)
                top = BF_FN(abs_max)(top, x[i]);
        }
    }
    return top;
}

/* One tile of loss (l), gradient (g, may be NULL) and Hessian (h, may be
 * NULL; then g is not); l is not written when h is given.  Returns the
 * largest |x[i]| if weighted, else 0.  (The max on the side of the loop
 * costs the weighted kernels 2-4%; a separate pass over x cost 5-9%.)
 * The gradient-and-Hessian loop takes no log1p, and its exp stays in the
 * loop: there its division waits for the divider, which the exps of later
 * elements overlap, and the kernel is bound by memory at large sizes; taken
 * apart (exp_neg_abs_tile) it measured float32 0.94-1.16x up to 1e6
 * elements but 0.78x at 1e7, float64 0.81-0.97x from 3e5 on. */
static inline T BF_FN(bce_logits_tile)(const T *x, const T *y, const T *w, const T *pw,
                                       const T *u, T gs, int weighted, T *l, T *g, T *h,
                                       int64_t m)
{
    T lv, gv, hv, top = 0, e[BF_TILE];
    if (h == NULL) {
        /* the loss loop with `finite` made a constant (with the gradient
         * the loop without the select measured 0.95-0.97x) */
        int finite = BF_FN(exp_neg_abs_tile)(x, e, m);
        if (finite && g == NULL)
            return BF_FN(bce_logits_loops)(x, e, y, w, pw, u, gs, weighted, 1, l, NULL, m);
        return BF_FN(bce_logits_loops)(x, e, y, w, pw, u, gs, weighted, 0, l, g, m);
    }
#pragma omp simd private(lv, gv, hv) reduction(max : top)
    for (int64_t i = 0; i < m; i++) {
        T ei = bf_exp_neg_floor(-bf_fabs(x[i]), BF_EXP_FLOOR);
        BF_FN(bce_logits_elem)(x[i], ei, y[i], w[i], pw[i], u[i], gs, weighted, 0,
                               &lv, &gv, &hv);
        g[i] = gv;
        h[i] = hv;
        if (weighted)
            top = BF_FN(abs_max)(top, x[i]);
    }
    return top;
}

/* Nonzero if an output of the call is one of its inputs (in place; the
 * Python layer allows no other overlap) */
static inline int BF_FN(writes_an_input)(const bf_elementwise *p)
{
    const void *outs[3] = {p->out, p->grad, p->hess};
    int hit = 0;
    for (int k = 0; k < 3; k++)
        hit |= outs[k] != NULL && (outs[k] == p->x || outs[k] == p->y
                                   || outs[k] == p->w || outs[k] == p->pw);
    return hit;
}

/* A chunk pass: losses summed into *partial with float32 tile trees unless
 * in_double */
typedef int (*BF_FN(pass_fn))(const void *prob, int64_t lo, int64_t hi, double *partial,
                              int in_double);

/* Run a chunk pass; if its sum came out +-inf, which a tile of float32
 * losses near FLT_MAX reaches inside its tree where their mean is finite
 * (float32 BCE-with-logits of 256 elements at 3e38: inf, not 3e38), run it
 * again with the losses added in double -- when its inputs are intact
 * (`intact`: no output is one of them).  A check per chunk; the rerun
 * writes the same outputs again. */
static int BF_FN(sums_in_double_if_inf)(BF_FN(pass_fn) pass, const void *prob, int64_t lo,
                                        int64_t hi, double *partial, int intact)
{
    double part = 0.0;
    int status = pass(prob, lo, hi, partial != NULL ? &part : NULL, 0);
    if (sizeof(T) == 4 && partial != NULL && status == BF_OK && intact
        && (part == __builtin_inf() || part == -__builtin_inf())) {
        part = 0.0;
        status = pass(prob, lo, hi, &part, 1);
    }
    if (partial != NULL)
        partial[0] += part;
    return status;
}

static int BF_FN(bce_logits_pass)(const void *prob, int64_t lo, int64_t hi, double *partial,
                                  int in_double)
{
    const bf_elementwise *p = (const bf_elementwise *)prob;
    const T *x = (const T *)p->x, *y = (const T *)p->y;
    T *out = (T *)p->out, *grad = (T *)p->grad, *hess = (T *)p->hess;
    const T gs = (T)p->grad_scale;
    /* 2: with an upstream gradient (the caller keeps it apart from every
     * output), 1: with weights, 0: neither */
    const int weighted = p->gu != NULL && grad != NULL ? 2 : p->w != NULL || p->pw != NULL;
    /* Weighted and in place, each tile's inputs are kept for
     * bce_logits_fix_tail */
    const int keep = weighted && BF_FN(writes_an_input)(p);
    T wbuf[BF_TILE], pwbuf[BF_TILE], ubuf[BF_TILE], tmp[BF_TILE], xs[BF_TILE], ys[BF_TILE];
    int wfilled = 0, pwfilled = 0, ufilled = 0;
    double acc[BF_LANES] = {0};
    int64_t m;
    for (int64_t off = lo; off < hi; off += m) {
        m = BF_FN(tile_len)(off, hi);
        T *l = out != NULL ? out + off : tmp;
        T *g = grad != NULL ? grad + off : NULL, *h = hess != NULL ? hess + off : NULL;
        const T *xt = x + off, *yt = y + off, *w = NULL, *pw = NULL, *u = NULL;
        if (weighted) {
            w = BF_SIDE(p->w, p->w_so, p->w_si, p->row, off, m, wbuf, &wfilled);
            pw = BF_SIDE(p->pw, p->pw_so, p->pw_si, p->row, off, m, pwbuf, &pwfilled);
            u = BF_SIDE(p->gu, p->gu_so, p->gu_si, p->row, off, m, ubuf, &ufilled);
        }
        if (keep) {
            /* w and pw are copied into their buffers only where they are
             * the arrays themselves (a layout is the same for every tile) */
            xt = memcpy(xs, xt, (size_t)m * sizeof(T));
            yt = memcpy(ys, yt, (size_t)m * sizeof(T));
            if (w != wbuf)
                w = memcpy(wbuf, w, (size_t)m * sizeof(T));
            if (pw != pwbuf)
                pw = memcpy(pwbuf, pw, (size_t)m * sizeof(T));
        }
        if (!weighted)
            w = pw = u = xt;    /* never read unweighted: x stands in */
        T top = weighted == 2 ? BF_FN(bce_logits_tile)(xt, yt, w, pw, u, gs, 2, l, g, h, m)
                : weighted ? BF_FN(bce_logits_tile)(xt, yt, w, pw, u, gs, 1, l, g, h, m)
                           : BF_FN(bce_logits_tile)(xt, yt, w, pw, u, gs, 0, l, g, h, m);
        if (top > BF_TAIL_X)
            BF_FN(bce_logits_fix_tail)(xt, yt, w, pw, u, gs, l, g, h, m);
        if (partial != NULL)
            BF_FN(tile_lanes_add)(acc, l, m, in_double);
    }
    if (partial != NULL)
        partial[0] += bf_lanes_total(acc);
    return BF_OK;
}

static int BF_FN(bce_logits_chunk)(const void *prob, int64_t lo, int64_t hi, double *partial)
{
    return BF_FN(sums_in_double_if_inf)(BF_FN(bce_logits_pass), prob, lo, hi, partial,
                                        !BF_FN(writes_an_input)((const bf_elementwise *)prob));
}

/* ---------------------------------------------------- BCE on probabilities */

/* `hard`, `weighted` and `normal` are constants at each call site: `hard`
 * promises y in {0, 1}, where the loss needs the logarithm of only one of
 * p, 1 - p; without a weight, w is never read (the product by 1 it saves is
 * 6-8% of the loss on Zen 4, and exact, so the results are the same bits);
 * `normal` promises p in [FLT_MIN, 1), so that p and 1 - p >= 2^-24 are
 * normal and take bf_log_unit_normal (float32 only; the same bits).  *nloss
 * is minus the loss (bce_pass negates only the losses it writes out). */
BF_ALWAYS_INLINE void BF_FN(bce_elem)(T p, T y, T w, T gs, int hard, int weighted,
                                      int normal, T *nloss, T *grad)
{
    T corr;
    T q = bf_log1m_split(p, &corr);             /* log(1 - p) = log(q) + corr */
    /* bf_log_unit is the logarithm only down to -100: the clamps below
     * (where they can bind) are part of it */
    if (hard) {
        /* corr where log(1 - p) is taken.  float32: a select on the compare
         * that chose z saves corr (1 - y) a subtraction (with the clamp left
         * out below, 2-3% of the loss on Zen 4); float64: gcc compares y
         * again for it and reloads y (a register short), 4% slower */
        T z = y == 0 ? q : p;
        T c = sizeof(T) == 4 ? (y == 0 ? corr : 0) : corr * ((T)1 - y);
        T lz = (normal ? bf_log_unit_normal(z) : bf_log_unit(z)) + c;
        if (!normal)        /* else lz >= log(FLT_MIN) = -87.3 */
            lz = lz < BF_LOG_FLOOR ? BF_LOG_FLOOR : lz;
        *nloss = weighted ? w * lz : lz;
    } else {
        T lp = normal ? bf_log_unit_normal(p) : bf_log_unit(p);
        T lq = (normal ? bf_log_unit_normal(q) : bf_log_unit(q)) + corr;
        if (!normal) {
            lp = lp < BF_LOG_FLOOR ? BF_LOG_FLOOR : lp;
            lq = lq < BF_LOG_FLOOR ? BF_LOG_FLOOR : lq;
        }
        T sum = y * lp + ((T)1 - y) * lq;
        *nloss = weighted ? w * sum : sum;
    }
    T den = p * ((T)1 - p);
    den = den < BF_DEN_FLOOR ? BF_DEN_FLOOR : den;   /* PyTorch clamps at float(1e-12) */
    T ratio = (p - y) / den;                   /* divide first: w (p - y) can underflow */
    *grad = gs * (weighted ? w * ratio : ratio);
}

/* The four loops of a BCE tile, each under the pragma given (omp simd and
 * its clauses): element i by elem(i), which sets lv (minus the loss) and gv;
 * the losses (0 - lv: a loss of 0 is +0, as PyTorch's) into l if `losses`,
 * else minus them; the gradient into g unless NULL */
#define BF_PRAGMA(...) _Pragma(#__VA_ARGS__)
#define BF_BCE_LOOPS(elem, ...)                                               \
    do {                                                                      \
        if (g == NULL && losses) {                                            \
            BF_PRAGMA(__VA_ARGS__) for (int64_t i = 0; i < m; i++) {          \
                elem(i);                                                      \
                l[i] = 0 - lv;                                                \
            }                                                                 \
        } else if (g == NULL) {                                               \
            BF_PRAGMA(__VA_ARGS__) for (int64_t i = 0; i < m; i++) {          \
                elem(i);                                                      \
                l[i] = lv;                                                    \
            }                                                                 \
        } else if (losses) {                                                  \
            BF_PRAGMA(__VA_ARGS__) for (int64_t i = 0; i < m; i++) {          \
                elem(i);                                                      \
                l[i] = 0 - lv;                                                \
                g[i] = gv;                                                    \
            }                                                                 \
        } else {                                                              \
            BF_PRAGMA(__VA_ARGS__) for (int64_t i = 0; i < m; i++) {          \
                elem(i);                                                      \
                l[i] = lv;                                                    \
                g[i] = gv;                                                    \
            }                                                                 \
        }                                                                     \
    } while (0)

/* One tile (its inputs checked): its losses (`losses`) or minus them into l,
 * its gradient into g unless NULL */
BF_ALWAYS_INLINE void BF_FN(bce_tile)(const T *x, const T *y, const T *w, T gs, int hard,
                                      int weighted, int normal, int losses, T *l, T *g,
                                      int64_t m)
{
    T lv, gv;
#define BF_TILE_ELEM(i) BF_FN(bce_elem)(x[i], y[i], w[i], gs, hard, weighted, normal, &lv, &gv)
    BF_BCE_LOOPS(BF_TILE_ELEM, omp simd private(lv, gv));
#undef BF_TILE_ELEM
}

/* bce_tile with `normal` made a constant (`hard` and `weighted` are at the
 * call sites; inlined all the way, or gcc keeps one loop for several and
 * float32 BCE runs 25% slower) */
BF_ALWAYS_INLINE void BF_FN(bce_tile_as)(const T *x, const T *y, const T *w, T gs, int hard,
                                         int weighted, int normal, int losses, T *l, T *g,
                                         int64_t m)
{
    if (normal)
        BF_FN(bce_tile)(x, y, w, gs, hard, weighted, 1, losses, l, g, m);
    else
        BF_FN(bce_tile)(x, y, w, gs, hard, weighted, 0, losses, l, g, m);
}

/* One element of bce_pass's input check, pe and ye a probability and its
 * target: the largest and the least bit pattern of the probabilities as
 * unsigned integers (top, low) and an OR that stays 0 while every target is
 * +0 or 1 (off01: min(v, v ^ bits(1)) is 0 exactly there; v is ye's
 * pattern) */
#define BF_BCE_CHECK_ELEM(pe, ye)                                             \
    BF_UT u, v;                                                               \
    memcpy(&u, &(pe), sizeof u);                                              \
    memcpy(&v, &(ye), sizeof v);                                              \
    top = u > top ? u : top;                                                  \
    low = u < low ? u : low;                                                  \
    off01 |= v < (v ^ one_bits) ? v : v ^ one_bits

/* bce_tile (its losses or minus them into l, its gradient into g unless
 * NULL) with bce_pass's input check in the same loop (its guess, below):
 * nonzero if the check finds the tile one that bce_pass takes with this
 * loss -- every p in [+0, 1] (with `normal`: in [FLT_MIN, 1)), and with
 * `hard` every target +0 or 1, else every target in [+0, 1] and not all of
 * them +0 or 1 -- else l and g hold what the caller overwrites.  `hard`,
 * `weighted` and `normal` are constants at each call site; the unweighted
 * loss reads x for w. */
BF_ALWAYS_INLINE int BF_FN(bce_tile_checked)(const T *x, const T *y, const T *w, T gs,
                                             int hard, int weighted, int normal, int losses,
                                             BF_UT one_bits, T *l, T *g, int64_t m)
{
    BF_UT top = 0, low = one_bits, off01 = 0, ytop = 0;
    T lv, gv;
    /* element i: the check (and for soft targets their largest pattern),
     * then the loss and gradient */
#define BF_CHECKED_ELEM(i)                                                    \
    BF_BCE_CHECK_ELEM(x[i], y[i]);                                            \
    if (!hard)                                                                \
        ytop = v > ytop ? v : ytop;                                           \
    BF_FN(bce_elem)(x[i], y[i], w[i], gs, hard, weighted, normal, &lv, &gv)
    BF_BCE_LOOPS(BF_CHECKED_ELEM, omp simd private(lv, gv) reduction(max : top, ytop)
                 reduction(min : low) reduction(| : off01));
#undef BF_CHECKED_ELEM
    return (hard ? off01 == 0 : off01 != 0 && ytop <= one_bits) && top <= one_bits
           && (!normal || (low >= 0x00800000u && top < one_bits));
}

/* bce_tile_checked with its constants spelled out (inlined all the way, as
 * bce_tile_as) */
BF_ALWAYS_INLINE int BF_FN(bce_tile_guessed)(const T *x, const T *y, const T *w, T gs,
                                             int hard, int weighted, int normal, int losses,
                                             BF_UT one_bits, T *l, T *g, int64_t m)
{
#define BF_CHECKED(h, wt, nm)                                                 \
    BF_FN(bce_tile_checked)(x, y, w, gs, h, wt, nm, losses, one_bits, l, g, m)
    if (hard)
        return weighted ? (normal ? BF_CHECKED(1, 1, 1) : BF_CHECKED(1, 1, 0))
                        : (normal ? BF_CHECKED(1, 0, 1) : BF_CHECKED(1, 0, 0));
    return weighted ? (normal ? BF_CHECKED(0, 1, 1) : BF_CHECKED(0, 1, 0))
                    : (normal ? BF_CHECKED(0, 0, 1) : BF_CHECKED(0, 0, 0));
#undef BF_CHECKED
}

/* Nonzero if one of v[0..m) is outside [0, 1] or NaN */
static inline int BF_FN(outside_unit)(const T *v, int64_t m)
{
    int bad = 0;
#pragma omp simd reduction(| : bad)
    for (int64_t i = 0; i < m; i++)
        bad |= !(v[i] >= 0 && v[i] <= 1);
    return bad;
}

static int BF_FN(bce_pass)(const void *prob, int64_t lo, int64_t hi, double *partial,
                           int in_double)
{
    const bf_elementwise *p = (const bf_elementwise *)prob;
    const T *x = (const T *)p->x, *y = (const T *)p->y;
    T *out = (T *)p->out, *grad = (T *)p->grad;
    const T gs = (T)p->grad_scale, one = 1;
    BF_UT one_bits;
    memcpy(&one_bits, &one, sizeof one_bits);
    T wbuf[BF_TILE], tmp[BF_TILE];
    int wfilled = 0;
    double acc[BF_LANES] = {0};
    int64_t m;
    /* After a tile that passed the check below with every p in [+0, 1],
     * the kernel guesses that the next tile is of the same kind (guess_hard:
     * targets 0 or 1, or not; guess 2: every p in [FLT_MIN, 1) too, float32;
     * else 1) and takes its loss (and gradient) and its check in one loop,
     * whose integer operations then run beside the logarithms' FMAs instead
     * of in a pass of their own (with AVX-512 only, BF_BCE_CHECK_IN_LOSS; on
     * Zen 4 hard targets 1.07-1.2x, soft ones 1.08-1.19x, with the gradient
     * 1.04-1.16x).  Not when an output is an input, which must be read
     * before anything is written over it: other outputs may hold anything
     * until the call is done (or fails), so a wrong guess costs only the time
     * of the tile.  Guess 1 stays 1 until a tile is checked apart, so that a
     * few p of 0 or 1 among many tiles cost one such tile. */
    const int may_guess = BF_BCE_CHECK_IN_LOSS && !BF_FN(writes_an_input)(p);
    /* l takes the losses where they are written out, else minus them (the
     * negation of each cost 3-4% of a float32 reduced loss on Zen 4), whose
     * tile sums are the exact negatives of the losses' (rounding is
     * symmetric) */
    const int losses = out != NULL;
    int guess = 0, guess_hard = 0;
    for (int64_t off = lo; off < hi; off += m) {
        m = BF_FN(tile_len)(off, hi);
        const T *xt = x + off, *yt = y + off;
        T *l = out != NULL ? out + off : tmp;
        T *g = grad != NULL ? grad + off : NULL;
        if (guess) {
            const T *w = p->w != NULL
                ? BF_SIDE(p->w, p->w_so, p->w_si, p->row, off, m, wbuf, &wfilled) : xt;
            if (BF_FN(bce_tile_guessed)(xt, yt, w, gs, guess_hard, p->w != NULL,
                                        guess == 2, losses, one_bits, l, g, m)) {
                if (partial != NULL)
                    BF_FN(tile_lanes_add)(acc, l, m, in_double);
                continue;
            }
        }
        /* Inputs are checked before anything is written (out may be an
         * input).  One pass finds whether the targets are all 0 or 1 (then
         * they need no range check) and the largest bit pattern of the
         * probabilities as an unsigned integer: every p in [+0, 1] lies at
         * or below 1's, NaN or a negative p above it, as -0 does, which the
         * exact check of such a tile lets pass.  (Two compares and their
         * merge per vector in the loss loop cost 5% of the float32 loss and
         * 14% of the float64 one on Zen 4.)  Both tests are on the bits: a
         * target is +0 or 1 exactly when min(v, v ^ bits(1)) is 0 (-0 takes
         * the checked path).  In integer lanes the loop is four operations
         * per vector; written as float compares under `omp simd`, gcc kept
         * the reductions in memory and float32 BCE ran 11-17% slower. */
        BF_UT top = 0, low = one_bits, off01 = 0;
        for (int64_t i = 0; i < m; i++) {
            BF_BCE_CHECK_ELEM(xt[i], yt[i]);
        }
        int hard = off01 == 0;
        /* the least pattern too: every p in [FLT_MIN, 1), the logarithms
         * without scaling (bf_log_unit_normal; float32 1.04-1.06x) */
        const int normal = sizeof(T) == 4 && low >= 0x00800000u && top < one_bits;
        if (top > one_bits && BF_FN(outside_unit)(xt, m))
            return BF_ERR_DOMAIN;
        if (!hard && BF_FN(outside_unit)(yt, m))
            return BF_ERR_TARGET;
        guess = may_guess && top <= one_bits ? 1 + normal : 0;
        guess_hard = hard;
        if (p->w != NULL) {
            const T *w = BF_SIDE(p->w, p->w_so, p->w_si, p->row, off, m, wbuf, &wfilled);
            if (hard)
                BF_FN(bce_tile_as)(xt, yt, w, gs, 1, 1, normal, losses, l, g, m);
            else
                BF_FN(bce_tile_as)(xt, yt, w, gs, 0, 1, normal, losses, l, g, m);
        } else if (hard) {
            /* the unweighted element never reads w; x stands in */
            BF_FN(bce_tile_as)(xt, yt, xt, gs, 1, 0, normal, losses, l, g, m);
        } else {
            BF_FN(bce_tile_as)(xt, yt, xt, gs, 0, 0, normal, losses, l, g, m);
        }
        if (partial != NULL)
            BF_FN(tile_lanes_add)(acc, l, m, in_double);
    }
    if (partial != NULL)
        partial[0] += losses ? bf_lanes_total(acc) : -bf_lanes_total(acc);
    return BF_OK;
}

/* The caller keeps outputs apart from the inputs (it validates as it goes) */
static int BF_FN(bce_chunk)(const void *prob, int64_t lo, int64_t hi, double *partial)
{
    return BF_FN(sums_in_double_if_inf)(BF_FN(bce_pass), prob, lo, hi, partial, 1);
}

#undef BF_BCE_CHECK_ELEM
#undef BF_BCE_LOOPS
#undef BF_PRAGMA
#undef BF_SIDE
#undef BF_EXP_FLOOR
#undef BF_LOG_FLOOR
#undef BF_DEN_FLOOR
#undef BF_TAIL_X
