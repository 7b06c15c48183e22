/*
 * bf_kernels.h -- the C interface of bce_fast's kernels (no Python here).
 *
 * Layers: the bce_fast Python modules validate and allocate; bce_fast/_core.pyx releases
 * the GIL and calls the bf_* entry points below; those split the work into
 * fixed-size chunks (bf_runtime.c) and run each chunk through a kernel of the
 * instruction set chosen at import (bf_isa_*.c, one body compiled three
 * times).  Kernels take pointers and lengths, never allocate, never print, and
 * report bad data through the returned status.
 *
 * Determinism: chunk boundaries depend only on the problem size, every chunk
 * sums in a fixed order (16 double-precision lanes, independent of the vector
 * width), and chunk partial sums are added pairwise in index order.  The
 * result is therefore bit-identical for any thread count.
 */
#ifndef BF_KERNELS_H
#define BF_KERNELS_H

#include <stdint.h>

/* Status codes returned by every entry point: bit flags, OR-ed over chunks. */
enum {
    BF_OK = 0,
    BF_ERR_DOMAIN = 1,          /* a probability outside [0, 1] or NaN */
    BF_ERR_INDEX = 2,           /* a class index outside [0, C), not ignore_index */
    BF_ERR_TARGET = 4,          /* a BCE target outside [0, 1] or NaN */
    BF_ERR_CALLER = 8,          /* the caller's mistake (scratch missing) */
};

enum { BF_F32 = 0, BF_F64 = 1 };

/*
 * An elementwise problem over n contiguous elements of x (and y), with up to
 * three broadcast side arrays (weight, pos_weight, and for BCE with logits
 * the upstream gradient grad_output, which multiplies the gradient).  The flat index i is seen as
 * (r, c) = (i / row, i % row); a side array s is read at r*s_so + c*s_si with
 * s_si in {0, 1}, which covers scalars, full arrays, trailing-dimension
 * vectors (per class) and leading-dimension vectors (per sample) without
 * materialising the broadcast.  A NULL side array reads as 1.
 */
typedef struct {
    int64_t n, row;
    const void *x, *y;
    const void *w;
    int64_t w_so, w_si;
    const void *pw;
    int64_t pw_so, pw_si;
    const void *gu;
    int64_t gu_so, gu_si;
    void *out;                  /* elementwise result (loss or map) or NULL */
    void *grad;                 /* elementwise gradient or NULL */
    void *hess;                 /* elementwise Hessian diagonal or NULL */
    double grad_scale;          /* multiplies grad (1/n for a mean) */
} bf_elementwise;

/*
 * A softmax-family problem: x seen as (outer, C, inner), C-contiguous, class
 * axis in the middle; a "position" is one (outer, inner) pair, a row of C
 * values with stride inner.  See csrc/bf_softmax.h for the formulas.
 */
enum {
    BF_SM_SOFTMAX = 0,          /* out = softmax(x) (like x) */
    BF_SM_LOG_SOFTMAX = 1,      /* out = log_softmax(x) (like x) */
    BF_SM_CE = 2,               /* class-index cross-entropy (+ smoothing) */
    BF_SM_CE_PROB = 3,          /* probability-target cross-entropy */
    BF_SM_NLL = 4,              /* NLL on log-probabilities */
};

/* Which kernel takes rows (inner == 1) of few classes (bf_softmax_run).
 * The column-wise small kernel (tiles of rows transposed, vectorized across
 * rows) is the fastest for the fewest classes, but a map or gradient has to
 * be transposed back.  Softmax, log-softmax and cross-entropy with class
 * indices and no smoothing sweep rows of at most BF_SM_FLAT_BYTES a group at
 * a time (BF_SM_FLAT, sm_flat_sweep in bf_softmax.h), and stay column-wise
 * up to BF_SM_SMALL_FLAT_C classes only; log-softmax in float32, which
 * writes its map from x rather than transposing it, up to _LSM_C32; their
 * losses without a gradient up to _LOSS_C32 / _C64.  The other kinds stay
 * column-wise up to BF_SM_SMALL_C classes, losses without a gradient up to
 * BF_SM_SMALL_LOSS_C32 / _C64 (float64 at 47-64 classes: 74-86 ns a row
 * taken one at a time, 100-106 column-wise).
 * Measured on Zen 4, one thread, 2e6 elements, ns per element before
 * (column-wise or a row at a time) -> flat: float32 softmax 1.30 -> 1.10 at
 * 16 classes, 1.23 -> 0.75 at 32, 0.79 -> 0.61 at 64; log_softmax 1.33 ->
 * 0.90 at 40; cross_entropy_and_grad 1.51 -> 0.98 at 32; float64 softmax
 * 2.60 -> 1.48 at 16, 1.84 -> 1.42 at 40.  Flat was 5-15% slower at 128
 * float32 / 64 float64 classes, hence 400 bytes; column-wise losses without
 * a gradient stay faster up to 32-36 float32 classes (0.64 against 0.88 ns
 * at 32) and 24-31 float64 ones. */
#define BF_SM_FLAT_BYTES 400
#define BF_SM_FLAT(C, elsize, kind, smooth) \
    ((C) * (int64_t)(elsize) <= BF_SM_FLAT_BYTES && !(smooth) \
     && ((kind) == BF_SM_SOFTMAX || (kind) == BF_SM_LOG_SOFTMAX || (kind) == BF_SM_CE))
#define BF_SM_SMALL_FLAT_C 15
#define BF_SM_SMALL_FLAT_LSM_C32 32
#define BF_SM_SMALL_FLAT_LOSS_C32 39
#define BF_SM_SMALL_FLAT_LOSS_C64 31
#define BF_SM_SMALL_C 32
#define BF_SM_SMALL_LOSS_C32 64
#define BF_SM_SMALL_LOSS_C64 40
/* Fewer than BF_SM_SPLIT_ROWS rows (inner == 1) of at least BF_SM_SPLIT_C
 * classes are also split over blocks of BF_SM_SPLIT_BLOCK classes, so that
 * threads share a long row; the caller provides bf_softmax_scratch(p)
 * doubles in p->scratch. */
#define BF_SM_SPLIT_ROWS 16
#define BF_SM_SPLIT_C 65536
#define BF_SM_SPLIT_BLOCK 16384
#define BF_SM_SPLIT_FIELDS 6
#define BF_SM_SPLIT_FINAL 5

typedef struct {
    int kind;
    int64_t outer, C, inner;
    const void *x;
    const int64_t *target;      /* class index per position (CE, NLL) */
    const void *ptarget;        /* probabilities, like x (CE_PROB) */
    const void *w;              /* class weights (C), or NULL for all 1 */
    int64_t ignore_index;
    double eps;                 /* label smoothing */
    double wsum;                /* sum of w, for the smoothing term */
    void *out;                  /* map (like x) or loss per position, or NULL */
    void *grad;                 /* d loss / d x (like x) or NULL */
    void *hess;                 /* softmax Hessian diagonal (like x; CE, inner == 1) or NULL */
    const void *grad_up;        /* factor per position on grad and hess, or NULL */
    double grad_scale;          /* factor on grad (1/denominator for a mean) */
    double *scratch;            /* bf_softmax_scratch(p) doubles, or NULL if 0 */
} bf_softmax;

/* A chunk of a problem: units [lo, hi); adds its partial sums to partial[0..]. */
typedef int (*bf_chunk_fn)(const void *problem, int64_t lo, int64_t hi, double *partial);

typedef struct {
    const char *name;
    bf_chunk_fn sigmoid[2], log_sigmoid[2];
    bf_chunk_fn bce_logits[2], bce[2];
    bf_chunk_fn softmax_rows[2], softmax_inner[2], softmax_small[2];    /* bf_softmax.h */
    bf_chunk_fn softmax_split_partial[2], softmax_split_combine[2], softmax_split_finish[2];
} bf_isa_table;

extern const bf_isa_table bf_isa_baseline, bf_isa_avx2, bf_isa_avx512;

/* ---- runtime (bf_runtime.c) ---- */

/* Select the instruction set: "baseline", "avx2", "avx512" or NULL/"" for the
 * best the CPU supports.  Returns 0, or -1 if the CPU lacks the level asked. */
int bf_select_isa(const char *level);
const char *bf_isa_name(void);
/* The kernels of the selected instruction set (for a family's entry points). */
const bf_isa_table *bf_table(void);
int bf_isa_supported(const char *level);
int bf_openmp_enabled(void);
int bf_get_num_threads(void);
void bf_set_num_threads(int n);

/*
 * Run `fn` over `units` units of `unit_cost` elements each, in chunks of a
 * size fixed by (units, unit_cost) only, on up to bf_get_num_threads()
 * threads (one thread for small problems).  With nsums > 0, each chunk's
 * partial sums (nsums of them) are combined in chunk order into sums[].
 */
int bf_run(bf_chunk_fn fn, const void *problem, int64_t units, int64_t unit_cost,
           int nsums, double *sums);

/* ---- entry points (dtype = BF_F32 | BF_F64) ---- */

int bf_sigmoid(int dtype, const bf_elementwise *p);
int bf_log_sigmoid(int dtype, const bf_elementwise *p);
/* Loss sum into *sum when sum != NULL, elementwise losses into p->out when set,
 * gradient (times p->grad_scale, and for BCE with logits p->gu) into p->grad
 * when set. */
int bf_bce_logits(int dtype, const bf_elementwise *p, double *sum);
int bf_bce(int dtype, const bf_elementwise *p, double *sum);
int bf_logistic_grad_hess(int dtype, const bf_elementwise *p);
/* Softmax family (bf_softmax.c): sums[0] = sum of losses, sums[1] = sum of
 * w[target] over non-ignored positions, when sums != NULL. */
int bf_softmax_run(int dtype, const bf_softmax *p, double *sums);
/* Doubles of scratch bf_softmax_run needs for p (0 for most shapes). */
int64_t bf_softmax_scratch(const bf_softmax *p);

#endif /* BF_KERNELS_H */
