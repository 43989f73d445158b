"""Plain-C stand-ins for the x86 intrinsics the SIMD kernels use, and a build of a kernel source on them.

A CPU without AVX2 or AVX-512 cannot run those kernel paths, but it can run their C logic: compiled
against ``STANDINS`` (an ``immintrin.h`` of plain structs of lanes, each intrinsic doing what Intel's
guide says the instruction does, lane order, masks, immediates and comparison predicates included), a
SIMD source computes what the instructions would, and a check program compares it with the portable
path. ``run_with_standins`` does the build and the run; ``tests/test_kernels.py`` holds the checks.
This covers indexing, blocking, masks and lane pairings, not the real instructions or their speed.
"""

from __future__ import annotations

import re
import subprocess
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bbcu.engine import kernels

CSRC = Path(kernels.__file__).parent / "csrc"

STANDINS = r"""
/* Stand-ins for <immintrin.h> (tests/standin_intrinsics.py): plain-C lanes, so that the SIMD kernels'
 * logic runs, and is checked against the portable path, on CPUs that lack the instructions. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
typedef union { uint64_t q[4]; int32_t d[8]; int16_t w[16]; uint8_t b[32]; } __m256i;
typedef union { uint64_t q[2]; uint8_t b[16]; } __m128i;
typedef struct { float v[8]; } __m256;
typedef union { uint64_t v[8]; int32_t d[16]; int8_t c[64]; } __m512i;
typedef struct { float v[16]; } __m512;
typedef uint16_t __mmask16;
typedef uint64_t __mmask64;
#define EACH(n, ...) for (int i = 0; i < (n); i++) { __VA_ARGS__ }

/* Comparison predicates (Intel's values). Bit 4 only selects which NaNs signal; the low 4 bits decide. */
#define _CMP_EQ_OQ 0x00
#define _CMP_LT_OS 0x01
#define _CMP_LE_OS 0x02
#define _CMP_NEQ_UQ 0x04
#define _CMP_GE_OS 0x0d
#define _CMP_GT_OS 0x0e
#define _CMP_LT_OQ 0x11
#define _CMP_NGE_UQ 0x19
#define _CMP_LE_OQ 0x12
#define _CMP_GE_OQ 0x1d
#define _CMP_GT_OQ 0x1e
static inline int standin_compare(float a, float b, int predicate) {
    const int unordered = a != a || b != b;
    switch (predicate & 15) {
    case 0: return a == b;
    case 1: return a < b;
    case 2: return a <= b;
    case 3: return unordered;
    case 4: return !(a == b);
    case 5: return !(a < b);
    case 6: return !(a <= b);
    case 7: return !unordered;
    case 8: return a == b || unordered;
    case 9: return !(a >= b);
    case 10: return !(a > b);
    case 11: return 0;
    case 12: return a != b && !unordered;
    case 13: return a >= b;
    case 14: return a > b;
    default: return 1;
    }
}

/* Shuffle immediates: _MM_SHUFFLE(z, y, x, w) selects w for lane 0, x for 1, y for 2, z for 3. */
#define _MM_SHUFFLE(z, y, x, w) (((z) << 6) | ((y) << 4) | ((x) << 2) | (w))
/* vshufps, lane i of any width: in its 128-bit block, lanes 0-1 take a's lanes imm[1:0] and imm[3:2],
 * lanes 2-3 take b's lanes imm[5:4] and imm[7:6] (of the same block). */
static inline float standin_shufps(const float *a, const float *b, int imm, int i) {
    return (i & 2 ? b : a)[(i & ~3) + ((imm >> 2 * (i & 3)) & 3)]; }

/* AVX2, integer (conv_avx2.c) */
static inline __m256i standin_bytes(const int8_t *e) { __m256i r; memcpy(r.b, e, 32); return r; }
static inline __m256i standin_ints(const int32_t *e) { __m256i r; memcpy(r.d, e, 32); return r; }
#define _mm256_setr_epi8(...) standin_bytes((const int8_t[32]){__VA_ARGS__})
#define _mm256_setr_epi32(...) standin_ints((const int32_t[8]){__VA_ARGS__})
static inline __m256i _mm256_setzero_si256(void) { __m256i r = {{0}}; return r; }
static inline __m256i _mm256_set1_epi64x(long long x) { __m256i r; EACH(4, r.q[i] = (uint64_t)x;) return r; }
static inline __m256i _mm256_loadu_si256(const __m256i *p) { __m256i r; memcpy(&r, p, 32); return r; }
static inline void _mm256_storeu_si256(__m256i *p, __m256i a) { memcpy(p, &a, 32); }
static inline void _mm_storeu_si128(__m128i *p, __m128i a) { memcpy(p, &a, 16); }
static inline __m128i _mm256_castsi256_si128(__m256i a) { __m128i r; memcpy(&r, &a, 16); return r; }
static inline __m256i _mm256_xor_si256(__m256i a, __m256i b) { EACH(4, a.q[i] ^= b.q[i];) return a; }
static inline __m256i _mm256_add_epi8(__m256i a, __m256i b) { EACH(32, a.b[i] += b.b[i];) return a; }
static inline __m256i _mm256_add_epi64(__m256i a, __m256i b) { EACH(4, a.q[i] += b.q[i];) return a; }
/* vpshufb: byte i of each 128-bit half takes byte (index & 15) of the same half, or 0 if bit 7 is set. */
static inline __m256i _mm256_shuffle_epi8(__m256i table, __m256i index) {
    __m256i r; EACH(32, r.b[i] = index.b[i] & 0x80 ? 0 : table.b[(i & 16) | (index.b[i] & 15)];) return r; }
/* vpsadbw: each 64-bit lane holds the sum of |a - b| over its 8 bytes. */
static inline __m256i _mm256_sad_epu8(__m256i a, __m256i b) {
    __m256i r = {{0}}; EACH(32, r.q[i / 8] += (uint64_t)abs(a.b[i] - b.b[i]);) return r; }
static inline __m256i _mm256_permutevar8x32_epi32(__m256i a, __m256i index) {
    __m256i r; EACH(8, r.d[i] = a.d[index.d[i] & 7];) return r; }
static inline __m256i _mm256_set1_epi32(int x) { __m256i r; EACH(8, r.d[i] = x;) return r; }
/* vpackssdw: per 128-bit half, a's 4 int32 of that half then b's, each saturated to int16. */
static inline int16_t standin_saturate16(int32_t x) {
    return (int16_t)(x > 32767 ? 32767 : x < -32768 ? -32768 : x); }
static inline __m256i _mm256_packs_epi32(__m256i a, __m256i b) {
    __m256i r; EACH(16, const int k = i % 8;
                       r.w[i] = standin_saturate16((k < 4 ? a : b).d[4 * (i / 8) + k % 4]);) return r; }
/* vpacksswb: per 128-bit half, a's 8 int16 of that half then b's, each saturated to int8. */
static inline __m256i _mm256_packs_epi16(__m256i a, __m256i b) {
    __m256i r; EACH(32, const int k = i % 16; const int16_t x = (k < 8 ? a : b).w[8 * (i / 16) + k % 8];
                       r.b[i] = (uint8_t)(int8_t)(x > 127 ? 127 : x < -128 ? -128 : x);) return r; }
/* vpmovmskb: bit i is the top bit of byte i. */
static inline int _mm256_movemask_epi8(__m256i a) {
    uint32_t m = 0; EACH(32, m |= (uint32_t)(a.b[i] >> 7) << i;) return (int)m; }
static inline __m256i _mm256_sub_epi32(__m256i a, __m256i b) {
    EACH(8, a.d[i] = (int32_t)((uint32_t)a.d[i] - (uint32_t)b.d[i]);) return a; }
static inline __m256i _mm256_slli_epi32(__m256i a, int n) {
    EACH(8, a.d[i] = n > 31 ? 0 : (int32_t)((uint32_t)a.d[i] << n);) return a; }

/* AVX2 and FMA, float (sign packing in conv_avx2.c, the float conv in conv_float.c) */
static inline __m256 _mm256_setzero_ps(void) { __m256 r = {{0}}; return r; }
static inline __m256 _mm256_loadu_ps(const float *p) { __m256 r; memcpy(&r, p, 32); return r; }
static inline __m256 _mm256_add_ps(__m256 a, __m256 b) { EACH(8, a.v[i] += b.v[i];) return a; }
static inline __m256 _mm256_mul_ps(__m256 a, __m256 b) { EACH(8, a.v[i] *= b.v[i];) return a; }
static inline __m256 _mm256_set1_ps(float x) { __m256 r; EACH(8, r.v[i] = x;) return r; }
static inline void _mm256_storeu_ps(float *p, __m256 a) { memcpy(p, &a, 32); }
static inline __m256 _mm256_cvtepi32_ps(__m256i a) { __m256 r; EACH(8, r.v[i] = (float)a.d[i];) return r; }
/* vblendvps: lane i from b where bit 31 of mask lane i is set, else from a. */
static inline __m256 _mm256_blendv_ps(__m256 a, __m256 b, __m256 mask) {
    EACH(8, uint32_t m; memcpy(&m, &mask.v[i], 4); if (m >> 31) a.v[i] = b.v[i];) return a; }
static inline __m256 _mm256_fmadd_ps(__m256 a, __m256 b, __m256 c) {
    EACH(8, c.v[i] = fmaf(a.v[i], b.v[i], c.v[i]);) return c; }
/* vcmpps: all bits of a lane set where the predicate holds, none where it does not. */
static inline __m256 _mm256_cmp_ps(__m256 a, __m256 b, int predicate) {
    __m256 r; EACH(8, const uint32_t m = standin_compare(a.v[i], b.v[i], predicate) ? ~0u : 0u;
                      memcpy(&r.v[i], &m, 4);) return r; }
static inline __m256i _mm256_castps_si256(__m256 a) { __m256i r; memcpy(&r, &a, 32); return r; }
static inline int _mm256_movemask_ps(__m256 a) {
    int m = 0; EACH(8, uint32_t u; memcpy(&u, &a.v[i], 4); m |= (int)(u >> 31) << i;) return m; }
static inline __m256 _mm256_shuffle_ps(__m256 a, __m256 b, int imm) {
    __m256 r; EACH(8, r.v[i] = standin_shufps(a.v, b.v, imm, i);) return r; }
/* vperm2f128: the low 128 bits take half imm[1:0] of (a low, a high, b low, b high), the high 128 bits
 * half imm[5:4]; imm bit 3 (bit 7) zeroes the low (high) 128 bits instead. */
static inline __m256 _mm256_permute2f128_ps(__m256 a, __m256 b, int imm) {
    __m256 r; EACH(8, const int c = imm >> (i & 4); /* the 4 control bits of lane i's half */
                      r.v[i] = c & 8 ? 0 : (c & 2 ? b : a).v[4 * (c & 1) + i % 4];) return r; }
/* vpermps: lane i takes a's lane index[i] & 7. */
static inline __m256 _mm256_permutevar8x32_ps(__m256 a, __m256i index) {
    __m256 r; EACH(8, r.v[i] = a.v[index.d[i] & 7];) return r; }
/* vmaskmovps: lane i is stored where bit 31 of mask lane i is set; the other lanes' memory is not touched. */
static inline void _mm256_maskstore_ps(float *p, __m256i mask, __m256 a) {
    EACH(8, if (mask.d[i] < 0) p[i] = a.v[i];) }

/* AVX-512, integer (conv_avx512.c) */
static inline __m512i _mm512_setzero_si512(void) { __m512i r = {{0}}; return r; }
static inline __m512i _mm512_set1_epi64(long long x) { __m512i r; EACH(8, r.v[i] = (uint64_t)x;) return r; }
static inline __m512i _mm512_loadu_si512(const void *p) { __m512i r; memcpy(&r, p, 64); return r; }
static inline __m512i _mm512_add_epi64(__m512i a, __m512i b) { EACH(8, a.v[i] += b.v[i];) return a; }
static inline __m512i _mm512_xor_si512(__m512i a, __m512i b) { EACH(8, a.v[i] ^= b.v[i];) return a; }
static inline __m512i _mm512_popcnt_epi64(__m512i a) {
    EACH(8, a.v[i] = __builtin_popcountll(a.v[i]);) return a; }
static inline __m256i _mm512_cvtepi64_epi32(__m512i a) {
    __m256i r; EACH(8, r.d[i] = (int32_t)a.v[i];) return r; }
static inline __m512i _mm512_set1_epi32(int x) { __m512i r; EACH(16, r.d[i] = x;) return r; }
static inline __m512i standin_dwords(const int32_t *e) { __m512i r; memcpy(r.d, e, 64); return r; }
#define _mm512_setr_epi32(...) standin_dwords((const int32_t[16]){__VA_ARGS__})
/* vpermt2d: lane i takes dword (index & 15) of a, or of b when bit 4 of the index is set. */
static inline __m512i _mm512_permutex2var_epi32(__m512i a, __m512i index, __m512i b) {
    __m512i r; EACH(16, r.d[i] = index.d[i] & 16 ? b.d[index.d[i] & 15] : a.d[index.d[i] & 15];) return r; }
static inline __m512i _mm512_castsi256_si512(__m256i a) { __m512i r = {{0}}; memcpy(&r, &a, 32); return r; }
static inline __m512i _mm512_inserti64x4(__m512i a, __m256i b, int upper) {
    memcpy((char *)&a + 32 * (upper & 1), &b, 32); return a; }
static inline __m512i _mm512_sub_epi32(__m512i a, __m512i b) {
    EACH(16, a.d[i] = (int32_t)((uint32_t)a.d[i] - (uint32_t)b.d[i]);) return a; }
static inline __m512i _mm512_slli_epi32(__m512i a, unsigned n) {
    EACH(16, a.d[i] = n > 31 ? 0 : (int32_t)((uint32_t)a.d[i] << n);) return a; }
static inline void _mm512_storeu_si512(void *p, __m512i a) { memcpy(p, &a, 64); }

/* AVX-512, float (the epilogue and sign packing in conv_avx512.c, the float conv in conv_float.c) */
static inline __m512 _mm512_setzero_ps(void) { __m512 r = {{0}}; return r; }
static inline __m512 _mm512_set1_ps(float x) { __m512 r; EACH(16, r.v[i] = x;) return r; }
static inline __m512 _mm512_loadu_ps(const float *p) { __m512 r; memcpy(&r, p, 64); return r; }
static inline void _mm512_storeu_ps(float *p, __m512 a) { memcpy(p, &a, 64); }
static inline __m512 _mm512_add_ps(__m512 a, __m512 b) { EACH(16, a.v[i] += b.v[i];) return a; }
static inline __m512 _mm512_mul_ps(__m512 a, __m512 b) { EACH(16, a.v[i] *= b.v[i];) return a; }
static inline __m512 _mm512_fmadd_ps(__m512 a, __m512 b, __m512 c) {
    EACH(16, c.v[i] = fmaf(a.v[i], b.v[i], c.v[i]);) return c; }
static inline __m512 _mm512_fnmadd_ps(__m512 a, __m512 b, __m512 c) {
    EACH(16, c.v[i] = fmaf(-a.v[i], b.v[i], c.v[i]);) return c; }
/* vmulps with a mask: lane i is a * b where bit i of k is set, else src's. */
static inline __m512 _mm512_mask_mul_ps(__m512 src, __mmask16 k, __m512 a, __m512 b) {
    EACH(16, if ((k >> i) & 1) src.v[i] = a.v[i] * b.v[i];) return src; }
static inline __m512 _mm512_cvtepi32_ps(__m512i a) { __m512 r; EACH(16, r.v[i] = (float)a.d[i];) return r; }
static inline __m512 _mm512_maskz_loadu_ps(__mmask16 k, const float *p) {
    __m512 r; EACH(16, r.v[i] = (k >> i) & 1 ? p[i] : 0.0f;) return r; }
/* vmovups with a mask: lane i is stored where bit i of k is set; the other lanes' memory is not touched. */
static inline void _mm512_mask_storeu_ps(void *p, __mmask16 k, __m512 a) {
    EACH(16, if ((k >> i) & 1) ((float *)p)[i] = a.v[i];) }
static inline __mmask16 _mm512_cmp_ps_mask(__m512 a, __m512 b, int predicate) {
    __mmask16 m = 0; EACH(16, m |= (__mmask16)(standin_compare(a.v[i], b.v[i], predicate) << i);) return m; }
/* vblendmps: lane i from b where bit i of the mask is set, else from a. */
static inline __m512 _mm512_mask_blend_ps(__mmask16 k, __m512 a, __m512 b) {
    EACH(16, if ((k >> i) & 1) a.v[i] = b.v[i];) return a; }
static inline __m512 _mm512_shuffle_ps(__m512 a, __m512 b, int imm) {
    __m512 r; EACH(16, r.v[i] = standin_shufps(a.v, b.v, imm, i);) return r; }
/* vshuff32x4: 128-bit blocks 0 and 1 of the result take a's blocks imm[1:0] and imm[3:2], blocks 2 and 3
 * take b's blocks imm[5:4] and imm[7:6]. */
static inline __m512 _mm512_shuffle_f32x4(__m512 a, __m512 b, int imm) {
    __m512 r; EACH(16, const int k = i / 4; /* lane i's block */
                       r.v[i] = (k & 2 ? b : a).v[4 * ((imm >> 2 * k) & 3) + i % 4];) return r; }
/* vpermps: lane i takes a's lane index[i] & 15 (note the argument order: index first). */
static inline __m512 _mm512_permutexvar_ps(__m512i index, __m512 a) {
    __m512 r; EACH(16, r.v[i] = a.v[index.d[i] & 15];) return r; }

/* Prefetches change no result: nothing. */
#define _MM_HINT_T0 3
static inline void _mm_prefetch(const void *p, int hint) { (void)p, (void)hint; }

/* AVX-512 BW bytes (conv_amx.c expands sign bits to +-1 bytes) */
static inline __m512i _mm512_set1_epi8(char x) { __m512i r; EACH(64, r.c[i] = (int8_t)x;) return r; }
/* vpblendmb: byte i from b where bit i of the mask is set, else from a. */
static inline __m512i _mm512_mask_blend_epi8(__mmask64 k, __m512i a, __m512i b) {
    EACH(64, if ((k >> i) & 1) a.c[i] = b.c[i];) return a; }
static inline __m512i _mm512_maskz_mov_epi8(__mmask64 k, __m512i a) {
    EACH(64, if (!((k >> i) & 1)) a.c[i] = 0;) return a; }

/* AMX tiles (conv_amx.c): eight tiles of rows x bytes_per_row as the last _tile_loadconfig set them.
 * TDPBSSD: C[m][n] (int32) += sum over k < A's bytes / 4 and i < 4 of A[m][4k + i] * B[k][4n + i],
 * both int8. The tile number is an immediate in the real instructions, a plain int here. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} StandinTileConfig;
static struct { int rows, bytes; uint8_t data[16][64]; } standin_tiles[8];
static inline void _tile_loadconfig(const void *config) {
    const StandinTileConfig *c = config;
    EACH(8, standin_tiles[i].rows = c->rows[i]; standin_tiles[i].bytes = c->bytes_per_row[i];) }
static inline void _tile_release(void) { memset(standin_tiles, 0, sizeof standin_tiles); }
static inline void _tile_zero(int t) { memset(standin_tiles[t].data, 0, sizeof standin_tiles[t].data); }
static inline void _tile_loadd(int t, const void *base, long stride) {
    const int bytes = standin_tiles[t].bytes;
    EACH(standin_tiles[t].rows, memcpy(standin_tiles[t].data[i], (const char *)base + i * stride, bytes);) }
static inline void _tile_stored(int t, void *base, long stride) {
    const int bytes = standin_tiles[t].bytes;
    EACH(standin_tiles[t].rows, memcpy((char *)base + i * stride, standin_tiles[t].data[i], bytes);) }
static inline void _tile_dpbssd(int c, int a, int b) {
    for (int m = 0; m < standin_tiles[c].rows; m++)
        for (int n = 0; n < standin_tiles[c].bytes / 4; n++) {
            int32_t sum;
            memcpy(&sum, standin_tiles[c].data[m] + 4 * n, 4);
            for (int k = 0; k < standin_tiles[a].bytes / 4; k++)
                for (int i = 0; i < 4; i++)
                    sum += (int8_t)standin_tiles[a].data[m][4 * k + i]
                           * (int8_t)standin_tiles[b].data[k][4 * n + i];
            memcpy(standin_tiles[c].data[m] + 4 * n, &sum, 4);
        }
}
"""

# What every check program starts with: the kernels' declarations, a seeded xorshift generator with
# uniform floats in [-1, 1), and PATH(prefix, isa), a kernel's name from -DSTANDIN_ISA.
CHECK_PRELUDE = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bitops.h"
#define CONCAT(a, b) a##b
#define PATH(prefix, isa) CONCAT(prefix, isa)
static uint64_t state = 88172645463325252ull;
static uint64_t next(void) { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state; }
static float uniform(void) { return (float)((double)(next() >> 11) / 9007199254740992.0 * 2 - 1); }
"""


def without_target_code(source: str) -> str:
    """``source`` with no way left for the compiler to emit SIMD instructions of its own.

    The target pragmas and ``target(...)`` attributes go (stand-ins built for AVX-512 could otherwise
    be compiled to AVX-512 moves, which crash a CPU without it), and each register barrier
    ``__asm__("" : "+x"(v))`` becomes ``(void)(v)`` (it has no effect on results, and a struct of
    lanes does not fit its register constraint), and a broadcast load written in assembly
    ``__asm__("vpbroadcastq %1, %0" : "=v"(v) : "m"(*p))`` becomes the set1 it stands for.
    """
    source = re.sub(r".*(#pragma GCC target|#pragma clang attribute).*\n", "", source)
    source = re.sub(r'target\("[^"]*"\),?\s*', "", source)
    source = re.sub(r"__attribute__\(\(\)\)\s*", "", source)
    source = re.sub(r'__asm__\(""\s*:\s*"\+[xv]"\((.*?)\)\)', r"(void)(\1)", source)
    source = re.sub(
        r'__asm__\("vpbroadcastq %1, %0"\s*:\s*"=v"\((\w+)\)\s*:\s*"m"\((.*?)\)\)',
        r"\1 = _mm512_set1_epi64((long long)(\2))",
        source,
    )
    assert "__asm__" not in source and "target(" not in source, "a SIMD construct the stand-ins do not know"
    return source


def run_with_standins(
    folder: Path,
    simd_source: str,
    check: str,
    *,
    defines: Mapping[str, object] | None = None,
    plain_sources: Sequence[str] = (),
    edit: Callable[[str], str] = lambda source: source,
) -> str:
    """Build ``check`` (C after CHECK_PRELUDE) with csrc's ``simd_source`` on the stand-ins; its output.

    ``simd_source`` goes through ``without_target_code`` and ``edit`` (a test's deliberate slip),
    ``plain_sources`` (csrc files without intrinsics, the portable reference) are built as they are.
    ``BBCU_X86`` is forced, so the check runs off x86 too; ``-ffp-contract=off`` as in setup.py.
    """
    (folder / "immintrin.h").write_text(STANDINS)
    (folder / "simd.c").write_text(edit(without_target_code((CSRC / simd_source).read_text())))
    (folder / "check.c").write_text(CHECK_PRELUDE + check)
    compiler = (sysconfig.get_config_var("CC") or "cc").split()
    flags = [f"-D{name}={value}" for name, value in (defines or {}).items()]
    build = [
        *compiler, "-O1", "-std=c11", "-ffp-contract=off", "-DBBCU_X86=1", *flags, f"-I{folder}", f"-I{CSRC}",
        "-o", str(folder / "check"), str(folder / "check.c"), str(folder / "simd.c"),
        *(str(CSRC / name) for name in plain_sources), "-lm",
    ]  # fmt: skip
    compiled = subprocess.run(build, capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    return subprocess.run([str(folder / "check")], check=True, capture_output=True, text=True).stdout.strip()
