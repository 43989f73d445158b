/*
 * Threads for one call: the rows are cut into contiguous bands, one per thread, and each thread writes
 * only its own rows and its own scratch. Plain per-call pthreads rather than OpenMP: torch ships its
 * own libgomp, and two OpenMP runtimes in one process can misbehave. The C runtime's full-precision
 * layers (runtime/src/ops.c) run on the same band runner.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "bitops.h"

/* Below this many word operations a binary conv is not worth starting threads for; below this many
 * multiply-adds, a float conv. */
#define MIN_WORK_FOR_THREADS (1L << 18)
#define MIN_FLOAT_WORK_FOR_THREADS (1L << 20)

typedef struct Band {
    RowsFn fn;
    void *context;
    int begin, end;
    pthread_t thread;
    int started;
} Band;

static void *run_band(void *arg)
{
    Band *band = arg;
    band->fn(band->context, band->begin, band->end);
    return NULL;
}

void bbcu_parallel_rows(RowsFn fn, void *context, int rows, int threads)
{
    const int count = threads < rows ? threads : rows;
    Band *bands = count > 1 ? calloc((size_t)count, sizeof *bands) : NULL;
    if (!bands) { /* one thread, or no memory for more: same result, run here */
        fn(context, 0, rows);
        return;
    }
    for (int i = 0; i < count; i++)
        bands[i] = (Band){fn, context, (int)((long)rows * i / count), (int)((long)rows * (i + 1) / count), 0, 0};
    for (int i = 1; i < count; i++)
        bands[i].started = pthread_create(&bands[i].thread, NULL, run_band, &bands[i]) == 0;
    run_band(&bands[0]);
    for (int i = 1; i < count; i++) {
        if (bands[i].started)
            pthread_join(bands[i].thread, NULL);
        else
            run_band(&bands[i]);
    }
    free(bands);
}

/* ------------------------------------------------------------------ binary convs */

typedef struct BinaryJob {
    const ConvArgs *args;
    const IsaKernels *isa;
    atomic_int out_of_memory;
} BinaryJob;

/* One band of a binary conv, with scratch of its own. */
static void binary_rows(void *context, int row_begin, int row_end)
{
    BinaryJob *job = context;
    const ConvArgs *a = job->args;
    const size_t plane_words = (size_t)3 * a->width * a->channel_words * job->isa->activation_planes;
    RowScratch scratch = {malloc((size_t)a->o_lanes * sizeof(int32_t)), malloc((size_t)a->out_channels * sizeof(float)),
                          plane_words ? malloc(plane_words * sizeof(uint64_t)) : NULL};
    if (scratch.count && scratch.values && (!plane_words || scratch.x_planes))
        job->isa->conv_rows(a, row_begin, row_end, &scratch);
    else
        atomic_store(&job->out_of_memory, 1);
    free(scratch.count);
    free(scratch.values);
    free(scratch.x_planes);
}

int bbcu_run_rows(const ConvArgs *a, const IsaKernels *isa, int num_threads)
{
    BinaryJob job = {a, isa, 0};
    bbcu_parallel_rows(binary_rows, &job, a->height, num_threads);
    return atomic_load(&job.out_of_memory) ? -1 : 0;
}

int bbcu_threads_for(const ConvArgs *a, int num_threads)
{
    const double work = (double)a->height * a->width * a->out_channels * 9 * a->channel_words;
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
    job->rows(job->args, row_begin, row_end);
}

void bbcu_float_conv3x3(const FloatConvArgs *a, const IsaKernels *isa, int num_threads)
{
    const double work = (double)a->height * a->width * a->out_channels * 9 * a->channels;
    FloatJob job = {a, isa->float_conv};
    bbcu_parallel_rows(float_rows, &job, a->height, work < (double)MIN_FLOAT_WORK_FOR_THREADS ? 1 : num_threads);
}
