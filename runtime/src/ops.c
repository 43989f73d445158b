/*
 * The full-precision layers of a packed network, in plain C: 3x3 convolutions (head, tail, BBCU-L's
 * upsampler) and PixelShuffle (the bilinear skip is the Python engine's too: engine/csrc/bilinear.c).
 *
 * Every output value is computed by one thread in a fixed order, so results do not depend on the thread
 * count or the tiling, and (built with -ffp-contract=off, as the kernels are) are identical on x86-64
 * and aarch64.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bitops.h"
#include "internal.h"

/* Below this many output rows per thread, threads cost more than they save. */
#define MIN_ROWS_PER_THREAD 4

/* fn over [0, rows) on the shared band runner (threads.c), with fewer threads for small jobs. */
static void parallel_rows(RowsFn fn, void *context, int rows, int threads)
{
    const int useful = rows / MIN_ROWS_PER_THREAD;
    bbcu_parallel_rows(fn, context, rows, useful < threads ? (useful > 1 ? useful : 1) : threads);
}

/* ------------------------------------------------------------------ 3x3 convolution */

typedef struct ConvContext {
    const float *x, *weight, *bias;
    int height, width, channels, out_channels;
    float *y;
} ConvContext;

/* acc[o] = fma(x[c], w[c][o], acc[o]) for each c in turn: one rounding per tap and channel, in
 * (tap, channel) order from 0, bias added last. That is how oneDNN (PyTorch's CPU convolution) computes
 * the networks' 1- and 3-channel head convolutions on x86-64 for images up to about 20,000 pixels
 * (1 channel; 3 channels: at least 32,000), so their outputs, which the first binarizer thresholds,
 * agree with the Python engine's bit for bit (docs/deploy.md says what happens beyond). Wider
 * convolutions are summed in blocks by oneDNN and agree to float rounding.
 * fmaf is exact on every CPU; on x86-64 a clone built for FMA3 is picked at load time, so the loop
 * runs on vector FMA where the CPU has it, and on aarch64 it is the native fmla. */
#if defined(__x86_64__) && defined(__GLIBC__)
__attribute__((target_clones("fma", "default")))
#endif
static void add_tap(const float *restrict x, const float *restrict w, int channels, int out_channels,
                    float *restrict acc)
{
    for (int c = 0; c < channels; c++) {
        const float v = x[c];
        const float *restrict row = w + (size_t)c * out_channels;
        for (int o = 0; o < out_channels; o++)
            acc[o] = fmaf(v, row[o], acc[o]);
    }
}

static void conv_rows(void *context, int begin, int end)
{
    const ConvContext *a = context;
    const int c = a->channels, o = a->out_channels;
    for (int h = begin; h < end; h++)
        for (int w = 0; w < a->width; w++) {
            float *acc = a->y + ((size_t)h * a->width + w) * o;
            memset(acc, 0, (size_t)o * sizeof *acc);
            for (int dy = -1; dy <= 1; dy++) {
                if (h + dy < 0 || h + dy >= a->height)
                    continue;
                for (int dx = -1; dx <= 1; dx++) {
                    if (w + dx < 0 || w + dx >= a->width)
                        continue;
                    const float *x = a->x + ((size_t)(h + dy) * a->width + (w + dx)) * c;
                    add_tap(x, a->weight + (size_t)((dy + 1) * 3 + dx + 1) * c * o, c, o, acc);
                }
            }
            for (int i = 0; a->bias && i < o; i++)
                acc[i] += a->bias[i];
        }
}

void bbcu_conv3x3_float(const float *x, int height, int width, int channels, const float *weight,
                        const float *bias, int out_channels, float *y, int threads)
{
    ConvContext a = {x, weight, bias, height, width, channels, out_channels, y};
    parallel_rows(conv_rows, &a, height, threads);
}

/* ------------------------------------------------------------------ pixel shuffle */

void bbcu_pixel_shuffle(const float *x, int height, int width, int channels, int scale, float *y)
{
    const int in_channels = channels * scale * scale, out_width = width * scale;
    for (int h = 0; h < height; h++)
        for (int i = 0; i < scale; i++)
            for (int w = 0; w < width; w++)
                for (int j = 0; j < scale; j++) {
                    const float *src = x + ((size_t)h * width + w) * in_channels + i * scale + j;
                    float *dst = y + ((size_t)(h * scale + i) * out_width + (w * scale + j)) * channels;
                    for (int c = 0; c < channels; c++)
                        dst[c] = src[(size_t)c * scale * scale];
                }
}
