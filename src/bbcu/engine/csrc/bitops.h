/*
 * Shared declarations of the packed 1-bit engine's kernels.
 *
 * Layouts (all C-contiguous, channels last, signs packed 64 channels per uint64 word, bit 1 = +1):
 *   activations  x  : uint64 (H, W, Cw)         Cw = ceil(C / 64); padding bits are 0
 *   weights      w  : uint64 (O, 3, 3, Cw)      as given by the caller
 *   lane weights wl : uint64 (9 * Cw, P, O_lanes)  w transposed so that consecutive output channels of
 *                                               one tap word are adjacent (what SIMD-over-outputs kernels
 *                                               load), in P "planes" (transforms of each word the ISA
 *                                               wants precomputed); O_lanes = O rounded up to the ISA's
 *                                               lane count, the extra columns hold 0. A path may lay wl
 *                                               out its own way instead (IsaKernels.prepare_weights:
 *                                               AVX2's nibble planes block by block, AMX's int8 tiles)
 *
 * Each output pixel goes through two stages, so that only the first one needs hand-written SIMD code:
 *   1. count_pixel (per ISA): count[o] = sum over in-image taps of popcount(x ^ w)
 *   2. finish_pixel (epilogue.h): dot = valid_taps * C - 2 * count, then the fused float epilogue.
 */
#ifndef BBCU_BITOPS_H
#define BBCU_BITOPS_H

#include <stdatomic.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#define BBCU_X86 1
#endif
#if defined(__aarch64__)
#define BBCU_ARM64 1
#endif

/* 64-bit words that hold the signs of `channels` channels (the packed format's channel_words). */
static inline int bbcu_channel_words(int channels) { return (channels + 63) / 64; }

typedef struct ConvArgs {
    const uint64_t *x;
    const uint64_t *w;  /* (O, 3, 3, Cw): used by kernels that walk output channels one at a time */
    const uint64_t *wl; /* (9 * Cw, P, o_lanes): used by kernels that put output channels in SIMD lanes */
    int height, width, channels, channel_words, out_channels, o_lanes;
    /* Sub-pixel shuffle s fused into the epilogue (0 or 1: none). Output channel r * n + c, with
     * n = out_channels / s^2, goes to channel c of output pixel (s*h + r / s, s*w + r % s): y, next_bits
     * are (sH, sW, n) and (sH, sW, ceil(n / 64)), the per-channel parameters stay (out_channels,), and the
     * residual is (H, W, n), added to every sub-pixel (a nearest-neighbour upsampled skip). */
    int shuffle;
    /* LeakyReLU after the residual add (y = y > 0 ? y : slope * y), as a network applies it to a unit's
     * output, when `leaky` is set; the next layer's signs are packed from the activated values. */
    int leaky;
    float leaky_slope;

    /* Exactly one of raw / y is set. raw: int32 (H, W, O) exact dot products, no epilogue. */
    int32_t *raw;
    float *y; /* float32 (H, W, O) */

    /* Epilogue parameters, each float32 (O,) or (H, W, O); NULL when absent. */
    const float *scale, *bias, *gamma, *beta, *zeta, *residual, *next_shift;
    uint64_t *next_bits; /* uint64 (H, W, ceil(O / 64)) when next_shift is set */

    /* Output rows [rows_from, rows_to) only (rows of x; s times as many with a shuffle), the others not
     * written; both 0: every row. The rows of x around them are real neighbours, not padding, which is
     * how a band of a larger image is computed without recomputing its edges. */
    int rows_from, rows_to;
} ConvArgs;

/* Packs the signs of v[i] + shift[i] (bit 1 where >= 0) for i < n into ceil(n / 64) words, padding 0. */
typedef void (*PackSignsFn)(const float *v, const float *shift, int n, uint64_t *out);

/* Pixels whose popcounts a row loop may hold before running their epilogues (RowScratch.count). */
#define COUNT_SPAN 8

/* Per-thread working memory of the row loop, so that threads never share writable buffers. */
typedef struct RowScratch {
    int32_t *count;     /* COUNT_SPAN * o_lanes: the popcounts of up to COUNT_SPAN pixels */
    float *values;      /* out_channels: one pixel's epilogue, kept apart from y so y may alias residual */
    uint64_t *x_planes; /* 3 * width * channel_words * activation_planes: the 3 input rows of the row in
                           progress, transformed as the ISA wants them (NULL when it wants none) */
    atomic_int *out_of_memory; /* set by a path whose own working memory cannot be allocated (its rows
                                  are then not computed, and the call reports it: bbcu_run_rows) */
} RowScratch;

/* Computes output rows [row_begin, row_end). */
typedef void (*ConvRowsFn)(const ConvArgs *a, int row_begin, int row_end, const RowScratch *scratch);

/* A full-precision 3x3 conv with zero padding (conv_float.c): y (H, W, O) from x (H, W, C), weight
 * (O, 9, C) with tap = 3 * ky + kx, bias (O,) or NULL. */
typedef struct FloatConvArgs {
    const float *x, *weight, *bias;
    int height, width, channels, out_channels;
    float *y;
    int rows_from, rows_to; /* as in ConvArgs: output rows [rows_from, rows_to) only; both 0: all */
} FloatConvArgs;

/* Computes output rows [row_begin, row_end) of a FloatConvArgs conv. */
typedef void (*FloatConvRowsFn)(const FloatConvArgs *a, int row_begin, int row_end);

/* A peak-rate loop (bitops.h's "ceilings"): runs `rounds` rounds of the ISA's inner-loop instructions
 * on L1-resident data and returns the MACs it did (binary MACs, or fp32 multiply-adds), so a kernel's
 * speed can be stated as a fraction of what the core can do with those very instructions. */
typedef long (*CeilingFn)(long rounds);

/* One instruction-set path: the entry points every ISA file provides, and its weight layout. */
typedef struct IsaKernels {
    const char *name;
    int lanes;  /* output channels per SIMD register */
    int planes; /* P of the lane weights; 0: the kernel reads ConvArgs.w, or prepare_weights' layout */
    uint64_t (*plane_word)(uint64_t w, int plane); /* one weight word as stored in plane p */
    /* Weights in a layout of the ISA's own (AVX2's nibble-plane blocks, AMX tiles), made once per call
     * into ConvArgs.wl instead of lane weights: malloc'ed, NULL when memory ran out; NULL for the ISAs
     * that use planes. */
    uint64_t *(*prepare_weights)(const uint64_t *w, int out_channels, int channel_words);
    int activation_planes; /* words of RowScratch.x_planes per activation word */
    ConvRowsFn conv_rows;
    PackSignsFn pack_signs;
    CeilingFn binary_ceiling; /* xor + popcount + accumulate, as the conv's inner loop does them */
    CeilingFn fma_ceiling;    /* fp32 multiply-adds at this ISA's widest vectors */
    FloatConvRowsFn float_conv; /* the few-output float conv, vectorised for this ISA */
} IsaKernels;

void bbcu_conv_rows_portable(const ConvArgs *a, int row_begin, int row_end, const RowScratch *scratch);
void bbcu_pack_signs_portable(const float *v, const float *shift, int n, uint64_t *out);
long bbcu_binary_ceiling_portable(long rounds);
void bbcu_float_conv_portable(const FloatConvArgs *a, int row_begin, int row_end);
long bbcu_fma_ceiling_portable(long rounds);
#ifdef BBCU_X86
void bbcu_conv_rows_avx2(const ConvArgs *a, int row_begin, int row_end, const RowScratch *scratch);
uint64_t *bbcu_nibble_blocks_avx2(const uint64_t *w, int out_channels, int channel_words);
void bbcu_pack_signs_avx2(const float *v, const float *shift, int n, uint64_t *out);
long bbcu_binary_ceiling_avx2(long rounds);
void bbcu_float_conv_avx2(const FloatConvArgs *a, int row_begin, int row_end);
long bbcu_fma_ceiling_avx2(long rounds);
void bbcu_conv_rows_avx512(const ConvArgs *a, int row_begin, int row_end, const RowScratch *scratch);
void bbcu_pack_signs_avx512(const float *v, const float *shift, int n, uint64_t *out);
long bbcu_binary_ceiling_avx512(long rounds);
void bbcu_float_conv_avx512(const FloatConvArgs *a, int row_begin, int row_end);
long bbcu_fma_ceiling_avx512(long rounds);
void bbcu_conv_rows_amx(const ConvArgs *a, int row_begin, int row_end, const RowScratch *scratch);
uint64_t *bbcu_weight_tiles_amx(const uint64_t *w, int out_channels, int channel_words);
long bbcu_binary_ceiling_amx(long rounds);
int bbcu_amx_usable(void); /* the CPU has AMX-INT8, the OS enables its state and grants it to us */
#endif
#ifdef BBCU_ARM64
void bbcu_conv_rows_neon(const ConvArgs *a, int row_begin, int row_end, const RowScratch *scratch);
long bbcu_binary_ceiling_neon(long rounds);
void bbcu_float_conv_neon(const FloatConvArgs *a, int row_begin, int row_end);
long bbcu_fma_ceiling_neon(long rounds);
#endif

/* isa.c: the paths this CPU can run, and the one in use. */
int bbcu_isa_count(void);
const IsaKernels *bbcu_isa_at(int index); /* index < bbcu_isa_count(), slowest first */
int bbcu_isa_supported(const IsaKernels *isa);
const IsaKernels *bbcu_isa_find(const char *name); /* NULL when the name is unknown */
const IsaKernels *bbcu_isa_best(void);
/* Output channels rounded up to isa's lane count (ConvArgs.o_lanes). */
int bbcu_o_lanes(const IsaKernels *isa, int out_channels);
/* The weights wl of w (O, 3, 3, Cw) as isa reads them (lane weights, or its prepare_weights layout),
 * malloc'ed (the caller frees them); NULL when isa reads ConvArgs.w instead or memory ran out, told apart
 * by bbcu_reads_wl. */
uint64_t *bbcu_lane_weights(const IsaKernels *isa, const uint64_t *w, int out_channels, int channel_words);
int bbcu_reads_wl(const IsaKernels *isa);

/* threads.c: runs fn(context, begin, end) over rows [0, rows) cut into `threads` contiguous bands (fewer
 * when there are fewer rows), band 0 on the calling thread; a band whose thread cannot start runs
 * there too, so every row is always computed. */
typedef void (*RowsFn)(void *context, int row_begin, int row_end);
void bbcu_parallel_rows(RowsFn fn, void *context, int rows, int threads);
/* Runs isa->conv_rows over the output rows on num_threads threads. Returns 0, or -1 when memory ran
 * out (some rows are not computed then). */
int bbcu_run_rows(const ConvArgs *a, const IsaKernels *isa, int num_threads);
/* The threads worth starting for the conv `a`: 1 below a work size where starting them costs more. */
int bbcu_threads_for(const ConvArgs *a, int num_threads);
/* bilinear.c: x (sH, sW, C) += bilinear_up(skip (H, W, C), s), as PyTorch's F.interpolate with
 * align_corners=False, on up to `threads` threads; skip is the tile of an image from input pixel
 * (origin_row, origin_col) on (0, 0: the whole image). Returns 0, or -1 when memory ran out (x untouched). */
int bbcu_add_bilinear(const float *skip, int height, int width, int channels, int scale, int origin_row,
                      int origin_col, float *x, int threads);
/* The float conv `a` on isa's vectorisation and num_threads threads (1 for small convs). */
void bbcu_float_conv3x3(const FloatConvArgs *a, const IsaKernels *isa, int num_threads);
/* Runs loop(rounds) on num_threads threads at once (the band runner: a thread that cannot start runs
 * its loop on the caller, so the rate is then lower, never wrong); returns the MACs done by all of
 * them per second of wall time. */
double bbcu_ceiling_rate(CeilingFn loop, long rounds, int num_threads);

#endif
