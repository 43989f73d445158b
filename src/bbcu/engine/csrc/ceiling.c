/*
 * The ceilings: how many binary (or fp32) multiply-accumulates per second this CPU can do with the very
 * instructions a kernel uses, on data that stays in L1. `bbcu bench` states each kernel's speed as a
 * fraction of them, which separates "the inner loop is slow" from "the time goes elsewhere" (memory
 * traffic, the epilogue, threads). Each binary loop repeats its ISA kernel's interior inner loop (9 taps
 * of one broadcast activation word against the lane weights of a block of output channels) with no
 * epilogue and no border; each fp32 loop runs 12 independent FMA chains at the ISA's widest vectors,
 * enough to cover the FMA latency. Every loop returns the MACs it did.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "bitops.h"

#ifdef BBCU_X86
#include <immintrin.h>
#endif
#ifdef BBCU_ARM64
#include <arm_neon.h>
#endif

/* Keeps a result alive so that the loop computing it is not optimised away. */
#define KEEP(value) __asm__ volatile("" : : "m"(value))
#define CHAINS 12

/* The L1-resident operands: 9 taps x 64 output channels of weight words (4.5 KiB) and 64 activation
 * words, filled with arbitrary bits so that no count is trivially 0 or 64. */
#define CEILING_WEIGHT_WORDS (9 * 64)
#define CEILING_ACTIVATION_WORDS 64
static uint64_t weights[CEILING_WEIGHT_WORDS] __attribute__((aligned(64)));
static uint64_t activations[CEILING_ACTIVATION_WORDS] __attribute__((aligned(64)));
static pthread_once_t filled = PTHREAD_ONCE_INIT;

/* splitmix64: cheap, well-mixed bits, the same on every run. */
static uint64_t mix(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void fill(void)
{
    uint64_t state = 1;
    for (int i = 0; i < CEILING_WEIGHT_WORDS; i++)
        weights[i] = mix(&state);
    for (int i = 0; i < CEILING_ACTIVATION_WORDS; i++)
        activations[i] = mix(&state);
}


static uint64_t activation(long round, int tap) { return activations[(round + tap) % CEILING_ACTIVATION_WORDS]; }

/* ------------------------------------------------------------------ portable */

long bbcu_binary_ceiling_portable(long rounds)
{
    const uint64_t *w = weights;
    int32_t sum = 0;
    for (long r = 0; r < rounds; r++)
        for (int o = 0; o < 64; o++)
            for (int tap = 0; tap < 9; tap++)
                sum += __builtin_popcountll(activation(r, tap) ^ w[tap * 64 + o]);
    KEEP(sum);
    return rounds * 9 * 64 * 64;
}

long bbcu_fma_ceiling_portable(long rounds)
{
    volatile float one = 1.0f, zero = 0.0f; /* read once, so x * 1 + 0 is not folded away */
    const float b = one, c = zero;
    float acc[CHAINS];
    for (int i = 0; i < CHAINS; i++)
        acc[i] = (float)i;
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < CHAINS; i++)
            acc[i] = acc[i] * b + c;
    KEEP(acc);
    return rounds * CHAINS;
}

#ifdef BBCU_X86
/* ------------------------------------------------------------------ AVX2 (conv_avx2.c's mix) */

/* Per tap and register of 4 output channels: 2 XOR of nibble planes, 2 vpshufb, 2 byte adds; one
 * vpsadbw flush per 9 taps, as in the interior kernel, the activation planes broadcast from memory as
 * the kernel's are. The flushed counts go to one running total: 8 totals live across rounds, beside
 * the 8 byte counters, the table and the planes, are more registers than AVX2 has, and GCC then kept
 * the counters on the stack (a vpaddb from memory per step), which read this ceiling at two thirds of
 * what the kernel's own step reaches alone (benchmarks/avx2_ports.c, kernels_session11.md). */
__attribute__((target("avx2,popcnt"))) long bbcu_binary_ceiling_avx2(long rounds)
{
    const uint64_t low_nibbles = UINT64_C(0x0f0f0f0f0f0f0f0f);
    uint64_t planes[2 * CEILING_WEIGHT_WORDS] __attribute__((aligned(32)));
    uint64_t x_planes[2 * CEILING_ACTIVATION_WORDS];
    for (int tap = 0; tap < 9; tap++)
        for (int o = 0; o < 64; o++) {
            planes[tap * 128 + o] = weights[tap * 64 + o] & low_nibbles;
            planes[tap * 128 + 64 + o] = (weights[tap * 64 + o] >> 4) & low_nibbles;
        }
    for (int i = 0; i < CEILING_ACTIVATION_WORDS; i++) {
        x_planes[2 * i] = activations[i] & low_nibbles;
        x_planes[2 * i + 1] = (activations[i] >> 4) & low_nibbles;
    }
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1,
                                           2, 2, 3, 2, 3, 3, 4);
    __m256i bytes[8], total = _mm256_setzero_si256();
    for (int j = 0; j < 8; j++)
        bytes[j] = _mm256_setzero_si256();
    for (long r = 0; r < rounds; r++) {
#pragma GCC unroll 9
        for (int tap = 0; tap < 9; tap++) {
            const uint64_t *x = x_planes + 2 * ((r + tap) % CEILING_ACTIVATION_WORDS);
            const __m256i x_lo = _mm256_set1_epi64x((long long)x[0]);
            const __m256i x_hi = _mm256_set1_epi64x((long long)x[1]);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                const __m256i lo = _mm256_xor_si256(x_lo, _mm256_load_si256((const __m256i *)(planes + tap * 128 + 4 * j)));
                const __m256i hi =
                    _mm256_xor_si256(x_hi, _mm256_load_si256((const __m256i *)(planes + tap * 128 + 64 + 4 * j)));
                bytes[j] = _mm256_add_epi8(bytes[j], _mm256_shuffle_epi8(table, lo));
                bytes[j] = _mm256_add_epi8(bytes[j], _mm256_shuffle_epi8(table, hi));
                __asm__("" : "+x"(bytes[j]));
            }
        }
        for (int j = 0; j < 8; j++) {
            total = _mm256_add_epi64(total, _mm256_sad_epu8(bytes[j], _mm256_setzero_si256()));
            bytes[j] = _mm256_setzero_si256();
        }
    }
    KEEP(total);
    return rounds * 9 * 8 * 4 * 64;
}

__attribute__((target("avx2,fma"))) long bbcu_fma_ceiling_avx2(long rounds)
{
    const __m256 b = _mm256_set1_ps(1.0f), c = _mm256_setzero_ps();
    __m256 acc[CHAINS];
    for (int i = 0; i < CHAINS; i++)
        acc[i] = _mm256_set1_ps((float)i);
    for (long r = 0; r < rounds; r++)
#pragma GCC unroll 12
        for (int i = 0; i < CHAINS; i++)
            acc[i] = _mm256_fmadd_ps(acc[i], b, c);
    KEEP(acc);
    return rounds * CHAINS * 8;
}

/* ------------------------------------------------------------------ AVX-512 (conv_avx512.c's mix) */

/* Per tap and register of 8 output channels: XOR, VPOPCNTQ, add. */
__attribute__((target("avx512f,avx512vpopcntdq"))) long bbcu_binary_ceiling_avx512(long rounds)
{
    const uint64_t *w = weights;
    __m512i total[8];
    for (int j = 0; j < 8; j++)
        total[j] = _mm512_setzero_si512();
    for (long r = 0; r < rounds; r++) {
#pragma GCC unroll 9
        for (int tap = 0; tap < 9; tap++) {
            const __m512i xb = _mm512_set1_epi64((long long)activation(r, tap));
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                const __m512i wv = _mm512_load_si512((const void *)(w + tap * 64 + 8 * j));
                total[j] = _mm512_add_epi64(total[j], _mm512_popcnt_epi64(_mm512_xor_si512(xb, wv)));
                __asm__("" : "+v"(total[j]));
            }
        }
    }
    KEEP(total);
    return rounds * 9 * 8 * 8 * 64;
}

__attribute__((target("avx512f"))) long bbcu_fma_ceiling_avx512(long rounds)
{
    const __m512 b = _mm512_set1_ps(1.0f), c = _mm512_setzero_ps();
    __m512 acc[CHAINS];
    for (int i = 0; i < CHAINS; i++)
        acc[i] = _mm512_set1_ps((float)i);
    for (long r = 0; r < rounds; r++)
#pragma GCC unroll 12
        for (int i = 0; i < CHAINS; i++)
            acc[i] = _mm512_fmadd_ps(acc[i], b, c);
    KEEP(acc);
    return rounds * CHAINS * 16;
}
#endif

#ifdef BBCU_ARM64
/* ------------------------------------------------------------------ NEON (conv_neon.c's mix) */

/* Per tap and register of 2 output channels: EOR, CNT, pairwise widening add; widened once per round. */
long bbcu_binary_ceiling_neon(long rounds)
{
    const uint64_t *w = weights;
    uint16x8_t partial[8];
    uint32x4_t total[8];
    for (int j = 0; j < 8; j++) {
        partial[j] = vdupq_n_u16(0);
        total[j] = vdupq_n_u32(0);
    }
    for (long r = 0; r < rounds; r++) {
        for (int tap = 0; tap < 9; tap++) {
            const uint8x16_t xb = vreinterpretq_u8_u64(vdupq_n_u64(activation(r, tap)));
            for (int j = 0; j < 8; j++) {
                const uint8x16_t wv = vreinterpretq_u8_u64(vld1q_u64(w + tap * 64 + 2 * j));
                partial[j] = vpadalq_u8(partial[j], vcntq_u8(veorq_u8(xb, wv)));
            }
        }
        for (int j = 0; j < 8; j++) {
            total[j] = vpadalq_u16(total[j], partial[j]);
            partial[j] = vdupq_n_u16(0);
        }
    }
    KEEP(total);
    return rounds * 9 * 8 * 2 * 64;
}

long bbcu_fma_ceiling_neon(long rounds)
{
    const float32x4_t b = vdupq_n_f32(1.0f), c = vdupq_n_f32(0.0f);
    float32x4_t acc[CHAINS];
    for (int i = 0; i < CHAINS; i++)
        acc[i] = vdupq_n_f32((float)i);
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < CHAINS; i++)
            acc[i] = vfmaq_f32(c, acc[i], b);
    KEEP(acc);
    return rounds * CHAINS * 4;
}
#endif

/* One loop per "row" of the shared band runner, so each thread runs exactly one. */
typedef struct CeilingJob {
    CeilingFn loop;
    long rounds;
    atomic_long macs;
} CeilingJob;

static void run_loops(void *context, int first, int last)
{
    CeilingJob *job = context;
    for (int i = first; i < last; i++)
        atomic_fetch_add(&job->macs, job->loop(job->rounds));
}

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double bbcu_ceiling_rate(CeilingFn loop, long rounds, int num_threads)
{
    CeilingJob job = {loop, rounds, 0};
    pthread_once(&filled, fill); /* before the clock starts */
    const double start = seconds_now();
    bbcu_parallel_rows(run_loops, &job, num_threads, num_threads);
    return (double)atomic_load(&job.macs) / (seconds_now() - start);
}
