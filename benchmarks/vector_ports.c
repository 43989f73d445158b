/*
 * Which vector pipes the AVX-512 binary loop competes for: the throughput per cycle of VPOPCNTQ,
 * VPXORQ, VPADDQ, VMULPS and VCMPPS (to a mask) on zmm registers, 12 independent chains each, then the
 * kernel's XOR + popcount + add triple alone and with float multiplies mixed in. Cycles come from a
 * chain of dependent scalar adds (1 per cycle), so the figures are per core clock, whatever the
 * host's clock is doing at the time. Every loop is written in assembly so the compiler cannot move
 * or spill anything; registers start at zero (float garbage could hit slow denormal paths). Last, the
 * triple as binary MACs per cycle (512 a triple) beside the library's own ceiling loop
 * (bbcu_binary_ceiling_avx512): session 11 found the AVX2 one counting about 1.15x slower than its
 * kernel's step (benchmarks/avx2_ports.c), and the AVX-512 one's object code has a milder form of the
 * same pattern; where the two lines differ here, the AVX-512 efficiencies are off by that factor.
 *
 * Build and run (an AVX-512 VPOPCNTDQ CPU):
 *   cc -O2 -mavx512f -pthread -Isrc/bbcu/engine/csrc benchmarks/vector_ports.c -o build/vector_ports \
 *     && build/vector_ports
 * Output of session 6 in benchmarks/kernels_session6.md (before the last two lines existed).
 */
#define _POSIX_C_SOURCE 199309L
#include "ceiling.c"

#include <stdio.h>
#include <time.h>

/* ceiling.c's threaded reading is not used here. */
void bbcu_parallel_rows(RowsFn fn, void *context, int rows, int threads)
{
    (void)threads;
    fn(context, 0, rows);
}
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
#define N 20000000L
#define ZERO "vpxord %%zmm0,%%zmm0,%%zmm0\n\t" "vmovdqa64 %%zmm0,%%zmm1\n\t" "vmovdqa64 %%zmm0,%%zmm2\n\t" "vmovdqa64 %%zmm0,%%zmm3\n\t" "vmovdqa64 %%zmm0,%%zmm4\n\t" "vmovdqa64 %%zmm0,%%zmm5\n\t" "vmovdqa64 %%zmm0,%%zmm6\n\t" "vmovdqa64 %%zmm0,%%zmm7\n\t" "vmovdqa64 %%zmm0,%%zmm8\n\t" "vmovdqa64 %%zmm0,%%zmm9\n\t" "vmovdqa64 %%zmm0,%%zmm10\n\t" "vmovdqa64 %%zmm0,%%zmm11\n\t" "vmovdqa64 %%zmm0,%%zmm12\n\t" "vmovdqa64 %%zmm0,%%zmm13\n\t" "vmovdqa64 %%zmm0,%%zmm14\n\t" "vmovdqa64 %%zmm0,%%zmm15\n\t" "vmovdqa64 %%zmm0,%%zmm16\n\t" "vmovdqa64 %%zmm0,%%zmm17\n\t" "vmovdqa64 %%zmm0,%%zmm20\n\t" "vmovdqa64 %%zmm0,%%zmm21\n\t" "vmovdqa64 %%zmm0,%%zmm22\n\t" "vmovdqa64 %%zmm0,%%zmm23\n\t" "vmovdqa64 %%zmm0,%%zmm24\n\t" "vmovdqa64 %%zmm0,%%zmm25\n\t" "vmovdqa64 %%zmm0,%%zmm26\n\t" "vmovdqa64 %%zmm0,%%zmm27\n\t" "vmovdqa64 %%zmm0,%%zmm30\n\t" "vmovdqa64 %%zmm0,%%zmm31\n\t"
#define R(body, n) ({ double t=now(); long cnt=N; __asm__ volatile(ZERO "1:\n\t" body "dec %0\n\tjnz 1b\n\t" : "+r"(cnt) :: "rax","k1","xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","xmm12","xmm13","xmm14","xmm15","xmm16","xmm17","xmm18","xmm19","xmm20","xmm21","xmm22","xmm23","xmm24","xmm25","xmm26","xmm27","xmm28","xmm29","xmm30","xmm31"); (double)(n)*N/(now()-t); })
#define X12(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7) op(8) op(9) op(10) op(11)
#define POP(i) "vpopcntq %%zmm" #i ", %%zmm" #i "\n\t"
#define XOR(i) "vpxorq %%zmm31, %%zmm" #i ", %%zmm" #i "\n\t"
#define ADD(i) "vpaddq %%zmm31, %%zmm" #i ", %%zmm" #i "\n\t"
#define MUL(i) "vmulps %%zmm31, %%zmm" #i ", %%zmm" #i "\n\t"
#define CMP(i) "vcmpps $13, %%zmm31, %%zmm" #i ", %%k1\n\t"
/* triple: zmm(16+i) = x ^ w_i ; popcnt ; add to acc_i (zmm i) */
#define TRI(i) "vpxorq %%zmm30, %%zmm" #i ", %%zmm16\n\tvpopcntq %%zmm16, %%zmm17\n\tvpaddq %%zmm17, %%zmm" #i ", %%zmm" #i "\n\t"
#define TRIb(i) "vpxorq %%zmm30, %%zmm2" #i ", %%zmm16\n\tvpopcntq %%zmm16, %%zmm17\n\tvpaddq %%zmm17, %%zmm" #i ", %%zmm" #i "\n\t"
#define T8(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7)
int main(){ setbuf(stdout,NULL);
 for(int rep=0;rep<2;rep++){
 double f=R("add $1,%%rax\n\tadd $1,%%rax\n\tadd $1,%%rax\n\tadd $1,%%rax\n\t",4);
 printf("GHz %.2f\n",f/1e9);
 printf("popcnt/c %.2f\n",R(X12(POP),12)/f);
 printf("xor/c %.2f\n",R(X12(XOR),12)/f);
 printf("add/c %.2f\n",R(X12(ADD),12)/f);
 printf("mulps/c %.2f\n",R(X12(MUL),12)/f);
 printf("cmpps->k/c %.2f\n",R(X12(CMP),12)/f);
 printf("xor+pop pairs/c %.2f\n",R(X12(XOR) X12(POP),12)/f);
 printf("pop+add pairs/c %.2f\n",R(X12(POP) X12(ADD),12)/f);
 printf("triples/c %.2f\n",R(T8(TRIb),8)/f);
 printf("triples/c with 4 mul per 8 %.2f\n",R(T8(TRIb) "vmulps %%zmm31,%%zmm8,%%zmm8\n\tvmulps %%zmm31,%%zmm9,%%zmm9\n\tvmulps %%zmm31,%%zmm10,%%zmm10\n\tvmulps %%zmm31,%%zmm11,%%zmm11\n\t",8)/f);
 printf("triples/c with 8 mul per 8 %.2f\n",R(T8(TRIb) "vmulps %%zmm31,%%zmm8,%%zmm8\n\tvmulps %%zmm31,%%zmm9,%%zmm9\n\tvmulps %%zmm31,%%zmm10,%%zmm10\n\tvmulps %%zmm31,%%zmm11,%%zmm11\n\tvmulps %%zmm31,%%zmm12,%%zmm12\n\tvmulps %%zmm31,%%zmm13,%%zmm13\n\tvmulps %%zmm31,%%zmm14,%%zmm14\n\tvmulps %%zmm31,%%zmm15,%%zmm15\n\t",8)/f);
 printf("triples as MACs/c %.0f\n",R(T8(TRIb),8)*512/f);
 { const double start=now(); const long macs=bbcu_binary_ceiling_avx512(1000000);
   printf("library ceiling loop MACs/c %.0f\n",macs/(now()-start)/f); }
 }
 return 0;}
