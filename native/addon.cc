// N-API bindings: validate arguments (types, lengths, index ranges) and call the kernel table chosen for this CPU.
// Typed arrays are used in place (their byteOffset included); nothing is copied.
#include <napi.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "kernels.h"
#include "pool.h"

namespace deltarec {
namespace {

const KernelTable* choose_table() {
  const char* force = std::getenv("DELTAREC_ISA");  // for tests: avx512 | avx2 | portable
  std::string want = force ? force : "";
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("fma");
  const bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (want == "portable") return kernel_table_portable();
  if (want == "avx2" && has2) return kernel_table_avx2();
  if (has512 && (want.empty() || want == "avx512")) return kernel_table_avx512();
  if (has2) return kernel_table_avx2();
#endif
  return kernel_table_portable();
}

const KernelTable* K = nullptr;
// Per calling thread, so it serializes nothing across threads: kernels keep their scratch per thread and the pool
// serializes its parallel runs, so the scoring worker threads of the service run kernels at the same time.
thread_local std::mutex call_mutex;

// Reads and checks the arguments of one call; errors name the kernel and the argument.
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn, size_t count) : info_(info), fn_(fn) {
    if (info.Length() < count)
      fail_type("expects " + std::to_string(count) + " arguments, got " + std::to_string(info.Length()));
  }
  Napi::Env env() const { return info_.Env(); }

  template <class T, napi_typedarray_type Type>
  T* array(size_t i, const char* name, const char* type_name, double need) {
    Napi::Value v = info_[i];
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != Type)
      fail_type(std::string(name) + " must be a " + type_name);
    auto a = v.As<Napi::TypedArrayOf<T>>();
    if (static_cast<double>(a.ElementLength()) < need)
      fail_range(std::string(name) + " has length " + std::to_string(a.ElementLength()) + ", needs at least " +
                 std::to_string(static_cast<long long>(need)));
    return a.Data();
  }
  float* f32(size_t i, const char* name, double need) {
    return array<float, napi_float32_array>(i, name, "Float32Array", need);
  }
  int32_t* i32(size_t i, const char* name, double need) {
    return array<int32_t, napi_int32_array>(i, name, "Int32Array", need);
  }
  uint8_t* u8(size_t i, const char* name, double need) {
    return array<uint8_t, napi_uint8_array>(i, name, "Uint8Array", need);
  }
  double number(size_t i, const char* name) {
    Napi::Value v = info_[i];
    if (!v.IsNumber()) fail_type(std::string(name) + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  }
  // A non-negative integer size.
  long size(size_t i, const char* name) {
    double x = number(i, name);
    if (!(x >= 0) || x != std::floor(x) || x > 9.0e15)
      fail_range(std::string(name) + " must be a non-negative integer, got " + std::to_string(x));
    return static_cast<long>(x);
  }
  bool flag(size_t i) { return info_[i].ToBoolean().Value(); }
  // Element count of the Float32Array argument i.
  long length(size_t i) {
    Napi::Value v = info_[i];
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      fail_type("argument " + std::to_string(i) + " must be a Float32Array");
    return static_cast<long>(v.As<Napi::TypedArray>().ElementLength());
  }

  [[noreturn]] void fail_type(const std::string& msg) const {
    throw Napi::TypeError::New(info_.Env(), std::string(fn_) + ": " + msg);
  }
  [[noreturn]] void fail_range(const std::string& msg) const {
    throw Napi::RangeError::New(info_.Env(), std::string(fn_) + ": " + msg);
  }
  // Every index in [0, rows) must lie in [lo, hi).
  void check_indices(const int32_t* idx, long rows, long lo, long hi, const char* name) const {
    for (long r = 0; r < rows; r++)
      if (idx[r] < lo || idx[r] >= hi)
        fail_range(std::string(name) + "[" + std::to_string(r) + "] = " + std::to_string(idx[r]) + " is outside " +
                   std::to_string(lo) + ".." + std::to_string(hi - 1));
  }

 private:
  const Napi::CallbackInfo& info_;
  const char* fn_;
};

using D = double;

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Args a(info, "matmul", 9);
  long m = a.size(3, "m"), n = a.size(4, "n"), k = a.size(5, "k");
  bool ta = a.flag(6), tb = a.flag(7), acc = a.flag(8);
  float* out = a.f32(0, "out", D(m) * n);
  const float* A = a.f32(1, "a", D(m) * k);
  const float* B = a.f32(2, "b", D(k) * n);
  std::lock_guard<std::mutex> g(call_mutex);
  K->matmul(out, A, B, m, n, k, ta, tb, acc);
  return info.Env().Undefined();
}

Napi::Value SoftmaxCrossEntropy(const Napi::CallbackInfo& info) {
  Args a(info, "softmaxCrossEntropy", 9);
  long rows = a.size(3, "rows"), d = a.size(4, "d"), n = a.size(5, "numItems");
  double scale = a.number(6, "scale");
  const float* h = a.f32(0, "hidden", D(rows) * d);
  const float* e = a.f32(1, "items", D(n) * d);
  const int32_t* t = a.i32(2, "targets", D(rows));
  float* dh = a.f32(7, "dHidden", D(rows) * d);
  float* de = a.f32(8, "dItems", D(n) * d);
  a.check_indices(t, rows, 1, n, "targets");
  std::lock_guard<std::mutex> g(call_mutex);
  double loss = K->softmax_ce(h, e, t, rows, d, n, static_cast<float>(scale), dh, de);
  return Napi::Number::New(info.Env(), loss);
}

Napi::Value SampledLoss(const Napi::CallbackInfo& info) {
  Args a(info, "sampledLoss", 17);
  long rows = a.size(6, "rows"), d = a.size(7, "d"), k = a.size(8, "k");
  if (k < 1) a.fail_range("k must be >= 1");
  bool gbce = a.flag(9);
  double beta = a.number(10, "beta"), bias = a.number(11, "bias"), scale = a.number(12, "scale");
  const float* h = a.f32(0, "hidden", D(rows) * d);
  const float* p = a.f32(1, "positives", D(rows) * d);
  const float* n = a.f32(2, "negatives", D(k) * d);
  const int32_t* t = a.i32(3, "targets", D(rows));
  const int32_t* ids = a.i32(4, "negativeIds", D(k));
  const float* corr = a.f32(5, "correction", D(k));
  float* dh = a.f32(13, "dHidden", D(rows) * d);
  float* dp = a.f32(14, "dPositives", D(rows) * d);
  float* dn = a.f32(15, "dNegatives", D(k) * d);
  float* db = a.f32(16, "dBias", 1);
  std::lock_guard<std::mutex> g(call_mutex);
  double loss = K->sampled_loss(h, p, n, t, ids, corr, rows, d, k, gbce, beta, bias, scale, dh, dp, dn, db);
  return Napi::Number::New(info.Env(), loss);
}

// sampledLoss per group of rows, each group with its own k negatives (Kernels.sampledLossGrouped).
Napi::Value SampledLossGrouped(const Napi::CallbackInfo& info) {
  Args a(info, "sampledLossGrouped", 18);
  long groups = a.size(7, "groups"), d = a.size(8, "d"), k = a.size(9, "k");
  if (k < 1) a.fail_range("k must be >= 1");
  bool gbce = a.flag(10);
  double beta = a.number(11, "beta"), bias = a.number(12, "bias"), scale = a.number(13, "scale");
  const int32_t* starts = a.i32(6, "groupStarts", D(groups) + 1);
  if (starts[0] != 0) a.fail_range("groupStarts[0] must be 0");
  for (long g = 0; g < groups; g++)
    if (starts[g + 1] < starts[g]) a.fail_range("groupStarts decreases at group " + std::to_string(g));
  const long rows = starts[groups];
  const float* h = a.f32(0, "hidden", D(rows) * d);
  const float* p = a.f32(1, "positives", D(rows) * d);
  const float* n = a.f32(2, "negatives", D(groups) * k * d);
  const int32_t* t = a.i32(3, "targets", D(rows));
  const int32_t* ids = a.i32(4, "negativeIds", D(groups) * k);
  const float* corr = a.f32(5, "correction", D(groups) * k);
  float* dh = a.f32(14, "dHidden", D(rows) * d);
  float* dp = a.f32(15, "dPositives", D(rows) * d);
  float* dn = a.f32(16, "dNegatives", D(groups) * k * d);
  float* db = a.f32(17, "dBias", 1);
  std::lock_guard<std::mutex> g(call_mutex);
  double loss = 0, biasTotal = 0;
  for (long q = 0; q < groups; q++) {
    const long r0 = starts[q], cr = starts[q + 1] - r0, o = q * k;
    float groupBias = 0;
    loss += K->sampled_loss(h + r0 * d, p + r0 * d, n + o * d, t + r0, ids + o, corr + o, cr, d, k, gbce, beta, bias,
                            scale, dh + r0 * d, dp + r0 * d, dn + o * d, &groupBias);
    biasTotal += groupBias;
  }
  db[0] = static_cast<float>(biasTotal);
  return Napi::Number::New(info.Env(), loss);
}

Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  Args a(info, "layerNormForward", 9);
  long rows = a.size(6, "rows"), d = a.size(7, "d");
  double eps = a.number(8, "eps");
  float* out = a.f32(0, "out", D(rows) * d);
  float* mean = a.f32(1, "mean", D(rows));
  float* rstd = a.f32(2, "rstd", D(rows));
  const float* x = a.f32(3, "x", D(rows) * d);
  const float* gamma = a.f32(4, "gamma", D(d));
  const float* beta = a.f32(5, "beta", D(d));
  std::lock_guard<std::mutex> g(call_mutex);
  K->layernorm_fwd(out, mean, rstd, x, gamma, beta, rows, d, static_cast<float>(eps));
  return info.Env().Undefined();
}

Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  Args a(info, "layerNormBackward", 10);
  long rows = a.size(8, "rows"), d = a.size(9, "d");
  float* dx = a.f32(0, "dx", D(rows) * d);
  float* dg = a.f32(1, "dGamma", D(d));
  float* db = a.f32(2, "dBeta", D(d));
  const float* dout = a.f32(3, "dOut", D(rows) * d);
  const float* x = a.f32(4, "x", D(rows) * d);
  const float* mean = a.f32(5, "mean", D(rows));
  const float* rstd = a.f32(6, "rstd", D(rows));
  const float* gamma = a.f32(7, "gamma", D(d));
  std::lock_guard<std::mutex> g(call_mutex);
  K->layernorm_bwd(dx, dg, db, dout, x, mean, rstd, gamma, rows, d);
  return info.Env().Undefined();
}

void check_heads(Args& a, long heads, long d) {
  if (heads < 1 || d % heads != 0)
    a.fail_range("d = " + std::to_string(d) + " is not divisible by heads = " + std::to_string(heads));
}

Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  Args a(info, "attentionForward", 10);
  long batch = a.size(6, "batch"), T = a.size(7, "T"), heads = a.size(8, "heads"), d = a.size(9, "d");
  check_heads(a, heads, d);
  const D btd = D(batch) * T * d;
  float* out = a.f32(0, "out", btd);
  float* att = a.f32(1, "att", D(batch) * heads * T * T);
  const float* q = a.f32(2, "q", btd);
  const float* k = a.f32(3, "k", btd);
  const float* v = a.f32(4, "v", btd);
  const int32_t* len = a.i32(5, "lengths", D(batch));
  std::lock_guard<std::mutex> g(call_mutex);
  K->attention_fwd(out, att, q, k, v, len, batch, T, heads, d);
  return info.Env().Undefined();
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Args a(info, "attentionBackward", 13);
  long batch = a.size(9, "batch"), T = a.size(10, "T"), heads = a.size(11, "heads"), d = a.size(12, "d");
  check_heads(a, heads, d);
  const D btd = D(batch) * T * d;
  float* dq = a.f32(0, "dq", btd);
  float* dk = a.f32(1, "dk", btd);
  float* dv = a.f32(2, "dv", btd);
  const float* dout = a.f32(3, "dOut", btd);
  const float* att = a.f32(4, "att", D(batch) * heads * T * T);
  const float* q = a.f32(5, "q", btd);
  const float* k = a.f32(6, "k", btd);
  const float* v = a.f32(7, "v", btd);
  const int32_t* len = a.i32(8, "lengths", D(batch));
  std::lock_guard<std::mutex> g(call_mutex);
  K->attention_bwd(dq, dk, dv, dout, att, q, k, v, len, batch, T, heads, d);
  return info.Env().Undefined();
}

Napi::Value ReluForward(const Napi::CallbackInfo& info) {
  Args a(info, "reluForward", 3);
  long n = a.size(2, "n");
  float* out = a.f32(0, "out", n);
  const float* x = a.f32(1, "x", n);
  std::lock_guard<std::mutex> g(call_mutex);
  K->relu_fwd(out, x, n);
  return info.Env().Undefined();
}
Napi::Value ReluBackward(const Napi::CallbackInfo& info) {
  Args a(info, "reluBackward", 4);
  long n = a.size(3, "n");
  float* dx = a.f32(0, "dx", n);
  const float* dout = a.f32(1, "dOut", n);
  const float* x = a.f32(2, "x", n);
  std::lock_guard<std::mutex> g(call_mutex);
  K->relu_bwd(dx, dout, x, n);
  return info.Env().Undefined();
}
Napi::Value GeluForward(const Napi::CallbackInfo& info) {
  Args a(info, "geluForward", 3);
  long n = a.size(2, "n");
  float* out = a.f32(0, "out", n);
  const float* x = a.f32(1, "x", n);
  std::lock_guard<std::mutex> g(call_mutex);
  K->gelu_fwd(out, x, n);
  return info.Env().Undefined();
}
Napi::Value GeluBackward(const Napi::CallbackInfo& info) {
  Args a(info, "geluBackward", 4);
  long n = a.size(3, "n");
  float* dx = a.f32(0, "dx", n);
  const float* dout = a.f32(1, "dOut", n);
  const float* x = a.f32(2, "x", n);
  std::lock_guard<std::mutex> g(call_mutex);
  K->gelu_bwd(dx, dout, x, n);
  return info.Env().Undefined();
}

void check_p(Args& a, double p) {
  if (!(p >= 0 && p < 1)) a.fail_range("p = " + std::to_string(p) + " must be in [0, 1)");
}

Napi::Value DropoutForward(const Napi::CallbackInfo& info) {
  Args a(info, "dropoutForward", 6);
  long n = a.size(3, "n");
  double p = a.number(4, "p"), seed = a.number(5, "seed");
  check_p(a, p);
  float* out = a.f32(0, "out", n);
  uint8_t* mask = a.u8(1, "mask", n);
  const float* x = a.f32(2, "x", n);
  // JS `seed >>> 0`: ToUint32 (modulo 2^32).
  double s = std::fmod(std::trunc(std::isfinite(seed) ? seed : 0), 4294967296.0);
  if (s < 0) s += 4294967296.0;
  std::lock_guard<std::mutex> g(call_mutex);
  K->dropout_fwd(out, mask, x, n, p, static_cast<uint32_t>(s));
  return info.Env().Undefined();
}
Napi::Value DropoutBackward(const Napi::CallbackInfo& info) {
  Args a(info, "dropoutBackward", 5);
  long n = a.size(3, "n");
  double p = a.number(4, "p");
  check_p(a, p);
  float* dx = a.f32(0, "dx", n);
  const float* dout = a.f32(1, "dOut", n);
  const uint8_t* mask = a.u8(2, "mask", n);
  std::lock_guard<std::mutex> g(call_mutex);
  K->dropout_bwd(dx, dout, mask, n, p);
  return info.Env().Undefined();
}

Napi::Value Gather(const Napi::CallbackInfo& info) {
  Args a(info, "gather", 5);
  long rows = a.size(3, "rows"), d = a.size(4, "d");
  float* out = a.f32(0, "out", D(rows) * d);
  Napi::Value tv = info[1];
  const float* table = a.f32(1, "table", 0);
  long table_rows = d > 0 ? static_cast<long>(tv.As<Napi::Float32Array>().ElementLength() / d) : 0;
  const int32_t* idx = a.i32(2, "indices", D(rows));
  if (d > 0) a.check_indices(idx, rows, 0, table_rows, "indices");
  std::lock_guard<std::mutex> g(call_mutex);
  K->gather(out, table, idx, rows, d);
  return info.Env().Undefined();
}
Napi::Value ScatterAdd(const Napi::CallbackInfo& info) {
  Args a(info, "scatterAdd", 5);
  long rows = a.size(3, "rows"), d = a.size(4, "d");
  Napi::Value tv = info[0];
  float* table = a.f32(0, "dTable", 0);
  long table_rows = d > 0 ? static_cast<long>(tv.As<Napi::Float32Array>().ElementLength() / d) : 0;
  const float* dout = a.f32(1, "dOut", D(rows) * d);
  const int32_t* idx = a.i32(2, "indices", D(rows));
  if (d > 0) a.check_indices(idx, rows, 0, table_rows, "indices");
  std::lock_guard<std::mutex> g(call_mutex);
  K->scatter_add(table, dout, idx, rows, d);
  return info.Env().Undefined();
}

Napi::Value AdamStep(const Napi::CallbackInfo& info) {
  Args a(info, "adamStep", 11);
  long n = a.size(4, "n");
  float* param = a.f32(0, "param", n);
  const float* grad = a.f32(1, "grad", n);
  float* m = a.f32(2, "m", n);
  float* v = a.f32(3, "v", n);
  double lr = a.number(5, "lr"), b1 = a.number(6, "beta1"), b2 = a.number(7, "beta2"), eps = a.number(8, "eps");
  double step = a.number(9, "step"), wd = a.number(10, "weightDecay");
  if (!(step >= 1)) a.fail_range("step must be >= 1 (1-based), got " + std::to_string(step));
  std::lock_guard<std::mutex> g(call_mutex);
  K->adam(param, grad, m, v, n, lr, b1, b2, eps, step, wd);
  return info.Env().Undefined();
}

Napi::Value SparseAdamStep(const Napi::CallbackInfo& info) {
  Args a(info, "sparseAdamStep", 14);
  long count = a.size(5, "count"), d = a.size(6, "d");
  if (d < 1) a.fail_range("d must be >= 1");
  const long table = a.length(0);
  float* param = a.f32(0, "param", 0);
  const float* grad = a.f32(1, "grad", D(count) * d);
  float* m = a.f32(2, "m", D(table));
  float* v = a.f32(3, "v", D(table));
  const int32_t* rows = a.i32(4, "rows", D(count));
  a.check_indices(rows, count, 0, table / d, "rows");
  double lr = a.number(7, "lr"), b1 = a.number(8, "beta1"), b2 = a.number(9, "beta2"), eps = a.number(10, "eps");
  double step = a.number(11, "step"), wd = a.number(12, "weightDecay"), max_norm = a.number(13, "maxNorm");
  if (!(step >= 1)) a.fail_range("step must be >= 1 (1-based), got " + std::to_string(step));
  std::lock_guard<std::mutex> g(call_mutex);
  K->sparse_adam(param, grad, m, v, rows, count, d, lr, b1, b2, eps, step, wd, max_norm);
  return info.Env().Undefined();
}

Napi::Value ClipRowNorms(const Napi::CallbackInfo& info) {
  Args a(info, "clipRowNorms", 5);
  long rows = a.size(1, "rows"), d = a.size(2, "d");
  double max_norm = a.number(3, "maxNorm");
  long first = a.size(4, "firstRow");
  float* x = a.f32(0, "x", D(rows) * d);
  std::lock_guard<std::mutex> g(call_mutex);
  K->clip_rows(x, rows, d, max_norm, first);
  return info.Env().Undefined();
}

Napi::Value TopK(const Napi::CallbackInfo& info) {
  Args a(info, "topK", 6);
  long rows = a.size(3, "rows"), n = a.size(4, "n"), k = a.size(5, "k");
  int32_t* oi = a.i32(0, "outIndices", D(rows) * k);
  float* os = a.f32(1, "outScores", D(rows) * k);
  const float* s = a.f32(2, "scores", D(rows) * n);
  std::lock_guard<std::mutex> g(call_mutex);
  K->topk(oi, os, s, rows, n, k);
  return info.Env().Undefined();
}

Napi::Value ScoreTopK(const Napi::CallbackInfo& info) {
  Args a(info, "scoreTopK", 10);
  long rows = a.size(6, "rows"), n = a.size(7, "n"), d = a.size(8, "d"), k = a.size(9, "k");
  const long panel = 64;  // PW in kernels_impl.h
  int32_t* oi = a.i32(0, "outIndices", D(rows) * k);
  float* os = a.f32(1, "outScores", D(rows) * k);
  const float* states = a.f32(2, "states", D(rows) * d);
  const float* items = a.f32(3, "items", D((n + panel - 1) / panel) * panel * d);
  const uint8_t* active = a.u8(4, "active", D(n));
  const int32_t* limits = a.i32(5, "limits", D(rows));
  std::lock_guard<std::mutex> g(call_mutex);
  K->score_topk(oi, os, states, items, active, limits, rows, n, d, k);
  return info.Env().Undefined();
}

// scoreTopKQuantized: codes in panels of 64 items x dp bytes (dp = d rounded up to 4); scales, residuals and norms
// padded to whole panels (the kernel reads them a panel at a time); items row-major n x d.
Napi::Value ScoreTopKQuantized(const Napi::CallbackInfo& info) {
  Args a(info, "scoreTopKQuantized", 15);
  long rows = a.size(11, "rows"), n = a.size(12, "n"), d = a.size(13, "d"), k = a.size(14, "k");
  if (d > 16384) a.fail_range("d must be at most 16384 (int32 sums of int8 products)");
  const long panel = 64, dp = (d + 3) / 4 * 4;
  const double padded = D((n + panel - 1) / panel) * panel;
  int32_t* oi = a.i32(0, "outIndices", D(rows) * k);
  float* os = a.f32(1, "outScores", D(rows) * k);
  int32_t* oc = a.i32(2, "outCandidates", D(rows));
  const float* states = a.f32(3, "states", D(rows) * d);
  const uint8_t* codes = a.u8(4, "codes", padded * dp);
  const float* scales = a.f32(5, "scales", padded);
  const float* residuals = a.f32(6, "residuals", padded);
  const float* norms = a.f32(7, "norms", padded);
  const float* items = a.f32(8, "items", D(n) * d);
  const uint8_t* active = a.u8(9, "active", D(n));
  const int32_t* limits = a.i32(10, "limits", D(rows));
  std::lock_guard<std::mutex> g(call_mutex);
  K->score_topk_quantized(oi, os, oc, states, codes, scales, residuals, norms, items, active, limits, rows, n, d, k);
  return info.Env().Undefined();
}

// scanQuantized(lower, lowerCount, outIndices, outScores, outCount, outCandidates, offsets, states, codes, scales,
// residuals, norms, items, active, limits, rows, n, d, from, to): one step of the shared scan (kernels/types.ts).
// Row r's lists are entries offsets[r] .. offsets[r + 1] - 1; `from` is a multiple of the panel width.
Napi::Value ScanQuantized(const Napi::CallbackInfo& info) {
  Args a(info, "scanQuantized", 20);
  long rows = a.size(15, "rows"), n = a.size(16, "n"), d = a.size(17, "d"), from = a.size(18, "from"),
       to = a.size(19, "to");
  if (d > 16384) a.fail_range("d must be at most 16384 (int32 sums of int8 products)");
  const long panel = 64, dp = (d + 3) / 4 * 4;
  if (from % panel != 0) a.fail_range("from must be a multiple of 64");
  if (from > to || to > n) a.fail_range("from <= to <= n is required");
  const int32_t* offsets = a.i32(6, "offsets", D(rows) + 1);
  if (offsets[0] != 0) a.fail_range("offsets[0] must be 0");
  for (long r = 0; r < rows; r++)
    if (offsets[r + 1] < offsets[r]) a.fail_range("offsets must not decrease");
  const double total = offsets[rows];
  float* lower = a.f32(0, "lower", total);
  int32_t* lowerCount = a.i32(1, "lowerCount", D(rows));
  int32_t* oi = a.i32(2, "outIndices", total);
  float* os = a.f32(3, "outScores", total);
  int32_t* outCount = a.i32(4, "outCount", D(rows));
  int32_t* oc = a.i32(5, "outCandidates", D(rows));
  for (long r = 0; r < rows; r++) {
    const long width = offsets[r + 1] - offsets[r];
    if (lowerCount[r] < 0 || lowerCount[r] > width || outCount[r] < 0 || outCount[r] > width)
      a.fail_range("lowerCount and outCount must lie in 0 .. the row's width");
  }
  const double padded = D((n + panel - 1) / panel) * panel;
  const float* states = a.f32(7, "states", D(rows) * d);
  const uint8_t* codes = a.u8(8, "codes", padded * dp);
  const float* scales = a.f32(9, "scales", padded);
  const float* residuals = a.f32(10, "residuals", padded);
  const float* norms = a.f32(11, "norms", padded);
  const float* items = a.f32(12, "items", D(n) * d);
  const uint8_t* active = a.u8(13, "active", D(n));
  const int32_t* limits = a.i32(14, "limits", D(rows));
  std::lock_guard<std::mutex> g(call_mutex);
  K->scan_quantized(lower, lowerCount, oi, os, outCount, oc, offsets, states, codes, scales, residuals, norms, items,
                    active, limits, rows, n, d, from, to);
  return info.Env().Undefined();
}

// quantizeItems(codes, scales, residuals, norms, matrix, from, to, d): the int8 copy of rows from .. to - 1.
Napi::Value QuantizeItems(const Napi::CallbackInfo& info) {
  Args a(info, "quantizeItems", 8);
  long from = a.size(5, "from"), to = a.size(6, "to"), d = a.size(7, "d");
  if (from > to) a.fail_range("from must be <= to");
  const long panel = 64, dp = (d + 3) / 4 * 4;
  uint8_t* codes = a.u8(0, "codes", D((to + panel - 1) / panel) * panel * dp);
  float* scales = a.f32(1, "scales", D(to));
  float* residuals = a.f32(2, "residuals", D(to));
  float* norms = a.f32(3, "norms", D(to));
  const float* matrix = a.f32(4, "matrix", D(to) * d);
  std::lock_guard<std::mutex> g(call_mutex);
  K->quantize_items(codes, scales, residuals, norms, matrix, from, to, d);
  return info.Env().Undefined();
}

// fmaPeak(threads, seconds): GFLOP/s of a register-resident FMA loop run on `threads` threads at once, each timed
// on its own CPU clock (the sum of the per-thread rates: the peak of that many cores, whatever else is running).
Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
  Args a(info, "fmaPeak", 2);
  long threads = a.size(0, "threads");
  double seconds = a.number(1, "seconds");
  if (threads < 1) threads = 1;
  if (threads > pool_size()) threads = pool_size();
  std::lock_guard<std::mutex> g(call_mutex);
  std::vector<double> rates(threads, 0.0);
  parallel_run(static_cast<int>(threads), [&](int tid, int) { rates[tid] = K->fma_loop(seconds); });
  double total = 0;
  for (double r : rates) total += r;
  return Napi::Number::New(info.Env(), total / 1e9);
}

Napi::Value Isa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), K->isa); }
Napi::Value Threads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), pool_size()); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  K = choose_table();
  exports.Set("matmul", Napi::Function::New(env, Matmul));
  exports.Set("softmaxCrossEntropy", Napi::Function::New(env, SoftmaxCrossEntropy));
  exports.Set("sampledLoss", Napi::Function::New(env, SampledLoss));
  exports.Set("sampledLossGrouped", Napi::Function::New(env, SampledLossGrouped));
  exports.Set("layerNormForward", Napi::Function::New(env, LayerNormForward));
  exports.Set("layerNormBackward", Napi::Function::New(env, LayerNormBackward));
  exports.Set("attentionForward", Napi::Function::New(env, AttentionForward));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward));
  exports.Set("reluForward", Napi::Function::New(env, ReluForward));
  exports.Set("reluBackward", Napi::Function::New(env, ReluBackward));
  exports.Set("geluForward", Napi::Function::New(env, GeluForward));
  exports.Set("geluBackward", Napi::Function::New(env, GeluBackward));
  exports.Set("dropoutForward", Napi::Function::New(env, DropoutForward));
  exports.Set("dropoutBackward", Napi::Function::New(env, DropoutBackward));
  exports.Set("gather", Napi::Function::New(env, Gather));
  exports.Set("scatterAdd", Napi::Function::New(env, ScatterAdd));
  exports.Set("adamStep", Napi::Function::New(env, AdamStep));
  exports.Set("sparseAdamStep", Napi::Function::New(env, SparseAdamStep));
  exports.Set("clipRowNorms", Napi::Function::New(env, ClipRowNorms));
  exports.Set("topK", Napi::Function::New(env, TopK));
  exports.Set("scoreTopK", Napi::Function::New(env, ScoreTopK));
  exports.Set("scoreTopKQuantized", Napi::Function::New(env, ScoreTopKQuantized));
  exports.Set("quantizeItems", Napi::Function::New(env, QuantizeItems));
  exports.Set("scanQuantized", Napi::Function::New(env, ScanQuantized));
  exports.Set("fmaPeak", Napi::Function::New(env, FmaPeak));
  exports.Set("isa", Napi::Function::New(env, Isa));
  exports.Set("threads", Napi::Function::New(env, Threads));
  return exports;
}

}  // namespace
}  // namespace deltarec

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return deltarec::Init(env, exports); }

NODE_API_MODULE(deltarec_native, InitModule)
