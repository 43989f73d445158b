/*
 * Threads for one call: the rows are cut into contiguous bands, one per thread, and each thread writes
 * only its own rows and its own scratch. The threads are a pool started once and kept: creating and
 * joining a thread per call cost about 50 us on the KVM guests measured (docs/engine_kernels.md), more
 * than a whole 48x48 layer, and a network makes a hundred calls. Between jobs a worker spins for a
 * short while (the next layer usually follows within microseconds), then sleeps on a condition
 * variable. Plain pthreads rather than OpenMP: torch ships its own libgomp, and two OpenMP runtimes in
 * one process can misbehave. The C runtime's full-precision layers (runtime/src/ops.c) run on the
 * same band runner.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "bitops.h"

/* Below this many word operations a binary conv is not worth starting threads for; below this many
 * multiply-adds, a float conv. */
#define MIN_WORK_FOR_THREADS (1L << 18)
#define MIN_FLOAT_WORK_FOR_THREADS (1L << 20)
#define MAX_WORKERS 255
#define SPIN_NANOSECONDS 200000L /* how long an idle worker polls for the next job before sleeping */

/* The job being run: published by bumping `generation`, finished when `pending` reaches zero. */
typedef struct Pool {
    pthread_mutex_t lock; /* with `wake`: sleeping workers wait for a new generation */
    pthread_cond_t wake;
    pthread_mutex_t dispatch; /* one job at a time, whichever thread asks */
    atomic_ulong generation;
    atomic_int pending;
    int workers; /* started so far; worker i runs band i (band 0 is the caller's) */
    RowsFn fn;
    void *context;
    int rows, count;
} Pool;

static Pool pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, 0, 0, 0,
                    NULL, NULL, 0, 0};
static _Thread_local int inside_band;
/* The generation current when worker i was started (it is started during a dispatch, before that job
 * is published: the job it must take is the next generation, whenever it gets to look). */
static unsigned long born_at[MAX_WORKERS + 1]; /* a band that asks for threads itself runs inline */

static void run_band(int band)
{
    const int rows = pool.rows, count = pool.count;
    inside_band = 1;
    pool.fn(pool.context, (int)((long)rows * band / count), (int)((long)rows * (band + 1) / count));
    inside_band = 0;
}

static long elapsed_ns(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - since->tv_sec) * 1000000000L + (now.tv_nsec - since->tv_nsec);
}

/* Waits for a generation after `seen`: polls for SPIN_NANOSECONDS, then sleeps. */
static unsigned long next_generation(unsigned long seen)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int polls = 0;; polls++) {
        const unsigned long now = atomic_load_explicit(&pool.generation, memory_order_acquire);
        if (now != seen)
            return now;
        if ((polls & 255) == 255 && elapsed_ns(&start) > SPIN_NANOSECONDS)
            break;
    }
    pthread_mutex_lock(&pool.lock);
    while (atomic_load_explicit(&pool.generation, memory_order_acquire) == seen)
        pthread_cond_wait(&pool.wake, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    return atomic_load_explicit(&pool.generation, memory_order_acquire);
}

/* Every worker acknowledges every job, its band or not, so no job's fields change under a worker still
 * reading the previous one's. */
static void *worker(void *arg)
{
    const int band = (int)(long)arg;
    unsigned long seen = born_at[band];
    for (;;) {
        seen = next_generation(seen);
        if (band < pool.count)
            run_band(band);
        atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel);
    }
    return NULL;
}

/* Starts workers up to band count - 1; returns how many bands to cut: count, or fewer where no more
 * threads could be started. */
static int start_workers(int count)
{
    while (pool.workers + 1 < count && pool.workers < MAX_WORKERS) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        born_at[pool.workers + 1] = atomic_load_explicit(&pool.generation, memory_order_relaxed);
        const int started = pthread_create(&thread, &attr, worker, (void *)(long)(pool.workers + 1)) == 0;
        pthread_attr_destroy(&attr);
        if (!started)
            break;
        pool.workers++;
    }
    return pool.workers + 1 < count ? pool.workers + 1 : count;
}

/* A forked child has none of its parent's threads: it starts its own pool when it needs one. */
static void forget_workers(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_mutex_init(&pool.dispatch, NULL);
    pool.workers = 0;
}

static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;

static void install_fork_handler(void) { pthread_atfork(NULL, NULL, forget_workers); }

void bbcu_parallel_rows(RowsFn fn, void *context, int rows, int threads)
{
    const int count = threads < rows ? threads : rows;
    if (count <= 1 || inside_band) {
        fn(context, 0, rows);
        return;
    }
    pthread_once(&fork_handler_once, install_fork_handler);
    pthread_mutex_lock(&pool.dispatch);
    pool.fn = fn, pool.context = context, pool.rows = rows, pool.count = start_workers(count);
    atomic_store_explicit(&pool.pending, pool.workers, memory_order_relaxed);
    pthread_mutex_lock(&pool.lock);
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_band(0);
    for (int polls = 0; atomic_load_explicit(&pool.pending, memory_order_acquire) > 0; polls++)
        if (polls > 1000) /* a worker is off its core (a busy machine): let it have ours */
            sched_yield();
    pthread_mutex_unlock(&pool.dispatch);
}

/* ------------------------------------------------------------------ binary convs */

typedef struct BinaryJob {
    const ConvArgs *args;
    const IsaKernels *isa;
    atomic_int out_of_memory;
} BinaryJob;

/* The output rows a conv computes: [*from, *to). */
static void computed_rows(int rows_from, int rows_to, int height, int *from, int *to)
{
    *from = rows_to > 0 ? rows_from : 0;
    *to = rows_to > 0 ? rows_to : height;
}

/* One band of a binary conv (row_begin, row_end count from the first computed row), with scratch of
 * its own. */
static void binary_rows(void *context, int row_begin, int row_end)
{
    BinaryJob *job = context;
    const ConvArgs *a = job->args;
    int from, to;
    computed_rows(a->rows_from, a->rows_to, a->height, &from, &to);
    const size_t plane_words = (size_t)3 * a->width * a->channel_words * job->isa->activation_planes;
    RowScratch scratch = {malloc((size_t)COUNT_SPAN * a->o_lanes * sizeof(int32_t)), malloc((size_t)a->out_channels * sizeof(float)),
                          plane_words ? malloc(plane_words * sizeof(uint64_t)) : NULL, &job->out_of_memory};
    if (scratch.count && scratch.values && (!plane_words || scratch.x_planes))
        job->isa->conv_rows(a, from + row_begin, from + row_end, &scratch);
    else
        atomic_store(&job->out_of_memory, 1);
    free(scratch.count);
    free(scratch.values);
    free(scratch.x_planes);
}

int bbcu_run_rows(const ConvArgs *a, const IsaKernels *isa, int num_threads)
{
    BinaryJob job = {a, isa, 0};
    int from, to;
    computed_rows(a->rows_from, a->rows_to, a->height, &from, &to);
    bbcu_parallel_rows(binary_rows, &job, to - from, num_threads);
    return atomic_load(&job.out_of_memory) ? -1 : 0;
}

int bbcu_threads_for(const ConvArgs *a, int num_threads)
{
    int from, to;
    computed_rows(a->rows_from, a->rows_to, a->height, &from, &to);
    const double work = (double)(to - from) * a->width * a->out_channels * 9 * a->channel_words;
    return work < (double)MIN_WORK_FOR_THREADS ? 1 : num_threads;
}

/* ------------------------------------------------------------------ float convs */

typedef struct FloatJob {
    const FloatConvArgs *args;
    FloatConvRowsFn rows;
} FloatJob;

static void float_rows(void *context, int row_begin, int row_end)
{
    const FloatJob *job = context;
    int from, to;
    computed_rows(job->args->rows_from, job->args->rows_to, job->args->height, &from, &to);
    job->rows(job->args, from + row_begin, from + row_end);
}

void bbcu_float_conv3x3(const FloatConvArgs *a, const IsaKernels *isa, int num_threads)
{
    int from, to;
    computed_rows(a->rows_from, a->rows_to, a->height, &from, &to);
    const double work = (double)(to - from) * a->width * a->out_channels * 9 * a->channels;
    FloatJob job = {a, isa->float_conv};
    bbcu_parallel_rows(float_rows, &job, to - from, work < (double)MIN_FLOAT_WORK_FOR_THREADS ? 1 : num_threads);
}
