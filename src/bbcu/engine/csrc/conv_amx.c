/*
 * The AMX path: the binary conv as an exact int8 conv on AMX tiles. A +-1 value is an int8, so
 * TDPBSSD (a 16 x 64 tile of int8 times a 64 x 16 one, summed into 16 x 16 int32: 16 K multiply-adds
 * per instruction) computes the dot products directly, and a tap outside the image is a zero byte,
 * which adds 0 as the popcount paths' clipping does. On the Xeon of session 7 the tiles ran 2.2 T
 * MAC/s per core against 840 G for the AVX-512 popcount loop (benchmarks/amx_tiles.c).
 *
 * Once per call the weights become int8 tiles (bbcu_weight_tiles_amx: per tap, input word and 16
 * outputs, in the layout TDPBSSD reads: row r holds channels 4r .. 4r + 3 of each of the 16 outputs);
 * per thread, each input row is expanded once from its sign bits to +-1 bytes (0 for padding
 * channels) in a ring of three rows with zero borders. A block of 32 pixels x 32 outputs takes 4 accumulator tiles, 2 input tiles
 * (16 pixels each, shifted by the tap) and 2 weight tiles; its int32 dot products go to a small
 * buffer, and each pixel then takes the AVX-512 popcount path's own epilogue steps from its dot
 * products (epilogue_avx512.h), or, for layers that are not whole 64-channel blocks, the shared
 * finish_pixel (epilogue.h) with popcount = (valid_taps * C - dot) / 2, exact since the two differ by
 * twice the mismatches; so the outputs equal the other paths' bit for bit.
 *
 * The path is offered only where the CPU has AMX-INT8 and Linux grants the process its tile state
 * (isa.c, bbcu_amx_usable), and it uses AVX-512 (BW for the byte expansion) around the tiles. A thread
 * that cannot allocate its byte rows says so through RowScratch.out_of_memory, as the other paths'
 * working memory does.
 */
#include "bitops.h"

#ifdef BBCU_X86
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vpopcntdq,popcnt,amx-tile,amx-int8"))), \
                             apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vpopcntdq,popcnt,amx-tile,amx-int8")
#endif

#include "amx_tiles.h"
#include "epilogue_avx512.h"

#define TILE_BYTES 1024   /* 16 rows x 64 bytes */
#define BLOCK_PIXELS 32   /* two input tiles of 16 pixels */
#define BLOCK_OUTPUTS 32  /* two weight tiles of 16 outputs */
#define WORD_BYTES 64     /* one packed word: 64 channels, one byte each */

/* Output-channel blocks of 16, rounded up to whole pairs (a block of 32 outputs per pass). */
static int blocks_for(int out_channels) { return (out_channels + BLOCK_OUTPUTS - 1) / BLOCK_OUTPUTS * 2; }

static int output_blocks(const ConvArgs *a) { return blocks_for(a->out_channels); }

/* The weight tiles, made once per call (bbcu_lane_weights, into ConvArgs.wl) and read by every thread:
 * tile (tap, k, block) has, in row r, bytes 4n .. 4n + 3 = the signs (+-1) of channels 4r .. 4r + 3 of
 * output 16 block + n; 0 past the real outputs. Padding channels need no care: their activation bytes
 * are 0. */
uint64_t *bbcu_weight_tiles_amx(const uint64_t *w, int out_channels, int channel_words)
{
    const int blocks = blocks_for(out_channels), cw = channel_words;
    int8_t *tiles = aligned_alloc(64, (size_t)9 * cw * blocks * TILE_BYTES);
    if (!tiles)
        return NULL;
    memset(tiles, 0, (size_t)9 * cw * blocks * TILE_BYTES);
    for (int o = 0; o < out_channels; o++)
        for (int tap = 0; tap < 9; tap++)
            for (int k = 0; k < cw; k++) {
                const uint64_t word = w[((size_t)o * 9 + tap) * cw + k];
                int8_t *tile = tiles + ((size_t)(tap * cw + k) * blocks + o / 16) * TILE_BYTES + 4 * (o % 16);
                for (int c = 0; c < 64; c++)
                    tile[(c / 4) * 64 + c % 4] = word >> c & 1 ? 1 : -1;
            }
    return (uint64_t *)tiles;
}

/* Input row y as +-1 bytes at pixels 1 .. W of `bytes` (pixel p at bytes + p * cw * 64; the border
 * pixels stay 0). Padding channels become 0: their bits are 0, which would otherwise read as -1. */
static void expand_row(const ConvArgs *a, int y, int8_t *bytes)
{
    const int cw = a->channel_words;
    const __m512i plus = _mm512_set1_epi8(1), minus = _mm512_set1_epi8(-1);
    const int tail = a->channels - (cw - 1) * 64;
    const __mmask64 last_word = tail == 64 ? ~(__mmask64)0 : ((__mmask64)1 << tail) - 1;
    const uint64_t *words = a->x + (size_t)y * a->width * cw;
    for (int x = 0; x < a->width; x++)
        for (int k = 0; k < cw; k++) {
            const __m512i signs = _mm512_mask_blend_epi8((__mmask64)words[(size_t)x * cw + k], minus, plus);
            const __mmask64 real = k == cw - 1 ? last_word : ~(__mmask64)0;
            _mm512_storeu_si512(bytes + ((size_t)(x + 1) * cw + k) * WORD_BYTES, _mm512_maskz_mov_epi8(real, signs));
        }
}

/* The dot products of pixels x0 .. x0 + 31 of an output row, outputs [32 pair, 32 pair + 32), into
 * dots (32 pixels x `stride` int32) from its three input rows of bytes (above, the row, below).
 * Between tile steps it asks for `per_step` cache lines at a time from `ahead` (NULL: none): the
 * residual the block's epilogue reads, which then finds it in cache (session 7: about 10 % off the
 * unit on one core; without it the epilogue waited on each line in turn). */
static void block_dots(const ConvArgs *a, int8_t *const rows[3], int x0, int pair, const int8_t *tiles,
                       int32_t *dots, int stride, const char *ahead, int per_step)
{
    const int cw = a->channel_words, blocks = output_blocks(a), pixel_bytes = cw * WORD_BYTES;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int tap = 0; tap < 9; tap++)
        for (int k = 0; k < cw; k++) {
            const int8_t *pixels = rows[tap / 3] + (size_t)(x0 + tap % 3) * pixel_bytes + k * WORD_BYTES;
            const int8_t *weights = tiles + ((size_t)(tap * cw + k) * blocks + 2 * pair) * TILE_BYTES;
            if (ahead)
                for (int line = 0; line < per_step; line++)
                    _mm_prefetch(ahead + 64 * ((size_t)(tap * cw + k) * per_step + line), _MM_HINT_T0);
            _tile_loadd(4, pixels, pixel_bytes);
            _tile_loadd(5, pixels + 16 * pixel_bytes, pixel_bytes);
            _tile_loadd(6, weights, 64);
            _tile_loadd(7, weights + TILE_BYTES, 64);
            _tile_dpbssd(0, 4, 6);
            _tile_dpbssd(1, 4, 7);
            _tile_dpbssd(2, 5, 6);
            _tile_dpbssd(3, 5, 7);
        }
    int32_t *out = dots + BLOCK_OUTPUTS * pair;
    const size_t bytes = (size_t)stride * sizeof(int32_t);
    _tile_stored(0, out, bytes);
    _tile_stored(1, out + 16, bytes);
    _tile_stored(2, out + 16 * stride, bytes);
    _tile_stored(3, out + 16 * stride + 16, bytes);
}

/* Working memory of one thread's rows: a ring of three byte rows and a zero row (each W + 2 + 32
 * pixels: the borders and a last block's overhang), and one block's dot products. */
typedef struct {
    int8_t *ring[3], *zeros;
    int ring_row[3];
    int32_t *dots;
} AmxScratch;

static int amx_scratch(const ConvArgs *a, AmxScratch *s)
{
    const size_t row_bytes = (size_t)(a->width + 2 + BLOCK_PIXELS) * a->channel_words * WORD_BYTES;
    memset(s, 0, sizeof *s);
    s->zeros = calloc(4, row_bytes);
    s->dots = aligned_alloc(64, (size_t)BLOCK_PIXELS * output_blocks(a) * 16 * sizeof(int32_t));
    for (int i = 0; i < 3; i++) {
        s->ring[i] = s->zeros ? s->zeros + (i + 1) * row_bytes : NULL;
        s->ring_row[i] = -2;
    }
    return s->zeros && s->dots ? 0 : -1;
}

/* Input row y as bytes: the zero row outside the image, else its ring slot, expanded on first use. */
static int8_t *input_row(const ConvArgs *a, AmxScratch *s, int y)
{
    if (y < 0 || y >= a->height)
        return s->zeros;
    const int slot = y % 3;
    if (s->ring_row[slot] != y) {
        expand_row(a, y, s->ring[slot]);
        s->ring_row[slot] = y;
    }
    return s->ring[slot];
}

/* The popcounts the shared epilogue takes, from exact dot products: full - dot is twice the number of
 * mismatching taps, never negative. */
static inline void mismatches(int n, int32_t full, const int32_t *restrict dots, int32_t *restrict count)
{
    for (int o = 0; o < n; o++)
        count[o] = (full - dots[o]) >> 1;
}

/* Pixels x0 .. x0 + pixels - 1 of row h from their dot products (pixel p's at dots + p * stride),
 * 64 channels at a time through the AVX-512 popcount path's own epilogue steps (`shape` a constant
 * where the caller is specialised). */
static inline __attribute__((always_inline)) void finish_block_pixels(const ConvArgs *a, const Finish *f, int h,
                                                                      int x0, int pixels, const int32_t *dots,
                                                                      int stride, int shape)
{
    const int subpixels = subpixels_of(a), n = pixel_channels(a);
    for (int p = 0; p < pixels; p++)
        for (int r = 0; r < subpixels; r++)
            for (int first = 0; first < n; first += 64) {
                const Placement at = block_placement(a, h, x0 + p, r, n, first);
                const int32_t *block = dots + (size_t)p * stride + r * n + first;
                uint64_t bits = 0;
                for (int half = 0; half < 4; half++) {
                    const __m512 dot = _mm512_cvtepi32_ps(_mm512_loadu_si512((const void *)(block + 16 * half)));
                    bits |= finish_dots(f, at, dot, half, shape);
                }
                store_next_bits(f, at, bits, shape);
            }
}

/* finish_block_pixels, specialised for the shapes networks use (as conv_avx512.c's interior rows). */
static void finish_block(const ConvArgs *a, const Finish *f, int h, int x0, int pixels, const int32_t *dots,
                         int stride)
{
    const int shape = shape_of(a);
    if (shape == UNIT_SHAPE)
        finish_block_pixels(a, f, h, x0, pixels, dots, stride, UNIT_SHAPE);
    else if (shape == TAIL_SHAPE)
        finish_block_pixels(a, f, h, x0, pixels, dots, stride, TAIL_SHAPE);
    else
        finish_block_pixels(a, f, h, x0, pixels, dots, stride, shape);
}

/* finish_pixel (epilogue.h) for each pixel of a block: any layer, raw dot products included. */
static void finish_block_generic(const ConvArgs *a, const RowScratch *scratch, int h, int x0, int pixels,
                                 const int32_t *dots, int stride)
{
    for (int p = 0; p < pixels; p++) {
        const int w = x0 + p;
        const int32_t full = valid_taps(h, a->height) * valid_taps(w, a->width) * a->channels;
        mismatches(a->out_channels, full, dots + (size_t)p * stride, scratch->count);
        finish_pixel(a, h, w, scratch->count, scratch->values, bbcu_pack_signs_avx512);
    }
}

void bbcu_conv_rows_amx(const ConvArgs *a, int row_begin, int row_end, const RowScratch *scratch)
{
    AmxScratch s;
    if (amx_scratch(a, &s) != 0) { /* reported as the other paths' scratch is (MemoryError from Python) */
        atomic_store(scratch->out_of_memory, 1);
        free(s.zeros);
        free(s.dots);
        return;
    }
    const int pairs = output_blocks(a) / 2, stride = 16 * output_blocks(a), fast = whole_blocks(a) && !a->raw;
    float table[PARAMS * MAX_TABLE_CHANNELS] __attribute__((aligned(64)));
    if (fast)
        gather_params(a, table);
    const Finish f = finish_of(a, table);
    configure_tiles();
    for (int h = row_begin; h < row_end; h++) {
        int8_t *rows[3] = {input_row(a, &s, h - 1), input_row(a, &s, h), input_row(a, &s, h + 1)};
        for (int x0 = 0; x0 < a->width; x0 += BLOCK_PIXELS) {
            const int pixels = a->width - x0 < BLOCK_PIXELS ? a->width - x0 : BLOCK_PIXELS;
            const int steps = pairs * 9 * a->channel_words, n = pixel_channels(a);
            const int per_step = (pixels * n * (int)sizeof(float) / 64 + steps - 1) / steps;
            const char *residual = a->residual ? (const char *)(a->residual + ((size_t)h * a->width + x0) * n)
                                               : NULL;
            for (int pair = 0; pair < pairs; pair++)
                block_dots(a, rows, x0, pair, (const int8_t *)a->wl, s.dots, stride,
                           residual ? residual + (size_t)64 * pair * 9 * a->channel_words * per_step : NULL,
                           per_step);
            if (fast)
                finish_block(a, &f, h, x0, pixels, s.dots, stride);
            else
                finish_block_generic(a, scratch, h, x0, pixels, s.dots, stride);
        }
    }
    _tile_release();
    free(s.zeros);
    free(s.dots);
}

/* TDPBSSD on tiles already loaded: the matrix unit's own rate, in binary MACs (int8 multiply-adds). */
long bbcu_binary_ceiling_amx(long rounds)
{
    static const int8_t operand[TILE_BYTES] __attribute__((aligned(64)));
    configure_tiles();
    _tile_loadd(4, operand, 64);
    _tile_loadd(5, operand, 64);
    _tile_loadd(6, operand, 64);
    _tile_loadd(7, operand, 64);
    for (long i = 0; i < rounds; i++) {
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    _tile_release();
    return rounds * 4 * 16 * 16 * 64;
}

#ifdef __clang__
#pragma clang attribute pop
#endif
#endif
