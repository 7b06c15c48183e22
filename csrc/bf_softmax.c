/*
 * bf_softmax.c -- entry point of the softmax family: picks the layout's
 * chunk kernel from the selected instruction set's table and runs it over
 * positions with the deterministic chunked driver (bf_run).
 */
#include <stddef.h>
#include "bf_kernels.h"

int bf_softmax_run(int dtype, const bf_softmax *p, double *sums)
{
    const bf_isa_table *t = bf_table();
    bf_chunk_fn fn = p->inner > 1 ? t->softmax_inner[dtype]
                     : p->C <= BF_SM_SMALL_C && p->hess == NULL ? t->softmax_small[dtype]
                     : t->softmax_rows[dtype];
    /* NLL reads one value per position; the others read the whole row. */
    int64_t cost = p->kind == BF_SM_NLL && p->grad == NULL ? 1 : p->C;
    return bf_run(fn, p, p->outer * p->inner, cost, sums != NULL ? 2 : 0, sums);
}
