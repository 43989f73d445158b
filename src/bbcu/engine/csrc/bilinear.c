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

#include "bitops.h"

/* Source index and weights of output index i along an axis of n input samples, as PyTorch computes
 * them for align_corners=False with an explicit scale factor: src = (i + 0.5) / s - 0.5, clamped at 0. */
static void bilinear_axis(int i, int n, float inverse_scale, int *i0, int *i1, float *l0, float *l1)
{
    float src = inverse_scale * ((float)i + 0.5f) - 0.5f;
    if (src < 0.0f)
        src = 0.0f;
    *i0 = (int)src;
    if (*i0 > n - 1)
        *i0 = n - 1;
    *i1 = *i0 < n - 1 ? *i0 + 1 : *i0;
    *l1 = src - (float)*i0;
    if (*l1 > 1.0f)
        *l1 = 1.0f;
    *l0 = 1.0f - *l1;
}

typedef struct BilinearJob {
    const float *skip;
    int height, width, channels, scale;
    float *x;
} BilinearJob;

static void bilinear_rows(void *context, int row_begin, int row_end)
{
    const BilinearJob *a = context;
    const float inverse_scale = (float)(1.0 / a->scale);
    const int width = a->width, channels = a->channels, out_width = width * a->scale;
    for (int oh = row_begin; oh < row_end; oh++) {
        int h0, h1, w0, w1;
        float a0, a1, b0, b1;
        bilinear_axis(oh, a->height, inverse_scale, &h0, &h1, &a0, &a1);
        for (int ow = 0; ow < out_width; ow++) {
            bilinear_axis(ow, width, inverse_scale, &w0, &w1, &b0, &b1);
            const float *p00 = a->skip + ((size_t)h0 * width + w0) * channels;
            const float *p01 = a->skip + ((size_t)h0 * width + w1) * channels;
            const float *p10 = a->skip + ((size_t)h1 * width + w0) * channels;
            const float *p11 = a->skip + ((size_t)h1 * width + w1) * channels;
            float *out = a->x + ((size_t)oh * out_width + ow) * channels;
            for (int c = 0; c < channels; c++)
                out[c] += a0 * (b0 * p00[c] + b1 * p01[c]) + a1 * (b0 * p10[c] + b1 * p11[c]);
        }
    }
}

void bbcu_add_bilinear(const float *skip, int height, int width, int channels, int scale, float *x, int threads)
{
    BilinearJob job = {skip, height, width, channels, scale, x};
    const long out_rows = (long)height * scale;
    const int useful = (int)(out_rows * width * scale * channels / 65536); /* a band per 64k values at most */
    bbcu_parallel_rows(bilinear_rows, &job, (int)out_rows, useful < 1 ? 1 : useful < threads ? useful : threads);
}
