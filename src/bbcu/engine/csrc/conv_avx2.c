/*
 * The AVX2 path. AVX2 has no vector popcount, so bits are counted with a nibble lookup table
 * (two vpshufb per 256 bits), accumulated as bytes and summed into 64-bit lanes with vpsadbw.
 *
 * Output channels sit in the SIMD lanes: one activation word is broadcast and XORed with the words of
 * 4 output channels at once, so each 64-bit lane accumulates the count of one output channel and no
 * horizontal sum is ever needed. A block of 8 registers (32 output channels) reuses each loaded
 * activation word 32 times. Since (x ^ w) & m == (x & m) ^ (w & m), weights and input rows are split
 * into low/high nibble planes beforehand, leaving 6 instructions per tap word and 4 output channels
 * (2 XOR, 2 vpshufb, 2 byte adds). See docs/engine_kernels.md for the measured ceiling.
 */
#include <stdlib.h>

#include "bitops.h"

#ifdef BBCU_X86
#include <immintrin.h>

#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx2,popcnt"))), apply_to = function)
#else
#pragma GCC target("avx2,popcnt")
#endif

#include "epilogue.h"

#define LANES 4 /* output channels per register */
#define BLOCK 8 /* registers per output block: 8 counters + table + 2 activation planes + 2 temporaries */
/* A byte counter gains at most 8 per tap word (4 per nibble), so it is flushed after 31 words. */
#define WORDS_PER_FLUSH 31

/* Splits the input rows h-1, h, h+1 into low and high nibble planes (x & 0x0f.., (x >> 4) & 0x0f..),
 * once per output row instead of once per output block. */
static void split_rows(const ConvArgs *a, int h, uint64_t *planes)
{
    const uint64_t low_nibbles = UINT64_C(0x0f0f0f0f0f0f0f0f);
    const size_t row_words = (size_t)a->width * a->channel_words;
    int first, last;
    tap_range(h, a->height, &first, &last);
    for (int dy = first; dy <= last; dy++) {
        const uint64_t *x = a->x + (size_t)(h + dy) * row_words;
        uint64_t *out = planes + (size_t)(dy + 1) * row_words * 2;
        for (size_t i = 0; i < row_words; i++) {
            out[2 * i] = x[i] & low_nibbles;
            out[2 * i + 1] = (x[i] >> 4) & low_nibbles;
        }
    }
}

static inline __m256i nibble_table(void)
{
    return _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3,
                            4);
}

/* Adds popcount(x ^ w) of one tap word to the byte counters of nv registers (4 output channels each).
 * 6 instructions per register: 2 XOR of pre-split nibble planes, 2 vpshufb lookups, 2 byte adds. */
static inline __attribute__((always_inline)) void add_word(__m256i *bytes, int nv, const uint64_t *x_planes,
                                                           const uint64_t *w_lo, size_t plane, __m256i table)
{
    const __m256i x_lo = _mm256_set1_epi64x((long long)x_planes[0]);
    const __m256i x_hi = _mm256_set1_epi64x((long long)x_planes[1]);
    for (int j = 0; j < nv; j++) {
        const __m256i lo = _mm256_xor_si256(x_lo, _mm256_loadu_si256((const __m256i *)(w_lo + LANES * j)));
        const __m256i hi = _mm256_xor_si256(x_hi, _mm256_loadu_si256((const __m256i *)(w_lo + plane + LANES * j)));
        bytes[j] = _mm256_add_epi8(bytes[j], _mm256_shuffle_epi8(table, lo));
        bytes[j] = _mm256_add_epi8(bytes[j], _mm256_shuffle_epi8(table, hi));
        /* Keeps the counter in a register here: otherwise GCC reassociates the sum over the unrolled
         * taps into a tree, computes every lookup first and spills them all to the stack. */
        __asm__("" : "+x"(bytes[j]));
    }
}

/* Sums the byte counters of nv registers into 64-bit lanes and adds them to total. */
static inline __attribute__((always_inline)) void flush_bytes(__m256i *bytes, __m256i *total, int nv)
{
    for (int j = 0; j < nv; j++) {
        total[j] = _mm256_add_epi64(total[j], _mm256_sad_epu8(bytes[j], _mm256_setzero_si256()));
        bytes[j] = _mm256_setzero_si256();
    }
}

static inline __attribute__((always_inline)) void store_counts(const __m256i *total, int nv, int32_t *count)
{
    const __m256i low_halves = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    for (int j = 0; j < nv; j++) {
        const __m256i packed = _mm256_permutevar8x32_epi32(total[j], low_halves);
        _mm_storeu_si128((__m128i *)(count + LANES * j), _mm256_castsi256_si128(packed));
    }
}

/* The weights of the output block starting at lane o (bbcu_nibble_blocks_avx2's layout). */
static inline const uint64_t *block_weights(const ConvArgs *a, int o)
{
    return a->wl + (size_t)o * 18 * a->channel_words;
}

/* The hot case: an interior pixel with C <= 64 (one word per tap). Nine words never overflow a byte
 * counter, the taps unroll completely and the nv counters stay in registers. */
static inline __attribute__((always_inline)) void count_interior_one_word(const ConvArgs *a, int w, int o, int nv,
                                                                          const uint64_t *x_planes, int32_t *count)
{
    const __m256i table = nibble_table();
    const size_t plane = (size_t)nv * LANES;
    const uint64_t *weights = block_weights(a, o);
    __m256i bytes[8], total[8];
    for (int j = 0; j < nv; j++)
        bytes[j] = total[j] = _mm256_setzero_si256();
#pragma GCC unroll 9
    for (int tap = 0; tap < 9; tap++) {
        const uint64_t *xw = x_planes + ((size_t)(tap / 3) * a->width + (w + tap % 3 - 1)) * 2;
        add_word(bytes, nv, xw, weights + (size_t)tap * 2 * plane, plane, table);
    }
    flush_bytes(bytes, total, nv);
    store_counts(total, nv, count + o);
}

/* Any pixel and word count: the taps clipped at the image border, byte counters flushed every
 * WORDS_PER_FLUSH words. */
static inline __attribute__((always_inline)) void count_general(const ConvArgs *a, int h, int w, int o, int nv,
                                                                const uint64_t *x_planes, int32_t *count)
{
    const __m256i table = nibble_table();
    const size_t plane = (size_t)nv * LANES;
    const int cw = a->channel_words;
    const uint64_t *weights = block_weights(a, o);
    __m256i bytes[8], total[8];
    for (int j = 0; j < nv; j++)
        bytes[j] = total[j] = _mm256_setzero_si256();
    int pending = 0, y_first, y_last, x_first, x_last;
    tap_range(h, a->height, &y_first, &y_last);
    tap_range(w, a->width, &x_first, &x_last);
    for (int dy = y_first; dy <= y_last; dy++)
        for (int dx = x_first; dx <= x_last; dx++) {
            const uint64_t *xw = x_planes + ((size_t)(dy + 1) * a->width + (w + dx)) * cw * 2;
            const uint64_t *ww = weights + (size_t)((dy + 1) * 3 + (dx + 1)) * cw * 2 * plane;
            for (int k = 0; k < cw; k++) {
                add_word(bytes, nv, xw + 2 * k, ww + 2 * plane * k, plane, table);
                if (++pending == WORDS_PER_FLUSH) {
                    flush_bytes(bytes, total, nv);
                    pending = 0;
                }
            }
        }
    flush_bytes(bytes, total, nv);
    store_counts(total, nv, count + o);
}

/* The lane weights, one output block after the other: the block of lanes [o, o + n) (n = BLOCK * LANES for
 * the whole blocks, LANES for the rest) at wl + o * 18 * Cw, as (9 * Cw words, 2 nibble planes, n lanes).
 * A block's 4.5 KB (C <= 64) are then contiguous: in the lane-major layout of the other paths, a 64 ->
 * 256 upsampler's block is 18 pieces of 256 bytes 2 KB apart, all in 8 of the L1's 64 sets, more lines
 * than its 8 ways hold. With the span order below, the raw conv on Zen 3 went from 75 % of the ceiling
 * at 64 outputs and 60 % at 256 to 67-76 % at every width up to 512 (benchmarks/kernels_session10.md). */
uint64_t *bbcu_nibble_blocks_avx2(const uint64_t *w, int out_channels, int channel_words)
{
    const uint64_t low_nibbles = UINT64_C(0x0f0f0f0f0f0f0f0f);
    const int words = 9 * channel_words, o_lanes = (out_channels + LANES - 1) / LANES * LANES;
    const int full_blocks = o_lanes / (BLOCK * LANES) * (BLOCK * LANES);
    uint64_t *wl = calloc((size_t)o_lanes * words * 2, sizeof(uint64_t));
    if (!wl)
        return NULL;
    for (int o = 0; o < out_channels; o++) {
        const int lanes = o < full_blocks ? BLOCK * LANES : LANES, first = o / lanes * lanes;
        uint64_t *block = wl + (size_t)first * words * 2;
        for (int tk = 0; tk < words; tk++) {
            const uint64_t word = w[(size_t)o * words + tk];
            block[(size_t)tk * 2 * lanes + (o - first)] = word & low_nibbles;
            block[(size_t)(tk * 2 + 1) * lanes + (o - first)] = (word >> 4) & low_nibbles;
        }
    }
    return wl;
}

static void begin_row_avx2(const ConvArgs *a, int h, const RowScratch *s) { split_rows(a, h, s->x_planes); }

/* One output block's counts for pixel (h, w): the unrolled interior kernel where it applies. */
static inline __attribute__((always_inline)) void count_block(const ConvArgs *a, int h, int w, int o, int nv,
                                                              const uint64_t *x_planes, int32_t *count)
{
    if (a->channel_words == 1 && h > 0 && h < a->height - 1 && w > 0 && w < a->width - 1)
        count_interior_one_word(a, w, o, nv, x_planes, count);
    else
        count_general(a, h, w, o, nv, x_planes, count);
}

/* Counts pixels w0 .. w0 + pixels - 1 of row h, pixel p's counts at count + p * o_lanes, one output
 * block at a time over all the pixels, so that a block's weights are read from L1 by every pixel. */
static void count_span(const ConvArgs *a, int h, int w0, int pixels, const uint64_t *x_planes, int32_t *count)
{
    const int full_blocks = a->o_lanes / (BLOCK * LANES) * (BLOCK * LANES);
    for (int o = 0; o < full_blocks; o += BLOCK * LANES)
        for (int p = 0; p < pixels; p++)
            count_block(a, h, w0 + p, o, BLOCK, x_planes, count + (size_t)p * a->o_lanes);
    for (int o = full_blocks; o < a->o_lanes; o += LANES)
        for (int p = 0; p < pixels; p++)
            count_block(a, h, w0 + p, o, 1, x_planes, count + (size_t)p * a->o_lanes);
}

void bbcu_pack_signs_avx2(const float *v, const float *shift, int n, uint64_t *out)
{
    const __m256 zero = _mm256_setzero_ps();
    for (int word = 0; word < (n + 63) / 64; word++) {
        const int begin = word * 64, end = begin + 64 < n ? begin + 64 : n;
        uint64_t bits = 0;
        int i = begin;
        for (; i + 8 <= end; i += 8) {
            const __m256 u = _mm256_add_ps(_mm256_loadu_ps(v + i), _mm256_loadu_ps(shift + i));
            bits |= (uint64_t)_mm256_movemask_ps(_mm256_cmp_ps(u, zero, _CMP_GE_OQ)) << (i - begin);
        }
        for (; i < end; i++)
            bits |= (uint64_t)(v[i] + shift[i] >= 0.0f) << (i - begin);
        out[word] = bits;
    }
}

/* The 64 sign bits of 8 compare masks (channel 8k + l in lane l of masks[k]), 32 at a time: two
 * saturating packs set 4 channels of each mask side by side as bytes, per 128-bit half, a permute of
 * 4-byte groups restores the channel order, and one vpmovmskb reads them: 10 instructions for 64
 * channels, where a vmovmskps, a shift and an OR per 8 channels take 24. */
static inline __attribute__((always_inline)) uint64_t signs_of_64(const __m256i *masks)
{
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    uint64_t bits = 0;
    for (int half = 0; half < 2; half++) {
        const __m256i *m = masks + 4 * half;
        const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(m[0], m[1]), _mm256_packs_epi32(m[2], m[3]));
        bits |= (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_permutevar8x32_epi32(bytes, order)) << (32 * half);
    }
    return bits;
}

/* Pixel (h, w)'s epilogue from its counts in one pass, 8 channels per step: epilogue.h's float operations
 * in their order (so the bits are those of every other path), each value loaded once and stored once,
 * where finish_pixel's loops go through scratch memory stage by stage. For the shapes networks use,
 * `shape` (shape_of), `channels` (pixel_channels, 64) and `side` (shuffle_side, 1 or 2) are
 * compile-time constants (any other layer passes them at run time): the 8 steps then unroll, with each
 * next-layer word's end known at compile time, and the sub-pixel loops disappear or unroll. Sub-pixels
 * are walked by row and column where output_pixel divides (an idiv per pixel), and `row_taps`
 * (valid_taps of the row) comes from the row loop. In a loop over one row of pixels this runs at 1.06x
 * the time of the bare operations, where the same function with only `shape` constant took 1.4-1.5x;
 * the unit takes 0.88x of its time before both (benchmarks/kernels_session11.md). Takes layers with
 * whole 8-channel steps per sub-pixel. The parameters are read from ConvArgs once, into locals, as the
 * AVX-512 path's Finish holds them. */
static inline __attribute__((always_inline)) void finish_pixel_avx2(const ConvArgs *a, int h, int w,
                                                                    const int32_t *count, int shape, int channels,
                                                                    int side, int row_taps)
{
    const float *scale = a->scale, *bias = a->bias, *gamma = a->gamma, *beta = a->beta, *zeta = a->zeta;
    const float *next_shift = a->next_shift;
    const __m256 zero = _mm256_setzero_ps(), slope = _mm256_set1_ps(a->leaky_slope);
    const int s = side, n = channels, words = (n + 63) / 64, column_taps = 1 + (w > 0) + (w < a->width - 1);
    const size_t out_width = (size_t)a->width * s;
    const __m256i full = _mm256_set1_epi32(row_taps * column_taps * a->channels);
    const float *residual = shape & RESIDUAL ? a->residual + ((size_t)h * a->width + w) * n : NULL;
    for (int dy = 0, o = 0; dy < s; dy++)
        for (int dx = 0; dx < s; dx++, o += n) {
            const size_t out = (size_t)(h * s + dy) * out_width + (size_t)w * s + dx;
            float *y = a->y + out * n;
            uint64_t *next_bits = shape & NEXT ? a->next_bits + out * words : NULL;
            uint64_t bits = 0;
            __m256i signs[8];
#pragma GCC unroll 8
            for (int c = 0; c < n; c += 8) {
                const __m256i twice = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(count + o + c)), 1);
                const __m256 dot = _mm256_cvtepi32_ps(_mm256_sub_epi32(full, twice));
                __m256 v = _mm256_mul_ps(_mm256_loadu_ps(scale + o + c), dot);
                if (shape & BIAS)
                    v = _mm256_add_ps(v, _mm256_loadu_ps(bias + o + c));
                if (shape & RPRELU) {
                    const __m256 t = _mm256_add_ps(v, _mm256_loadu_ps(gamma + o + c));
                    const __m256 negative = _mm256_mul_ps(_mm256_loadu_ps(beta + o + c), t);
                    const __m256 kept = _mm256_blendv_ps(negative, t, _mm256_cmp_ps(t, zero, _CMP_GE_OQ));
                    v = _mm256_add_ps(kept, _mm256_loadu_ps(zeta + o + c));
                }
                if (shape & RESIDUAL)
                    v = _mm256_add_ps(v, _mm256_loadu_ps(residual + c));
                if (shape & LEAKY)
                    v = _mm256_blendv_ps(_mm256_mul_ps(slope, v), v, _mm256_cmp_ps(v, zero, _CMP_GT_OQ));
                _mm256_storeu_ps(y + c, v);
                if (!(shape & NEXT))
                    continue;
                const __m256 u = _mm256_add_ps(v, _mm256_loadu_ps(next_shift + o + c));
                const __m256 sign = _mm256_cmp_ps(u, zero, _CMP_GE_OQ);
                if (channels == 64) {
                    signs[c / 8] = _mm256_castps_si256(sign);
                    continue;
                }
                bits |= (uint64_t)_mm256_movemask_ps(sign) << (c % 64);
                if (c % 64 == 56 || c + 8 == n) {
                    next_bits[c / 64] = bits;
                    bits = 0;
                }
            }
            if ((shape & NEXT) && channels == 64)
                next_bits[0] = signs_of_64(signs);
        }
}

/* Pixel by pixel, the lane weights of every output block are read for every pixel: from L1 while they
 * fit (64 outputs: 9 KB), but BBCU-M's 64 -> 256 upsamplers have 36 KB of them, more than the 32 KB L1
 * of Zen 3 / Zen 4, and streamed from L2 their loads outrun its bandwidth. So the row loop counts
 * COUNT_SPAN pixels a block at a time before their epilogues: each block's weights are read from L2
 * once per span (10-13 % off the upsampler's time beside the block layout alone, on Zen 3). A negative
 * `shape` takes epilogue.h's finish_pixel. */
static inline __attribute__((always_inline)) void rows_of_shape(const ConvArgs *a, int row_begin, int row_end,
                                                                const RowScratch *s, int shape, int channels,
                                                                int side)
{
    for (int h = row_begin; h < row_end; h++) {
        const int row_taps = valid_taps(h, a->height);
        begin_row_avx2(a, h, s);
        for (int w0 = 0; w0 < a->width; w0 += COUNT_SPAN) {
            const int pixels = a->width - w0 < COUNT_SPAN ? a->width - w0 : COUNT_SPAN;
            count_span(a, h, w0, pixels, s->x_planes, s->count);
            for (int p = 0; p < pixels; p++) {
                const int32_t *count = s->count + (size_t)p * a->o_lanes;
                if (shape < 0)
                    finish_pixel(a, h, w0 + p, count, s->values, bbcu_pack_signs_avx2);
                else
                    finish_pixel_avx2(a, h, w0 + p, count, shape, channels, side, row_taps);
            }
        }
    }
}

void bbcu_conv_rows_avx2(const ConvArgs *a, int row_begin, int row_end, const RowScratch *s)
{
    const int shape = shape_of(a), channels = pixel_channels(a), side = shuffle_side(a), wide = channels == 64;
    if (shape == RAW || channels % 8)
        rows_of_shape(a, row_begin, row_end, s, -1, channels, side);
    else if (shape == UNIT_SHAPE && wide && side == 1)
        rows_of_shape(a, row_begin, row_end, s, UNIT_SHAPE, 64, 1);
    else if (shape == UNIT_SHAPE && wide && side == 2)
        rows_of_shape(a, row_begin, row_end, s, UNIT_SHAPE, 64, 2);
    else if (shape == TAIL_SHAPE && wide && side == 1)
        rows_of_shape(a, row_begin, row_end, s, TAIL_SHAPE, 64, 1);
    else
        rows_of_shape(a, row_begin, row_end, s, shape, channels, side);
}

#ifdef __clang__
#pragma clang attribute pop
#endif

#endif
