/*
 * bf_softmax.c -- entry points of the softmax family: pick the layout's
 * chunk kernels from the selected instruction set's table and run them over
 * positions (or, for few long rows, over class blocks) with the
 * deterministic chunked driver (bf_run).  Which kernels run depends on the
 * shape and the kind of call only, never on the thread count.
 */
#include <stddef.h>
#include "bf_kernels.h"

static int bf_softmax_split(const bf_softmax *p)
{
    return p->inner == 1 && p->outer < BF_SM_SPLIT_ROWS && p->C >= BF_SM_SPLIT_C
           && p->kind != BF_SM_NLL && p->hess == NULL;
}

int64_t bf_softmax_scratch(const bf_softmax *p)
{
    if (!bf_softmax_split(p))
        return 0;
    int64_t nb = (p->C + BF_SM_SPLIT_BLOCK - 1) / BF_SM_SPLIT_BLOCK;
    return p->outer * (nb * BF_SM_SPLIT_FIELDS + BF_SM_SPLIT_FINAL);
}

int bf_softmax_run(int dtype, const bf_softmax *p, double *sums)
{
    const bf_isa_table *t = bf_table();
    int nsums = sums != NULL ? 2 : 0;
    if (bf_softmax_split(p)) {
        if (p->scratch == NULL)
            return BF_ERR_CALLER;
        int64_t nb = (p->C + BF_SM_SPLIT_BLOCK - 1) / BF_SM_SPLIT_BLOCK;
        int status = bf_run(t->softmax_split_partial[dtype], p, p->outer * nb,
                            BF_SM_SPLIT_BLOCK, 0, NULL);
        status |= bf_run(t->softmax_split_combine[dtype], p, p->outer, nb, nsums, sums);
        int writes = p->kind == BF_SM_SOFTMAX || p->kind == BF_SM_LOG_SOFTMAX || p->grad != NULL;
        if (writes)
            status |= bf_run(t->softmax_split_finish[dtype], p, p->outer * nb,
                             BF_SM_SPLIT_BLOCK, 0, NULL);
        return status;
    }
    int loss_only = (p->kind == BF_SM_CE || p->kind == BF_SM_CE_PROB) && p->grad == NULL;
    int f64 = dtype == BF_F64;
    int64_t small_c;            /* the most classes the column-wise kernel takes */
    if (BF_SM_FLAT(p->C, f64 ? 8 : 4, p->kind, p->eps != 0.0))
        small_c = loss_only ? (f64 ? BF_SM_SMALL_FLAT_LOSS_C64 : BF_SM_SMALL_FLAT_LOSS_C32)
                  : p->kind == BF_SM_LOG_SOFTMAX && !f64 ? BF_SM_SMALL_FLAT_LSM_C32
                  : BF_SM_SMALL_FLAT_C;
    else
        small_c = loss_only ? (f64 ? BF_SM_SMALL_LOSS_C64 : BF_SM_SMALL_LOSS_C32) : BF_SM_SMALL_C;
    int small = p->C <= small_c;
    bf_chunk_fn fn = p->inner > 1 ? t->softmax_inner[dtype]
                     : small && p->kind != BF_SM_NLL ? t->softmax_small[dtype]
                     : t->softmax_rows[dtype];
    /* NLL reads one value per position; the others read the whole row. */
    int64_t cost = p->kind == BF_SM_NLL && p->grad == NULL ? 1 : p->C;
    return bf_run(fn, p, p->outer * p->inner, cost, nsums, sums);
}
