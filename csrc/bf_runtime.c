/*
 * bf_runtime.c -- instruction-set dispatch, threads, and the chunked driver
 * that makes reductions deterministic.  Compiled for the baseline target; it
 * only calls kernels through the selected bf_isa_table.
 */
#include <stddef.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "bf_kernels.h"

/* Elements per chunk: ~30 us of work, far above the fork/join cost. */
#define BF_CHUNK_ELEMS 32768
/* Work below which a call stays on the calling thread. */
#define BF_PARALLEL_MIN (2 * BF_CHUNK_ELEMS)
/* Bound on chunks (and so on the stack array of partial sums): for larger
 * inputs the chunks grow instead. */
#define BF_MAX_CHUNKS 2048
#define BF_MAX_SUMS 2

/* Clamp bounds of the elementwise kernels, defined out of their sight (why:
 * bf_math.h) */
const float bf_exp_floor_f32 = -104.0f;
const double bf_exp_floor_f64 = -746.0;
const float bf_bce_log_floor = -100.0f;
const float bf_bce_den_floor = 1e-12f;

/* ------------------------------------------------------------- threads */

static int bf_threads_wanted = 0;       /* 0: OpenMP's own limit */
static int bf_after_fork = 0;           /* libgomp's pool does not survive fork */

static void bf_mark_forked(void) { bf_after_fork = 1; }

/* Worker threads (beyond the calling threads) that running calls hold.  Calls
 * from several user threads at once (a ThreadPoolExecutor, a web server)
 * share one budget of bf_get_num_threads() - 1 workers instead of each
 * starting a full team: a call that finds the budget spent runs on its
 * caller alone.  Results do not change (chunking ignores thread counts). */
static atomic_int bf_workers_busy;

static int bf_claim_threads(int want)
{
    int extra = want - 1, busy = atomic_load(&bf_workers_busy), grant;
    do {
        grant = want - 1 - busy;
        grant = grant < extra ? grant : extra;
        if (grant <= 0)
            return 1;
    } while (!atomic_compare_exchange_weak(&bf_workers_busy, &busy, busy + grant));
    return 1 + grant;
}

static void bf_release_threads(int threads)
{
    if (threads > 1)
        atomic_fetch_sub(&bf_workers_busy, threads - 1);
}

static void bf_register_fork_handler(void) { pthread_atfork(NULL, NULL, bf_mark_forked); }

/* ---------------------------------------------------------------- ISA */

static const bf_isa_table *bf_current = &bf_isa_baseline;

int bf_isa_supported(const char *level)
{
    if (strcmp(level, "baseline") == 0)
        return 1;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(level, "avx2") == 0)
        return avx2;
    if (strcmp(level, "avx512") == 0)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
               && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
#endif
    return 0;
}

int bf_select_isa(const char *level)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, bf_register_fork_handler);
    static const bf_isa_table *const tables[] = {&bf_isa_avx512, &bf_isa_avx2, &bf_isa_baseline};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        const char *name = tables[i]->name;
        int wanted = level == NULL || level[0] == '\0' || strcmp(level, name) == 0;
        if (wanted && bf_isa_supported(name)) {
            bf_current = tables[i];
            return 0;
        }
    }
    return -1;
}

const char *bf_isa_name(void) { return bf_current->name; }

const bf_isa_table *bf_table(void) { return bf_current; }

int bf_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int bf_get_num_threads(void)
{
#ifdef _OPENMP
    if (bf_after_fork)
        return 1;
    /* omp_get_max_threads() is what threadpoolctl limits. */
    int limit = omp_get_max_threads();
    return bf_threads_wanted > 0 && bf_threads_wanted < limit ? bf_threads_wanted : limit;
#else
    return 1;
#endif
}

void bf_set_num_threads(int n)
{
    bf_threads_wanted = n > 0 ? n : 0;
#ifdef _OPENMP
    if (n > omp_get_max_threads())
        omp_set_num_threads(n);
#endif
}

/* ------------------------------------------------------------- driver */

/* Pairwise sum of a[0], a[stride], ..., in a fixed tree. */
static double bf_pairwise(const double *a, int64_t n, int64_t stride)
{
    if (n <= 8) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++)
            s += a[i * stride];
        return s;
    }
    int64_t h = n / 2;
    return bf_pairwise(a, h, stride) + bf_pairwise(a + h * stride, n - h, stride);
}

int bf_run(bf_chunk_fn fn, const void *problem, int64_t units, int64_t unit_cost,
           int nsums, double *sums)
{
    double partial[BF_MAX_CHUNKS * BF_MAX_SUMS];
    for (int s = 0; s < nsums; s++)
        sums[s] = 0.0;
    if (units <= 0)
        return BF_OK;
    if (unit_cost < 1)
        unit_cost = 1;
    int64_t per = BF_CHUNK_ELEMS / unit_cost;
    if (per < 1)
        per = 1;
    if ((units + per - 1) / per > BF_MAX_CHUNKS)
        per = (units + BF_MAX_CHUNKS - 1) / BF_MAX_CHUNKS;
    int64_t nchunks = (units + per - 1) / per;
    memset(partial, 0, sizeof(double) * (size_t)(nchunks * nsums));

    int threads = units * unit_cost >= BF_PARALLEL_MIN && nchunks > 1
                  ? bf_claim_threads(bf_get_num_threads()) : 1;
    int status = BF_OK;
    if (threads <= 1) {
        for (int64_t c = 0; c < nchunks; c++) {
            int64_t lo = c * per, hi = lo + per < units ? lo + per : units;
            status |= fn(problem, lo, hi, nsums ? partial + c * nsums : NULL);
        }
    } else {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : status)
#endif
        for (int64_t c = 0; c < nchunks; c++) {
            int64_t lo = c * per, hi = lo + per < units ? lo + per : units;
            status |= fn(problem, lo, hi, nsums ? partial + c * nsums : NULL);
        }
        bf_release_threads(threads);
    }
    for (int s = 0; s < nsums; s++)
        sums[s] = bf_pairwise(partial + s, nchunks, nsums);
    return status;
}

/* --------------------------------------------------------- entry points */

int bf_sigmoid(int dtype, const bf_elementwise *p)
{
    return bf_run(bf_current->sigmoid[dtype], p, p->n, 1, 0, NULL);
}

int bf_log_sigmoid(int dtype, const bf_elementwise *p)
{
    return bf_run(bf_current->log_sigmoid[dtype], p, p->n, 1, 0, NULL);
}

int bf_bce_logits(int dtype, const bf_elementwise *p, double *sum)
{
    return bf_run(bf_current->bce_logits[dtype], p, p->n, 1, sum != NULL, sum);
}

int bf_bce(int dtype, const bf_elementwise *p, double *sum)
{
    return bf_run(bf_current->bce[dtype], p, p->n, 1, sum != NULL, sum);
}

/* The BCE-with-logits kernel with p->hess set (and p->out not written) */
int bf_logistic_grad_hess(int dtype, const bf_elementwise *p)
{
    return bf_bce_logits(dtype, p, NULL);
}
