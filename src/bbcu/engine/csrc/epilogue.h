/*
 * Stage 2 of the conv (see bitops.h): integer dot products and the fused float epilogue.
 *
 * Each ISA file includes this header after switching on its instruction set, so the compiler
 * vectorises the same float code for that ISA. Every path therefore does the same float operations in
 * the same order (the build turns off FMA contraction), which keeps the outputs identical bit for bit.
 */
#ifndef BBCU_EPILOGUE_H
#define BBCU_EPILOGUE_H

#include <stddef.h>

#include "bitops.h"

/* In-image neighbour offsets of index i along an axis of length n: the 3x3 window clipped at borders,
 * which is how the zero-padded +-1 input makes padded taps contribute 0. */
static inline void tap_range(int i, int n, int *first, int *last)
{
    *first = i > 0 ? -1 : 0;
    *last = i < n - 1 ? 1 : 0;
}

static inline int valid_taps(int i, int n)
{
    int first, last;
    tap_range(i, n, &first, &last);
    return last - first + 1;
}

/* The epilogue's shape: which optional stages a layer has, as bits. The SIMD paths' hot loops take it
 * as a compile-time constant for the shapes networks use, so that they carry no test per vector step
 * (otherwise about one instruction in eight of the AVX-512 loop); any other shape passes it at run
 * time. */
enum { RAW = 1, BIAS = 2, RPRELU = 4, RESIDUAL = 8, LEAKY = 16, NEXT = 32 };
#define UNIT_SHAPE (RPRELU | RESIDUAL | NEXT) /* a BBCU unit (or upsampler) feeding the next binary layer */
#define TAIL_SHAPE (RPRELU | RESIDUAL | LEAKY) /* the last unit before a float conv */

static inline int shape_of(const ConvArgs *a)
{
    if (a->raw)
        return RAW;
    return (a->bias ? BIAS : 0) | (a->gamma ? RPRELU : 0) | (a->residual ? RESIDUAL : 0) | (a->leaky ? LEAKY : 0) |
           (a->next_shift ? NEXT : 0);
}

/* v = scale*dot (+ bias) (-> RPReLU) for one pixel. The parameters are restrict (GCC ignores restrict
 * on local variables) so that the compiler knows `v` aliases none of the inputs and vectorises the
 * loops without a run-time overlap check. */
static inline void epilogue_values(int n, int32_t full, const int32_t *restrict count, const float *restrict scale,
                                   const float *restrict bias, const float *restrict gamma,
                                   const float *restrict beta, const float *restrict zeta, float *restrict v)
{
    for (int o = 0; o < n; o++)
        v[o] = scale[o] * (float)(full - 2 * count[o]);
    if (bias)
        for (int o = 0; o < n; o++)
            v[o] += bias[o];
    if (gamma)
        for (int o = 0; o < n; o++) {
            const float t = v[o] + gamma[o], negative = beta[o] * t;
            v[o] = (t >= 0.0f ? t : negative) + zeta[o];
        }
}

static inline void add_in_place(int n, const float *restrict v, float *restrict y)
{
    for (int o = 0; o < n; o++)
        y[o] += v[o];
}

static inline void add_into(int n, const float *restrict v, const float *restrict residual, float *restrict y)
{
    for (int o = 0; o < n; o++)
        y[o] = v[o] + residual[o];
}

/* PyTorch's LeakyReLU, in place: y > 0 ? y : slope * y. */
static inline void leaky_relu(int n, float slope, float *restrict y)
{
    for (int o = 0; o < n; o++)
        y[o] = y[o] > 0.0f ? y[o] : slope * y[o];
}

/* The side of the square of output pixels each input pixel fills: s under the fused shuffle
 * (ConvArgs.shuffle), else 1. */
static inline int shuffle_side(const ConvArgs *a) { return a->shuffle > 1 ? a->shuffle : 1; }

/* Output pixels each input pixel fills: s^2 under the fused shuffle, else 1. */
static inline int subpixels_of(const ConvArgs *a) { return shuffle_side(a) * shuffle_side(a); }

/* Channels of one output pixel: all the conv's, or one sub-pixel's share of them under the shuffle. */
static inline int pixel_channels(const ConvArgs *a) { return a->out_channels / subpixels_of(a); }

/* Where sub-pixel r of input pixel (h, w) lands in the output (ConvArgs.shuffle). */
static inline size_t output_pixel(const ConvArgs *a, int h, int w, int r)
{
    const int s = shuffle_side(a);
    return (size_t)(h * s + r / s) * ((size_t)a->width * s) + (size_t)w * s + (size_t)(r % s);
}

/* The epilogue of one pixel (h, w) from its popcounts: dot = valid_taps * C - 2 * popcount (padding
 * bits are 0 on both sides, so they never count, and the per-tap term uses the real C), then either the
 * raw dot products or the float epilogue, written to a->y and, with next_shift, packed as the next
 * layer's input; one group of n output channels per sub-pixel when the shuffle is fused. With a
 * residual the float values go through the scratch `values` first, because y may be the residual
 * array itself (module.c rejects any other overlap). */
static inline void finish_pixel(const ConvArgs *a, int h, int w, const int32_t *count, float *values,
                                PackSignsFn pack_signs)
{
    const int32_t full = valid_taps(h, a->height) * valid_taps(w, a->width) * a->channels;
    const size_t pixel = (size_t)h * a->width + w;
    if (a->raw) {
        const int n = a->out_channels;
        int32_t *dot = a->raw + pixel * n;
        for (int o = 0; o < n; o++)
            dot[o] = full - 2 * count[o];
        return;
    }
    const int subpixels = subpixels_of(a), n = pixel_channels(a);
    const float *residual = a->residual ? a->residual + pixel * n : NULL;
    for (int r = 0, o = 0; r < subpixels; r++, o += n) {
        const size_t out = output_pixel(a, h, w, r);
        float *y = a->y + out * n;
        epilogue_values(n, full, count + o, a->scale + o, a->bias ? a->bias + o : NULL,
                        a->gamma ? a->gamma + o : NULL, a->beta ? a->beta + o : NULL, a->zeta ? a->zeta + o : NULL,
                        residual ? values : y);
        if (residual == y)
            add_in_place(n, values, y);
        else if (residual)
            add_into(n, values, residual, y);
        if (a->leaky)
            leaky_relu(n, a->leaky_slope, y);
        if (a->next_shift)
            pack_signs(y, a->next_shift + o, n, a->next_bits + out * (size_t)((n + 63) / 64));
    }
}

/* Stage 1, as every ISA provides it: begin_row prepares output row h (e.g. re-lays its input rows into
 * RowScratch.x_planes), count_pixel writes count[o] for every output channel o of pixel (h, w). */
typedef void (*BeginRowFn)(const ConvArgs *a, int h, const RowScratch *s);
typedef void (*CountPixelFn)(const ConvArgs *a, int h, int w, const RowScratch *s, int32_t *count);

/* The row loop every ISA shares, inlined with its own kernels. Each pixel's epilogue runs right after
 * its popcounts, while they are still in L1. */
static inline void conv_rows(const ConvArgs *a, int row_begin, int row_end, const RowScratch *s,
                             BeginRowFn begin_row, CountPixelFn count_pixel, PackSignsFn pack_signs)
{
    for (int h = row_begin; h < row_end; h++) {
        begin_row(a, h, s);
        for (int w = 0; w < a->width; w++) {
            count_pixel(a, h, w, s, s->count);
            finish_pixel(a, h, w, s->count, s->values, pack_signs);
        }
    }
}

#endif
