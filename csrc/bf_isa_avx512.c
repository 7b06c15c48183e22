/* Kernels for AVX-512 F/VL/DQ/BW with 512-bit vectors (Skylake-X, Zen 4 and later). */
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,prefer-vector-width=512")
#endif
#define BF_HAVE_FMA 1
/* BCE on probabilities checks a tile in the loop that takes its loss
 * (bce_pass): 1.07-1.2x here; with AVX2 0.94-1.01x, and with SSE2, which has
 * no 64-bit compares, the float64 loop stayed scalar (0.55x) */
#define BF_BCE_CHECK_IN_LOSS 1
#define BF_ISA_TABLE bf_isa_avx512
#define BF_ISA_NAME "avx512"
#include "bf_isa_body.h"
