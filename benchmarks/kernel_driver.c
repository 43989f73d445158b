/*
 * The binary conv kernels without Python: one 64->64 layer through bbcu_run_rows on one thread, so the
 * cost of each epilogue option shows on its own (no array allocation, no argument checks).
 *
 *   mode 0: raw dot products          mode 2: alpha only (y separate)     mode 3: + RPReLU
 *   mode 4: + residual (in place)     mode 5: + next-layer sign packing (the full V4 unit)
 *
 * Build and run from the repository root (the kernels' own flags, as setup.py builds them):
 *   C=src/bbcu/engine/csrc; cc -O3 -std=c11 -ffp-contract=off -fno-trapping-math -pthread -I$C \
 *     benchmarks/kernel_driver.c $C/isa.c $C/threads.c $C/ceiling.c $C/bilinear.c $C/conv_float.c \
 *     $C/conv_portable.c $C/conv_avx2.c $C/conv_avx512.c $C/conv_amx.c -lm -o build/kernel_driver
 *   build/kernel_driver HEIGHT WIDTH MODE [avx512|avx2]
 * It prints the fastest of 40 calls and its share of the path's ceiling (the fastest of 40 ceiling loops,
 * each run just before a call).
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bitops.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s HEIGHT WIDTH MODE [isa]\n", argv[0]);
        return 2;
    }
    const int height = atoi(argv[1]), width = atoi(argv[2]), mode = atoi(argv[3]);
    const char *name = argc > 4 ? argv[4] : "avx512";
    const IsaKernels *isa = bbcu_isa_find(name);
    if (!isa || !bbcu_isa_supported(isa) || height < 1 || width < 1) {
        fprintf(stderr, "%s: bad size or ISA '%s' not available here\n", argv[0], name);
        return 2;
    }
    const size_t pixels = (size_t)height * width;
    uint64_t *x = malloc(8 * pixels), *w = malloc(8 * 64 * 9);
    float *params[5], *features = malloc(4 * pixels * 64);
    int32_t *raw = malloc(4 * pixels * 64);
    uint64_t *bits = malloc(8 * pixels);
    for (size_t i = 0; i < pixels; i++)
        x[i] = (i * UINT64_C(0x9e3779b97f4a7c15)) ^ (i >> 3);
    for (int i = 0; i < 64 * 9; i++)
        w[i] = (uint64_t)i * UINT64_C(0x12345678abc);
    for (int k = 0; k < 5; k++) {
        params[k] = malloc(4 * 64);
        for (int i = 0; i < 64; i++)
            params[k][i] = (float)(i % 7) - 3.0f;
    }
    for (size_t i = 0; i < pixels * 64; i++)
        features[i] = (float)(i % 13) - 6.0f;
    ConvArgs a = {0};
    a.x = x, a.w = w, a.height = height, a.width = width, a.channels = 64, a.channel_words = 1;
    a.out_channels = 64, a.o_lanes = bbcu_o_lanes(isa, 64), a.wl = bbcu_lane_weights(isa, w, 64, 1);
    if (mode == 0) {
        a.raw = raw;
    } else {
        a.y = features, a.scale = params[0];
        if (mode >= 3)
            a.gamma = params[1], a.beta = params[2], a.zeta = params[3];
        if (mode >= 4)
            a.residual = features;
        if (mode >= 5)
            a.next_shift = params[4], a.next_bits = bits;
    }
    /* The host's speed drifts within seconds: ceiling and kernel alternate, the best of each kept. */
    double best = 1e9, ceiling = 0;
    for (int call = 0; call < 40; call++) {
        const double rate = bbcu_ceiling_rate(isa->binary_ceiling, 20000, 1);
        ceiling = rate > ceiling ? rate : ceiling;
        const double start = now();
        bbcu_run_rows(&a, isa, 1);
        const double took = now() - start;
        best = took < best ? took : best;
    }
    const double macs = (double)pixels * 64 * 64 * 9;
    printf("%s %dx%d mode %d: %.3f ms, %.0f G MAC/s, ceiling %.0f, %.0f%%\n", name, width, height, mode, best * 1e3,
           macs / best / 1e9, ceiling / 1e9, 100 * macs / best / ceiling);
    return 0;
}
