/*
 * bf_softmax.h -- kernel bodies of the softmax family (softmax, log-softmax,
 * softmax cross-entropy with class-index or probability targets, NLL, and
 * their gradients), written once.
 *
 * Included by bf_isa_body.h with T = float / double and BF_FN(name) naming
 * the per-type function.  The logits are seen as (outer, C, inner) without a
 * copy (bf_softmax in bf_kernels.h); a "position" is one (outer, inner) pair.
 * Four kernels, chosen in bf_softmax.c from the shape and the kind (never
 * from the thread count):
 *   rows  (inner == 1, more classes than small takes): one position at a
 *         time, vectorized over its C contiguous classes, in tiles of
 *         BF_TILE; short rows (BF_SM_FLAT) a group at a time, as one
 *         contiguous run (sm_flat_sweep).
 *   inner (inner > 1): a block of up to BF_TILE neighbouring positions at a
 *         time, vectorized across them, looping over the classes (stride
 *         inner) -- sm_block.
 *   small (inner == 1, few classes: the thresholds in bf_kernels.h): tiles
 *         of rows transposed into a (C, rows) buffer and run through
 *         sm_block, since per-row overhead would dominate.
 *   split (inner == 1, few rows of many classes): per class block partials
 *         combined per row, so that threads share a row.
 *
 * Per position, with m the max and e_c = exp(x_c - m):
 *   s  = sum of e_c over all classes but one occurrence of m (computed as the
 *        sum over c with x_c != m, plus (count of x_c == m) - 1, so a
 *        confident row keeps its tiny s instead of losing it against 1);
 *   L  = log1p(s)   (once per position; double in the row kernels, T in
 *                    the column-wise ones)
 *   log_softmax_c = (x_c - m) - L,   softmax_c = e_c / (1 + s)
 *   CE(t)  = (m - x_t) + L    (both terms >= 0: no cancellation)
 *   smoothed CE = (1-eps) w_t CE(t) + eps/C (q + L W),  q = sum_c w_c (m - x_c),
 *                 W = sum_c w_c                           (PyTorch's formula)
 *   probability targets: t'_c = (1-eps) t_c + eps/C,
 *                 loss = a + L b,  a = sum_c w_c t'_c (m - x_c),  b = sum_c w_c t'_c
 *   gradients: class index  g_c = Bt (p_c - [c == t]) + E (W p_c - w_c),
 *                           Bt = gs (1-eps) w_t, E = gs eps / C, and
 *                           1 - p_t = ((1 - e_t) + s) / (1 + s) (no cancellation);
 *              probabilities g_c = gs (b p_c - w_c t'_c);
 *              Hessian diagonal (softmax_grad_hess) gs p_c (1 - p_c).
 * A row containing +inf gives NaN everywhere (PyTorch), a row of -inf gives
 * NaN (x - m is NaN), NaN propagates through s.
 *
 * Sweeps per row: max; then exp and the sums (storing e_c into the output or
 * gradient when one is wanted); then, for maps and gradients only, a write
 * sweep over the row, which is still in cache.  Where no e_c is kept
 * (log-softmax, plain cross-entropy) and the row is long, the row kernel
 * finds max and sum in one read (sm_max_sums).  Counting the maxima costs
 * the exp sweep a compare, a select and an add per element; rows of more
 * than BF_SM_SPAN_MIN_C classes pay it only in the tiles that hold the max
 * (BF_SM_PLAIN_SUMS, sm_online_seg).  The row kernel takes rows
 * in groups (BF_SM_GROUP, fewer for long rows): the sweeps of every row of
 * the group, then log1p(s) of all of them as one vector loop, then the
 * writes.  Reduced losses touch nothing of size C outside the tile buffers
 * below.
 *
 * Determinism: a row's sums use a fixed order whatever the vector width
 * (tiles of BF_TILE, 16 lanes in a tile, tile totals added in double in row
 * order; in the inner layout each position adds its classes in order), and
 * the losses of a chunk are added in double, in position order (row
 * kernels) or by the fixed lane tree of bf_sm_dsum (column-wise ones).
 */

#ifndef BF_SOFTMAX_PRIMITIVES
#define BF_SOFTMAX_PRIMITIVES
enum { BF_SM_SUMS_PLAIN, BF_SM_SUMS_SMOOTH, BF_SM_SUMS_PROB };

/* Class weight i; a NULL weight array reads as 1 (no array of ones to allocate). */
#define BF_SM_W(w, i) ((w) != NULL ? (w)[i] : (T)1)
#define BF_SM_NLL_AHEAD 32      /* rows between an NLL prefetch and its read */
#define BF_SM_ONLINE_C 16384   /* rows this long are read once for max and sum */
#define BF_SM_SPAN_MIN_C 4096   /* longer rows skip counting maxima outside their max's tiles */
#define BF_SM_GROUP 8           /* rows swept before their log1p(s) are taken */
#define BF_SM_GROUP_BYTES 4096  /* fewer rows when theirs pass this (L1 for the writes) */

/* s + v, with the rounding error of that addition added into *err
 * (Knuth's TwoSum, exact whatever the magnitudes).  Totals over a row's
 * tiles (or a position's groups of classes) take it: their plain sum's
 * error grows with their number, and float64 softmax at 20000 classes was
 * 8.5 ULP off, 12 along axis 0 at 5000 (bound 4 + max |x - m|, about 6).
 * Six additions per tile of 256 classes (per 16 along axis 0), in float64
 * only (BF_SM_TWOSUM): float32 totals in double are already far below
 * float32's rounding. */
BF_ALWAYS_INLINE double bf_sum_err(double s, double v, double *err)
{
    double t = s + v, vv = t - s;
    double e = (s - (t - vv)) + (v - vv);
    *err += e - e == 0 ? e : 0.0;       /* an infinite sum has no error to keep (inf - inf) */
    return t;
}

/* The loss of a class-index row (see the top): w_t nll with nll = (m - x_t)
 * + L, smoothed (1-eps) w_t nll + eps/C (q + L W).  One spelling for every
 * kernel, FMAs written out, so that it does not depend on how a loop is
 * contracted (nor a position's loss on whether it falls in a vector body or
 * a remainder). */
BF_ALWAYS_INLINE double bf_sm_ce_loss(double m, double xt, double L, double wt, double q,
                                      double eps, double C, double wsum, int smooth)
{
    double nll = (m - xt) + L;
    return smooth ? bf_fma((1.0 - eps) * wt, nll, eps / C * bf_fma(L, wsum, q)) : wt * nll;
}

/* The gradient at the target class of such a row, gs times
 * -(1-eps) w_t (1 - p_t) + eps/C (W p_t - w_t), with 1 - p_t = ((1 - e_t) + s)
 * / (1 + s) (no cancellation) and rinv = 1 / (1 + s). */
BF_ALWAYS_INLINE double bf_sm_ce_grad_t(double gs, double wt, double et, double s, double rinv,
                                        double eps, double C, double wsum, int smooth)
{
    double Bt = gs * (1.0 - eps) * wt, E = gs * eps / C;
    return -Bt * (((1.0 - et) + s) * rinv) + (smooth ? E * (wsum * (et * rinv) - wt) : 0.0);
}

/* Sum of double v[0..n), n <= BF_TILE, in BF_LANES lanes and a fixed tree:
 * no chain of dependent additions through the whole block. */
BF_ALWAYS_INLINE double bf_sm_dsum(const double *v, int64_t n)
{
    double acc[BF_LANES] = {0};
    BF_LANES_ADD(acc, v, n);
    return bf_lanes_total(acc);
}
#endif /* BF_SOFTMAX_PRIMITIVES */

#ifndef BF_SM_SMALL_BUF
#define BF_SM_SMALL_BUF 4096    /* elements per transposed tile of few-class rows */
#endif

#define BF_SM_TWOSUM (sizeof(T) == 8)
/* s + v, with the addition's rounding error added into *err in float64 */
#define BF_SM_ADD(s, v, err) (BF_SM_TWOSUM ? bf_sum_err((s), (v), (err)) : (s) + (v))
#define BF_SM_MAX BF_FN(sm_max)
#define BF_SM_TSUM BF_FN(sm_tile_sum)
#define BF_SM_ROW_SUMS BF_FN(sm_row_sums)
#define BF_SM_EXPS BF_FN(sm_exps)
#define BF_SM_MAX_SPAN BF_FN(sm_max_span)
#define BF_SM_EXPS_BELOW BF_FN(sm_exps_below)
#define BF_SM_PLAIN_SUMS BF_FN(sm_plain_sums)

/* Max of x[0..n).  A partial last vector is taken as the whole vector that
 * ends at n, overlapping the one before (a max may see an element twice),
 * instead of by a scalar remainder loop. */
static inline T BF_SM_MAX(const T *x, int64_t n)
{
    T m = -(T)__builtin_inf();
    int64_t whole = n - n % BF_LANES;
    const T *tail = n > BF_LANES ? x + n - BF_LANES : x;
    int64_t ntail = n > BF_LANES ? BF_LANES : n;
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < whole; i++)
        m = x[i] > m ? x[i] : m;
    if (whole != n) {
#pragma omp simd reduction(max : m)
        for (int64_t i = 0; i < ntail; i++)
            m = tail[i] > m ? tail[i] : m;
    }
    return m;
}

/* Max of x[0..n), and in span[0..1] the first and last tile (BF_TILE
 * classes each, counted from x) whose own max equals it: every element of a
 * tile outside that span is below the max or NaN, so its exps need no
 * counting of maxima (BF_SM_PLAIN_SUMS).  A row of -inf and NaN spans
 * every tile. */
static inline T BF_SM_MAX_SPAN(const T *x, int64_t n, int64_t *span)
{
    T m = -(T)__builtin_inf();
    span[0] = span[1] = 0;
    for (int64_t c0 = 0, k = 0; c0 < n; c0 += BF_TILE, k++) {
        T mt = BF_SM_MAX(x + c0, n - c0 < BF_TILE ? n - c0 : BF_TILE);
        if (mt > m) {
            m = mt;
            span[0] = span[1] = k;
        } else if (mt == m) {
            span[1] = k;
        }
    }
    return m;
}

/* Sum of v[0..n), n <= BF_TILE, in a fixed order: 16 lanes of T, element i
 * into lane i mod 16, then a fixed tree in double.  v must be readable up to
 * n rounded up to 16 (every caller's buffer is): a partial last vector is
 * read whole and its excess selected away, not run through a scalar
 * remainder loop.  Lanes start at +0 and gain +0 from the excess: the same
 * bits as without it. */
BF_ALWAYS_INLINE double BF_SM_TSUM(const T *v, int64_t n)
{
    T acc[BF_LANES] = {0};
    int64_t i0 = 0;
    for (; i0 + BF_LANES <= n; i0 += BF_LANES)
        for (int j = 0; j < BF_LANES; j++)
            acc[j] += v[i0 + j];
    if (i0 < n) {
        const int64_t rem = n - i0;
        for (int j = 0; j < BF_LANES; j++) {
            T vj = v[i0 + j];
            acc[j] += j < rem ? vj : (T)0;
        }
    }
    double d[BF_LANES];
    for (int j = 0; j < BF_LANES; j++)
        d[j] = (double)acc[j];
    return bf_lanes_total(d);
}

/* exp(d) for d = x_c - m <= 0 in the exp sweeps below: with `normal` (a
 * constant at each call) by bf_exp_neg_normal, ORing its range test into
 * *over; a sweep whose tile has any x_c - m below -86 / -707 (or -inf, NaN)
 * is run again with the clamped exp (the exps of a typical row lie well
 * inside; a tile that does not pays twice).  Same bits either way
 * (bf_math.h); the clamp's compare and the two multiplications it saves are
 * three FMA slots of about thirteen. */
BF_ALWAYS_INLINE T BF_FN(sm_exp)(T d, int normal, BF_UT *over)
{
    if (!normal)
        return bf_exp_neg(d);
    *over |= bf_exp_normal_miss(bf_fabs(d));
    return bf_exp_neg_normal(d);
}

/* e_c = exp(x_c - m) of x[0..n): stored into te with the maxima as 0 and
 * into dv (unless NULL); returns the count of x_c == m (exact in T).  Two
 * loops on purpose: with `if (dv != NULL)` inside one, gcc 12 neither
 * unswitches nor vectorizes it (log_softmax at 100 classes: 79 -> 308 ns
 * a row). */
BF_ALWAYS_INLINE T BF_FN(sm_exps_as)(const T *x, int64_t n, T m, T *te, T *dv, int normal,
                                     BF_UT *over)
{
    T cnt = 0;
    BF_UT ov = 0;
    if (dv == NULL) {
#pragma omp simd reduction(+ : cnt) reduction(| : ov)
        for (int64_t i = 0; i < n; i++) {
            T e = BF_FN(sm_exp)(x[i] - m, normal, &ov);
            int eq = x[i] == m;
            cnt += eq ? (T)1 : (T)0;
            te[i] = eq ? (T)0 : e;
        }
    } else {
#pragma omp simd reduction(+ : cnt) reduction(| : ov)
        for (int64_t i = 0; i < n; i++) {
            T e = BF_FN(sm_exp)(x[i] - m, normal, &ov);
            int eq = x[i] == m;
            cnt += eq ? (T)1 : (T)0;
            te[i] = eq ? (T)0 : e;
            dv[i] = e;
        }
    }
    *over = ov;
    return cnt;
}

/* `pads`: x ends in -inf pads (sm_seg_sums), which would always miss the
 * range test: the clamped exp at once */
static inline T BF_SM_EXPS(const T *x, int64_t n, T m, T *te, T *dv, int pads)
{
    BF_UT over = 0;
    T cnt = 0;
    if (!pads)
        cnt = BF_FN(sm_exps_as)(x, n, m, te, dv, 1, &over);
    if (pads || bf_exp_normal_missed(over))
        cnt = BF_FN(sm_exps_as)(x, n, m, te, dv, 0, &over);
    return cnt;
}

/* BF_SM_EXPS for a tile with no element equal to m (BF_SM_MAX_SPAN): the
 * same stores, without the compare, select and count.  The sum is taken
 * from te, not dv: reading back the output, which is not in cache yet,
 * waited on its lines (float32 softmax at 32768 classes 25% slower). */
BF_ALWAYS_INLINE void BF_FN(sm_exps_below_as)(const T *x, int64_t n, T m, T *te, T *dv,
                                             int normal, BF_UT *over)
{
    BF_UT ov = 0;
    if (dv == NULL) {
#pragma omp simd reduction(| : ov)
        for (int64_t i = 0; i < n; i++)
            te[i] = BF_FN(sm_exp)(x[i] - m, normal, &ov);
    } else {
#pragma omp simd reduction(| : ov)
        for (int64_t i = 0; i < n; i++) {
            T e = BF_FN(sm_exp)(x[i] - m, normal, &ov);
            te[i] = e;
            dv[i] = e;
        }
    }
    *over = ov;
}

static inline void BF_SM_EXPS_BELOW(const T *x, int64_t n, T m, T *te, T *dv, int pads)
{
    BF_UT over = 0;
    if (!pads)
        BF_FN(sm_exps_below_as)(x, n, m, te, dv, 1, &over);
    if (pads || bf_exp_normal_missed(over))
        BF_FN(sm_exps_below_as)(x, n, m, te, dv, 0, &over);
}

/*
 * Sweep 2 over C contiguous values with max m.  Returns the sum of e_c over
 * the c with x_c != m and puts the count of x_c == m in *cnt; stores e_c into
 * dst when dst != NULL.  mode BF_SM_SUMS_SMOOTH also gives
 * *a = sum w_c (m - x_c); BF_SM_SUMS_PROB gives *a = sum w_c t'_c (m - x_c)
 * and *b = sum w_c t'_c, t'_c = tp_c keep + add (w NULL: all 1).
 */
static double BF_FN(sm_seg_sums)(const T *x, int64_t C, T m, T *dst, int mode, const T *w,
                                 const T *tp, T keep, T add, double *a, double *b,
                                 const T *next, int64_t *cntp)
{
    T te[BF_TILE], ta[BF_TILE], tb[BF_TILE], junk[BF_TILE], ones[BF_TILE], xpad[BF_TILE];
    if (w == NULL && mode != BF_SM_SUMS_PLAIN)
        for (int64_t i = 0; i < BF_TILE; i++)
            ones[i] = 1;
    double s = 0.0, sa = 0.0, sb = 0.0, err_s = 0.0, err_a = 0.0, err_b = 0.0;
    int64_t cnt = 0;
    for (int64_t c0 = 0; c0 < C; c0 += BF_TILE) {
        int64_t n = C - c0 < BF_TILE ? C - c0 : BF_TILE;
        const T *xt = x + c0;
        T *dt = dst != NULL ? dst + c0 : junk;
        T cnt_t = 0;                    /* exact: n <= BF_TILE */
        /* This sweep is compute-bound and the max sweep of the next row is
         * memory-bound: fetch the next row now so the two overlap. */
        if (next != NULL)
            for (int64_t j = 0; j < n; j += 64 / (int64_t)sizeof(T))
                __builtin_prefetch(next + c0 + j);
        /* A partial last vector would run the exp loop's scalar remainder
         * (a fifth of the time of a 47-class row).  The plain sums copy the
         * tile padded with -inf to whole vectors instead: exp gives 0 there,
         * the same sum bit for bit (only a row of -inf, NaN whatever s is,
         * could count the pads as its max).  One loop does copy and padding
         * (gcc splits it into a vector copy and a fill): 10 ns a row faster
         * at 40 classes than memcpy after a padding store. */
        int64_t nv = n;
        if (mode == BF_SM_SUMS_PLAIN) {
            if (n % BF_LANES != 0) {
                nv = n + (BF_LANES - n % BF_LANES);
                for (int64_t i = 0; i < nv; i++)
                    xpad[i] = i < n ? xt[i] : -(T)__builtin_inf();
                xt = xpad;
            }
            cnt_t = BF_SM_EXPS(xt, nv, m, te, dst == NULL ? NULL : nv != n ? junk : dt,
                               nv != n);
            if (dst != NULL && nv != n)
                memcpy(dt, junk, (size_t)n * sizeof(T));
        } else if (mode == BF_SM_SUMS_SMOOTH) {
            const T *wt = w != NULL ? w + c0 : ones;
#pragma omp simd reduction(+ : cnt_t)
            for (int64_t i = 0; i < n; i++) {
                T xi = xt[i];
                T e = bf_exp_neg(xi - m);
                int eq = xi == m;
                cnt_t += eq ? (T)1 : (T)0;
                te[i] = eq ? (T)0 : e;
                ta[i] = wt[i] * (m - xi);
                dt[i] = e;
            }
            sa = BF_SM_ADD(sa, BF_SM_TSUM(ta, n), &err_a);
        } else {
            const T *wt = w != NULL ? w + c0 : ones, *tt = tp + c0;
#pragma omp simd reduction(+ : cnt_t)
            for (int64_t i = 0; i < n; i++) {
                T xi = xt[i];
                T e = bf_exp_neg(xi - m);
                int eq = xi == m;
                cnt_t += eq ? (T)1 : (T)0;
                te[i] = eq ? (T)0 : e;
                T wtp = wt[i] * (tt[i] * keep + add);
                ta[i] = wtp * (m - xi);
                tb[i] = wtp;
                dt[i] = e;
            }
            sa = BF_SM_ADD(sa, BF_SM_TSUM(ta, n), &err_a);
            sb = BF_SM_ADD(sb, BF_SM_TSUM(tb, n), &err_b);
        }
        s = BF_SM_ADD(s, BF_SM_TSUM(te, nv), &err_s);
        cnt += (int64_t)cnt_t;
    }
    *a = BF_SM_TWOSUM ? sa + err_a : sa;
    *b = BF_SM_TWOSUM ? sb + err_b : sb;
    *cntp = cnt;
    return BF_SM_TWOSUM ? s + err_s : s;
}

/* s of a whole row (see top): the sum above plus (count of the max) - 1. */
static double BF_SM_ROW_SUMS(const T *x, int64_t C, T m, T *dst, int mode, const T *w,
                             const T *tp, T keep, T add, double *a, double *b,
                             const T *next)
{
    int64_t cnt;
    double s = BF_FN(sm_seg_sums)(x, C, m, dst, mode, w, tp, keep, add, a, b, next, &cnt);
    s += (double)(cnt - 1);
    return m == (T)__builtin_inf() ? (double)__builtin_nan("") : s;
}

/*
 * sm_seg_sums in mode BF_SM_SUMS_PLAIN (the same bits) for a row with max m
 * whose maxima lie in the tiles span[0]..span[1] (BF_SM_MAX_SPAN): the
 * other tiles' sweeps need no compare, select or count (BF_SM_EXPS_BELOW).
 */
static double BF_FN(sm_plain_seg)(const T *x, int64_t C, T m, const int64_t *span, T *dst,
                                  const T *next, int64_t *cntp)
{
    T te[BF_TILE], junk[BF_TILE], xpad[BF_TILE];
    double s = 0.0, err = 0.0;
    int64_t cnt = 0;
    for (int64_t c0 = 0, k = 0; c0 < C; c0 += BF_TILE, k++) {
        int64_t n = C - c0 < BF_TILE ? C - c0 : BF_TILE, nv = n;
        const T *xt = x + c0;
        T *dv = dst != NULL ? dst + c0 : NULL;
        if (next != NULL)                       /* as in sm_seg_sums */
            for (int64_t j = 0; j < n; j += 64 / (int64_t)sizeof(T))
                __builtin_prefetch(next + c0 + j);
        if (n % BF_LANES != 0) {                /* the last tile, padded as there */
            nv = n + (BF_LANES - n % BF_LANES);
            for (int64_t i = 0; i < nv; i++)
                xpad[i] = i < n ? xt[i] : -(T)__builtin_inf();
            xt = xpad;
            dv = dst != NULL ? junk : NULL;
        }
        if (k < span[0] || k > span[1])
            BF_SM_EXPS_BELOW(xt, nv, m, te, dv, nv != n);
        else
            cnt += (int64_t)BF_SM_EXPS(xt, nv, m, te, dv, nv != n);
        if (dst != NULL && nv != n)
            memcpy(dst + c0, junk, (size_t)n * sizeof(T));
        s = BF_SM_ADD(s, BF_SM_TSUM(te, nv), &err);
    }
    *cntp = cnt;
    return BF_SM_TWOSUM ? s + err : s;
}

/*
 * s and the max (into *mp) of a whole row, its e_c stored into dst unless
 * NULL: BF_SM_ROW_SUMS in mode BF_SM_SUMS_PLAIN after BF_SM_MAX, the same
 * bits.  Rows of more than BF_SM_SPAN_MIN_C classes take sm_plain_seg;
 * shorter ones keep the general sweep, since their tile maxima cost about
 * what the counting saves (through sm_plain_seg, rows of 1000-2000 classes
 * ran 2-6% slower, of 4000 2-7% faster, of 32768 5-17% faster).
 */
BF_ALWAYS_INLINE double BF_SM_PLAIN_SUMS(const T *x, int64_t C, T *mp, T *dst, const T *next)
{
    double a, b;
    if (C <= BF_SM_SPAN_MIN_C) {
        *mp = BF_SM_MAX(x, C);
        return BF_SM_ROW_SUMS(x, C, *mp, dst, BF_SM_SUMS_PLAIN, NULL, NULL, 0, 0, &a, &b, next);
    }
    int64_t span[2], cnt;
    const T m = *mp = BF_SM_MAX_SPAN(x, C, span);
    double s = BF_FN(sm_plain_seg)(x, C, m, span, dst, next, &cnt) + (double)(cnt - 1);
    return m == (T)__builtin_inf() ? (double)__builtin_nan("") : s;
}

/*
 * Max and s of a row in one read (for log-softmax and plain cross-entropy,
 * which keep no e_c): per tile, the tile max m_t; if m_t > m, the running
 * (S, count) is rebased, S = (S + count) e^(m - m_t), count = 0; then the
 * tile's exps relative to m are added as in sm_seg_sums.  Returns the sum
 * over x_c != m, puts the max in *mp and the count of x_c == m in *cntp.
 */
static double BF_FN(sm_online_seg)(const T *x, int64_t C, T *mp, const T *next, double *cntp)
{
    T te[BF_TILE];
    T m = -(T)__builtin_inf();
    double S = 0.0, err = 0.0, cnt = 0.0;
    for (int64_t c0 = 0; c0 < C; c0 += BF_TILE) {
        int64_t n = C - c0 < BF_TILE ? C - c0 : BF_TILE;
        const T *xt = x + c0;
        if (next != NULL)
            for (int64_t j = 0; j < n; j += 64 / (int64_t)sizeof(T))
                __builtin_prefetch(next + c0 + j);
        T mt = BF_SM_MAX(xt, n);
        if (mt > m) {
            S = ((BF_SM_TWOSUM ? S + err : S) + cnt) * bf_exp_neg_f64((double)m - (double)mt);
            err = cnt = 0.0;
            m = mt;
        }
        if (mt < m)
            BF_SM_EXPS_BELOW(xt, n, m, te, NULL, 0);
        else
            cnt += (double)BF_SM_EXPS(xt, n, m, te, NULL, 0);
        S = BF_SM_ADD(S, BF_SM_TSUM(te, n), &err);
    }
    *mp = m;
    *cntp = cnt;
    return BF_SM_TWOSUM ? S + err : S;
}

/* Max and s of a whole row (see top) for the kinds that keep no e_c.  A row
 * of fewer than BF_SM_ONLINE_C classes is swept twice, max then exps: the
 * first sweep streams it from memory, the second finds it in cache.  A
 * longer row is read once with a running max (sm_online_seg), since its
 * second sweep would wait on L2.  Measured on Zen 4 (1 MiB L2), one thread,
 * rows from memory: log_softmax float64 at 1000 classes 1.55 -> 1.25 ns per
 * element with two sweeps, float32 0.64 -> 0.59; the crossover lies between
 * 8192 and 16384 classes in both types. */
static double BF_FN(sm_max_sums)(const T *x, int64_t C, T *mp, const T *next)
{
    if (C < BF_SM_ONLINE_C)
        return BF_SM_PLAIN_SUMS(x, C, mp, NULL, next);
    double cnt;
    double S = BF_FN(sm_online_seg)(x, C, mp, next, &cnt) + (cnt - 1.0);
    return *mp == (T)__builtin_inf() ? (double)__builtin_nan("") : S;
}

/* The exps of sm_flat_sweep's group (xg[i] - mexp[i], ne of them) into te
 * with the maxima as 0 and into dst unless NULL; returns the count of
 * maxima.  `normal` and *over as in sm_exps_as.  Two loops, as in sm_exps:
 * one loop storing into a scratch buffer when dst is NULL measured 2-5%
 * slower for log_softmax and cross-entropy (float32, 40-100 classes), and
 * gcc 12 does not unswitch a test. */
BF_ALWAYS_INLINE T BF_FN(sm_flat_exps)(const T *xg, const T *mexp, int64_t ne, T *te, T *dst,
                                       int normal, BF_UT *over)
{
    T qtot = 0;
    BF_UT ov = 0;
    if (dst != NULL) {
#pragma omp simd reduction(+ : qtot) reduction(| : ov)
        for (int64_t i = 0; i < ne; i++) {
            T e = BF_FN(sm_exp)(xg[i] - mexp[i], normal, &ov);
            int eq = xg[i] == mexp[i];
            qtot += eq ? (T)1 : (T)0;
            te[i] = eq ? (T)0 : e;
            dst[i] = e;
        }
    } else {
#pragma omp simd reduction(+ : qtot) reduction(| : ov)
        for (int64_t i = 0; i < ne; i++) {
            T e = BF_FN(sm_exp)(xg[i] - mexp[i], normal, &ov);
            int eq = xg[i] == mexp[i];
            qtot += eq ? (T)1 : (T)0;
            te[i] = eq ? (T)0 : e;
        }
    }
    *over = ov;
    return qtot;
}

/*
 * Sweeps of a group of ng short rows (C sizeof(T) <= BF_SM_FLAT_BYTES), which
 * lie back to back in memory: each row's max, then the exps of the whole
 * group as one vector loop against the maxima spread out per element, then
 * each row's sum.  Taken a row at a time, a short row pays a loop's start
 * and remainder in every sweep; here only the max and the sum are per row.
 * The sums are those of the row kernel bit for bit (each row's e_c in 16
 * lanes of T in class order, then the same tree in double), so a row's
 * result does not depend on how rows were grouped.  e_c is stored into dst
 * unless NULL.  The count of maxima is 1 in every row of a group whose
 * total count is ng and whose maxima are all finite or +inf (a row of -inf
 * and NaN alone may count none): only otherwise are rows counted one by
 * one.  The next nnext rows are prefetched, as in sm_seg_sums.
 */
__attribute__((noinline))
static void BF_FN(sm_flat_sweep)(const T *xg, int64_t C, int64_t ng, int64_t nnext, T *dst,
                                 T *mv, double *sv)
{
    T mexp[BF_SM_GROUP * BF_SM_FLAT_BYTES / sizeof(T)];
    T te[BF_SM_GROUP * BF_SM_FLAT_BYTES / sizeof(T) + BF_LANES];
    const int64_t ne = ng * C;
    for (int64_t k = 0; k < ng; k++) {
        T mk = BF_SM_MAX(xg + k * C, C);
        mv[k] = mk;
        for (int64_t i = 0; i < C; i++)
            mexp[k * C + i] = mk;
    }
    for (int64_t j = 0; j < nnext * C; j += 64 / (int64_t)sizeof(T))
        __builtin_prefetch(xg + ne + j);
    BF_UT over;
    T qtot = BF_FN(sm_flat_exps)(xg, mexp, ne, te, dst, 1, &over);   /* exact: ne <= 2^24 */
    if (bf_exp_normal_missed(over))
        qtot = BF_FN(sm_flat_exps)(xg, mexp, ne, te, dst, 0, &over);
    for (int j = 0; j < BF_LANES; j++)  /* read past the last row by BF_SM_TSUM */
        te[ne + j] = 0;
    int ties = qtot != (T)ng;
    for (int64_t k = 0; k < ng; k++)
        ties |= mv[k] == -(T)__builtin_inf();
    for (int64_t k = 0; k < ng; k++) {
        int64_t cnt = 1;
        if (ties) {
            cnt = 0;
            for (int64_t i = 0; i < C; i++)
                cnt += xg[k * C + i] == mv[k];
        }
        double s = BF_SM_TSUM(te + k * C, C) + (double)(cnt - 1);
        sv[k] = mv[k] == (T)__builtin_inf() ? (double)__builtin_nan("") : s;
    }
}

/* Softmax's writes for a group of sm_flat_sweep: e_c / (1 + s) as one loop. */
__attribute__((noinline))
static void BF_FN(sm_flat_scale)(T *og, int64_t C, int64_t ng, const double *sv)
{
    T f[BF_SM_GROUP * BF_SM_FLAT_BYTES / sizeof(T)];
    for (int64_t k = 0; k < ng; k++) {
        T rinv = (T)(1.0 / (1.0 + sv[k]));
        for (int64_t i = 0; i < C; i++)
            f[k * C + i] = rinv;
    }
#pragma omp simd
    for (int64_t i = 0; i < ng * C; i++)
        og[i] = og[i] * f[i];
}

/* ------------------------------------- gradient entries of subnormal e_c */

/* x_c - m below this: e_c = exp(x_c - m) is subnormal or nearly so
 * (e^-87 = 1.6e-38, e^-708 = 3.3e-308) */
#define BF_SM_TAIL ((T)(sizeof(T) == 4 ? -87.0 : -708.0))
/* Factors of a gradient entry above this take sm_grad_tail.  A factor f
 * turns e_c's half a subnormal step into f/2 ULP of a result at least a
 * subnormal step; where e_c is subnormal, the row's bound (4 + max |x - m|
 * ULP, above 91 / 712) allows that up to f = 182 / 1424.  Below this, the
 * check would cost calls with class weights above 1 and reduction 'sum' up
 * to a quarter of their time at 40 classes (a min sweep per short row). */
#define BF_SM_MAGNIFY ((T)(sizeof(T) == 4 ? 128.0 : 1024.0))

/* The least x_c - m of one position (classes at stride st); NaN ignored */
BF_ALWAYS_INLINE T BF_FN(sm_least_gap)(const T *x, int64_t st, int64_t C, T m)
{
    T lo = 0;
#pragma omp simd reduction(min : lo)
    for (int64_t c = 0; c < C; c++) {
        T d = x[c * st] - m;
        lo = d < lo ? d : lo;
    }
    return lo;
}

/*
 * The write loops form a gradient entry as f e_c - term_c from the stored
 * e_c, which is off by up to half a subnormal step where it is subnormal; a
 * factor |f| above 1 (a class or sample weight, or grad_output, with
 * reduction 'sum' or 'none') magnifies that (float32: a weight of 1e4 times
 * e^-97 came out 4000-5000 ULP off).  This rewrites the entries of one position whose x_c - m <
 * BF_SM_TAIL with f e_c rounded once (bf_mul_exp_neg, as in BCE-with-logits'
 * tail), and their Hessian entries (h not NULL) with fh e_c, fh = gs / (1 + s)
 * (1 - p_c is 1 there).  term_c = G w_c t'_c with probability targets (tp
 * not NULL), else cE w_c (0 without smoothing), as in the loops.  Classes at
 * stride st; class t (the target, which has its own formula) is left alone.
 * Callers take it only where a factor exceeds BF_SM_MAGNIFY, sm_least_gap
 * finds such an x_c, and the gradient is not x itself (in place, x is gone):
 * rarely, so it is kept out of line.
 */
__attribute__((cold, noinline))
static void BF_FN(sm_grad_tail)(const T *x, int64_t st, int64_t C, int64_t t, T m, T f, T fh,
                                T cE, const T *w, T G, const T *tp, T keep, T add, T *g, T *h)
{
#pragma omp simd
    for (int64_t c = 0; c < C; c++) {
        T d = x[c * st] - m;
        T wc = BF_SM_W(w, c);
        T term = tp != NULL ? G * (wc * (tp[c * st] * keep + add)) : cE * wc;
        int fix = d < BF_SM_TAIL && c != t;
        g[c * st] = fix ? bf_mul_exp_neg(f, d) - term : g[c * st];
        if (h != NULL)
            h[c * st] = fix ? bf_mul_exp_neg(fh, d) : h[c * st];
    }
}

/* sm_least_gap of each of n positions of a block (class c of position i at
 * x[c cs + i]) into gap[i], vectorized across the positions as the block's
 * own loops are (a strided sweep per position cost weighted calls at 5
 * classes 10%). */
static void BF_FN(sm_block_gaps)(const T *x, int64_t cs, int64_t C, int64_t n, const T *m,
                                 T *gap)
{
    for (int64_t i = 0; i < n; i++)
        gap[i] = 0;
    for (int64_t c = 0; c < C; c++) {
        const T *xc = x + c * cs;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            T d = xc[i] - m[i];
            gap[i] = d < gap[i] ? d : gap[i];
        }
    }
}

/* max |v_i| of v[0..n), NaN ignored */
static inline T BF_FN(sm_most_abs)(const T *v, int64_t n)
{
    T big = 0;
#pragma omp simd reduction(max : big)
    for (int64_t i = 0; i < n; i++) {
        T a = bf_fabs(v[i]);
        big = a > big ? a : big;
    }
    return big;
}

/* float32 s below this was summed from subnormal e_c (each off by up to
 * 2^-150, so relative error up to C 2^-50 of it): sm_tiny_sum sums again */
#define BF_SM_TINY_S 0x1p-100

/*
 * s of a float32 position whose s came out below BF_SM_TINY_S, in double:
 * there every class but one max (ties make s >= 1) lies more than 69 below
 * it, and the float32 lanes held subnormal e_c (2-50% of s off where all
 * are, measured), which the loss, log-softmax at the max and the target's
 * gradient entry carry, times any weight.  Rare, so out of line; 16 lanes in
 * a fixed order, as everywhere.  Classes at stride st.
 */
__attribute__((cold, noinline))
static double BF_FN(sm_tiny_sum)(const T *x, int64_t st, int64_t C, T m)
{
    double acc[BF_LANES] = {0};
    for (int64_t c0 = 0; c0 < C; c0 += BF_LANES)
        for (int64_t j = 0; j < BF_LANES && c0 + j < C; j++) {
            T xc = x[(c0 + j) * st];
            acc[j] += xc == m ? 0.0 : bf_exp_neg_f64((double)xc - (double)m);
        }
    return bf_lanes_total(acc);
}

/* --------------------------------------------------- rows (inner == 1) */

static int BF_FN(softmax_rows_chunk)(const void *prob, int64_t lo, int64_t hi, double *partial)
{
    const bf_softmax *p = (const bf_softmax *)prob;
    const int64_t C = p->C;
    const int kind = p->kind;
    const T *x = (const T *)p->x, *w = (const T *)p->w, *gu = (const T *)p->grad_up;
    T *out = (T *)p->out;
    const double eps = p->eps, wsum = p->wsum;
    const int smooth = eps != 0.0;
    const T keep = (T)(1.0 - eps), add = (T)(eps / (double)C);
    double sl = 0.0, sw = 0.0, b;
    int bad = 0;
    if (kind == BF_SM_NLL && p->grad == NULL) {
        /* One scattered read per row, a likely cache miss: the row
         * BF_SM_NLL_AHEAD rows on is prefetched (its target clamped into
         * the row, since only an address inside x may be formed), which
         * keeps that many misses in flight where out-of-order execution
         * alone kept about a dozen. */
        for (int64_t r = lo; r < hi; r++) {
            if (r + BF_SM_NLL_AHEAD < hi) {
                uint64_t ta = (uint64_t)p->target[r + BF_SM_NLL_AHEAD];
                __builtin_prefetch(x + (r + BF_SM_NLL_AHEAD) * C + (ta < (uint64_t)C ? ta : 0));
            }
            int64_t t = p->target[r];
            int ign = t == p->ignore_index;
            int ok = !ign && t >= 0 && t < C;
            bad |= !ign && !ok;
            double wt = ok ? (double)BF_SM_W(w, t) : 0.0;
            double l = ok ? -wt * (double)x[r * C + t] : 0.0;
            if (out != NULL)
                out[r] = (T)l;
            sl += l;
            sw += wt;
        }
        if (partial != NULL) {
            partial[0] += sl;
            partial[1] += sw;
        }
        return bad ? BF_ERR_INDEX : BF_OK;
    }
    /* Rows go in groups: every row's sweeps, then log1p(s) of the group as
     * one vector loop, then every row's writes.  Taken a row at a time, the
     * log1p (a chain of some forty dependent operations, a division among
     * them) was not hidden by out-of-order execution: measured on Zen 4,
     * one thread, float32, ns a row before -> after: log_softmax 79 -> 55
     * at 40 classes, 100 -> 79 at 100; cross_entropy 93 -> 72 at 100,
     * 117 -> 101 at 200.  A group's rows stay within BF_SM_GROUP_BYTES, so
     * that the writes find them in L1 (plain cross-entropy writes none). */
    const int loss_only = (kind == BF_SM_CE || kind == BF_SM_CE_PROB) && p->grad == NULL;
    const int64_t rowb = C * (int64_t)sizeof(T);
    const int64_t G = loss_only || rowb * BF_SM_GROUP <= BF_SM_GROUP_BYTES ? BF_SM_GROUP
                      : rowb < BF_SM_GROUP_BYTES ? BF_SM_GROUP_BYTES / rowb : 1;
    const int flat = BF_SM_FLAT(C, sizeof(T), kind, smooth);
    for (int64_t g0 = lo; g0 < hi; g0 += G) {
        const int64_t ng = hi - g0 < G ? hi - g0 : G;
        double sv[BF_SM_GROUP], av[BF_SM_GROUP], bv[BF_SM_GROUP], Lv[BF_SM_GROUP];
        T mv[BF_SM_GROUP], xtv[BF_SM_GROUP];

        for (int64_t k = 0; k < BF_SM_GROUP; k++) {
            sv[k] = av[k] = bv[k] = 0.0;
            mv[k] = xtv[k] = 0;
        }
        /* x at each row's target, read before the sweeps write exp(x - m)
         * into the gradient, which may be x itself */
        for (int64_t k = 0; kind == BF_SM_CE && k < ng; k++) {
            int64_t t = p->target[g0 + k];
            xtv[k] = t >= 0 && t < C ? x[(g0 + k) * C + t] : (T)0;
        }
        if (flat)
            BF_FN(sm_flat_sweep)(x + g0 * C, C, ng, hi - g0 - ng < G ? hi - g0 - ng : G,
                                 kind == BF_SM_SOFTMAX ? out + g0 * C
                                 : p->grad != NULL ? (T *)p->grad + g0 * C : NULL,
                                 mv, sv);
        for (int64_t k = 0; !flat && k < ng; k++) {
            const int64_t r = g0 + k;
            const T *xr = x + r * C;
            const T *next = r + 1 < hi ? xr + C : NULL;
            T *gr = p->grad != NULL ? (T *)p->grad + r * C : NULL;
            if (kind == BF_SM_SOFTMAX) {
                sv[k] = BF_SM_PLAIN_SUMS(xr, C, &mv[k], out + r * C, next);
            } else if (kind == BF_SM_LOG_SOFTMAX) {
                sv[k] = BF_FN(sm_max_sums)(xr, C, &mv[k], next);
            } else if (kind == BF_SM_CE_PROB) {
                mv[k] = BF_SM_MAX(xr, C);
                sv[k] = BF_SM_ROW_SUMS(xr, C, mv[k], gr, BF_SM_SUMS_PROB, w,
                                       (const T *)p->ptarget + r * C, keep, add,
                                       &av[k], &bv[k], next);
            } else {
                int64_t t = p->target[r];
                if (kind != BF_SM_CE || t == p->ignore_index || t < 0 || t >= C) {
                    /* nothing to sweep: the writes below handle the row */
                } else if (gr == NULL && !smooth) {
                    sv[k] = BF_FN(sm_max_sums)(xr, C, &mv[k], next);
                } else if (smooth) {
                    mv[k] = BF_SM_MAX(xr, C);
                    sv[k] = BF_SM_ROW_SUMS(xr, C, mv[k], gr, BF_SM_SUMS_SMOOTH, w,
                                           NULL, 0, 0, &av[k], &b, next);
                } else {            /* a constant mode: gcc specializes the sweep */
                    sv[k] = BF_SM_PLAIN_SUMS(xr, C, &mv[k], gr, next);
                }
            }
        }

        /* All BF_SM_GROUP lanes, wherever the group ends; a group of one
         * row (long rows, where the 8-lane loop cost 4% of log_softmax at
         * 1000 classes) takes the scalar code of the same operations, so a
         * row's L is the same bits either way (the loss of a call with a
         * gradient, which may group fewer rows, equals the loss without
         * where both take this kernel -- not where the loss alone goes
         * column-wise and the call with a gradient does not (classes from
         * BF_SM_SMALL_FLAT_C + 1 to BF_SM_SMALL_FLAT_LOSS_C*, with smoothing
         * from BF_SM_SMALL_C + 1 to BF_SM_SMALL_LOSS_C*), where the two may
         * differ in the last bit; a test checks it). */
        /* (not where the sweeps wrote exps over x: a gradient in place) */
        for (int64_t k = 0; sizeof(T) == 4 && kind != BF_SM_SOFTMAX && p->grad != p->x && k < ng;
             k++) {
            int64_t t = kind == BF_SM_CE ? p->target[g0 + k] : 0;
            int swept = kind != BF_SM_CE || (t != p->ignore_index && t >= 0 && t < C);
            if (swept && sv[k] < BF_SM_TINY_S)
                sv[k] = BF_FN(sm_tiny_sum)(x + (g0 + k) * C, 1, C, mv[k]);
        }
        if (kind != BF_SM_SOFTMAX && G == 1) {
            Lv[0] = bf_log1p_pos_f64(sv[0]);
        } else if (kind != BF_SM_SOFTMAX) {
#pragma omp simd
            for (int k = 0; k < BF_SM_GROUP; k++)
                Lv[k] = bf_log1p_pos_f64(sv[k]);
        }

        if (flat && kind == BF_SM_SOFTMAX) {
            BF_FN(sm_flat_scale)(out + g0 * C, C, ng, sv);
            continue;
        }
        for (int64_t k = 0; k < ng; k++) {
            const int64_t r = g0 + k;
            const T *xr = x + r * C;
            T *gr = p->grad != NULL ? (T *)p->grad + r * C : NULL;
            T *hr = p->hess != NULL ? (T *)p->hess + r * C : NULL;
            double gs = p->grad_scale * (gu != NULL ? (double)gu[r] : 1.0);
            const double s = sv[k];
            const T m = mv[k];   /* set for the rows that were swept */

            if (kind == BF_SM_SOFTMAX) {
                T *orow = out + r * C;
                T rinv = (T)(1.0 / (1.0 + s));
#pragma omp simd
                for (int64_t i = 0; i < C; i++)
                    orow[i] = orow[i] * rinv;
                continue;
            }
            if (kind == BF_SM_LOG_SOFTMAX) {
                T *orow = out + r * C;
                T L = (T)Lv[k];
#pragma omp simd
                for (int64_t i = 0; i < C; i++)
                    orow[i] = (xr[i] - m) - L;
                continue;
            }

            if (kind == BF_SM_CE_PROB) {
                const T *tr = (const T *)p->ptarget + r * C;
                double L = C > 0 ? Lv[k] : 0.0;
                double l = av[k] + L * bv[k];
                if (out != NULL)
                    out[r] = (T)l;
                sl += l;
                if (gr != NULL) {
                    T cp = (T)(gs * bv[k] / (1.0 + s)), G_ = (T)gs;
                    if (w != NULL) {
#pragma omp simd
                        for (int64_t i = 0; i < C; i++)
                            gr[i] = cp * gr[i] - G_ * (w[i] * (tr[i] * keep + add));
                    } else {
#pragma omp simd
                        for (int64_t i = 0; i < C; i++)
                            gr[i] = cp * gr[i] - G_ * (tr[i] * keep + add);
                    }
                    if (bf_fabs(cp) > BF_SM_MAGNIFY && (const T *)gr != xr
                        && BF_FN(sm_least_gap)(xr, 1, C, m) < BF_SM_TAIL)
                        BF_FN(sm_grad_tail)(xr, 1, C, -1, m, cp, 0, 0, w, G_, tr, keep, add, gr,
                                            NULL);
                }
                continue;
            }

            /* class-index kinds */
            int64_t t = p->target[r];
            int ign = t == p->ignore_index;
            int oob = !ign && (t < 0 || t >= C);
            if (ign || oob) {
                bad |= oob;
                if (out != NULL)
                    out[r] = 0;
                for (int64_t i = 0; gr != NULL && i < C; i++)
                    gr[i] = 0;
                for (int64_t i = 0; hr != NULL && i < C; i++)
                    hr[i] = 0;
                continue;
            }
            double wt = (double)BF_SM_W(w, t);
            sw += wt;
            if (kind == BF_SM_NLL) {
                double l = -wt * (double)xr[t];
                if (out != NULL)
                    out[r] = (T)l;
                sl += l;
                if (gr != NULL) {
                    for (int64_t i = 0; i < C; i++)
                        gr[i] = 0;
                    gr[t] = (T)(-gs * wt);
                }
                continue;
            }

            /* cross-entropy with a class index */
            const double L = Lv[k];
            double l = bf_sm_ce_loss((double)m, (double)xtv[k], L, wt, av[k], eps, (double)C,
                                     wsum, smooth);
            if (out != NULL)
                out[r] = (T)l;
            sl += l;
            if (gr != NULL) {
                double rinv = 1.0 / (1.0 + s);
                double et = (double)gr[t];
                double Bt = gs * (1.0 - eps) * wt, E = gs * eps / (double)C;
                T cp = (T)((Bt + E * wsum) * rinv), cE = (T)E;
                if (hr != NULL) {
                    T ts = (T)s, tr_ = (T)rinv, H = (T)gs;
#pragma omp simd
                    for (int64_t i = 0; i < C; i++) {
                        T e = gr[i];
                        hr[i] = H * ((e * tr_) * ((((T)1 - e) + ts) * tr_));
                        gr[i] = cp * e;
                    }
                } else if (smooth && w != NULL) {
#pragma omp simd
                    for (int64_t i = 0; i < C; i++)
                        gr[i] = cp * gr[i] - cE * w[i];
                } else if (smooth) {
#pragma omp simd
                    for (int64_t i = 0; i < C; i++)
                        gr[i] = cp * gr[i] - cE;
                } else {
#pragma omp simd
                    for (int64_t i = 0; i < C; i++)
                        gr[i] = cp * gr[i];
                }
                T fh = hr != NULL ? (T)(gs * rinv) : (T)0;
                if ((bf_fabs(cp) > BF_SM_MAGNIFY || bf_fabs(fh) > BF_SM_MAGNIFY)
                    && (const T *)gr != xr && (const T *)hr != xr
                    && BF_FN(sm_least_gap)(xr, 1, C, m) < BF_SM_TAIL)
                    BF_FN(sm_grad_tail)(xr, 1, C, t, m, cp, fh, cE, smooth ? w : NULL, 0, NULL, 0,
                                        0, gr, hr);
                gr[t] = (T)bf_sm_ce_grad_t(gs, wt, et, s, rinv, eps, (double)C, wsum, smooth);
            }
        }
    }
    if (partial != NULL) {
        partial[0] += sl;
        partial[1] += sw;
    }
    return bad ? BF_ERR_INDEX : BF_OK;
}

/* ------------------------------------------- blocks of positions (columns) */

/*
 * n <= BF_TILE positions pos..pos+n-1 whose class c sits at xb[c*cs + i]
 * (ptarget at pb, map output at ob, gradient at gb: same layout), vectorized
 * across the positions.  Per-position results (losses, targets, grad_up) are
 * indexed by pos + i.  Adds the losses and target weights to *sl, *sw.
 * Log-softmax with ob NULL puts m and L of position i into mL[i] and
 * mL[BF_TILE + i] instead, for a caller that writes the map itself.
 */
static int BF_FN(sm_block)(const bf_softmax *p, int64_t pos, int64_t n, int64_t cs,
                           const T *xb, const T *pb, T *ob, T *gb, T *hb,
                           double *slp, double *swp, T *mL)
{
    const int64_t C = p->C;
    const int kind = p->kind;
    const T *w = (const T *)p->w, *gu = (const T *)p->grad_up;
    T *out = (T *)p->out;
    const double eps = p->eps, wsum = p->wsum;
    const int smooth = eps != 0.0;
    const T keep = (T)(1.0 - eps), add = (T)(eps / (double)C);
    T *eb = kind == BF_SM_SOFTMAX ? ob : gb;     /* where e_c is kept, or NULL */
    T m[BF_TILE], xtv[BF_TILE], cpv[BF_TILE], cEv[BF_TILE], Gv[BF_TILE], Lv[BF_TILE];
    T gap[BF_TILE];                               /* sm_block_gaps */
    T st[BF_TILE], at[BF_TILE], bt[BF_TILE], ct[BF_TILE];
    double s[BF_TILE], a[BF_TILE], b[BF_TILE], cnt[BF_TILE], gsv[BF_TILE], etv[BF_TILE];
    double err_s[BF_TILE], err_a[BF_TILE], err_b[BF_TILE];   /* of s, a, b (TwoSum) */
    double wv[BF_TILE], lv[BF_TILE];              /* w[t] (0 if ignored), losses */
    int64_t tv[BF_TILE];
    double sl = 0.0, sw = 0.0;
    int bad = 0;

    if (C == 0) {           /* no classes: every target is ignored or out of range */
        if (kind == BF_SM_CE || kind == BF_SM_NLL)
            for (int64_t i = 0; i < n; i++)
                bad |= p->target[pos + i] != p->ignore_index;
        if (out != NULL && kind != BF_SM_SOFTMAX && kind != BF_SM_LOG_SOFTMAX)
            for (int64_t i = 0; i < n; i++)
                out[pos + i] = 0;
        return bad;
    }
    for (int64_t i = 0; i < n; i++) {
        gsv[i] = p->grad_scale * (gu != NULL ? (double)gu[pos + i] : 1.0);
        tv[i] = -1;
    }
    /* Per-position loops below are branch-free, so that they vectorize: an
     * ignored or invalid position reads class 0 (which exists: C > 0) and
     * its result is selected away (tv < 0, wv = 0).  A test inside such a
     * loop can keep it from vectorizing at all (a 'C > 0 ?' there once made
     * CE 2x slower).  Sums go through bf_sm_dsum. */
    if (kind == BF_SM_CE || kind == BF_SM_NLL) {
        const int64_t *tg = p->target + pos, ii = p->ignore_index;
#pragma omp simd reduction(| : bad)
        for (int64_t i = 0; i < n; i++) {
            int64_t t = tg[i];
            int ign = t == ii;
            int ok = !ign && t >= 0 && t < C;
            bad |= !ign && !ok;
            tv[i] = ok ? t : -1;
            wv[i] = ok ? (double)BF_SM_W(w, ok ? t : 0) : 0.0;
        }
        sw = bf_sm_dsum(wv, n);
    }
    if (kind == BF_SM_NLL) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            int ok = tv[i] >= 0;
            lv[i] = ok ? -wv[i] * (double)xb[(ok ? tv[i] : 0) * cs + i] : 0.0;
        }
        if (out != NULL)
            for (int64_t i = 0; i < n; i++)
                out[pos + i] = (T)lv[i];
        sl = bf_sm_dsum(lv, n);
        if (gb != NULL) {
            for (int64_t c = 0; c < C; c++)
                for (int64_t i = 0; i < n; i++)
                    gb[c * cs + i] = 0;
            for (int64_t i = 0; i < n; i++)
                if (tv[i] >= 0)
                    gb[tv[i] * cs + i] = (T)(-gsv[i] * wv[i]);
        }
        goto done;
    }

    /* max */
    for (int64_t i = 0; i < n; i++)
        m[i] = -(T)__builtin_inf();
    for (int64_t c = 0; c < C; c++) {
        const T *xc = xb + c * cs;
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            m[i] = xc[i] > m[i] ? xc[i] : m[i];
    }
    if (kind == BF_SM_CE) {                      /* x[t], now in cache */
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            xtv[i] = xb[(tv[i] >= 0 ? tv[i] : 0) * cs + i];
    }
    /* exp and sums: each position adds its classes in order, in T over
     * groups of 16 classes, the group totals in double; a (smoothing,
     * probabilities) and b (probabilities) only where they are used */
    const int want_a = kind == BF_SM_CE_PROB || (kind == BF_SM_CE && smooth);
    const int want_b = kind == BF_SM_CE_PROB;
    const int twosum = BF_SM_TWOSUM && C > 16;    /* one group adds into 0 exactly */
    for (int64_t i = 0; i < n; i++)
        s[i] = a[i] = b[i] = cnt[i] = 0.0;
    for (int64_t i = 0; twosum && i < n; i++)
        err_s[i] = err_a[i] = err_b[i] = 0.0;
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
        int64_t c1 = C - c0 < 16 ? C : c0 + 16;
        for (int64_t i = 0; i < n; i++)
            st[i] = at[i] = bt[i] = ct[i] = 0;
        for (int64_t c = c0; c < c1; c++) {
            const T *xc = xb + c * cs;
            T *ec = eb != NULL ? eb + c * cs : Lv;   /* Lv: scratch for exps kept nowhere */
            if (kind == BF_SM_CE_PROB) {
                const T *tc = pb + c * cs;
                T wc = BF_SM_W(w, c);
#pragma omp simd
                for (int64_t i = 0; i < n; i++) {
                    T xi = xc[i], e = bf_exp_neg(xi - m[i]);
                    int eq = xi == m[i];
                    ct[i] += eq ? (T)1 : (T)0;
                    st[i] += eq ? (T)0 : e;
                    T wtp = wc * (tc[i] * keep + add);
                    at[i] += wtp * (m[i] - xi);
                    bt[i] += wtp;
                    ec[i] = e;
                }
            } else if (kind == BF_SM_CE && smooth) {
                T wc = BF_SM_W(w, c);
#pragma omp simd
                for (int64_t i = 0; i < n; i++) {
                    T xi = xc[i], e = bf_exp_neg(xi - m[i]);
                    int eq = xi == m[i];
                    ct[i] += eq ? (T)1 : (T)0;
                    st[i] += eq ? (T)0 : e;
                    at[i] += wc * (m[i] - xi);
                    ec[i] = e;
                }
            } else if (eb != NULL) {
#pragma omp simd
                for (int64_t i = 0; i < n; i++) {
                    T xi = xc[i], e = bf_exp_neg(xi - m[i]);
                    int eq = xi == m[i];
                    ct[i] += eq ? (T)1 : (T)0;
                    st[i] += eq ? (T)0 : e;
                    ec[i] = e;
                }
            } else {
#pragma omp simd
                for (int64_t i = 0; i < n; i++) {
                    T xi = xc[i], e = bf_exp_neg(xi - m[i]);
                    int eq = xi == m[i];
                    ct[i] += eq ? (T)1 : (T)0;
                    st[i] += eq ? (T)0 : e;
                }
            }
        }
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            s[i] = twosum ? bf_sum_err(s[i], (double)st[i], &err_s[i]) : s[i] + (double)st[i];
            cnt[i] += (double)ct[i];
        }
        if (want_a) {
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                a[i] = twosum ? bf_sum_err(a[i], (double)at[i], &err_a[i]) : a[i] + (double)at[i];
        }
        if (want_b) {
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                b[i] = twosum ? bf_sum_err(b[i], (double)bt[i], &err_b[i]) : b[i] + (double)bt[i];
        }
    }
    if (twosum) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            s[i] += err_s[i];
            a[i] += err_a[i];
            b[i] += err_b[i];
        }
    }
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        s[i] += cnt[i] - 1.0;
        s[i] = m[i] == (T)__builtin_inf() ? (double)__builtin_nan("") : s[i];
    }
    /* float32 positions with a tiny s (sm_tiny_sum), found in one vector pass
     * (a test per position cost 10% at 5 classes) */
    if (sizeof(T) == 4 && kind != BF_SM_SOFTMAX && kind != BF_SM_NLL && gb != xb) {
        double least = BF_SM_TINY_S;
#pragma omp simd reduction(min : least)
        for (int64_t i = 0; i < n; i++)
            least = s[i] < least ? s[i] : least;
        for (int64_t i = 0; least < BF_SM_TINY_S && i < n; i++)
            if (s[i] < BF_SM_TINY_S && (kind != BF_SM_CE || tv[i] >= 0))
                s[i] = BF_FN(sm_tiny_sum)(xb + i, cs, C, m[i]);
    }

    if (kind == BF_SM_SOFTMAX) {
        T *rinv = Lv;                            /* 1 / (1 + s), in L's buffer */
        for (int64_t i = 0; i < n; i++)
            rinv[i] = (T)(1.0 / (1.0 + s[i]));
        for (int64_t c = 0; c < C; c++) {
            T *oc = ob + c * cs;
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                oc[i] = oc[i] * rinv[i];
        }
        goto done;
    }
    if (kind == BF_SM_LOG_SOFTMAX) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            Lv[i] = bf_log1p_pos((T)s[i]);
        if (ob == NULL) {
            for (int64_t i = 0; i < n; i++) {
                mL[i] = m[i];
                mL[BF_TILE + i] = Lv[i];
            }
            goto done;
        }
        for (int64_t c = 0; c < C; c++) {
            const T *xc = xb + c * cs;
            T *oc = ob + c * cs;
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                oc[i] = (xc[i] - m[i]) - Lv[i];
        }
        goto done;
    }

    /* losses (L in T, as for log-softmax above, but where s is tiny: there
     * log1p(s) = s, and s in T could be subnormal, magnified by weights) */
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        etv[i] = s[i] < BF_SM_TINY_S ? s[i] : (double)bf_log1p_pos((T)s[i]);
    if (kind == BF_SM_CE_PROB) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            lv[i] = a[i] + etv[i] * b[i];
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            double l = bf_sm_ce_loss((double)m[i], (double)xtv[i], etv[i], wv[i], a[i], eps,
                                     (double)C, wsum, smooth);
            lv[i] = tv[i] >= 0 ? l : 0.0;
        }
    }
    if (out != NULL)
        for (int64_t i = 0; i < n; i++)
            out[pos + i] = (T)lv[i];
    sl = bf_sm_dsum(lv, n);
    if (gb == NULL)
        goto done;

    /* gradient: e_c is in gb */
    int magnify = 0;                /* a factor above BF_SM_MAGNIFY (sm_grad_tail) */
    if (kind == BF_SM_CE_PROB) {
        for (int64_t i = 0; i < n; i++) {
            cpv[i] = (T)(gsv[i] * b[i] / (1.0 + s[i]));
            Gv[i] = (T)gsv[i];
        }
        magnify = BF_FN(sm_most_abs)(cpv, n) > BF_SM_MAGNIFY;
        for (int64_t c = 0; c < C; c++) {
            const T *tc = pb + c * cs;
            T *gc = gb + c * cs;
            T wc = BF_SM_W(w, c);
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                gc[i] = cpv[i] * gc[i] - Gv[i] * (wc * (tc[i] * keep + add));
        }
        if (magnify && gb != xb) {
            BF_FN(sm_block_gaps)(xb, cs, C, n, m, gap);
            for (int64_t i = 0; i < n; i++)
                if (bf_fabs(cpv[i]) > BF_SM_MAGNIFY && gap[i] < BF_SM_TAIL)
                    BF_FN(sm_grad_tail)(xb + i, cs, C, -1, m[i], cpv[i], 0, 0, w, Gv[i], pb + i,
                                        keep, add, gb + i, NULL);
        }
        goto done;
    }
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        int ok = tv[i] >= 0;
        double Bt = gsv[i] * (1.0 - eps) * wv[i], E = ok ? gsv[i] * eps / (double)C : 0.0;
        cpv[i] = (T)(bf_fma(E, wsum, Bt) / (1.0 + s[i]));
        cEv[i] = (T)E;
        etv[i] = ok ? (double)gb[(ok ? tv[i] : 0) * cs + i] : 0.0;
    }
    magnify = BF_FN(sm_most_abs)(cpv, n) > BF_SM_MAGNIFY;
    if (hb != NULL) {                            /* gs p (1 - p), 1 - p = ((1 - e) + s) / (1 + s) */
        T *rinv = Gv, *st_ = Lv, *gst = xtv;     /* buffers done with, under these names here */
        for (int64_t i = 0; i < n; i++) {
            rinv[i] = (T)(1.0 / (1.0 + s[i]));
            st_[i] = (T)s[i];
            gst[i] = tv[i] >= 0 ? (T)gsv[i] : (T)0;
        }
        magnify |= BF_FN(sm_most_abs)(gst, n) * BF_FN(sm_most_abs)(rinv, n) > BF_SM_MAGNIFY;
        for (int64_t c = 0; c < C; c++) {
            const T *gc = gb + c * cs;
            T *hc = hb + c * cs;
#pragma omp simd
            for (int64_t i = 0; i < n; i++) {
                T e = gc[i];
                hc[i] = gst[i] * ((e * rinv[i]) * ((((T)1 - e) + st_[i]) * rinv[i]));
            }
        }
    }
    for (int64_t c = 0; c < C; c++) {
        T *gc = gb + c * cs;
        T wc = smooth ? BF_SM_W(w, c) : (T)0;
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            T g = cpv[i] * gc[i] - cEv[i] * wc;
            gc[i] = tv[i] >= 0 ? g : (T)0;
        }
    }
    if (magnify && gb != xb && hb != xb) {
        BF_FN(sm_block_gaps)(xb, cs, C, n, m, gap);
        for (int64_t i = 0; i < n; i++) {
            T fh = hb != NULL ? (T)(gsv[i] / (1.0 + s[i])) : (T)0;
            if (tv[i] >= 0 && gap[i] < BF_SM_TAIL
                && (bf_fabs(cpv[i]) > BF_SM_MAGNIFY || bf_fabs(fh) > BF_SM_MAGNIFY))
                BF_FN(sm_grad_tail)(xb + i, cs, C, tv[i], m[i], cpv[i], fh, cEv[i],
                                    smooth ? w : NULL, 0, NULL, 0, 0, gb + i,
                                    hb != NULL ? hb + i : NULL);
        }
    }
    for (int64_t i = 0; i < n; i++) {
        if (tv[i] < 0)
            continue;
        gb[tv[i] * cs + i] = (T)bf_sm_ce_grad_t(gsv[i], wv[i], etv[i], s[i], 1.0 / (1.0 + s[i]),
                                                eps, (double)C, wsum, smooth);
    }
done:
    *slp += sl;
    *swp += sw;
    return bad;
}

/* inner > 1: blocks of neighbouring positions of one outer index. */
static int BF_FN(softmax_inner_chunk)(const void *prob, int64_t lo, int64_t hi, double *partial)
{
    const bf_softmax *p = (const bf_softmax *)prob;
    const int64_t C = p->C, inner = p->inner;
    const int is_map = p->kind == BF_SM_SOFTMAX || p->kind == BF_SM_LOG_SOFTMAX;
    double sl = 0.0, sw = 0.0;
    int bad = 0;
    int64_t n;
    for (int64_t pos = lo; pos < hi; pos += n) {
        int64_t o = pos / inner, i0 = pos % inner;
        n = inner - i0;
        n = n < hi - pos ? n : hi - pos;
        n = n < BF_TILE ? n : BF_TILE;
        const int64_t base = o * C * inner + i0;     /* element (c, i) at base + c*inner + i */
        bad |= BF_FN(sm_block)(p, pos, n, inner, (const T *)p->x + base,
                               p->ptarget != NULL ? (const T *)p->ptarget + base : NULL,
                               is_map ? (T *)p->out + base : NULL,
                               p->grad != NULL ? (T *)p->grad + base : NULL,
                               p->hess != NULL ? (T *)p->hess + base : NULL, &sl, &sw,
                               NULL);
    }
    if (partial != NULL) {
        partial[0] += sl;
        partial[1] += sw;
    }
    return bad ? BF_ERR_INDEX : BF_OK;
}

/*
 * inner == 1 and few classes (see the top): per-row work would dominate, so
 * tiles of rows (as many as fit BF_SM_SMALL_BUF elements, at most BF_TILE)
 * are transposed into (C, rows) buffers and run as a block of positions;
 * map outputs and gradients are transposed back (which also makes
 * out == x safe).  Tiles of 32 rows, as before, left sm_block's per-block
 * work dominant: 4096-element tiles made float32 cross-entropy 1.4x faster
 * at 3 and 10 classes, 1.2x at 21 and 32.  Which calls take it, by class
 * count, is BF_SM_SMALL_* in bf_kernels.h: losses without a gradient longer
 * than other calls (all of them were column-wise up to 64 classes once,
 * 78 -> 41 ns a row at 40; since the flat row sweeps, plain ones up to
 * BF_SM_SMALL_FLAT_LOSS_C*, smoothed ones up to BF_SM_SMALL_LOSS_C*).
 */
static int BF_FN(softmax_small_chunk)(const void *prob, int64_t lo, int64_t hi, double *partial)
{
    const bf_softmax *p = (const bf_softmax *)prob;
    const int64_t C = p->C;
    const int is_map = p->kind == BF_SM_SOFTMAX || p->kind == BF_SM_LOG_SOFTMAX;
    /* Log-softmax needs only m and L of each row from the transposed tile:
     * its map is written row by row from x instead of transposed back, the
     * same bits (one thread, float32, 16-32 classes: 1.3-1.4x faster).  The
     * same for softmax (taking its exps again) measured slower at 10-21
     * classes. */
    const int lsm = p->kind == BF_SM_LOG_SOFTMAX;
    T *dst = lsm ? NULL : is_map ? (T *)p->out : (T *)p->grad;
    T xbuf[BF_SM_SMALL_BUF], pbuf[BF_SM_SMALL_BUF], obuf[BF_SM_SMALL_BUF], hbuf[BF_SM_SMALL_BUF];
    T mL[2 * BF_TILE];
    const int64_t rows = C > 0 && BF_SM_SMALL_BUF / C < BF_TILE ? BF_SM_SMALL_BUF / C : BF_TILE;
    double sl = 0.0, sw = 0.0;
    int bad = 0;
    int64_t n;
    for (int64_t pos = lo; pos < hi; pos += n) {
        n = hi - pos < rows ? hi - pos : rows;
        const T *xr = (const T *)p->x + pos * C;
        for (int64_t c = 0; c < C; c++)
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                xbuf[c * n + i] = xr[i * C + c];
        if (p->ptarget != NULL) {
            const T *pr = (const T *)p->ptarget + pos * C;
            for (int64_t i = 0; i < n; i++)
                for (int64_t c = 0; c < C; c++)
                    pbuf[c * n + i] = pr[i * C + c];
        }
        bad |= BF_FN(sm_block)(p, pos, n, n, xbuf, pbuf, is_map && !lsm ? obuf : NULL,
                               p->grad != NULL ? obuf : NULL, p->hess != NULL ? hbuf : NULL,
                               &sl, &sw, mL);
        if (lsm && C > 0) {
            T *dr = (T *)p->out + pos * C;
            for (int64_t i = 0; i < n; i++) {
                const T mi = mL[i], Li = mL[BF_TILE + i];
#pragma omp simd
                for (int64_t c = 0; c < C; c++)
                    dr[i * C + c] = (xr[i * C + c] - mi) - Li;
            }
        }
        if (dst != NULL) {
            T *dr = dst + pos * C;
            for (int64_t i = 0; i < n; i++)
                for (int64_t c = 0; c < C; c++)
                    dr[i * C + c] = obuf[c * n + i];
        }
        if (p->hess != NULL) {
            T *hr = (T *)p->hess + pos * C;
            for (int64_t i = 0; i < n; i++)
                for (int64_t c = 0; c < C; c++)
                    hr[i * C + c] = hbuf[c * n + i];
        }
    }
    if (partial != NULL) {
        partial[0] += sl;
        partial[1] += sw;
    }
    return bad ? BF_ERR_INDEX : BF_OK;
}

/* ------------------------------------------ few long rows, split over classes */

/*
 * inner == 1, few rows, many classes (bf_softmax.c decides from the shape
 * only, so results do not depend on the thread count).  Three phases over a
 * caller-provided scratch (BF_SM_SPLIT_FIELDS doubles per (row, block) of
 * BF_SM_SPLIT_BLOCK classes, then BF_SM_SPLIT_FINAL per row):
 *   partial: per block, its max m_b, S_b = sum of exp(x - m_b) over x != m_b,
 *            the count of x == m_b, a_b (smoothing / probability sum relative
 *            to m_b), its weight total wb_b and x at the row's target if the
 *            block holds it (read first: the gradient may be x itself); e_c
 *            relative to m_b stored into the map output or gradient;
 *   combine: per row, in block order, m = max m_b,
 *            s = sum_{m_b = m} S_b + sum_{m_b < m} (S_b + cnt_b) e^(m_b - m)
 *                + (sum_{m_b = m} cnt_b - 1)   (no cancellation), the loss;
 *   finish:  per block, the map or gradient with e_c rescaled by e^(m_b - m).
 */
static int BF_FN(softmax_split_partial)(const void *prob, int64_t lo, int64_t hi, double *partial)
{
    const bf_softmax *p = (const bf_softmax *)prob;
    const int64_t C = p->C, B = BF_SM_SPLIT_BLOCK, nb = (C + B - 1) / B;
    const int kind = p->kind;
    const int smooth = p->eps != 0.0 && kind == BF_SM_CE;
    const T keep = (T)(1.0 - p->eps), add = (T)(p->eps / (double)C);
    const T *w = (const T *)p->w;
    (void)partial;
    for (int64_t u = lo; u < hi; u++) {
        int64_t r = u / nb, c0 = (u % nb) * B;
        int64_t n = C - c0 < B ? C - c0 : B;
        const T *xs = (const T *)p->x + r * C + c0;
        T *dst = kind == BF_SM_SOFTMAX ? (T *)p->out + r * C + c0
                 : p->grad != NULL ? (T *)p->grad + r * C + c0 : NULL;
        const T *ws = w != NULL ? w + c0 : NULL;
        int mode = smooth ? BF_SM_SUMS_SMOOTH : kind == BF_SM_CE_PROB ? BF_SM_SUMS_PROB
                                                                      : BF_SM_SUMS_PLAIN;
        const T *ts = kind == BF_SM_CE_PROB ? (const T *)p->ptarget + r * C + c0 : NULL;
        T m;
        double a = 0.0, b = 0.0, cnt, xt = 0.0;
        double S;
        if (kind == BF_SM_CE) {
            int64_t t = p->target[r];
            xt = t >= c0 && t < c0 + n ? (double)xs[t - c0] : 0.0;
        }
        if (dst == NULL && mode == BF_SM_SUMS_PLAIN) {
            S = BF_FN(sm_online_seg)(xs, n, &m, NULL, &cnt);
        } else {
            int64_t icnt;
            if (mode == BF_SM_SUMS_PLAIN) {
                int64_t span[2];
                m = BF_SM_MAX_SPAN(xs, n, span);
                S = BF_FN(sm_plain_seg)(xs, n, m, span, dst, NULL, &icnt);
            } else {
                m = BF_SM_MAX(xs, n);
                S = BF_FN(sm_seg_sums)(xs, n, m, dst, mode, ws, ts, keep, add, &a, &b, NULL,
                                       &icnt);
            }
            cnt = (double)icnt;
        }
        if (smooth) {
            b = ws != NULL ? 0.0 : (double)n;
            for (int64_t i = 0; ws != NULL && i < n; i++)
                b += (double)ws[i];
        }
        double *f = p->scratch + u * BF_SM_SPLIT_FIELDS;
        f[0] = (double)m;
        f[1] = S;
        f[2] = cnt;
        f[3] = a;
        f[4] = b;
        f[5] = xt;
    }
    return BF_OK;
}

static int BF_FN(softmax_split_combine)(const void *prob, int64_t lo, int64_t hi, double *partial)
{
    const bf_softmax *p = (const bf_softmax *)prob;
    const int64_t C = p->C, B = BF_SM_SPLIT_BLOCK, nb = (C + B - 1) / B;
    const int kind = p->kind;
    const double eps = p->eps;
    const int smooth = eps != 0.0 && kind == BF_SM_CE;
    const T *w = (const T *)p->w;
    T *out = (T *)p->out;
    double *fin = p->scratch + p->outer * nb * BF_SM_SPLIT_FIELDS;
    double sl = 0.0, sw = 0.0;
    int bad = 0;
    for (int64_t r = lo; r < hi; r++) {
        const double *f = p->scratch + r * nb * BF_SM_SPLIT_FIELDS;
        double m = -__builtin_inf();
        for (int64_t b = 0; b < nb; b++)
            m = f[b * BF_SM_SPLIT_FIELDS] > m ? f[b * BF_SM_SPLIT_FIELDS] : m;
        double S = 0.0, cnt = 0.0, a = 0.0, wb = 0.0;
        for (int64_t b = 0; b < nb; b++) {
            const double *g = f + b * BF_SM_SPLIT_FIELDS;
            if (g[0] == m) {
                S += g[1];
                cnt += g[2];
                a += g[3];
            } else {
                S += (g[1] + g[2]) * bf_exp_neg_f64(g[0] - m);
                a += g[0] == -__builtin_inf() ? g[4] * __builtin_inf() : g[3] + (m - g[0]) * g[4];
            }
            wb += g[4];
        }
        double s = m == __builtin_inf() ? __builtin_nan("") : S + (cnt - 1.0);
        int64_t t = kind == BF_SM_CE ? p->target[r] : 0;
        if (sizeof(T) == 4 && s < BF_SM_TINY_S && p->grad != p->x
            && (kind != BF_SM_CE || (t != p->ignore_index && t >= 0 && t < C)))
            s = BF_FN(sm_tiny_sum)((const T *)p->x + r * C, 1, C, (T)m);
        double L = bf_log1p_pos_f64(s), l = 0.0;
        int valid = 1;
        if (kind == BF_SM_CE) {
            int ign = t == p->ignore_index;
            int oob = !ign && (t < 0 || t >= C);
            bad |= oob;
            valid = !ign && !oob;
            if (valid) {
                double wt = (double)BF_SM_W(w, t);
                l = bf_sm_ce_loss(m, f[(t / B) * BF_SM_SPLIT_FIELDS + 5], L, wt, a, eps,
                                  (double)C, p->wsum, smooth);
                sw += wt;
            }
        } else if (kind == BF_SM_CE_PROB) {
            l = a + L * wb;
        }
        if (kind == BF_SM_CE || kind == BF_SM_CE_PROB) {
            if (out != NULL)
                out[r] = (T)l;
            sl += l;
        }
        double *q = fin + r * BF_SM_SPLIT_FINAL;
        q[0] = m;
        q[1] = s;
        q[2] = L;
        q[3] = wb;
        q[4] = valid;
    }
    if (partial != NULL) {
        partial[0] += sl;
        partial[1] += sw;
    }
    return bad ? BF_ERR_INDEX : BF_OK;
}

static int BF_FN(softmax_split_finish)(const void *prob, int64_t lo, int64_t hi, double *partial)
{
    const bf_softmax *p = (const bf_softmax *)prob;
    const int64_t C = p->C, B = BF_SM_SPLIT_BLOCK, nb = (C + B - 1) / B;
    const int kind = p->kind;
    const double eps = p->eps;
    const int smooth = eps != 0.0 && kind == BF_SM_CE;
    const T keep = (T)(1.0 - eps), add = (T)(eps / (double)C);
    const T *w = (const T *)p->w, *gu = (const T *)p->grad_up;
    const double *fin = p->scratch + p->outer * nb * BF_SM_SPLIT_FIELDS;
    (void)partial;
    for (int64_t u = lo; u < hi; u++) {
        int64_t r = u / nb, c0 = (u % nb) * B;
        int64_t n = C - c0 < B ? C - c0 : B;
        const double *q = fin + r * BF_SM_SPLIT_FINAL;
        double m = q[0], s = q[1], L = q[2];
        double mb = p->scratch[u * BF_SM_SPLIT_FIELDS];
        double rinv = 1.0 / (1.0 + s);
        double scale = mb == m ? 1.0 : bf_exp_neg_f64(mb - m);   /* e_c relative to m */
        const T *xs = (const T *)p->x + r * C + c0;
        T *eb = kind == BF_SM_SOFTMAX ? (T *)p->out + r * C + c0
                : p->grad != NULL ? (T *)p->grad + r * C + c0 : NULL;
        if (mb == -__builtin_inf() && m != mb && eb != NULL) {
            /* a block of -inf: its e_c are NaN (-inf - -inf) but stand for 0 */
            T z = (T)(0.0 * rinv);
            for (int64_t i = 0; i < n; i++)
                eb[i] = z;
        }
        if (kind == BF_SM_SOFTMAX) {
            T *o = (T *)p->out + r * C + c0;
            T f = (T)(scale * rinv);
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                o[i] = o[i] * f;
            continue;
        }
        if (kind == BF_SM_LOG_SOFTMAX) {
            T *o = (T *)p->out + r * C + c0;
            T mt = (T)m, Lt = (T)L;
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                o[i] = (xs[i] - mt) - Lt;
            continue;
        }
        T *g = (T *)p->grad + r * C + c0;
        double gs = p->grad_scale * (gu != NULL ? (double)gu[r] : 1.0);
        if (kind == BF_SM_CE_PROB) {
            const T *ts = (const T *)p->ptarget + r * C + c0;
            T cp = (T)(gs * q[3] * scale * rinv), G = (T)gs, f = (T)(gs * q[3] * rinv);
            const T *ws = w != NULL ? w + c0 : NULL;
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                g[i] = cp * g[i] - G * (BF_SM_W(ws, i) * (ts[i] * keep + add));
            /* e_c relative to the row's max: f e_c, f >= cp */
            if (bf_fabs(f) > BF_SM_MAGNIFY && (const T *)g != xs
                && BF_FN(sm_least_gap)(xs, 1, n, (T)m) < BF_SM_TAIL)
                BF_FN(sm_grad_tail)(xs, 1, n, -1, (T)m, f, 0, 0, ws, G, ts, keep, add, g, NULL);
            continue;
        }
        if (q[4] == 0.0) {                               /* ignored or invalid row */
            for (int64_t i = 0; i < n; i++)
                g[i] = 0;
            continue;
        }
        int64_t t = p->target[r];
        double wt = (double)BF_SM_W(w, t);
        double Bt = gs * (1.0 - eps) * wt, E = gs * eps / (double)C;
        int has_t = t >= c0 && t < c0 + n;
        double et = has_t ? (double)g[t - c0] * scale : 0.0;
        T cp = (T)((Bt + E * p->wsum) * scale * rinv), cE = (T)E;
        if (smooth) {
            const T *ws = w != NULL ? w + c0 : NULL;
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                g[i] = cp * g[i] - cE * BF_SM_W(ws, i);
        } else {
#pragma omp simd
            for (int64_t i = 0; i < n; i++)
                g[i] = cp * g[i];
        }
        T f = (T)((Bt + E * p->wsum) * rinv);
        if (bf_fabs(f) > BF_SM_MAGNIFY && (const T *)g != xs
            && BF_FN(sm_least_gap)(xs, 1, n, (T)m) < BF_SM_TAIL)
            BF_FN(sm_grad_tail)(xs, 1, n, has_t ? t - c0 : -1, (T)m, f, 0, cE,
                                smooth && w != NULL ? w + c0 : NULL, 0, NULL, 0, 0, g, NULL);
        if (has_t)
            g[t - c0] = (T)bf_sm_ce_grad_t(gs, wt, et, s, rinv, eps, (double)C, p->wsum, smooth);
    }
    return BF_OK;
}

#undef BF_SM_MAX
#undef BF_SM_TWOSUM
#undef BF_SM_ADD
#undef BF_SM_TSUM
#undef BF_SM_ROW_SUMS
#undef BF_SM_EXPS
#undef BF_SM_MAX_SPAN
#undef BF_SM_EXPS_BELOW
#undef BF_SM_PLAIN_SUMS
