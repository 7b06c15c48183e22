/*
 * bf_math.h -- branch-free elementary functions for float32 and float64.
 *
 * Why not <math.h>: glibc's expf/log1pf are scalar calls that gcc cannot
 * vectorize without fast-math (3-15 ns per element).  Every function here is
 * straight-line code (selects instead of branches, exponent handling by integer
 * bit manipulation) so that a loop calling it vectorizes at
 * -O3 -fno-math-errno -fno-trapping-math for SSE2, AVX2+FMA and AVX-512 alike.
 * Nothing here may be compiled with fast-math: the round-to-nearest trick in
 * bf_exp_neg and the NaN/inf selects rely on strict IEEE semantics.
 *
 * Methods (standard, see J.-M. Muller, "Elementary Functions", ch. 11):
 *   exp (of x <= 0 only: every exponent in the kernels is -|x| or x - max):
 *         x = n*ln2 + r, |r| <= ln2/2, n found by adding 1.5*2^p (the
 *         "rounding constant") so that no float->int rounding call is needed;
 *         exp(r) by a polynomial; 2^n built from exponent bits.
 *   log:  u = m * 2^k with m in [sqrt(1/2), sqrt(2)) found by integer
 *         arithmetic on the bit pattern; log(m) by a polynomial in f = m - 1.
 *         Variants: log1p on [0, 1] (softplus: in float32 one
 *         polynomial, no reduction; in float64 one exact halving), log
 *         on [0, 1] down to -100 and log(1 - p) (BCE on probabilities,
 *         which clamps at -100; exact, division-free reductions); log1p
 *         of x >= 0 (softmax's log1p(s)) corrects the rounding of 1 + x by
 *         (x - (u - 1)) / u
 *         (D. Goldberg, "What every computer scientist should know about
 *         floating-point arithmetic", 1991).
 *   num / (1 + e) with one rounding (sigmoid).
 * Accuracy measured against a long-double reference over their domains:
 * exp and log within 1 ULP, the log1p variants within 1.3 ULP (float32 and
 * float64); tests/test_accuracy.py checks the functions and losses built on
 * them against mpmath at every instruction-set level.
 * Built with -ffp-contract=fast: FMA contraction where the target has it
 * (one rounding instead of two; never a reassociation).
 *
 * All functions are `static inline` so every instruction-set translation unit
 * gets its own copy compiled for its own target; those on a kernel's vector
 * path are inlined whatever gcc's size estimates say (BF_ALWAYS_INLINE).  The _Generic front-ends at
 * the end (bf_exp_neg, bf_log1p_unit, ...) let kernel bodies be written once
 * for both types.
 */
#ifndef BF_MATH_H
#define BF_MATH_H

#include <stdint.h>
#include <string.h>

/* A call left in a loop stops its vectorization: when BCE-with-logits
 * grew a scalar path for its tail, gcc made bf_exp_neg_f64 an out-of-line
 * call from the float64 loops, which ran 9 times slower. */
#define BF_ALWAYS_INLINE static inline __attribute__((always_inline))

/* Clamp bounds the elementwise kernels read from memory (defined in
 * bf_runtime.c, out of gcc's sight).  Given a constant clamp, gcc evaluates
 * what follows it at the constant and blends that in behind a compare; on
 * Zen 4 a compare that writes a mask register takes an FMA slot, in loops
 * bound by their FMAs.  With an opaque bound the clamp is one max, which
 * does not.  (Link-time optimization would show the constants again: slower,
 * same results.) */
extern const float bf_exp_floor_f32;          /* -104: exp rounds to 0 below */
extern const double bf_exp_floor_f64;         /* -746 */
extern const float bf_bce_log_floor;          /* -100: PyTorch's clamp of log p */
extern const float bf_bce_den_floor;          /* 1e-12: its clamp of p (1 - p) */

/* ln 2 = HI + LO, HI with trailing zero bits so that n HI is exact for every
 * n a reduction meets (9 significant bits in float32, 32 in float64) */
#define BF_LN2_HI_F32 0.693359375f
#define BF_LN2_LO_F32 -2.12194440e-4f
#define BF_LN2_HI_F64 6.93147180369123816490e-01
#define BF_LN2_LO_F64 1.90821492927058770002e-10

static inline uint32_t bf_bits_f32(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float bf_from_bits_f32(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
static inline uint64_t bf_bits_f64(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }
static inline double bf_from_bits_f64(uint64_t u) { double x; memcpy(&x, &u, 8); return x; }

/* a b + c, fused where the instruction set has FMA.  Spelled out where the
 * contraction must not depend on the surrounding code: -ffp-contract=fast
 * may fuse a plain a * b + c in one loop and not in another, and the loss of
 * a fused loss-and-gradient call must equal the loss of the plain call. */
#if defined(BF_HAVE_FMA) || defined(__FMA__)   /* __FMA__: a baseline built with -mfma */
static inline float bf_fma_f32(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
static inline double bf_fma_f64(double a, double b, double c) { return __builtin_fma(a, b, c); }
#else
static inline float bf_fma_f32(float a, float b, float c) { return a * b + c; }
static inline double bf_fma_f64(double a, double b, double c) { return a * b + c; }
#endif
#define bf_fma(a, b, c) _Generic((a), float: bf_fma_f32, double: bf_fma_f64)(a, b, c)

/* c0 + c1 x + ... + c7 x^7 (BF_POLY7) or + c9 x^9 (BF_POLY9), x2 = x^2.
 * With FMA as A(x^2) + x B(x^2), each half by Horner: one FMA less than
 * Estrin's tree (no x^4) and two chains of three or four, short enough for
 * out-of-order execution to overlap (float32 BCE 1.02-1.05x on Zen 4,
 * float64 kernels 1.02-1.06x, accuracy unchanged).  Without FMA by Estrin's
 * tree: there a Horner step is a multiply and an add, and the chains ran
 * 3-5% slower. */
#ifdef BF_HAVE_FMA
#define BF_POLY7(x, x2, c0, c1, c2, c3, c4, c5, c6, c7)                       \
    (((((c7) * (x2) + (c5)) * (x2) + (c3)) * (x2) + (c1)) * (x)                \
     + ((((c6) * (x2) + (c4)) * (x2) + (c2)) * (x2) + (c0)))
#define BF_POLY9(x, x2, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9)               \
    ((((((c9) * (x2) + (c7)) * (x2) + (c5)) * (x2) + (c3)) * (x2) + (c1)) * (x) \
     + (((((c8) * (x2) + (c6)) * (x2) + (c4)) * (x2) + (c2)) * (x2) + (c0)))
#else
#define BF_POLY7(x, x2, c0, c1, c2, c3, c4, c5, c6, c7)                       \
    ((((c7) * (x) + (c6)) * (x2) + ((c5) * (x) + (c4))) * ((x2) * (x2))         \
     + (((c3) * (x) + (c2)) * (x2) + ((c1) * (x) + (c0))))
#define BF_POLY9(x, x2, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9)               \
    ((((c9) * (x) + (c8)) * ((x2) * (x2))                                      \
      + (((c7) * (x) + (c6)) * (x2) + ((c5) * (x) + (c4)))) * ((x2) * (x2))     \
     + (((c3) * (x) + (c2)) * (x2) + ((c1) * (x) + (c0))))
#endif

/* ------------------------------------------------------------------------ */
/* log on (0, inf): reduction to m in [sqrt(1/2), sqrt(2))                   */
/* ------------------------------------------------------------------------ */

/* log(m) for m = 1 + f in [sqrt(1/2), sqrt(2)): log(1 + f) =
 * f - f^2/2 + f^3 P(f), P minimax of degree 7 for relative error
 * (csrc/gen/fit_polynomials.py; 5.8e-9).  Cephes' logf polynomial of
 * degree 8 it replaces had the same worst case in float32 (log on (0, 1]:
 * 0.85 -> 0.86 ULP over every float) and cost 3% more of BCE.  P by
 * Estrin's scheme: one operation more than Horner's and a chain of four
 * instead of eight; float32 BCE 3-6% faster once its input check stopped
 * dominating (18ce1b2; same worst cases, 0.84 and 1.44 ULP); with FMA as
 * two Horner chains (BF_POLY7; log over every float in [FLT_MIN, 2): 0.947
 * ULP at worst, 0.937 by the tree).  The sum is
 * taken as f + z (P f - 1/2), two FMAs where f + (P f z - z/2) took four
 * operations (both round the correction to z/2 once, which is at most 0.21
 * of f; worst cases 0.87 and 1.47 ULP now). */
BF_ALWAYS_INLINE float bf_log_reduced_f32(float f)
{
    float z = f * f;
    float p = BF_POLY7(f, z, 3.3333331347e-01f, -2.5000819564e-01f, 2.0001226664e-01f,
                       -1.6623374820e-01f, 1.4201784134e-01f, -1.3160039485e-01f,
                       1.2761330605e-01f, -7.6345480978e-02f);
    return bf_fma_f32(z, bf_fma_f32(p, f, -0.5f), f);
}

/* log(m) for m = 1 + f, f in [-0.29, 0.5]: log(1+f) = 2 atanh(s),
 * s = f / (2 + f), |s| <= 0.2, written as f - (f^2/2 - s (f^2/2 + R(s^2)))
 * (fdlibm's arrangement: s and R enter only a correction of at most 0.02 of
 * the result).  R(z) = z Q(z), Q minimax of degree 7 on z in [0, 1/25] for
 * relative error (3.7e-17; csrc/gen/fit_polynomials.py; the Taylor series
 * 2/(2j+1) needs degree 9 for the same), by Estrin's scheme (a Horner chain
 * of dependent FMAs outlasts what out-of-order execution overlaps), with
 * FMA as two Horner chains (BF_POLY7). */
BF_ALWAYS_INLINE double bf_log_reduced_f64(double f)
{
    double s = f / (2.0 + f);
    double z = s * s;
    double z2 = z * z;
    double R = z * BF_POLY7(z, z2, 0.66666666666666664212, 0.40000000000007840061,
                            0.28571428567323577878, 0.22222223040127323379,
                            0.18181738290204370447, 0.15388840674883160424,
                            0.13210251972527182302, 0.13604787667045777196);
    double hfsq = 0.5 * f * f;
    return f - (hfsq - s * (hfsq + R));
}

/* Split u 2^-s, u normal, positive and finite, into k and f = m - 1,
 * u 2^-s = (1 + f) 2^k (a caller scales a subnormal u up by 2^s).  The bit
 * pattern less sqrt(1/2)'s has k in its exponent field, arithmetic shift
 * giving the negative ones, and m is u with that field taken away.  float64
 * takes k as a float by 2^p + field - 2^p - bias, since AVX2 has no int64 ->
 * double conversion; float32 converts (one operation less: 2% of BCE). */
BF_ALWAYS_INLINE float bf_log_split_f32(float u, float s, float *k)
{
    const uint32_t sqrt_half = 0x3f3504f3u;
    uint32_t ux = bf_bits_f32(u), ix = ux - sqrt_half;
    *k = (float)((int32_t)ix >> 23) - s;
    return bf_from_bits_f32(ux - (ix & 0xff800000u)) - 1.0f;
}

BF_ALWAYS_INLINE double bf_log_split_f64(double u, double s, double *k)
{
    const uint64_t sqrt_half = 0x3fe6a09e667f3bcdull;
    uint64_t ix = bf_bits_f64(u) + (0x3ff0000000000000ull - sqrt_half);
    *k = bf_from_bits_f64((ix >> 52) | 0x4330000000000000ull) - (4503599627370496.0 + 1023.0 + s);
    return bf_from_bits_f64((ix & 0x000fffffffffffffull) + sqrt_half) - 1.0;
}

/* log1p(x) = log(u) + (x - (u - 1)) / u with u = fl(1 + x), for x >= 0,
 * +inf or NaN: softmax's log1p(s) of its row sums s >= 0 (float64), and the
 * per-position log1p of the float32 N-d kernels, where it is the largest
 * single cost at few classes (four times the float64 one per element; it
 * adds at most an ULP of L to results that keep 4 + |x - m|).  u >= 1 is
 * never subnormal, so the split needs no scaling. */
BF_ALWAYS_INLINE double bf_log1p_pos_f64(double x)
{
    double u = 1.0 + x;
    double k;
    double f = bf_log_split_f64(u, 0.0, &k);
    double c = (x - (u - 1.0)) / u;
    double y = k * BF_LN2_HI_F64
               + (bf_log_reduced_f64(f) + (c + k * BF_LN2_LO_F64));
    y = u == __builtin_inf() ? u : y;
    return x != x ? x : y;
}

BF_ALWAYS_INLINE float bf_log1p_pos_f32(float x)
{
    float u = 1.0f + x;
    float k;
    float f = bf_log_split_f32(u, 0.0f, &k);
    float c = (x - (u - 1.0f)) / u;
    float y = k * BF_LN2_HI_F32 + (bf_log_reduced_f32(f) + (c + k * BF_LN2_LO_F32));
    y = u == __builtin_inff() ? u : y;
    return x != x ? x : y;
}

/* ------------------------------------------------------------------------ */
/* Restricted-domain variants for the softplus / sigmoid kernels             */
/* ------------------------------------------------------------------------ */

/* exp(x) for x <= 0 (-inf gives 0, NaN propagates): all the kernels need,
 * since every exponent is -|x| or x - max.  exp(r) = 1 + r + r^2 P(r) on
 * |r| <= ln2/2, P minimax (csrc/gen/fit_polynomials.py): float32 of degree 4
 * (relative error 3.0e-9, a twentieth of an ULP; the Cephes expf polynomial
 * of degree 5 it replaces measured the same 1.01 ULP worst case for exp, and
 * the FMA saved is 4% of BCE-with-logits on Zen 4, where these kernels are
 * bound by the FMA pipes); float64 of degree 9 (relative error 3.6e-18; the
 * Taylor series needs degree 11 for the same); ln2 split so that
 * n*ln2_hi is exact.  No overflow is possible, so 2^k is applied as
 * 2^(k+64) * 2^-64: one exponent construction, and a subnormal result takes
 * one rounding.  P is evaluated by Estrin's scheme (float64: BF_POLY9,
 * with FMA as two Horner chains): Horner's one chain of dependent FMAs (4
 * cycles each) outlasts what out-of-order execution can overlap, and the
 * shorter tree made float64 softmax 14% and sigmoid 9% faster (float32: 4%).
 * x is clamped at lo = -104 / -746, where exp rounds to 0 (and -inf must
 * not reach the reduction).  bf_exp_neg_floor takes lo as an argument: the
 * elementwise kernels pass an opaque copy (bf_exp_floor_*, above; float32
 * sigmoid 8% faster, BCE-with-logits 5%, float64 sigmoid 6%).  The softmax
 * kernels keep the constant: with the opaque one float64 rows of 100
 * classes ran 14% slower (the max lies on the path into exp; the compare
 * and blend were off it). */

/* exp(x) = y 2^k for x <= 0 (clamped by the caller): the reduction and
 * polynomial, the scaling left to the caller. */
BF_ALWAYS_INLINE float bf_exp_neg_parts_f32(float x, int32_t *k)
{
    const float magic = 12582912.0f;                     /* 1.5 * 2^23 */
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    *k = (int32_t)(bf_bits_f32(t) - bf_bits_f32(magic));
    float r = x - n * BF_LN2_HI_F32;
    r = r - n * BF_LN2_LO_F32;
    float r2 = r * r;
    float q0 = 1.6666521132e-1f * r + 4.9999994040e-1f;
    float q1 = 8.3686970174e-3f * r + 4.1668381542e-2f;
    float p = (1.3815078419e-3f * r2 + q1) * r2 + q0;
    return r2 * p + r + 1.0f;
}

BF_ALWAYS_INLINE float bf_exp_neg_floor_f32(float x, float lo)
{
    int32_t k;
    float y = bf_exp_neg_parts_f32(x < lo ? lo : x, &k);
    y = y * bf_from_bits_f32((uint32_t)(k + 64 + 127) << 23);
    return y * 5.42101086242752217e-20f;                 /* 2^-64 */
}

BF_ALWAYS_INLINE float bf_exp_neg_f32(float x) { return bf_exp_neg_floor_f32(x, -104.0f); }

/* The same for float64 (x at most 2^21 ln 2 away from 0, where n*ln2_hi
 * stops being exact). */
BF_ALWAYS_INLINE double bf_exp_neg_parts_f64(double x, int64_t *k)
{
    const double magic = 6755399441055744.0;             /* 1.5 * 2^52 */
    double t = x * 1.4426950408889634074 + magic;
    double n = t - magic;
    *k = (int64_t)(bf_bits_f64(t) - bf_bits_f64(magic));
    double r = x - n * BF_LN2_HI_F64;
    r = r - n * BF_LN2_LO_F64;
    double r2 = r * r;
    double p = BF_POLY9(r, r2, 0.50000000000000106251, 0.1666666666666641336,
                        0.041666666666530208224, 0.0083333333334939821945,
                        0.0013888888943609475338, 0.00019841269507529691439,
                        0.000024801493127036629035, 2.7557585600636712533e-6,
                        2.7630236281711811335e-7, 2.5000280870099632768e-8);
    return r2 * p + r + 1.0;
}

BF_ALWAYS_INLINE double bf_exp_neg_floor_f64(double x, double lo)
{
    int64_t k;
    double y = bf_exp_neg_parts_f64(x < lo ? lo : x, &k);
    y = y * bf_from_bits_f64((uint64_t)(k + 64 + 1023) << 52);
    return y * 5.42101086242752217e-20;                  /* 2^-64 */
}

BF_ALWAYS_INLINE double bf_exp_neg_f64(double x) { return bf_exp_neg_floor_f64(x, -746.0); }

/* exp(x) for x in [-BF_EXP_NORMAL_X, 0], where exp(x) is normal with room to
 * spare (float32 [-86, 0], float64 [-707, 0]): 2^k is applied by adding k to
 * the exponent field of y, two integer operations instead of the two
 * multiplications above, which take FMA slots -- on Zen 4 float32 exp went
 * from 12.8 to 10.5 cycles a vector.  Where nothing underflows both are exact
 * scalings of the same y: the same bits (checked for every float32 in the
 * range).  The caller keeps x in range: NaN and inf give garbage here.
 * bf_exp_normal_miss(a) for a = |x| tells: its top bit is set exactly where
 * a is beyond the range, inf or NaN (the bit patterns of a >= 0 are ordered
 * as the values, inf and NaN above every finite one, and lim - a wraps), so
 * the OR of it over a tile keeps the answer in its top bit
 * (bf_exp_normal_missed).  A max of the patterns, which SSE2 lacks as an
 * instruction, made gcc spill lanes through MMX registers and leave the x87
 * unit that long double uses in a wrong state. */
#define BF_EXP_NORMAL_X_F32 86.0f
#define BF_EXP_NORMAL_X_F64 707.0

BF_ALWAYS_INLINE uint32_t bf_exp_normal_miss_f32(float a)
{
    return bf_bits_f32(BF_EXP_NORMAL_X_F32) - bf_bits_f32(a);
}

BF_ALWAYS_INLINE uint64_t bf_exp_normal_miss_f64(double a)
{
    return bf_bits_f64(BF_EXP_NORMAL_X_F64) - bf_bits_f64(a);
}

#define bf_exp_normal_missed(acc) ((acc) >> (8 * sizeof(acc) - 1))

BF_ALWAYS_INLINE float bf_exp_neg_normal_f32(float x)
{
    int32_t k;
    float y = bf_exp_neg_parts_f32(x, &k);
    return bf_from_bits_f32(bf_bits_f32(y) + ((uint32_t)k << 23));
}

BF_ALWAYS_INLINE double bf_exp_neg_normal_f64(double x)
{
    int64_t k;
    double y = bf_exp_neg_parts_f64(x, &k);
    return bf_from_bits_f64(bf_bits_f64(y) + ((uint64_t)k << 52));
}

/* c exp(x) for x <= 0, rounded once, also where exp(x) alone is subnormal:
 * a factor c above 1 would magnify the rounding error of a subnormal exp
 * (half its ULP; 10^20 times float32 exp(-103) came out 24% low).  For the
 * rare elements of BCE-with-logits' tail (bf_binary.h), so written plainly.
 * float32: in double, where exp(x) = y 2^k is normal down to the clamp at
 * x = -700 (beyond it c exp(x) rounds to 0 in float32 for any c).
 * float64, for x < -700: c (y/2) cannot overflow, and 2^(k+1) is applied as
 * two powers of two 2^j1 2^j2, j1, j2 in [-1074, -500]: the first product
 * is exact where it is normal, and where it is not the result is below
 * 2^-1500 and rounds to 0 either way; so is every c exp(x) beyond the clamp
 * at x = -1480. */
static inline double bf_pow2_f64(int64_t j)              /* j in [-1074, 1023] */
{
    return j >= -1022 ? bf_from_bits_f64((uint64_t)(j + 1023) << 52)
                      : bf_from_bits_f64((uint64_t)1 << (j + 1074));
}

static inline float bf_mul_exp_neg_f32(float c, float x)
{
    int64_t k;
    double y = bf_exp_neg_parts_f64(x < -700.0f ? -700.0 : (double)x, &k);
    return (float)((double)c * y * bf_pow2_f64(k));
}

static inline double bf_mul_exp_neg_f64(double c, double x)
{
    int64_t k;
    double y = bf_exp_neg_parts_f64(x < -1480.0 ? -1480.0 : x, &k);
    int64_t j1 = (k + 1) / 2, j2 = (k + 1) - j1;
    return c * (0.5 * y) * bf_pow2_f64(j1) * bf_pow2_f64(j2);
}

/* log1p(e) for e in [0, 1] (or NaN), the tail of softplus.
 * float32: no range reduction: log1p(e) = e - e^2 R(e), where
 * R(e) = (e - log1p(e)) / e^2 falls from 1/2 to 0.307 on [0, 1] and is
 * analytic out to e = -1, so a polynomial in u = e - 1/2 (exact for
 * e >= 1/4) of degree 9 fits it to 9e-9 relative.  Centring on 1/2 keeps the
 * terms small at both ends, where a series in e alternates and cancels at
 * e = 1; e^2 R is at most 0.31 of the result, so R's rounding enters at half
 * weight.  Coefficients: minimax for relative error
 * (csrc/gen/fit_polynomials.py).  Measured within 1.23 ULP against float64,
 * with no selects and no division; the two-way reduction of 1 + e it
 * replaced took twice the operations.
 * float64: the same idea needs degree 20; one exact halving instead,
 * 1 + e = 2 (1 + (e - 1)/2) for e > 1/2 (e - 1 exact by Sterbenz), puts the
 * argument of bf_log_reduced_f64 in [-1/4, 1/2], where its polynomial is of
 * degree 8 in s^2 -- fewer operations even with its division (12% faster
 * log_sigmoid and BCE-with-logits on Zen 4), and within 1.05 ULP instead of
 * 1.14 (against long double, 1.7e7 points dense and near 0, 1/2 and 1). */
BF_ALWAYS_INLINE float bf_log1p_unit_r_f32(float e)
{
    float u = e - 0.5f;
    float r = -2.8359410353e-03f;
    r = r * u + 4.5787766576e-03f;
    r = r * u - 5.7685249485e-03f;
    r = r * u + 9.6809025854e-03f;
    r = r * u - 1.6805207357e-02f;
    r = r * u + 2.8964158148e-02f;
    r = r * u - 5.1082797348e-02f;
    r = r * u + 9.3229703605e-02f;
    r = r * u - 1.7922493815e-01f;
    return r * u + 3.7813958526e-01f;
}

BF_ALWAYS_INLINE float bf_log1p_unit_f32(float e)
{
    return bf_fma(-(e * e), bf_log1p_unit_r_f32(e), e);
}

/* The same, for log_sigmoid: without FMA, e - e^2 R takes three roundings,
 * and log_sigmoid, which adds |x| with one more, measured 2.27 ULP near
 * x = -0.02 on SSE2 (its bound is 2).  There the last step is taken in
 * double (1.80 ULP there, 1.88 at worst over every float32 in [2^-14, 2^-2];
 * 24% slower, so not for BCE-with-logits, whose bound is
 * 4 ULP).  With FMA it is bf_log1p_unit_f32 (log_sigmoid: 1.95 ULP at worst). */
BF_ALWAYS_INLINE float bf_log1p_unit_ls_f32(float e)
{
#ifdef BF_HAVE_FMA
    return bf_log1p_unit_f32(e);
#else
    double d = e;
    return (float)(d - d * d * (double)bf_log1p_unit_r_f32(e));
#endif
}

BF_ALWAYS_INLINE double bf_log1p_unit_f64(double e)
{
    int half = e > 0.5;
    double f = half ? (e - 1.0) * 0.5 : e;
    double k = half ? 1.0 : 0.0;
    return k * BF_LN2_HI_F64
           + (bf_log_reduced_f64(f) + k * BF_LN2_LO_F64);
}

/* num / (1 + e) for e in [0, 1]: the last step of sigmoid, rounded once more
 * than e itself.  The plain quotient rounds 1 + e and then divides (two more
 * roundings, measured 2.3 ULP for sigmoid).  The quotient q = num / d is
 * corrected with its exact residual num - q (d + dl), where d + dl = 1 + e
 * exactly (Fast2Sum) and q d is split exactly by an FMA where the instruction
 * set has one (BF_HAVE_FMA, set by the bf_isa_*.c file).  The correction is
 * at most about an ULP of q, so 1/d in it needs only a few digits: the
 * linear guess 1.4571 - d/2 (within 6% on [1, 2]) adds at most 0.1 ULP.
 * Without FMA, float32 divides in double instead (both steps exact or nearly
 * so, then one rounding to float; 30% slower than the corrected float
 * quotient on AVX2) and float64 splits q d by Dekker's product.
 * Measured: sigmoid within 1.5 ULP. */
BF_ALWAYS_INLINE float bf_ratio1p_f32(float num, float e)
{
#ifdef BF_HAVE_FMA
    float d = 1.0f + e;
    float dl = (1.0f - d) + e;
    float q = num / d;
    float res = __builtin_fmaf(-q, d, num);              /* num - q d, exact */
    float g = 1.4571f - 0.5f * d;                        /* ~1/d on [1, 2], 6% */
    return q + (res - q * dl) * g;
#else
    return (float)((double)num / (1.0 + (double)e));
#endif
}

BF_ALWAYS_INLINE double bf_ratio1p_f64(double num, double e)
{
    double d = 1.0 + e;
    double dl = (1.0 - d) + e;
    double q = num / d;
#ifdef BF_HAVE_FMA
    double res = __builtin_fma(-q, d, num);              /* num - q d, exact */
#else
    const double split = 134217729.0;                    /* 2^27 + 1 */
    double cq = split * q, qh = cq - (cq - q), ql = q - qh;
    double cd = split * d, dh = cd - (cd - d), dd = d - dh;
    double p = q * d;
    double perr = ((qh * dh - p) + qh * dd + ql * dh) + ql * dd;   /* q d - p */
    double res = (num - p) - perr;                       /* num - p exact (Sterbenz) */
#endif
    double g = 1.4571 - 0.5 * d;                         /* ~1/d on [1, 2], 6% */
    return q + (res - q * dl) * g;
}

/* log(z) for z in (0, 1] (float64: [DBL_MIN, 1]); smaller z, 0 included,
 * give a finite value below -100.  The only caller, BCE on probabilities,
 * clamps the logarithm at -100, so nothing below counts.  In float32
 * (log(FLT_MIN) = -87.3 does count) z 2^23 is exact and normal for every
 * z > 0: one product instead of the general path's test for subnormals, and
 * 0 gives -(127 + 23) ln 2 = -104.  In float64 (log(DBL_MIN) = -708) the
 * unscaled split of any z below DBL_MIN has k = -1023 or -1022.  No select
 * for log(0) = -inf either; |z| because -0 has the sign bit set.  Measured on
 * Zen 4, hard-target BCE in cache: 14% faster in float32 and float64.
 * float32 adds k ln 2 with one FMA of ln 2 rounded to float: its error,
 * 1.9e-9 per unit of |k| <= 150, stays below 0.06 ULP of every result (k ln 2
 * dominates where k is large), so the split constant buys nothing here. */
BF_ALWAYS_INLINE float bf_log_scaled_f32(float u, float s)      /* log(u 2^-s) */
{
    float k;
    float f = bf_log_split_f32(u, s, &k);
    return bf_fma(k, 0.693147180559945309f, bf_log_reduced_f32(f));
}

BF_ALWAYS_INLINE float bf_log_unit_f32(float z)
{
    return bf_log_scaled_f32(__builtin_fabsf(z) * 8388608.0f, 23.0f);
}

/* bf_log_unit_f32 for z in [FLT_MIN, 1], where scaling by 2^23 changes only
 * the exponent field, which the split takes back: the same bits without the
 * absolute value and the multiplication, which takes an FMA slot (the
 * caller knows the range; float64's bf_log_unit has no scaling to skip, and
 * bf_log_unit_normal is bf_log_unit there). */
BF_ALWAYS_INLINE float bf_log_unit_normal_f32(float z) { return bf_log_scaled_f32(z, 0.0f); }

BF_ALWAYS_INLINE double bf_log_unit_f64(double z)
{
    double k;
    double f = bf_log_split_f64(__builtin_fabs(z), 0.0, &k);
    return k * BF_LN2_HI_F64
           + (bf_log_reduced_f64(f) + k * BF_LN2_LO_F64);
}

/* log(1 - p) for p in [0, 1], without a division: s = fl(1 - p) and its
 * rounding error err = (1 - s) - p (exact by Fast2Sum, |1| >= |p|; zero for
 * p >= 1/2 by Sterbenz), so log(1 - p) = log(s) + err / s to first order,
 * with 1/s ~ 1 + p: one FMA.  What that leaves out, err p^2 / s, is at most
 * a quarter of an ULP of the result (at p near 1/2, where |err| <= ulp(s)/2
 * and log(1 - p) = -0.69; for small p it shrinks with p relative to the
 * result).  1 + p + p^2 cost two more operations (this and float32
 * bf_log_unit's single k ln 2 FMA above made float32 BCE 6-9% faster).
 * bf_log1m_split returns s and the correction, so that a caller can take
 * one logarithm of either p or 1 - p. */
#define BF_LOG1M_SPLIT_BODY(T)                                                \
    T s = (T)1 - p;                                                           \
    T err = ((T)1 - s) - p;                                                   \
    *corr = bf_fma(err, p, err);                                              \
    return s;

BF_ALWAYS_INLINE float bf_log1m_split_f32(float p, float *corr) { BF_LOG1M_SPLIT_BODY(float) }
BF_ALWAYS_INLINE double bf_log1m_split_f64(double p, double *corr) { BF_LOG1M_SPLIT_BODY(double) }

/* ------------------------------------------------------------------------ */
/* Type-generic front-ends for kernel bodies written once                   */
/* ------------------------------------------------------------------------ */

/* |x| as a sign-bit mask (x < 0 ? -x : x compiles to a compare and a blend) */
#define bf_fabs(x) _Generic((x), float: __builtin_fabsf, double: __builtin_fabs)(x)
#define bf_exp_neg(x) _Generic((x), float: bf_exp_neg_f32, double: bf_exp_neg_f64)(x)
#define bf_exp_normal_miss(a) \
    _Generic((a), float: bf_exp_normal_miss_f32, double: bf_exp_normal_miss_f64)(a)
#define bf_exp_neg_normal(x) \
    _Generic((x), float: bf_exp_neg_normal_f32, double: bf_exp_neg_normal_f64)(x)
#define bf_exp_neg_floor(x, lo) \
    _Generic((x), float: bf_exp_neg_floor_f32, double: bf_exp_neg_floor_f64)(x, lo)
#define bf_mul_exp_neg(c, x) \
    _Generic((c), float: bf_mul_exp_neg_f32, double: bf_mul_exp_neg_f64)(c, x)
#define bf_log1p_unit(x) _Generic((x), float: bf_log1p_unit_f32, double: bf_log1p_unit_f64)(x)
#define bf_log1p_unit_ls(x) \
    _Generic((x), float: bf_log1p_unit_ls_f32, double: bf_log1p_unit_f64)(x)
#define bf_ratio1p(n, e) _Generic((n), float: bf_ratio1p_f32, double: bf_ratio1p_f64)(n, e)
#define bf_log_unit(x) _Generic((x), float: bf_log_unit_f32, double: bf_log_unit_f64)(x)
#define bf_log_unit_normal(x) \
    _Generic((x), float: bf_log_unit_normal_f32, double: bf_log_unit_f64)(x)
#define bf_log1p_pos(x) _Generic((x), float: bf_log1p_pos_f32, double: bf_log1p_pos_f64)(x)
#define bf_log1m_split(x, c) \
    _Generic((x), float: bf_log1m_split_f32, double: bf_log1m_split_f64)(x, c)

#endif /* BF_MATH_H */
