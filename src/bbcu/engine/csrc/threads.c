/*
 * Threads for one call: the output rows are cut into contiguous bands, one per thread, and each
 * thread writes only its own rows and its own scratch. Plain per-call pthreads rather than OpenMP:
 * torch ships its own libgomp, and two OpenMP runtimes in one process can misbehave.
 */
#include <pthread.h>
#include <stdlib.h>

#include "bitops.h"

/* Below this many word operations a conv is not worth starting threads for. */
#define MIN_WORK_FOR_THREADS (1L << 18)

typedef struct RowBand {
    const ConvArgs *args;
    ConvRowsFn conv_rows;
    int row_begin, row_end;
    RowScratch scratch;
    pthread_t thread;
    int started;
} RowBand;

static void *run_band(void *arg)
{
    RowBand *band = arg;
    band->conv_rows(band->args, band->row_begin, band->row_end, &band->scratch);
    return NULL;
}

static void free_bands(RowBand *bands, int count)
{
    for (int i = 0; i < count; i++) {
        free(bands[i].scratch.count);
        free(bands[i].scratch.values);
        free(bands[i].scratch.x_planes);
    }
    free(bands);
}

int bbcu_run_rows(const ConvArgs *a, const IsaKernels *isa, int num_threads)
{
    const int count = num_threads < a->height ? num_threads : a->height;
    RowBand *bands = calloc((size_t)count, sizeof *bands);
    if (!bands)
        return -1;
    for (int i = 0; i < count; i++) {
        const size_t plane_words = (size_t)3 * a->width * a->channel_words * isa->activation_planes;
        bands[i] = (RowBand){a, isa->conv_rows, (int)((long)a->height * i / count),
                             (int)((long)a->height * (i + 1) / count), {NULL, NULL, NULL}, 0, 0};
        bands[i].scratch.count = malloc((size_t)a->o_lanes * sizeof(int32_t));
        bands[i].scratch.values = malloc((size_t)a->out_channels * sizeof(float));
        bands[i].scratch.x_planes = plane_words ? malloc(plane_words * sizeof(uint64_t)) : NULL;
        if (!bands[i].scratch.count || !bands[i].scratch.values || (plane_words && !bands[i].scratch.x_planes)) {
            free_bands(bands, i + 1);
            return -1;
        }
    }
    /* Band 0 runs on the calling thread; a band whose thread cannot start runs there too. */
    for (int i = 1; i < count; i++)
        bands[i].started = pthread_create(&bands[i].thread, NULL, run_band, &bands[i]) == 0;
    run_band(&bands[0]);
    for (int i = 1; i < count; i++) {
        if (bands[i].started)
            pthread_join(bands[i].thread, NULL);
        else
            run_band(&bands[i]);
    }
    free_bands(bands, count);
    return 0;
}

int bbcu_threads_for(const ConvArgs *a, int num_threads)
{
    const double work = (double)a->height * a->width * a->out_channels * 9 * a->channel_words;
    return work < (double)MIN_WORK_FOR_THREADS ? 1 : num_threads;
}
