/*
 * What bounds the AVX2 binary loop, per core clock (the AVX-512 twin is benchmarks/vector_ports.c):
 * the throughput of VPXOR, VPADDB and VPSHUFB on ymm registers; conv_avx2.c's step (per register of 4
 * output channels and tap word: 2 XOR of nibble planes with a memory operand, 2 VPSHUFB lookups, 2 byte
 * adds) alone; the library's own ceiling loop (bbcu_binary_ceiling_avx2, with its broadcasts and
 * flushes); and the step with scalar popcounts of other output channels mixed in (ANDN from memory +
 * POPCNT + ADD: popcount(x ^ w) = popcount(x) - popcount(w) + 2 popcount(~x & w), 3 macro-ops per
 * 64 MACs on the integer ALUs, which the vector loop leaves idle). Figures are binary MACs per cycle:
 * a step is 256 MACs, a scalar word 64. Cycles come from a chain of dependent scalar adds (1 per
 * cycle); the loops are assembly, so nothing is moved or spilled; registers start at zero.
 *
 * Build and run (an AVX2 CPU):
 *   cc -O2 -pthread -Isrc/bbcu/engine/csrc benchmarks/avx2_ports.c -o build/avx2_ports && build/avx2_ports
 * Output of session 11 (AMD Zen 3) in benchmarks/kernels_session11.md.
 */
#define _POSIX_C_SOURCE 199309L
#include "ceiling.c"

#include <stdio.h>

/* ceiling.c's threaded reading is not used here. */
void bbcu_parallel_rows(RowsFn fn, void *context, int rows, int threads)
{
    (void)threads;
    fn(context, 0, rows);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

#define N 20000000L
static uint64_t operands[1024] __attribute__((aligned(64)));

#define ZERO_YMM(i) "vpxor %%ymm" #i ", %%ymm" #i ", %%ymm" #i "\n\t"
#define ZERO                                                                                                  \
    ZERO_YMM(0) ZERO_YMM(1) ZERO_YMM(2) ZERO_YMM(3) ZERO_YMM(4) ZERO_YMM(5) ZERO_YMM(6) ZERO_YMM(7) ZERO_YMM(8)   \
        ZERO_YMM(9) ZERO_YMM(10) ZERO_YMM(11) ZERO_YMM(12) ZERO_YMM(13) ZERO_YMM(14) ZERO_YMM(15)               \
        "xor %%ebx, %%ebx\n\txor %%r8d, %%r8d\n\txor %%r9d, %%r9d\n\txor %%r10d, %%r10d\n\txor %%r11d, %%r11d\n\t"
/* Units of work per second of `body` (which does `units` of them), looped N times. */
#define RATE(body, units)                                                                                     \
    ({                                                                                                        \
        const double start = now();                                                                           \
        long count = N;                                                                                       \
        const uint64_t *p = operands;                                                                         \
        __asm__ volatile(ZERO "1:\n\t" body "dec %0\n\tjnz 1b\n\t"                                            \
                         : "+r"(count), "+r"(p)                                                               \
                         :                                                                                    \
                         : "rax", "rbx", "r8", "r9", "r10", "r11", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",    \
                           "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",        \
                           "xmm14", "xmm15", "memory");                                                      \
        (double)(units) * N / (now() - start);                                                                \
    })
#define EIGHT(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7)
#define XOR(i) "vpxor %%ymm15, %%ymm" #i ", %%ymm" #i "\n\t"
#define ADDB(i) "vpaddb %%ymm15, %%ymm" #i ", %%ymm" #i "\n\t"
#define SHUFB(i) "vpshufb %%ymm" #i ", %%ymm15, %%ymm" #i "\n\t"
/* conv_avx2.c's step on counter i: activation planes in ymm13 / ymm14, the nibble table in ymm15. */
#define STEP(i)                                                                                               \
    "vpxor " #i "*32(%1), %%ymm13, %%ymm8\n\t"                                                                \
    "vpxor " #i "*32+256(%1), %%ymm14, %%ymm9\n\t"                                                            \
    "vpshufb %%ymm8, %%ymm15, %%ymm8\n\t"                                                                     \
    "vpshufb %%ymm9, %%ymm15, %%ymm9\n\t"                                                                     \
    "vpaddb %%ymm8, %%ymm" #i ", %%ymm" #i "\n\t"                                                             \
    "vpaddb %%ymm9, %%ymm" #i ", %%ymm" #i "\n\t"
#define STEPS STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
/* One scalar word of another output channel: the activation word in rbx, the sum in register `sum`. */
#define SCALAR(i, sum) "andn " #i "*8+512(%1), %%rbx, %%rax\n\tpopcnt %%rax, %%rax\n\tadd %%rax, %%" #sum "\n\t"

int main(void)
{
    setbuf(stdout, NULL);
    for (int run = 0; run < 2; run++) {
        const double hz = RATE("add $1, %%rax\n\tadd $1, %%rax\n\tadd $1, %%rax\n\tadd $1, %%rax\n\t", 4);
        printf("clock %.2f GHz\n", hz / 1e9);
        printf("vpxor   %.2f per cycle\n", RATE(EIGHT(XOR), 8) / hz);
        printf("vpaddb  %.2f per cycle\n", RATE(EIGHT(ADDB), 8) / hz);
        printf("vpshufb %.2f per cycle\n", RATE(EIGHT(SHUFB), 8) / hz);
        printf("step (6 vector ops)                       %.0f MACs per cycle\n", RATE(STEPS, 8 * 256) / hz);
        const double start = now();
        const long macs = bbcu_binary_ceiling_avx2(1000000);
        printf("library ceiling loop                      %.0f MACs per cycle\n", macs / (now() - start) / hz);
        printf("8 steps + 2 scalar words                  %.0f MACs per cycle\n",
               RATE(STEPS SCALAR(0, r8) SCALAR(1, r9), 8 * 256 + 2 * 64) / hz);
        printf("8 steps + 4 scalar words                  %.0f MACs per cycle\n",
               RATE(STEPS SCALAR(0, r8) SCALAR(1, r9) SCALAR(2, r10) SCALAR(3, r11), 8 * 256 + 4 * 64) / hz);
        printf("8 steps + 8 scalar words                  %.0f MACs per cycle\n",
               RATE(STEPS SCALAR(0, r8) SCALAR(1, r9) SCALAR(2, r10) SCALAR(3, r11) SCALAR(4, r8) SCALAR(5, r9)
                        SCALAR(6, r10) SCALAR(7, r11),
                    8 * 256 + 8 * 64) /
                   hz);
    }
    return 0;
}
