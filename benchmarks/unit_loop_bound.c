/*
 * What the fused V4 unit's interior loop can reach when nothing but its own instructions runs: the
 * AVX-512 kernel's pair loop (two pixels per weight load, 64 outputs, 9 taps) and its epilogue
 * (alpha, RPReLU, residual in place, next-layer signs) written out for fixed, statically allocated
 * operands (parameters at constant addresses, 64-byte aligned features), over H - 2 interior rows
 * of width 320. Against the engine's kernel on the same work (build/kernel_driver H 320 5) it
 * separates the cost of the operations from the cost of how the engine's code reaches them.
 * VARIANT=1 tries exact shortcuts (fnmadd for 576 - 2c, a masked multiply for RPReLU, the next sign
 * as v >= -shift); "interleaved=1" runs each pair's epilogue inside the next pair's taps.
 *
 *   cc -O3 -ffp-contract=off -mavx512f -mavx512vpopcntdq -mavx512dq -DH=180 \
 *     benchmarks/unit_loop_bound.c -o build/unit_loop_bound && build/unit_loop_bound
 * Output of session 6 in benchmarks/kernels_session6.md.
 */
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <stdio.h>
#include <stdint.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}
#define W 322
#ifndef H
#define H 3
#endif
static uint64_t x[H*W] __attribute__((aligned(64)));
static uint64_t wl[9*64] __attribute__((aligned(64)));
static float y[H*W*64] __attribute__((aligned(64)));
static uint64_t bits[H*W];
static float P[6][64] __attribute__((aligned(64)));
#ifndef VARIANT
#define VARIANT 0
#endif
static inline __attribute__((always_inline)) uint64_t fin16(const __m512i *t, int half, size_t pix){
  const __m512i ev=_mm512_setr_epi32(0,2,4,6,8,10,12,14,16,18,20,22,24,26,28,30);
  const __m512 zero=_mm512_setzero_ps(); const int c=16*half;
  __m512i cnt=_mm512_permutex2var_epi32(t[2*half],ev,t[2*half+1]);
#if VARIANT==1
  __m512 v=_mm512_mul_ps(_mm512_load_ps(P[0]+c), _mm512_fnmadd_ps(_mm512_set1_ps(2.f),_mm512_cvtepi32_ps(cnt),_mm512_set1_ps(576.f)));
#else
  __m512i dot=_mm512_sub_epi32(_mm512_set1_epi32(576),_mm512_slli_epi32(cnt,1));
  __m512 v=_mm512_mul_ps(_mm512_load_ps(P[0]+c),_mm512_cvtepi32_ps(dot));
#endif
  const __m512 tt=_mm512_add_ps(v,_mm512_load_ps(P[1]+c));
  const __mmask16 keep=_mm512_cmp_ps_mask(tt,zero,_CMP_GE_OQ);
#if VARIANT==1
  v=_mm512_add_ps(_mm512_mask_mul_ps(tt,~keep,_mm512_load_ps(P[2]+c),tt),_mm512_load_ps(P[3]+c));
#else
  v=_mm512_add_ps(_mm512_mask_blend_ps(keep,_mm512_mul_ps(_mm512_load_ps(P[2]+c),tt),tt),_mm512_load_ps(P[3]+c));
#endif
  v=_mm512_add_ps(v,_mm512_load_ps(y+pix*64+c));
  _mm512_store_ps(y+pix*64+c,v);
#if VARIANT==1
  return (uint64_t)_mm512_cmp_ps_mask(v,_mm512_load_ps(P[5]+c),_CMP_GE_OQ)<<c;
#else
  const __m512 u=_mm512_add_ps(v,_mm512_load_ps(P[4]+c));
  return (uint64_t)_mm512_cmp_ps_mask(u,zero,_CMP_GE_OQ)<<c;
#endif
}
__attribute__((target("avx512f,avx512vpopcntdq,avx512dq"),noinline)) void row1(int inter, int hh){
  __m512i p0[8],p1[8]; int have=0, pw=0;
  for(int w=1; w+1<W-1; w+=2){
    __m512i t0[8],t1[8]; uint64_t b0=0,b1=0;
    for(int j=0;j<8;j++){t0[j]=_mm512_setzero_si512();t1[j]=_mm512_setzero_si512();}
#pragma GCC unroll 9
    for(int tap=0;tap<9;tap++){
      const size_t p=(size_t)(hh-1+tap/3)*W+(w+tap%3-1);
      const __m512i l=_mm512_set1_epi64((long long)x[p]), r=_mm512_set1_epi64((long long)x[p+1]);
      const uint64_t *ww=wl+tap*64;
#pragma GCC unroll 8
      for(int j=0;j<8;j++){ __m512i wv=_mm512_load_si512(ww+8*j); __asm__("":"+v"(wv));
        t0[j]=_mm512_add_epi64(t0[j],_mm512_popcnt_epi64(_mm512_xor_si512(l,wv))); __asm__("":"+v"(t0[j]));
        t1[j]=_mm512_add_epi64(t1[j],_mm512_popcnt_epi64(_mm512_xor_si512(r,wv))); __asm__("":"+v"(t1[j]));}
      if(inter && have && tap<8){ if(tap<4) b0|=fin16(p0,tap,(size_t)hh*W+pw); else b1|=fin16(p1,tap-4,(size_t)hh*W+pw+1);} 
    }
    if(inter){ if(have){bits[hh*W+pw]=b0;bits[hh*W+pw+1]=b1;} for(int j=0;j<8;j++){p0[j]=t0[j];p1[j]=t1[j];} have=1; pw=w; }
    else { for(int h=0;h<4;h++){b0|=fin16(t0,h,(size_t)hh*W+w); b1|=fin16(t1,h,(size_t)hh*W+w+1);} bits[hh*W+w]=b0; bits[hh*W+w+1]=b1; }
  }
}
__attribute__((noinline)) void row(int inter){ for(int hh=1;hh<H-1;hh++) row1(inter,hh);}
double freq(void){ long n=20000000,x=0; double t=now(); for(long i=0;i<n;i++) __asm__ volatile("add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0":"+r"(x)); return 4.0*n/(now()-t);}
int main(){ for(int i=0;i<H*W;i++)x[i]=i*0x9e3779b97f4a7c15ull; for(int i=0;i<576;i++)wl[i]=i*0x12345678abcull;
 for(int k=0;k<6;k++)for(int i=0;i<64;i++)P[k][i]=(float)(i%7)-3.f; for(long i=0;i<(long)H*W*64;i++)y[i]=(float)(i%13)-6.f;
 for(int s=0;s<2;s++){ double f=freq(); double best=1e9; for(int k=0;k<(H>3?40:2000);k++){double t=now(); row(s); t=now()-t; if(t<best)best=t;}
 double triples=(double)(W-2)*(H-2)*9*8; printf("variant %d interleaved=%d: %.2f triples/cycle (GHz %.2f) %.0f G MAC/s\n",VARIANT,s,triples/best/f,f/1e9,triples*512/best/1e9);} return 0;}
