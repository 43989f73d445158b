/*
 * The bilinear skip of the SR networks: x (sH, sW, C) += bilinear_up(skip (H, W, C), s), computed as
 * PyTorch's F.interpolate(mode="bilinear", align_corners=False) with an explicit scale factor computes
 * it, in one pass over x (PyTorch makes the upsampled image first, then adds it in a second, strided
 * pass on channels-last data). Shared by the Python engine and the C runtime.
 *
 * Each output value is computed by one thread in a fixed order, so the result does not depend on the
 * thread count (built with -ffp-contract=off, as the kernels are).
 */
#include <stddef.h>
#include <stdlib.h>

#include "bitops.h"

/* Source index and weights of output index i along an axis, as PyTorch computes them for
 * align_corners=False with an explicit scale factor: src = (i + 0.5) / s - 0.5, clamped at 0. The
 * skip holds n input samples from input index `origin` of the image on (a tile's; 0: the whole image)
 * and i counts from the image's first output too, so that a tile computes the very positions of a
 * whole-image pass (for s = 3 they round differently at other offsets); the index is then made
 * relative to the tile and kept inside it (the samples a tile's edge would read outside it fall in
 * the context it discards). */
static void bilinear_axis(int i, int origin, int n, float inverse_scale, int *i0, int *i1, float *l0, float *l1)
{
    float src = inverse_scale * ((float)i + 0.5f) - 0.5f;
    if (src < 0.0f)
        src = 0.0f;
    const int whole = (int)src;
    *l1 = src - (float)whole;
    *l0 = 1.0f - *l1;
    *i0 = whole - origin < 0 ? 0 : whole - origin > n - 1 ? n - 1 : whole - origin;
    *i1 = *i0 < n - 1 ? *i0 + 1 : *i0;
}

/* Where output column ow reads: its two input columns and their weights, the same for every row. */
typedef struct Column {
    int w0, w1;
    float b0, b1;
} Column;

typedef struct BilinearJob {
    const float *skip;
    int height, width, channels, scale, origin_row;
    float *x;
    const Column *columns; /* one per output column, made once per call */
} BilinearJob;

static void bilinear_rows(void *context, int row_begin, int row_end)
{
    const BilinearJob *a = context;
    const float inverse_scale = (float)(1.0 / a->scale);
    const int width = a->width, channels = a->channels, out_width = width * a->scale;
    for (int oh = row_begin; oh < row_end; oh++) {
        int h0, h1;
        float a0, a1;
        bilinear_axis(oh + a->scale * a->origin_row, a->origin_row, a->height, inverse_scale, &h0, &h1, &a0, &a1);
        const float *row0 = a->skip + (size_t)h0 * width * channels, *row1 = a->skip + (size_t)h1 * width * channels;
        float *out = a->x + (size_t)oh * out_width * channels;
        for (int ow = 0; ow < out_width; ow++, out += channels) {
            const Column col = a->columns[ow];
            const float *p00 = row0 + (size_t)col.w0 * channels, *p01 = row0 + (size_t)col.w1 * channels;
            const float *p10 = row1 + (size_t)col.w0 * channels, *p11 = row1 + (size_t)col.w1 * channels;
            for (int c = 0; c < channels; c++)
                out[c] += a0 * (col.b0 * p00[c] + col.b1 * p01[c]) + a1 * (col.b0 * p10[c] + col.b1 * p11[c]);
        }
    }
}

/* Returns 0, or -1 when the column table cannot be allocated (x is then untouched). */
int bbcu_add_bilinear(const float *skip, int height, int width, int channels, int scale, int origin_row,
                      int origin_col, float *x, int threads)
{
    const int out_width = width * scale;
    Column *columns = malloc((size_t)out_width * sizeof(Column));
    if (!columns)
        return -1;
    const float inverse_scale = (float)(1.0 / scale);
    for (int ow = 0; ow < out_width; ow++) {
        Column *col = &columns[ow];
        bilinear_axis(ow + scale * origin_col, origin_col, width, inverse_scale, &col->w0, &col->w1, &col->b0,
                      &col->b1);
    }
    BilinearJob job = {skip, height, width, channels, scale, origin_row, x, columns};
    const long out_rows = (long)height * scale;
    const int useful = (int)(out_rows * out_width * channels / 65536); /* a band per 64k values at most */
    bbcu_parallel_rows(bilinear_rows, &job, (int)out_rows, useful < 1 ? 1 : useful < threads ? useful : threads);
    free(columns);
    return 0;
}
