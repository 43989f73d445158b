/*
 * Runtime dispatch: the wheel is built for baseline x86-64 (no -march=native), and each SIMD path is
 * chosen only when the CPU it runs on reports the instructions that path was compiled for. On aarch64
 * the NEON path is chosen when the kernel reports Advanced SIMD (every AArch64 Linux CPU does; the
 * check keeps the portable path for an exotic one that would not).
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* syscall() under -std=c11 */
#endif
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "bitops.h"

static uint64_t whole_word(uint64_t w, int plane)
{
    (void)plane;
    return w;
}

#ifdef BBCU_X86
/* AMX-INT8 is usable when the CPU reports AMX-TILE and AMX-INT8, the OS enables the tile state in XCR0,
 * and Linux grants it to this process (arch_prctl ARCH_REQ_XCOMP_PERM, once: every thread of the
 * process may then use the tiles). */
int bbcu_amx_usable(void)
{
    static int usable = -1;
    if (usable >= 0)
        return usable;
    usable = 0;
#if defined(__x86_64__) && defined(__linux__)
    unsigned eax, ebx, ecx, edx;
    const int tiles = __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (edx >> 24 & 1) && (edx >> 25 & 1);
    if (tiles && __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx >> 27 & 1)) { /* OSXSAVE: xgetbv allowed */
        unsigned xcr0, high;
        __asm__("xgetbv" : "=a"(xcr0), "=d"(high) : "c"(0));
        enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
        usable = (xcr0 >> 17 & 3) == 3 && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    }
#endif
    return usable;
}
#endif

static const IsaKernels ISAS[] = {
    {"portable", 1, 0, NULL, NULL, 0, bbcu_conv_rows_portable, bbcu_pack_signs_portable, bbcu_binary_ceiling_portable,
     bbcu_fma_ceiling_portable, bbcu_float_conv_portable},
#ifdef BBCU_X86
    {"avx2", 4, 0, NULL, bbcu_nibble_blocks_avx2, 2, bbcu_conv_rows_avx2, bbcu_pack_signs_avx2, bbcu_binary_ceiling_avx2,
     bbcu_fma_ceiling_avx2, bbcu_float_conv_avx2},
    /* Before avx512, so not the default: on the one AMX machine measured (session 7) its 64 -> 64 unit
     * ran slower than the AVX-512 popcount unit (set_isa("amx") runs it). */
    {"amx", 16, 0, NULL, bbcu_weight_tiles_amx, 0, bbcu_conv_rows_amx, bbcu_pack_signs_avx512, bbcu_binary_ceiling_amx,
     bbcu_fma_ceiling_avx512, bbcu_float_conv_avx512},
    {"avx512", 8, 1, whole_word, NULL, 0, bbcu_conv_rows_avx512, bbcu_pack_signs_avx512, bbcu_binary_ceiling_avx512,
     bbcu_fma_ceiling_avx512, bbcu_float_conv_avx512},
#endif
#ifdef BBCU_ARM64
    {"neon", 2, 1, whole_word, NULL, 0, bbcu_conv_rows_neon, bbcu_pack_signs_portable, bbcu_binary_ceiling_neon,
     bbcu_fma_ceiling_neon, bbcu_float_conv_neon},
#endif
};

int bbcu_isa_count(void) { return (int)(sizeof ISAS / sizeof ISAS[0]); }

const IsaKernels *bbcu_isa_at(int index) { return &ISAS[index]; }

int bbcu_isa_supported(const IsaKernels *isa)
{
#ifdef BBCU_X86
    __builtin_cpu_init();
    if (strcmp(isa->name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("fma");
    if (strcmp(isa->name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
    if (strcmp(isa->name, "amx") == 0) /* the AVX-512 path's packing and float conv around the tiles */
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vpopcntdq") && bbcu_amx_usable();
#endif
#if defined(BBCU_ARM64) && defined(__linux__)
    if (strcmp(isa->name, "neon") == 0)
        return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
#elif defined(BBCU_ARM64)
    if (strcmp(isa->name, "neon") == 0)
        return 1; /* Advanced SIMD is part of the AArch64 base architecture */
#endif
    return strcmp(isa->name, "portable") == 0;
}

const IsaKernels *bbcu_isa_find(const char *name)
{
    for (int i = 0; i < bbcu_isa_count(); i++)
        if (strcmp(ISAS[i].name, name) == 0)
            return &ISAS[i];
    return NULL;
}

const IsaKernels *bbcu_isa_best(void)
{
    const IsaKernels *best = &ISAS[0];
    for (int i = 1; i < bbcu_isa_count(); i++)
        if (bbcu_isa_supported(&ISAS[i]))
            best = &ISAS[i];
    return best;
}

int bbcu_o_lanes(const IsaKernels *isa, int out_channels)
{
    return (out_channels + isa->lanes - 1) / isa->lanes * isa->lanes;
}

int bbcu_reads_wl(const IsaKernels *isa) { return isa->planes > 0 || isa->prepare_weights != NULL; }

uint64_t *bbcu_lane_weights(const IsaKernels *isa, const uint64_t *w, int out_channels, int channel_words)
{
    if (isa->prepare_weights)
        return isa->prepare_weights(w, out_channels, channel_words);
    if (isa->planes == 0)
        return NULL;
    const int words = 9 * channel_words, o_lanes = bbcu_o_lanes(isa, out_channels);
    uint64_t *wl = calloc((size_t)words * isa->planes * o_lanes, sizeof(uint64_t));
    if (!wl)
        return NULL;
    for (int o = 0; o < out_channels; o++)
        for (int tk = 0; tk < words; tk++)
            for (int p = 0; p < isa->planes; p++)
                wl[((size_t)tk * isa->planes + p) * o_lanes + o] = isa->plane_word(w[(size_t)o * words + tk], p);
    return wl;
}
