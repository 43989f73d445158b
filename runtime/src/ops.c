/*
 * The full-precision layers of a packed network, in plain C: 3x3 convolutions (the heads, BBCU-L's
 * upsampler and conv_hr; a last conv with few outputs runs on the kernels' conv_float.c) and
 * PixelShuffle (the bilinear skip is the Python engine's too: engine/csrc/bilinear.c).
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

#if defined(BBCU_X86)
#include <immintrin.h>
#endif

/* Below this many output rows per thread, threads cost more than they save. */
#define MIN_ROWS_PER_THREAD 4

/* fn over [0, rows) on the shared band runner (threads.c), with fewer threads for small jobs. */
static void parallel_rows(RowsFn fn, void *context, int rows, int threads)
{
    const int useful = rows / MIN_ROWS_PER_THREAD;
    bbcu_parallel_rows(fn, context, rows, useful < threads ? (useful > 1 ? useful : 1) : threads);
}

/* ------------------------------------------------------------------ 3x3 convolution */

typedef struct ConvContext ConvContext;

/* Computes output channels [o, o + BLOCK_OUTPUTS) of `pixels` pixels from (h, w) on, none in the first or
 * the last column. */
typedef void (*BlockFn)(const ConvContext *a, int h, int w, int o);

struct ConvContext {
    const float *x, *weight, *bias;
    int height, width, channels, out_channels;
    float *y;
    int first_row; /* the output row that band row 0 of conv_rows is */
    BlockFn block;
    int pixels; /* per block */
};

/* acc[o] = fma(x[c], w[c][o], acc[o]) for each c in turn: one rounding per tap and channel, in
 * (tap, channel) order from 0, bias added last. That is how oneDNN (PyTorch's CPU convolution) computes
 * the networks' 1- and 3-channel head convolutions on x86-64 for images up to about 20,000 pixels
 * (1 channel; 3 channels: at least 32,000), so their outputs, which the first binarizer thresholds,
 * agree with the Python engine's bit for bit (docs/deploy.md says what happens beyond). Wider
 * convolutions are summed in blocks by oneDNN and agree to float rounding.
 * fmaf is exact on every CPU; on x86-64 clones built for x86-64-v3 (AVX2 and FMA3) are picked at load
 * time, so the loops run on vector FMA where the CPU has it, and on aarch64 it is the native fmla.
 *
 * Interior pixels go a block at a time (BLOCK_PIXELS, or AVX2_PIXELS on x86 with AVX2), BLOCK_OUTPUTS
 * output channels at a time (the weights of such a block lie together, Op.weight): each weight loaded
 * then feeds a multiply-add per pixel and the block's sums stay in registers, where one pixel at a time streamed
 * a wide layer's weights (64 KB a tap for BBCU-L's 64 -> 256 upsampler convs) from L2 for every pixel
 * (docs/deploy.md has BBCU-L x4 before and after). Every output keeps its order of sums, so a pixel's
 * bits do not depend on which way it went. */
#define BLOCK_PIXELS 4
#define BLOCK_OUTPUTS BBCU_CONV_BLOCK
#if defined(__x86_64__) && defined(__GLIBC__)
#define FMA_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FMA_CLONES
#endif

/* acc[0 .. count) += x[c] * w[c][0 .. count) for each input channel c in turn (w: one block's weights,
 * BLOCK_OUTPUTS a channel, from the first output wanted). */
FMA_CLONES static void add_tap(const float *restrict x, const float *restrict w, int channels, int count,
                               float *restrict acc)
{
    for (int c = 0; c < channels; c++) {
        const float v = x[c];
        const float *restrict row = w + (size_t)c * BLOCK_OUTPUTS;
        for (int o = 0; o < count; o++)
            acc[o] = fmaf(v, row[o], acc[o]);
    }
}

/* The weights of output block `block` (Op.weight) for tap `tap`: (C, BLOCK_OUTPUTS). */
static const float *block_weights(const ConvContext *a, int block, int tap)
{
    return a->weight + ((size_t)block * 9 + tap) * a->channels * BLOCK_OUTPUTS;
}

/* Output channels [o, o + count) of pixel (h, w), all in one block. */
static void conv_pixel_block(const ConvContext *a, int h, int w, int o, int count)
{
    const int c = a->channels;
    float *acc = a->y + ((size_t)h * a->width + w) * a->out_channels + o;
    memset(acc, 0, (size_t)count * sizeof *acc);
    for (int dy = -1; dy <= 1; dy++) {
        if (h + dy < 0 || h + dy >= a->height)
            continue;
        for (int dx = -1; dx <= 1; dx++) {
            if (w + dx < 0 || w + dx >= a->width)
                continue;
            const float *x = a->x + ((size_t)(h + dy) * a->width + (w + dx)) * c;
            const float *weights = block_weights(a, o / BLOCK_OUTPUTS, (dy + 1) * 3 + dx + 1) + o % BLOCK_OUTPUTS;
            add_tap(x, weights, c, count, acc);
        }
    }
    for (int i = 0; a->bias && i < count; i++)
        acc[i] += a->bias[o + i];
}

/* Output channels [o, o + count) of pixel (h, w), block by block. */
static void conv_pixel(const ConvContext *a, int h, int w, int o, int count)
{
    for (int end = o + count; o < end;) {
        const int in_block = BLOCK_OUTPUTS - o % BLOCK_OUTPUTS, n = end - o < in_block ? end - o : in_block;
        conv_pixel_block(a, h, w, o, n);
        o += n;
    }
}

/* acc[p][0 .. BLOCK_OUTPUTS) += x_p[c] * w[c][0 ..) for each input channel c in turn, x_p
 * the input of pixel p (channels floats apart): add_tap's sums for 4 pixels at once. The sums go through
 * one local array per pixel, which GCC keeps in registers for the whole loop (a 2-D array it kept in
 * memory). */
#define BLOCK_TAP(sums, v)                                                                                    \
    for (int j = 0; j < BLOCK_OUTPUTS; j++)                                                                   \
        sums[j] = fmaf(v, row[j], sums[j]);
FMA_CLONES static void add_tap_block(const float *restrict x, int channels, const float *restrict w,
                                     float acc[BLOCK_PIXELS][BLOCK_OUTPUTS])
{
    float s0[BLOCK_OUTPUTS], s1[BLOCK_OUTPUTS], s2[BLOCK_OUTPUTS], s3[BLOCK_OUTPUTS];
    memcpy(s0, acc[0], sizeof s0), memcpy(s1, acc[1], sizeof s1), memcpy(s2, acc[2], sizeof s2);
    memcpy(s3, acc[3], sizeof s3);
    for (int c = 0; c < channels; c++) {
        const float *restrict row = w + (size_t)c * BLOCK_OUTPUTS;
        const float v0 = x[c], v1 = x[(size_t)channels + c], v2 = x[2 * (size_t)channels + c];
        const float v3 = x[3 * (size_t)channels + c];
        BLOCK_TAP(s0, v0)
        BLOCK_TAP(s1, v1)
        BLOCK_TAP(s2, v2)
        BLOCK_TAP(s3, v3)
    }
    memcpy(acc[0], s0, sizeof s0), memcpy(acc[1], s1, sizeof s1), memcpy(acc[2], s2, sizeof s2);
    memcpy(acc[3], s3, sizeof s3);
}

/* Output channels [o, o + BLOCK_OUTPUTS) of pixels (h, w .. w + BLOCK_PIXELS - 1), none in the first or
 * the last column: conv_pixel's sums in conv_pixel's order. */
static void conv_block_generic(const ConvContext *a, int h, int w, int o)
{
    const int c = a->channels;
    float acc[BLOCK_PIXELS][BLOCK_OUTPUTS] = {{0}};
    for (int dy = -1; dy <= 1; dy++) {
        if (h + dy < 0 || h + dy >= a->height)
            continue;
        for (int dx = -1; dx <= 1; dx++) {
            const float *x = a->x + ((size_t)(h + dy) * a->width + (w + dx)) * c;
            add_tap_block(x, c, block_weights(a, o / BLOCK_OUTPUTS, (dy + 1) * 3 + dx + 1), acc);
        }
    }
    for (int p = 0; p < BLOCK_PIXELS; p++) {
        float *y = a->y + ((size_t)h * a->width + w + p) * a->out_channels + o;
        for (int j = 0; j < BLOCK_OUTPUTS; j++)
            y[j] = a->bias ? acc[p][j] + a->bias[o + j] : acc[p][j];
    }
}

#if defined(BBCU_X86)
#define AVX2_PIXELS 6

/* One input channel's step for pixel p: its value broadcast, times the block's 16 weights, into its sums. */
#define AVX2_STEP(p)                                                                                          \
    {                                                                                                         \
        const __m256 v = _mm256_broadcast_ss(x + (size_t)(p) * c + ch);                                       \
        lo##p = _mm256_fmadd_ps(v, w_lo, lo##p);                                                              \
        hi##p = _mm256_fmadd_ps(v, w_hi, hi##p);                                                              \
    }
#define AVX2_STORE(p)                                                                                         \
    {                                                                                                         \
        float *y = a->y + ((size_t)h * a->width + w + (p)) * a->out_channels + o;                             \
        _mm256_storeu_ps(y, a->bias ? _mm256_add_ps(lo##p, b_lo) : lo##p);                                    \
        _mm256_storeu_ps(y + 8, a->bias ? _mm256_add_ps(hi##p, b_hi) : hi##p);                                \
    }

/* conv_block_generic for AVX2_PIXELS pixels in AVX2 + FMA, the same sums in the same order: each
 * pixel's 16 sums stay in two ymm registers (12 in all: enough independent FMA chains to cover the FMA
 * latency on both ports) from the first tap to the last. GCC keeps the generic block's sums in
 * registers only within a tap and passes them between taps through memory, where each tap's reload
 * waits on the stores before it (BBCU-L x4 at 320x180, one thread: 3.19 s with the generic 4-pixel
 * block, 2.70 s with this one; perf record). */
__attribute__((target("avx2,fma"))) static void conv_block_avx2(const ConvContext *a, int h, int w, int o)
{
    const int c = a->channels;
    __m256 lo0 = _mm256_setzero_ps(), lo1 = lo0, lo2 = lo0, lo3 = lo0, lo4 = lo0, lo5 = lo0;
    __m256 hi0 = lo0, hi1 = lo0, hi2 = lo0, hi3 = lo0, hi4 = lo0, hi5 = lo0;
    for (int dy = -1; dy <= 1; dy++) {
        if (h + dy < 0 || h + dy >= a->height)
            continue;
        for (int dx = -1; dx <= 1; dx++) {
            const float *x = a->x + ((size_t)(h + dy) * a->width + (w + dx)) * c;
            const float *weights = block_weights(a, o / BLOCK_OUTPUTS, (dy + 1) * 3 + dx + 1);
            for (int ch = 0; ch < c; ch++) {
                const __m256 w_lo = _mm256_loadu_ps(weights + (size_t)ch * BLOCK_OUTPUTS);
                const __m256 w_hi = _mm256_loadu_ps(weights + (size_t)ch * BLOCK_OUTPUTS + 8);
                AVX2_STEP(0) AVX2_STEP(1) AVX2_STEP(2) AVX2_STEP(3) AVX2_STEP(4) AVX2_STEP(5)
            }
        }
    }
    const __m256 b_lo = a->bias ? _mm256_loadu_ps(a->bias + o) : lo0;
    const __m256 b_hi = a->bias ? _mm256_loadu_ps(a->bias + o + 8) : lo0;
    AVX2_STORE(0) AVX2_STORE(1) AVX2_STORE(2) AVX2_STORE(3) AVX2_STORE(4) AVX2_STORE(5)
}
#endif

/* Rows [begin, end): the interior columns in blocks, one block of outputs at a time along the row (so
 * that its 36 KB of weights, at 64 input channels, stay in cache while the row's pixels pass), then
 * the outputs left over and the columns no block covers, pixel by pixel. */
static void conv_rows(void *context, int begin, int end)
{
    const ConvContext *a = context;
    begin += a->first_row, end += a->first_row;
    const int outputs = a->out_channels, blocked_outputs = outputs / BLOCK_OUTPUTS * BLOCK_OUTPUTS;
    const int blocked_end = blocked_outputs ? 1 + (a->width - 2) / a->pixels * a->pixels : 1;
    for (int h = begin; h < end; h++) {
        for (int o = 0; o < blocked_outputs; o += BLOCK_OUTPUTS)
            for (int w = 1; w < blocked_end; w += a->pixels)
                a->block(a, h, w, o);
        for (int w = 1; w < blocked_end && blocked_outputs < outputs; w++)
            conv_pixel(a, h, w, blocked_outputs, outputs - blocked_outputs);
        conv_pixel(a, h, 0, 0, outputs);
        for (int w = blocked_end > 1 ? blocked_end : 1; w < a->width; w++)
            conv_pixel(a, h, w, 0, outputs);
    }
}

void bbcu_conv3x3_float(const FloatConvArgs *f, const IsaKernels *isa, int threads)
{
    const int from = f->rows_from, to = f->rows_to ? f->rows_to : f->height;
    ConvContext a = {f->x, f->weight, f->bias, f->height, f->width, f->channels, f->out_channels, f->y, from,
                     conv_block_generic, BLOCK_PIXELS};
#if defined(BBCU_X86)
    if (strcmp(isa->name, "portable") != 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        a.block = conv_block_avx2, a.pixels = AVX2_PIXELS;
#endif
    parallel_rows(conv_rows, &a, to - from, threads);
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
