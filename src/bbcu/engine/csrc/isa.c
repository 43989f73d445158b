/*
 * Runtime dispatch: the wheel is built for baseline x86-64 (no -march=native), and each SIMD path is
 * chosen only when the CPU it runs on reports the instructions that path was compiled for.
 */
#include <string.h>

#include "bitops.h"

static uint64_t whole_word(uint64_t w, int plane)
{
    (void)plane;
    return w;
}

/* AVX2 counts bits by nibble lookups; (x ^ w) & 0x0f.. == (x & 0x0f..) ^ (w & 0x0f..), so the weights
 * arrive already split into low and high nibbles (and the kernel splits each input row once). */
static uint64_t nibble_word(uint64_t w, int plane)
{
    const uint64_t low_nibbles = UINT64_C(0x0f0f0f0f0f0f0f0f);
    return plane == 0 ? w & low_nibbles : (w >> 4) & low_nibbles;
}

static const IsaKernels ISAS[] = {
    {"portable", 1, 0, NULL, 0, bbcu_conv_rows_portable, bbcu_pack_signs_portable},
#ifdef BBCU_X86
    {"avx2", 4, 2, nibble_word, 2, bbcu_conv_rows_avx2, bbcu_pack_signs_avx2},
    {"avx512", 8, 1, whole_word, 0, bbcu_conv_rows_avx512, bbcu_pack_signs_avx512},
#endif
};

int bbcu_isa_count(void) { return (int)(sizeof ISAS / sizeof ISAS[0]); }

const IsaKernels *bbcu_isa_at(int index) { return &ISAS[index]; }

int bbcu_isa_supported(const IsaKernels *isa)
{
#ifdef BBCU_X86
    __builtin_cpu_init();
    if (strcmp(isa->name, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
    if (strcmp(isa->name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
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
