/* Kernels for AVX2 + FMA (Haswell, Zen 1 and later). */
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx2,fma")
#endif
#define BF_HAVE_FMA 1
#define BF_ISA_TABLE bf_isa_avx2
#define BF_ISA_NAME "avx2"
#include "bf_isa_body.h"
