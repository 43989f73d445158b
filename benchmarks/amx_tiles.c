/*
 * What AMX-INT8 tiles could give a binary conv on this core (docs/engine.md, issue "packed engine II"
 * item 4): a +-1 conv is an int8 conv, and TDPBSSD multiplies a 16 x 64 tile of int8 by a 64 x 16 tile
 * (16 K multiply-adds per instruction). Three readings, one core:
 *
 *   1. dot products only: TDPBSSD on tiles already loaded (the matrix unit's own rate);
 *   2. with the loads a conv needs: 2 x 2 blocking (4 accumulator tiles, 2 input, 2 weight tiles, the
 *      most 8 tiles allow), every input and weight tile reloaded for each 4 dot products, as each tap
 *      of a 3x3 conv must (tiles are not renamed: a reload waits for the dot products reading it);
 *   3. a whole direct 64 -> 64 3x3 conv at 320x180 on +-1 bytes with zero padding, written that way,
 *      checked equal to a plain C conv; and the same with each block's results stored to one small
 *      buffer instead of the 14.7 MB output (as the engine keeps them for the epilogue).
 *
 * Compare with the popcount ceiling of `bbcu bench` / kernels.measure_ceilings(1) in the same session.
 *
 * Build and run (x86-64 Linux with AMX, GCC 11 or newer):
 *   cc -O3 -Isrc/bbcu/engine/csrc -o /tmp/amx_tiles benchmarks/amx_tiles.c && /tmp/amx_tiles
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#pragma GCC target("amx-tile,amx-int8")

#include "amx_tiles.h"

enum { HEIGHT = 180, WIDTH = 320, CHANNELS = 64, PADDED_WIDTH = WIDTH + 2, ROUNDS = 20 };
enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };

static int8_t input[(HEIGHT + 2) * PADDED_WIDTH * CHANNELS]; /* +-1, zero border */
static int8_t weight[CHANNELS][CHANNELS][9];                 /* [out][in][tap], +-1 */
static int8_t weight_tiles[9][CHANNELS / 16][16 * 64];       /* per tap and 16 outputs: VNNI layout */
static int32_t output[HEIGHT * WIDTH * CHANNELS], expected[HEIGHT * WIDTH * CHANNELS];

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void make_data(void)
{
    srand(1);
    for (int y = 0; y < HEIGHT; y++)
        for (int x = 0; x < WIDTH; x++)
            for (int c = 0; c < CHANNELS; c++)
                input[((size_t)(y + 1) * PADDED_WIDTH + x + 1) * CHANNELS + c] = rand() & 1 ? 1 : -1;
    for (int o = 0; o < CHANNELS; o++)
        for (int c = 0; c < CHANNELS; c++)
            for (int tap = 0; tap < 9; tap++)
                weight[o][c][tap] = rand() & 1 ? 1 : -1;
    /* Row r of a weight tile holds, for each of its 16 outputs n, input channels 4r .. 4r + 3. */
    for (int tap = 0; tap < 9; tap++)
        for (int block = 0; block < CHANNELS / 16; block++)
            for (int r = 0; r < 16; r++)
                for (int n = 0; n < 16; n++)
                    for (int i = 0; i < 4; i++)
                        weight_tiles[tap][block][r * 64 + 4 * n + i] = weight[block * 16 + n][4 * r + i][tap];
}

static void plain_conv(void)
{
    for (int y = 0; y < HEIGHT; y++)
        for (int x = 0; x < WIDTH; x++)
            for (int o = 0; o < CHANNELS; o++) {
                int32_t sum = 0;
                for (int tap = 0; tap < 9; tap++) {
                    const int8_t *pixel = input + ((size_t)(y + tap / 3) * PADDED_WIDTH + x + tap % 3) * CHANNELS;
                    for (int c = 0; c < CHANNELS; c++)
                        sum += pixel[c] * weight[o][c][tap];
                }
                expected[((size_t)y * WIDTH + x) * CHANNELS + o] = sum;
            }
}

/* 32 pixels of a row x 32 outputs per pass: tiles 0-3 accumulate, 4-5 hold input, 6-7 weights. The
 * results go to `output`, or, with `in_cache`, all to the first 32 pixels' place in it (what the
 * engine does: each block's dot products wait in a small buffer for its epilogue). */
static void amx_conv(int in_cache)
{
    for (int y = 0; y < HEIGHT; y++)
        for (int x = 0; x < WIDTH; x += 32)
            for (int half = 0; half < 2; half++) {
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                for (int tap = 0; tap < 9; tap++) {
                    const int8_t *pixels = input + ((size_t)(y + tap / 3) * PADDED_WIDTH + x + tap % 3) * CHANNELS;
                    _tile_loadd(4, pixels, CHANNELS);
                    _tile_loadd(5, pixels + 16 * CHANNELS, CHANNELS);
                    _tile_loadd(6, weight_tiles[tap][2 * half], 64);
                    _tile_loadd(7, weight_tiles[tap][2 * half + 1], 64);
                    _tile_dpbssd(0, 4, 6);
                    _tile_dpbssd(1, 4, 7);
                    _tile_dpbssd(2, 5, 6);
                    _tile_dpbssd(3, 5, 7);
                }
                int32_t *out = output + (in_cache ? 0 : ((size_t)y * WIDTH + x) * CHANNELS) + 32 * half;
                const int stride = CHANNELS * sizeof(int32_t);
                _tile_stored(0, out, stride);
                _tile_stored(1, out + 16, stride);
                _tile_stored(2, out + 16 * CHANNELS, stride);
                _tile_stored(3, out + 16 * CHANNELS + 16, stride);
            }
}

/* The tile configuration and the fixed operands of the two rate loops in tiles 4-7 (tile numbers are
 * immediates: no loop). */
static void load_fixed_operands(void)
{
    configure_tiles();
    _tile_loadd(4, weight_tiles[0][0], 64);
    _tile_loadd(5, weight_tiles[0][1], 64);
    _tile_loadd(6, weight_tiles[0][2], 64);
    _tile_loadd(7, weight_tiles[0][3], 64);
}

static double dot_products_only(long rounds)
{
    const double start = seconds();
    for (long i = 0; i < rounds; i++) {
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    return 4.0 * (double)rounds * 16 * 16 * 64 / (seconds() - start);
}

static double with_reloads(long rounds)
{
    const double start = seconds();
    for (long i = 0; i < rounds; i++) {
        _tile_loadd(4, weight_tiles[0][0], 64);
        _tile_loadd(5, weight_tiles[0][1], 64);
        _tile_loadd(6, weight_tiles[0][2], 64);
        _tile_loadd(7, weight_tiles[0][3], 64);
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    return 4.0 * (double)rounds * 16 * 16 * 64 / (seconds() - start);
}

int main(void)
{
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        fprintf(stderr, "amx_tiles: this CPU or kernel does not grant AMX tile data\n");
        return 1;
    }
    make_data();
    plain_conv();
    load_fixed_operands();
    double best_dots = 0, best_reloads = 0, best_conv = 1e9, best_in_cache = 1e9;
    for (int round = 0; round < ROUNDS; round++) {
        const double dots = dot_products_only(500000), reloads = with_reloads(500000);
        best_dots = dots > best_dots ? dots : best_dots;
        best_reloads = reloads > best_reloads ? reloads : best_reloads;
        double start = seconds();
        amx_conv(1);
        const double in_cache = seconds() - start;
        best_in_cache = in_cache < best_in_cache ? in_cache : best_in_cache;
        start = seconds();
        amx_conv(0);
        const double took = seconds() - start;
        best_conv = took < best_conv ? took : best_conv;
        load_fixed_operands(); /* the conv left other data in tiles 4-7 */
    }
    _tile_release();
    const double macs = (double)HEIGHT * WIDTH * CHANNELS * CHANNELS * 9;
    printf("AMX-INT8, one core, best of %d rounds\n", ROUNDS);
    printf("dot products only (TDPBSSD on loaded tiles): %.0f G MAC/s\n", best_dots / 1e9);
    printf("4 tile loads per 4 dot products (2 x 2 blocking): %.0f G MAC/s\n", best_reloads / 1e9);
    printf("direct 64->64 3x3 conv at %dx%d, int32 out: %.2f ms, %.0f G MAC/s, equal to plain C: %s\n", WIDTH,
           HEIGHT, 1e3 * best_conv, macs / best_conv / 1e9, memcmp(output, expected, sizeof output) ? "NO" : "yes");
    printf("the same, each block's results to one small buffer: %.2f ms, %.0f G MAC/s\n", 1e3 * best_in_cache,
           macs / best_in_cache / 1e9);
    return 0;
}
