// One table of kernel entry points per instruction set. kernels_impl.h is compiled three times (AVX-512, AVX2,
// portable) into separate static libraries; addon.cc picks a table at load time with __builtin_cpu_supports.
// All arguments have been validated by addon.cc (lengths, ranges) before these are called.
#pragma once
#include <cstdint>

namespace deltarec {

struct KernelTable {
  const char* isa;
  void (*matmul)(float* out, const float* a, const float* b, long m, long n, long k, bool transA, bool transB,
                 bool accumulate);
  double (*softmax_ce)(const float* hidden, const float* items, const int32_t* targets, long rows, long d,
                       long numItems, float scale, float* dHidden, float* dItems);
  void (*layernorm_fwd)(float* out, float* mean, float* rstd, const float* x, const float* gamma, const float* beta,
                        long rows, long d, float eps);
  void (*layernorm_bwd)(float* dx, float* dGamma, float* dBeta, const float* dOut, const float* x, const float* mean,
                        const float* rstd, const float* gamma, long rows, long d);
  void (*attention_fwd)(float* out, float* att, const float* q, const float* k, const float* v,
                        const int32_t* lengths, long batch, long T, long heads, long d);
  void (*attention_bwd)(float* dq, float* dk, float* dv, const float* dOut, const float* att, const float* q,
                        const float* k, const float* v, const int32_t* lengths, long batch, long T, long heads, long d);
  void (*relu_fwd)(float* out, const float* x, long n);
  void (*relu_bwd)(float* dx, const float* dOut, const float* x, long n);
  void (*gelu_fwd)(float* out, const float* x, long n);
  void (*gelu_bwd)(float* dx, const float* dOut, const float* x, long n);
  void (*dropout_fwd)(float* out, uint8_t* mask, const float* x, long n, double p, uint32_t seed);
  void (*dropout_bwd)(float* dx, const float* dOut, const uint8_t* mask, long n, double p);
  void (*gather)(float* out, const float* table, const int32_t* indices, long rows, long d);
  void (*scatter_add)(float* dTable, const float* dOut, const int32_t* indices, long rows, long d);
  void (*adam)(float* param, const float* grad, float* m, float* v, long n, double lr, double beta1, double beta2,
               double eps, double step, double weightDecay);
  void (*clip_rows)(float* x, long rows, long d, double maxNorm, long firstRow);
  void (*topk)(int32_t* outIndices, float* outScores, const float* scores, long rows, long n, long k);
  // Runs a register-resident FMA loop on this thread for `seconds` of its CPU time; returns flop per CPU second.
  double (*fma_loop)(double seconds);
  double (*sampled_loss)(const float* hidden, const float* positives, const float* negatives, const int32_t* targets,
                         const int32_t* negativeIds, const float* correction, long rows, long d, long k, bool gbce,
                         double beta, double bias, double scale, float* dHidden, float* dPositives, float* dNegatives,
                         float* dBias);
  void (*sparse_adam)(float* param, const float* grad, float* m, float* v, const int32_t* rows, long count, long d,
                      double lr, double beta1, double beta2, double eps, double step, double weightDecay,
                      double maxNorm);
  void (*score_topk)(int32_t* outIndices, float* outScores, const float* states, const float* panels,
                     const uint8_t* active, const int32_t* limits, long rows, long n, long d, long k);
  void (*score_topk_quantized)(int32_t* outIndices, float* outScores, int32_t* outCandidates, const float* states,
                               const uint8_t* codes, const float* scales, const float* residuals, const float* norms,
                               const float* items, const uint8_t* active, const int32_t* limits, long rows, long n,
                               long d, long k);
  void (*quantize_items)(uint8_t* codes, float* scales, float* residuals, float* norms, const float* matrix, long from,
                         long to, long d);
  void (*scan_quantized)(float* lower, int32_t* lowerCount, int32_t* outIndices, float* outScores, int32_t* outCount,
                         int32_t* outCandidates, const int32_t* offsets, const float* states, const uint8_t* codes,
                         const float* scales, const float* residuals, const float* norms, const float* items,
                         const uint8_t* active, const int32_t* limits, long rows, long n, long d, long from, long to);
};

const KernelTable* kernel_table_portable();
#if defined(__x86_64__)
const KernelTable* kernel_table_avx2();
const KernelTable* kernel_table_avx512();
#endif

}  // namespace deltarec
