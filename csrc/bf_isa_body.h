/*
 * bf_isa_body.h -- everything compiled once per instruction set.
 *
 * A bf_isa_*.c file sets its `#pragma GCC target`, names its table with
 * BF_ISA_TABLE / BF_ISA_NAME, and includes this file; the kernel bodies are
 * then instantiated for float and double (BF_FN appends _f32 / _f64).  All
 * functions are static: each translation unit exports only its table.
 */
#include "bf_kernels.h"
#include "bf_math.h"

#define BF_TILE 256     /* elements per tile: side buffers and tmp fit in L1 */
#define BF_LANES 16     /* summation lanes: fixed, so order is ISA-independent */

/* acc[j] += v[i] for every i = j (mod BF_LANES) of v[0..n), in order (acc
 * may be wider than v): the lane order of every tile sum, the same whatever
 * the vector width. */
#define BF_LANES_ADD(acc, v, n)                                               \
    do {                                                                      \
        int64_t i_ = 0;                                                       \
        for (; i_ + BF_LANES <= (n); i_ += BF_LANES)                          \
            for (int j_ = 0; j_ < BF_LANES; j_++)                             \
                (acc)[j_] += (v)[i_ + j_];                                    \
        for (int j_ = 0; i_ + j_ < (n); j_++)                                 \
            (acc)[j_] += (v)[i_ + j_];                                        \
    } while (0)

/* Sum of the 16 lanes as a fixed pairwise tree (always inlined: when the
 * softmax row kernel grew, gcc made the lane sums out-of-line calls, and
 * log_softmax at 1000 float32 classes lost 10%). */
BF_ALWAYS_INLINE double bf_lanes_total(const double *a)
{
    double s[8];
    for (int j = 0; j < 8; j++)
        s[j] = a[j] + a[j + 8];
    for (int j = 0; j < 4; j++)
        s[j] = s[j] + s[j + 4];
    return (s[0] + s[2]) + (s[1] + s[3]);
}

#define T float
#define BF_UT uint32_t         /* T's bits as an unsigned integer */
#define BF_FN(name) name##_f32
#include "bf_binary.h"
#include "bf_softmax.h"
#undef T
#undef BF_UT
#undef BF_FN

#define T double
#define BF_UT uint64_t
#define BF_FN(name) name##_f64
#include "bf_binary.h"
#include "bf_softmax.h"
#undef T
#undef BF_UT
#undef BF_FN

#define BF_PAIR(name) { name##_f32, name##_f64 }

const bf_isa_table BF_ISA_TABLE = {
    .name = BF_ISA_NAME,
    .sigmoid = BF_PAIR(sigmoid_chunk),
    .log_sigmoid = BF_PAIR(log_sigmoid_chunk),
    .bce_logits = BF_PAIR(bce_logits_chunk),
    .bce = BF_PAIR(bce_chunk),
    .softmax_rows = BF_PAIR(softmax_rows_chunk),
    .softmax_inner = BF_PAIR(softmax_inner_chunk),
    .softmax_small = BF_PAIR(softmax_small_chunk),
    .softmax_split_partial = BF_PAIR(softmax_split_partial),
    .softmax_split_combine = BF_PAIR(softmax_split_combine),
    .softmax_split_finish = BF_PAIR(softmax_split_finish),
};
