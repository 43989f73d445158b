/*
 * bbcu-kernel-selftest: every kernel path this CPU runs (NEON on aarch64, AVX2/AVX-512 on x86-64)
 * against the portable path, bit for bit, and the portable path against the definition (a direct sum
 * of +-1 products), on random packed convolutions of awkward sizes (1x1 images, channel counts around
 * the 64-bit word, output counts that leave partial SIMD blocks).
 *
 * It exists to be run where a path cannot be timed but can be proven right: the aarch64 build under
 * qemu-aarch64. Prints one line per path and exits 1 at the first difference.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitops.h"

static uint64_t state = 0x9E3779B97F4A7C15u;

static uint64_t next_random(void)
{
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return state;
}

static float random_float(void) { return (float)((double)(next_random() >> 11) / (double)(1ull << 53)) * 2.0f - 1.0f; }

static void random_bits(uint64_t *words, size_t vectors, int channels)
{
    const int cw = bbcu_channel_words(channels);
    const uint64_t last = channels % 64 ? (UINT64_C(1) << (channels % 64)) - 1 : ~UINT64_C(0);
    for (size_t i = 0; i < vectors * cw; i++)
        words[i] = next_random() & (i % cw == (size_t)cw - 1 ? last : ~UINT64_C(0));
}

/* The definition: sum over in-image taps and channels of sign(x) * sign(w), +-1 from the bits. */
static int32_t naive_dot(const uint64_t *x, const uint64_t *w, int height, int width, int channels, int h, int wi,
                         int o)
{
    const int cw = bbcu_channel_words(channels);
    int32_t sum = 0;
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
            if (h + dy < 0 || h + dy >= height || wi + dx < 0 || wi + dx >= width)
                continue;
            for (int c = 0; c < channels; c++) {
                const int xs = (int)(x[((size_t)(h + dy) * width + wi + dx) * cw + c / 64] >> (c % 64) & 1);
                const int ws = (int)(w[((size_t)o * 9 + (dy + 1) * 3 + dx + 1) * cw + c / 64] >> (c % 64) & 1);
                sum += xs == ws ? 1 : -1;
            }
        }
    return sum;
}

/* Runs the conv of `a` on `isa`, two threads, raw dot products or the fused epilogue. */
static int run(ConvArgs a, const IsaKernels *isa)
{
    a.o_lanes = bbcu_o_lanes(isa, a.out_channels);
    uint64_t *wl = bbcu_lane_weights(isa, a.w, a.out_channels, a.channel_words);
    a.wl = wl;
    const int status = bbcu_run_rows(&a, isa, 2);
    free(wl);
    return status;
}

static int check_case(int height, int width, int channels, int out_channels)
{
    const int cw = bbcu_channel_words(channels), ow = bbcu_channel_words(out_channels);
    const size_t pixels = (size_t)height * width, outputs = pixels * out_channels;
    uint64_t *x = malloc(pixels * cw * 8), *w = malloc((size_t)out_channels * 9 * cw * 8);
    int32_t *raw = malloc(outputs * 4), *raw_ref = malloc(outputs * 4);
    float *params = malloc((size_t)out_channels * 6 * 4), *y = malloc(outputs * 4), *y_ref = malloc(outputs * 4);
    float *residual = malloc(outputs * 4);
    uint64_t *bits = malloc(pixels * ow * 8), *bits_ref = malloc(pixels * ow * 8);
    random_bits(x, pixels, channels);
    random_bits(w, (size_t)out_channels * 9, channels);
    for (int i = 0; i < out_channels * 6; i++)
        params[i] = random_float();
    for (size_t i = 0; i < outputs; i++)
        residual[i] = random_float() * 10.0f;
    ConvArgs a = {0};
    a.x = x, a.w = w, a.height = height, a.width = width, a.channels = channels, a.channel_words = cw;
    a.out_channels = out_channels;
    ConvArgs fused = a;
    fused.scale = params, fused.bias = params + out_channels, fused.gamma = params + 2 * out_channels;
    fused.beta = params + 3 * out_channels, fused.zeta = params + 4 * out_channels;
    fused.next_shift = params + 5 * out_channels, fused.residual = residual;
    const IsaKernels *portable = bbcu_isa_find("portable");
    a.raw = raw_ref;
    fused.y = y_ref, fused.next_bits = bits_ref;
    int failed = run(a, portable) || run(fused, portable);
    for (size_t p = 0; p < pixels && !failed; p++)
        for (int o = 0; o < out_channels && !failed; o++)
            if (raw_ref[p * out_channels + o] != naive_dot(x, w, height, width, channels, (int)(p / width),
                                                          (int)(p % width), o)) {
                printf("FAIL portable differs from the definition at %dx%d C=%d O=%d\n", height, width, channels,
                       out_channels);
                failed = 1;
            }
    for (int i = 0; i < bbcu_isa_count() && !failed; i++) {
        const IsaKernels *isa = bbcu_isa_at(i);
        if (isa == portable || !bbcu_isa_supported(isa))
            continue;
        a.raw = raw, fused.y = y, fused.next_bits = bits;
        failed = run(a, isa) || run(fused, isa);
        if (!failed && (memcmp(raw, raw_ref, outputs * 4) || memcmp(y, y_ref, outputs * 4)
                        || memcmp(bits, bits_ref, pixels * ow * 8))) {
            printf("FAIL %s differs from portable at %dx%d C=%d O=%d\n", isa->name, height, width, channels,
                   out_channels);
            failed = 1;
        }
    }
    free(x), free(w), free(raw), free(raw_ref), free(params), free(y), free(y_ref), free(residual);
    free(bits), free(bits_ref);
    return failed;
}

int main(void)
{
    static const int sizes[][2] = {{1, 1}, {2, 3}, {5, 7}, {9, 4}};
    static const int channels[] = {1, 3, 63, 64, 65, 130};
    static const int outputs[] = {1, 2, 3, 17, 33, 64};
    int cases = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (size_t c = 0; c < sizeof channels / sizeof *channels; c++)
            for (size_t o = 0; o < sizeof outputs / sizeof *outputs; o++, cases++)
                if (check_case(sizes[s][0], sizes[s][1], channels[c], outputs[o]))
                    return 1;
    for (int i = 0; i < bbcu_isa_count(); i++)
        if (bbcu_isa_supported(bbcu_isa_at(i)))
            printf("ok %s: %d cases equal to the portable path and the definition, bit for bit\n",
                   bbcu_isa_at(i)->name, cases);
    return 0;
}
