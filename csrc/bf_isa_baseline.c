/* Kernels for x86-64 baseline (SSE2): the compiler default, no pragma. */
#define BF_ISA_TABLE bf_isa_baseline
#define BF_ISA_NAME "baseline"
#include "bf_isa_body.h"
