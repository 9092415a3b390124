// Kernel implementations, written once with GCC vector extensions and compiled per instruction set. The including
// file defines DR_W (floats per vector), DR_MR (rows of a register tile), DR_NV (vectors per tile row, max),
// DR_NAMESPACE and DR_TABLE_FN, and compiles with the matching -m flags.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <utility>
#include <vector>

#if defined(__AVX512F__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "kernels.h"
#include "pool.h"

namespace deltarec {
namespace DR_NAMESPACE {

constexpr int W = DR_W;
constexpr int MR = DR_MR;
constexpr int NVMAX = DR_NV;
constexpr int NT = NVMAX * W;  // widest tile, in floats

typedef float vf __attribute__((vector_size(W * 4)));
typedef float vfu __attribute__((vector_size(W * 4), aligned(4)));
typedef int32_t vi __attribute__((vector_size(W * 4)));
typedef uint32_t vu __attribute__((vector_size(W * 4)));

static inline vf loadu(const float* p) { return *reinterpret_cast<const vfu*>(p); }
static inline void storeu(float* p, vf v) { *reinterpret_cast<vfu*>(p) = v; }
template <size_t... I>
static inline vf splat_lanes(float x, std::index_sequence<I...>) {
  return vf{((void)I, x)...};
}
static inline vf splat(float x) { return splat_lanes(x, std::make_index_sequence<W>{}); }
static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline vf vmin(vf a, vf b) { return a < b ? a : b; }
static inline float hsum(vf v) {
  float s = 0;
  for (int i = 0; i < W; i++) s += v[i];
  return s;
}

// exp(x) for float vectors: x = n ln2 + r with |r| <= ln2/2, exp(r) by its degree-6 Taylor polynomial
// (relative error about 2e-7), times 2^n. Inputs are clamped to [-87.3, 88.3].
static inline vf vexp(vf x) {
  x = vmin(vmax(x, splat(-87.3f)), splat(88.3f));
#if DR_W == 16 && defined(__AVX512F__)
  // AVX-512: round and scale in one instruction each.
  const vf n = reinterpret_cast<vf>(_mm512_roundscale_ps(reinterpret_cast<__m512>(x * 1.44269504f), 0));
#else
  vf t = x * 1.44269504f + 0.5f;
  vf n = __builtin_convertvector(__builtin_convertvector(t, vi), vf);
  n = n > t ? n - 1.0f : n;  // floor(t): rounds x / ln2 to nearest
#endif
  vf r = x - n * 0.693145752f;
  r = r - n * 1.42860677e-6f;
  vf p = splat(1.0f / 720);
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
#if DR_W == 16 && defined(__AVX512F__)
  return reinterpret_cast<vf>(_mm512_scalef_ps(reinterpret_cast<__m512>(p), reinterpret_cast<__m512>(n)));
#else
  vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &e, sizeof scale);
  return p * scale;
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// Scratch buffers: grow-only, 64-byte aligned, reused across calls. They are per calling thread (thread_local), so
// JavaScript threads (the service's scoring workers) run kernels concurrently; parallel regions are serialized by
// the pool, and a pool thread's buffers are handed to the others only inside one parallel region.
struct Buffer {
  float* data = nullptr;
  size_t size = 0;
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept : data(other.data), size(other.size) {
    other.data = nullptr;
    other.size = 0;
  }
  ~Buffer() { std::free(data); }
  float* get(size_t n) {
    if (n > size) {
      std::free(data);
      size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
      data = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!data) throw std::bad_alloc();
      size = n;
    }
    return data;
  }
};
static thread_local Buffer pack_buffer;
static thread_local std::vector<Buffer> thread_buffers[7];  // per purpose, per pool thread id
static float* thread_scratch(int purpose, int tid, size_t n) {
  auto& v = thread_buffers[purpose];
  if (static_cast<int>(v.size()) <= tid) v.resize(tid + 1);
  return v[tid].get(n);
}

// Threads worth using for `work` units of roughly one flop each. Waking a worker costs microseconds on a quiet
// machine but can cost a scheduler slice (milliseconds) on a loaded one, so only kernels of about 0.5 ms or more
// of single-thread work go parallel.
static int threads_for(double work) {
  if (work < 5e7) return 1;
  return pool_size();
}

// ---------------------------------------------------------------------------------------------------------------
// Register tile: C[M x NV*W] (+)= sum_p A(i, p) B(p, :), with A(i, p) = a[i*ars + p*acs] and B(p, :) = b[p*ldb ..].
template <int M, int NV>
static inline void tile(long K, const float* __restrict a, long ars, long acs, const float* __restrict b, long ldb,
                        float* __restrict c, long ldc, bool accumulate) {
  vf acc[M][NV];
#pragma GCC unroll 8
  for (int i = 0; i < M; i++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[i][v] = vf{};
  for (long p = 0; p < K; p++) {
    vf bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) bv[v] = loadu(b + p * ldb + v * W);
#pragma GCC unroll 8
    for (int i = 0; i < M; i++) {
      vf ai = splat(a[i * ars + p * acs]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) acc[i][v] += ai * bv[v];
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < M; i++)
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
      float* cp = c + i * ldc + v * W;
      storeu(cp, accumulate ? loadu(cp) + acc[i][v] : acc[i][v]);
    }
}

template <int NV>
static inline void tile_rows(int m, long K, const float* a, long ars, long acs, const float* b, long ldb, float* c,
                             long ldc, bool accumulate) {
  switch (m) {
#define DR_CASE(M)                                                    \
  case M:                                                             \
    if constexpr (M <= MR) tile<M, NV>(K, a, ars, acs, b, ldb, c, ldc, accumulate); \
    break;
    DR_CASE(1) DR_CASE(2) DR_CASE(3) DR_CASE(4) DR_CASE(5) DR_CASE(6) DR_CASE(7) DR_CASE(8)
#undef DR_CASE
  }
}

// A tile of m <= MR rows and nv <= NVMAX full vectors.
static void tile_any(int m, int nv, long K, const float* a, long ars, long acs, const float* b, long ldb, float* c,
                     long ldc, bool accumulate) {
  switch (nv) {
    case 1: tile_rows<1>(m, K, a, ars, acs, b, ldb, c, ldc, accumulate); break;
    case 2: if constexpr (NVMAX >= 2) tile_rows<2>(m, K, a, ars, acs, b, ldb, c, ldc, accumulate); break;
    case 3: if constexpr (NVMAX >= 3) tile_rows<3>(m, K, a, ars, acs, b, ldb, c, ldc, accumulate); break;
    case 4: if constexpr (NVMAX >= 4) tile_rows<4>(m, K, a, ars, acs, b, ldb, c, ldc, accumulate); break;
  }
}

// Same, but only the first `cols` columns of the tile are stored (B must be readable for all nv*W columns).
static void tile_edge(int m, int nv, int cols, long K, const float* a, long ars, long acs, const float* b, long ldb,
                      float* c, long ldc, bool accumulate) {
  if (cols == nv * W) return tile_any(m, nv, K, a, ars, acs, b, ldb, c, ldc, accumulate);
  alignas(64) float tmp[MR * NT];
  tile_any(m, nv, K, a, ars, acs, b, ldb, tmp, NT, false);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < cols; j++) c[i * ldc + j] = accumulate ? c[i * ldc + j] + tmp[i * NT + j] : tmp[i * NT + j];
}

// ---------------------------------------------------------------------------------------------------------------
// matmul: out (m x n) (+)= op(a) op(b). A is read in place (both layouts broadcast well); B is used in place when it
// is k x n with n a multiple of W, otherwise packed once into a zero-padded k x npad copy.
static void matmul(float* out, const float* a, const float* b, long m, long n, long k, bool transA, bool transB,
                   bool accumulate) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) std::memset(out, 0, sizeof(float) * m * n);
    return;
  }
  const long ars = transA ? 1 : k, acs = transA ? m : 1;
  const bool direct = !transB && n % W == 0;
  const long npad = (n + W - 1) / W * W;
  const long ldb = direct ? n : npad;
  float* packed = direct ? nullptr : pack_buffer.get(static_cast<size_t>(k) * npad);
  const float* B = direct ? b : packed;
  if (!direct) {
    for (long p = 0; p < k; p++) {
      float* row = packed + p * npad;
      if (transB)
        for (long j = 0; j < n; j++) row[j] = b[j * k + p];
      else
        std::memcpy(row, b + p * n, sizeof(float) * n);
      for (long j = n; j < npad; j++) row[j] = 0;
    }
  }

  const long row_tiles = (m + MR - 1) / MR;
  const long col_tiles = (n + NT - 1) / NT;
  constexpr long KC = 256;
  int nthreads = threads_for(2.0 * m * n * k);

  // A long K against a small output (weight gradients x^T dY): each thread takes a range of K blocks into a private
  // C, so every K block of A and B is read once, from cache, for all output tiles.
  if (nthreads > 1 && k >= 4 * KC && k >= 8 * std::max(m, n)) {
    std::vector<float*> partial(nthreads, nullptr);
    parallel_run(nthreads, [&](int tid, int nt) {
      long kb0, kb1;
      split_range((k + KC - 1) / KC, tid, nt, kb0, kb1);
      float* c = thread_scratch(3, tid, static_cast<size_t>(m) * n);
      partial[tid] = c;
      for (long kb = kb0; kb < kb1; kb++) {
        const long k0 = kb * KC, kc = std::min(KC, k - k0);
        for (long ct = 0; ct < col_tiles; ct++)
          for (long rt = 0; rt < row_tiles; rt++) {
            const long i0 = rt * MR, j0 = ct * NT;
            const int mm = static_cast<int>(std::min<long>(MR, m - i0));
            const int cols = static_cast<int>(std::min<long>(NT, n - j0));
            tile_edge(mm, (cols + W - 1) / W, cols, kc, a + i0 * ars + k0 * acs, ars, acs, B + k0 * ldb + j0, ldb,
                      c + i0 * n + j0, n, kb > kb0);
          }
      }
      if (kb0 == kb1) std::memset(c, 0, sizeof(float) * m * n);
      pool_barrier();
      long e0, e1;
      split_range(m * n, tid, nt, e0, e1);
      for (long e = e0; e < e1; e++) {
        float s = accumulate ? out[e] : 0.0f;
        for (int t = 0; t < nt; t++) s += partial[t][e];
        out[e] = s;
      }
    });
    return;
  }

  // Otherwise threads take groups of row tiles (one column tile each) dynamically, K blocked inside a group.
  const long group = std::max<long>(1, std::min<long>(16, row_tiles / (4L * nthreads)));
  const long groups_per_col = (row_tiles + group - 1) / group;
  const long work_items = groups_per_col * col_tiles;
  if (nthreads > work_items) nthreads = static_cast<int>(work_items);
  std::atomic<long> next{0};
  parallel_run(nthreads, [&](int, int) {
    for (long w; (w = next.fetch_add(1)) < work_items;) {
      const long ct = w / groups_per_col, g = w % groups_per_col;
      const long rt0 = g * group, rt1 = std::min(row_tiles, rt0 + group);
      const long j0 = ct * NT;
      const int cols = static_cast<int>(std::min<long>(NT, n - j0));
      const int nv = (cols + W - 1) / W;
      for (long k0 = 0; k0 < k; k0 += KC) {
        const long kc = std::min(KC, k - k0);
        const bool acc = accumulate || k0 > 0;
        for (long rt = rt0; rt < rt1; rt++) {
          const long i0 = rt * MR;
          const int mm = static_cast<int>(std::min<long>(MR, m - i0));
          tile_edge(mm, nv, cols, kc, a + i0 * ars + k0 * acs, ars, acs, B + k0 * ldb + j0, ldb, out + i0 * n + j0,
                    n, acc);
        }
      }
    }
  });
}

static inline float dot(const float* a, const float* b, long n) {
  vf acc0 = vf{}, acc1 = vf{};
  long i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    acc0 += loadu(a + i) * loadu(b + i);
    acc1 += loadu(a + i + W) * loadu(b + i + W);
  }
  for (; i + W <= n; i += W) acc0 += loadu(a + i) * loadu(b + i);
  float s = hsum(acc0 + acc1);
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}
static inline void axpy(float* __restrict y, float alpha, const float* __restrict x, long n) {
  for (long i = 0; i < n; i++) y[i] += alpha * x[i];
}

// ---------------------------------------------------------------------------------------------------------------
// Fused output layer in two sweeps, so that no rows x items (or even chunk x items) logits ever leave the cache.
// Rows are grouped in chunks of CR and kept transposed (HT: d x CR per chunk); items in blocks of IB. Logits of an
// item block against a chunk are held transposed (LT: IB x CR), so per-row softmax statistics are vertical vector
// operations and every product reads E and H in place:
//   sweep 1 (threads own item blocks):  LT = E_block HT_chunk for every chunk, running row max / sum of exp per
//                                       thread, merged into lse per row
//   sweep 2 (same item blocks):         recompute LT, P = scale (softmax - onehot), then
//       dH[chunk]  += P^T E_block   (tiles: chunk rows x d,  K = IB; per-thread dH, summed at the end)
//       dE[block]  += P H[chunk]    (tiles: items x d,       K = CR; each block belongs to one thread)
// Recomputing the logits costs one product more (4 instead of 3) but keeps E, dE, H and LT blocks in L1/L2.
// Threads own fixed contiguous ranges of item blocks and partial sums are combined in thread order, so results
// are bit-identical from run to run (for a given thread count).
constexpr long CR = 64;       // chunk rows (a multiple of W for every instruction set)
constexpr long IB = MR * 16;  // items per block (LT and E blocks fit in L1 together at d = 64)
constexpr int CV = CR / W;    // vectors per logits row

// LT (IB x CR) = E[jb..je) HT: rows of E against the chunk's transposed hidden states.
static inline void ce_logits(const float* E, const float* HT, long jb, long je, long d, float* LT) {
  for (long j = jb; j < je; j += MR) {
    const int mm = static_cast<int>(std::min<long>(MR, je - j));
    for (long c0 = 0; c0 < CR; c0 += NT) {
      const int nv = static_cast<int>(std::min<long>(NT, CR - c0) / W);
      tile_any(mm, nv, d, E + j * d, d, 1, HT + c0, CR, LT + (j - jb) * CR + c0, CR, false);
    }
  }
}

// Sweep 1 for items [jb, je) against every chunk: updates this thread's running row max and sum of exp (rows_pad).
static void ce_sweep1(const float* E, long rows, long jb, long je, long d, const float* HTall, float* LT,
                      float* run_max, float* run_sum) {
  for (long r0 = 0, c = 0; r0 < rows; r0 += CR, c++) {
    ce_logits(E, HTall + c * d * CR, jb, je, d, LT);
    for (int v = 0; v < CV; v++) {
      vf bmax = splat(-INFINITY);
      for (long j = 0; j < je - jb; j++) bmax = vmax(bmax, loadu(LT + j * CR + v * W));
      const vf old_max = loadu(run_max + r0 + v * W);
      const vf new_max = vmax(old_max, bmax);
      vf s = vf{};
      for (long j = 0; j < je - jb; j++) s += vexp(loadu(LT + j * CR + v * W) - new_max);
      storeu(run_sum + r0 + v * W, loadu(run_sum + r0 + v * W) * vexp(old_max - new_max) + s);
      storeu(run_max + r0 + v * W, new_max);
    }
  }
}

// Sweep 2 for items [jb, je) against every chunk.
static void ce_sweep2(const float* H, const float* E, const int32_t* targets, long rows, long jb, long je, long d,
                      float scale, const float* HTall, const float* lse_all, float* LT, float* dH, float* dE) {
  const long jn = je - jb;
  for (long r0 = 0, c = 0; r0 < rows; r0 += CR, c++) {
    const long cr = std::min(CR, rows - r0);
    ce_logits(E, HTall + c * d * CR, jb, je, d, LT);
    vf lse_v[CV], scale_v[CV];
    for (int v = 0; v < CV; v++) {
      lse_v[v] = loadu(lse_all + r0 + v * W);
      for (int l = 0; l < W; l++) scale_v[v][l] = v * W + l < cr ? scale : 0.0f;
    }
    for (long j = 0; j < jn; j++)
      for (int v = 0; v < CV; v++) {
        float* l = LT + j * CR + v * W;
        storeu(l, scale_v[v] * vexp(loadu(l) - lse_v[v]));
      }
    for (long r = 0; r < cr; r++) {
      const long t = targets[r0 + r];
      if (t >= jb && t < je) LT[(t - jb) * CR + r] -= scale;
    }
    for (long r = 0; r < cr; r += MR) {
      const int mm = static_cast<int>(std::min<long>(MR, cr - r));
      for (long c0 = 0; c0 < d; c0 += NT) {
        const int nv = static_cast<int>(std::min<long>(NT, d - c0) / W);
        tile_any(mm, nv, jn, LT + r, 1, CR, E + jb * d + c0, d, dH + (r0 + r) * d + c0, d, true);
      }
    }
    for (long j = jb; j < je; j += MR) {
      const int mm = static_cast<int>(std::min<long>(MR, je - j));
      for (long c0 = 0; c0 < d; c0 += NT) {
        const int nv = static_cast<int>(std::min<long>(NT, d - c0) / W);
        tile_any(mm, nv, cr, LT + (j - jb) * CR, CR, 1, H + r0 * d + c0, d, dE + j * d + c0, d, true);
      }
    }
  }
}

// Core with d a multiple of W.
static double softmax_ce_core(const float* H, const float* E, const int32_t* targets, long rows, long d, long N,
                              float scale, float* dH, float* dE) {
  const long chunks = (rows + CR - 1) / CR;
  const long rows_pad = chunks * CR;
  const long blocks = (N - 1 + IB - 1) / IB;
  int nthreads = threads_for(8.0 * rows * N * d);
  if (nthreads > blocks) nthreads = static_cast<int>(std::max<long>(blocks, 1));
  float* HTall = pack_buffer.get(static_cast<size_t>(chunks) * d * CR + rows_pad);
  float* lse_all = HTall + chunks * d * CR;
  std::vector<double> losses(nthreads, 0.0);
  std::vector<float*> stats(nthreads, nullptr), partial(nthreads, nullptr);
  parallel_run(nthreads, [&](int tid, int nt) {
    // HT per chunk: the chunk's hidden rows transposed (d x CR), zero beyond the last row.
    long c0, c1;
    split_range(chunks, tid, nt, c0, c1);
    for (long c = c0; c < c1; c++) {
      float* HT = HTall + c * d * CR;
      for (long p = 0; p < d; p++)
        for (long r = 0; r < CR; r++) HT[p * CR + r] = c * CR + r < rows ? H[(c * CR + r) * d + p] : 0.0f;
    }
    float* LT = thread_scratch(0, tid, static_cast<size_t>(IB) * CR);
    float* run_max = stats[tid] = thread_scratch(1, tid, static_cast<size_t>(2) * rows_pad);
    float* run_sum = run_max + rows_pad;
    std::fill(run_max, run_max + rows_pad, -INFINITY);
    std::fill(run_sum, run_sum + rows_pad, 0.0f);
    pool_barrier();
    long b0, b1;
    split_range(blocks, tid, nt, b0, b1);
    for (long b = b0; b < b1; b++) {
      const long jb = 1 + b * IB;
      ce_sweep1(E, rows, jb, std::min(N, jb + IB), d, HTall, LT, run_max, run_sum);
    }
    pool_barrier();
    // Merge the threads' statistics into lse; loss = sum of lse - target logit.
    long r0, r1;
    split_range(rows_pad, tid, nt, r0, r1);
    double loss = 0;
    for (long r = r0; r < r1; r++) {
      if (r >= rows) {
        lse_all[r] = 0.0f;
        continue;
      }
      float m = -INFINITY;
      for (int t = 0; t < nt; t++) m = std::max(m, stats[t][r]);
      double s = 0;
      for (int t = 0; t < nt; t++) s += static_cast<double>(stats[t][rows_pad + r]) * std::exp(stats[t][r] - m);
      lse_all[r] = m + static_cast<float>(std::log(s));
      loss += static_cast<double>(lse_all[r]) - dot(H + r * d, E + targets[r] * d, d);
    }
    losses[tid] = loss;
    float* myH = dH;
    if (tid > 0) myH = partial[tid] = thread_scratch(2, tid, static_cast<size_t>(rows) * d);
    std::memset(myH, 0, sizeof(float) * rows * d);
    pool_barrier();
    for (long b = b0; b < b1; b++) {
      const long jb = 1 + b * IB;
      ce_sweep2(H, E, targets, rows, jb, std::min(N, jb + IB), d, scale, HTall, lse_all, LT, myH, dE);
    }
    if (nt == 1) return;
    pool_barrier();
    long e0, e1;
    split_range(rows * d, tid, nt, e0, e1);
    for (int t = 1; t < nt; t++) {
      const float* src = partial[t];
      for (long i = e0; i < e1; i++) dH[i] += src[i];
    }
  });
  double total = 0;
  for (double l : losses) total += l;
  return total;
}

static double softmax_ce(const float* H, const float* E, const int32_t* targets, long rows, long d, long N,
                         float scale, float* dH, float* dE) {
  if (rows == 0 || d == 0) {
    std::memset(dH, 0, sizeof(float) * rows * d);
    if (rows == 0 || N <= 1) return 0;
    double loss = 0;  // d == 0: every logit is 0, so CE = log(N - 1)
    for (long r = 0; r < rows; r++) loss += std::log(static_cast<double>(N - 1));
    return loss;
  }
  if (d % W == 0) return softmax_ce_core(H, E, targets, rows, d, N, scale, dH, dE);
  // Uncommon widths: work on zero-padded copies.
  const long dp = (d + W - 1) / W * W;
  std::vector<float> Hp(rows * dp, 0.0f), Ep(N * dp, 0.0f), dHp(rows * dp), dEp(N * dp, 0.0f);
  for (long r = 0; r < rows; r++) std::memcpy(&Hp[r * dp], H + r * d, sizeof(float) * d);
  for (long j = 0; j < N; j++) std::memcpy(&Ep[j * dp], E + j * d, sizeof(float) * d);
  const double loss = softmax_ce_core(Hp.data(), Ep.data(), targets, rows, dp, N, scale, dHp.data(), dEp.data());
  for (long r = 0; r < rows; r++) std::memcpy(dH + r * d, &dHp[r * dp], sizeof(float) * d);
  for (long j = 0; j < N; j++)
    for (long p = 0; p < d; p++) dE[j * d + p] += dEp[j * dp + p];
  return loss;
}

// ---------------------------------------------------------------------------------------------------------------
// Runs body(begin, end) over [0, n) on as many threads as `work` (flops, roughly) justifies.
template <class F>
static void parallel_for(long n, double work, F body) {
  int nthreads = threads_for(work);
  if (nthreads > n) nthreads = static_cast<int>(n);
  if (nthreads <= 1) {
    if (n > 0) body(0L, n);
    return;
  }
  parallel_run(nthreads, [&](int tid, int nt) {
    long b, e;
    split_range(n, tid, nt, b, e);
    if (b < e) body(b, e);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Sampled output layer (sampled softmax or gBCE) with k negatives shared by all rows, in row chunks of SL_CHUNK:
//   G = H_chunk N^T (chunk x k), per row: logQ correction, accidental-hit mask, softmax or sigmoid in place,
//   dH_chunk = gpos P + G N, dN += G^T H_chunk, dP = gpos H.
constexpr long SL_CHUNK = 1024;
static Buffer sampled_buffer;

static inline float softplus(float x) { return std::max(x, 0.0f) + std::log1p(std::exp(-std::fabs(x))); }
static inline float sigmoid(float x) {
  if (x >= 0) return 1.0f / (1.0f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.0f + e);
}

// One row of logits g (k) in place -> scale * dCE/dlogit; returns CE and sets gpos = scale * dCE/ds+.
static double sampled_row(float* g, float pos, const int32_t* negIds, int32_t target, const float* corr, long k,
                          bool gbce, float beta, float scale, float& gpos) {
  for (long j = 0; j < k; j++) g[j] -= corr[j];
  if (gbce) {
    double loss = static_cast<double>(beta) * softplus(-pos);
    gpos = -scale * beta * sigmoid(-pos);
    for (long j = 0; j < k; j++) {
      if (negIds[j] == target) {
        g[j] = 0.0f;
        continue;
      }
      loss += softplus(g[j]);
      g[j] = scale * sigmoid(g[j]);
    }
    return loss;
  }
  float mx = pos;
  for (long j = 0; j < k; j++)
    if (negIds[j] != target) mx = std::max(mx, g[j]);
  const vf mv = splat(mx);
  long j = 0;
  for (; j + W <= k; j += W) storeu(g + j, vexp(loadu(g + j) - mv));
  for (; j < k; j++) g[j] = std::exp(g[j] - mx);
  double sum = std::exp(static_cast<double>(pos) - mx);
  for (j = 0; j < k; j++) {
    if (negIds[j] == target) g[j] = 0.0f;
    sum += g[j];
  }
  const double lse = mx + std::log(sum);
  const float f = static_cast<float>(scale / sum);
  for (j = 0; j < k; j++) g[j] *= f;
  gpos = static_cast<float>(scale * (std::exp(static_cast<double>(pos) - lse) - 1.0));
  return lse - pos;
}

static double sampled_loss(const float* H, const float* P, const float* N, const int32_t* targets,
                           const int32_t* negIds, const float* corr, long rows, long d, long k, bool gbce, double beta,
                           double bias, double scale, float* dH, float* dP, float* dN, float* dBias) {
  std::memset(dN, 0, sizeof(float) * k * d);
  dBias[0] = 0.0f;
  if (rows == 0) return 0;
  const long chunk = std::min(rows, SL_CHUNK);
  float* G = sampled_buffer.get(static_cast<size_t>(chunk) * k);
  std::vector<double> losses(chunk), biasGrads(chunk);
  std::vector<float> gpos(chunk);
  const float betaf = static_cast<float>(beta), scalef = static_cast<float>(scale);
  const float biasf = static_cast<float>(bias);
  double total = 0, biasTotal = 0;
  for (long r0 = 0; r0 < rows; r0 += chunk) {
    const long cr = std::min(chunk, rows - r0);
    matmul(G, H + r0 * d, N, cr, k, d, false, true, false);
    parallel_for(cr, 20.0 * cr * k, [&](long a0, long a1) {
      for (long r = a0; r < a1; r++) {
        const float* h = H + (r0 + r) * d;
        const float* p = P + (r0 + r) * d;
        float* g = G + r * k;
        for (long j = 0; j < k; j++) g[j] += biasf;
        losses[r] = sampled_row(g, dot(h, p, d) + biasf, negIds, targets[r0 + r], corr, k, gbce, betaf, scalef,
                                gpos[r]);
        double gsum = gpos[r];
        for (long j = 0; j < k; j++) gsum += g[j];
        biasGrads[r] = gsum;
        float* dh = dH + (r0 + r) * d;
        float* dp = dP + (r0 + r) * d;
        for (long q = 0; q < d; q++) {
          dh[q] = gpos[r] * p[q];
          dp[q] = gpos[r] * h[q];
        }
      }
    });
    for (long r = 0; r < cr; r++) {
      total += losses[r];
      biasTotal += biasGrads[r];
    }
    matmul(dH + r0 * d, G, N, cr, d, k, false, false, true);
    matmul(dN, G, H + r0 * d, k, d, cr, true, false, true);
  }
  dBias[0] = static_cast<float>(biasTotal);
  return total;
}

static void layernorm_fwd(float* out, float* mean, float* rstd, const float* x, const float* gamma,
                          const float* beta, long rows, long d, float eps) {
  parallel_for(rows, 8.0 * rows * d, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      const float* xr = x + r * d;
      float* o = out + r * d;
      vf s = vf{};
      long p = 0;
      for (; p + W <= d; p += W) s += loadu(xr + p);
      float sum = hsum(s);
      for (; p < d; p++) sum += xr[p];
      const float mu = sum / d;
      vf q = vf{};
      for (p = 0; p + W <= d; p += W) {
        vf c = loadu(xr + p) - mu;
        q += c * c;
      }
      float var = hsum(q);
      for (; p < d; p++) var += (xr[p] - mu) * (xr[p] - mu);
      const float rs = 1.0f / std::sqrt(var / d + eps);
      mean[r] = mu;
      rstd[r] = rs;
      for (p = 0; p < d; p++) o[p] = (xr[p] - mu) * rs * gamma[p] + beta[p];
    }
  });
}

static void layernorm_bwd(float* dx, float* dGamma, float* dBeta, const float* dOut, const float* x,
                          const float* mean, const float* rstd, const float* gamma, long rows, long d) {
  int nthreads = threads_for(12.0 * rows * d);
  if (nthreads > rows) nthreads = static_cast<int>(std::max<long>(rows, 1));
  std::vector<float> partial(static_cast<size_t>(nthreads) * 2 * d, 0.0f);
  parallel_run(nthreads, [&](int tid, int nt) {
    long r0, r1;
    split_range(rows, tid, nt, r0, r1);
    float* dg = &partial[tid * 2 * d];
    float* db = dg + d;
    for (long r = r0; r < r1; r++) {
      const float* xr = x + r * d;
      const float* g = dOut + r * d;
      const float mu = mean[r], rs = rstd[r];
      float sum_g = 0, sum_gx = 0;
      for (long p = 0; p < d; p++) {
        const float xhat = (xr[p] - mu) * rs;
        const float gg = g[p] * gamma[p];
        sum_g += gg;
        sum_gx += gg * xhat;
        dg[p] += g[p] * xhat;
        db[p] += g[p];
      }
      const float mean_g = sum_g / d, mean_gx = sum_gx / d;
      float* o = dx + r * d;
      for (long p = 0; p < d; p++) {
        const float xhat = (xr[p] - mu) * rs;
        o[p] += rs * (g[p] * gamma[p] - mean_g - xhat * mean_gx);
      }
    }
  });
  for (int t = 0; t < nthreads; t++)
    for (long p = 0; p < d; p++) {
      dGamma[p] += partial[t * 2 * d + p];
      dBeta[p] += partial[t * 2 * d + d + p];
    }
}

// Query-key pairs that attention actually computes (causal, real positions only), for sizing the work.
static double real_pairs(const int32_t* lengths, long batch, long T) {
  double pairs = 0;
  for (long b = 0; b < batch; b++) {
    const double len = std::min<long>(std::max<int32_t>(lengths[b], 0), T);
    pairs += len * (len + 1) / 2;
  }
  return pairs;
}

static void attention_fwd(float* out, float* att, const float* q, const float* k, const float* v,
                          const int32_t* lengths, long batch, long T, long heads, long d) {
  const long dh = d / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  parallel_for(batch, 4.0 * real_pairs(lengths, batch, T) * d, [&](long b0, long b1) {
    for (long b = b0; b < b1; b++) {
      const long start = T - std::min<long>(std::max<int32_t>(lengths[b], 0), T);
      std::memset(out + b * T * d, 0, sizeof(float) * T * d);
      std::memset(att + b * heads * T * T, 0, sizeof(float) * heads * T * T);
      for (long h = 0; h < heads; h++) {
        const long off = h * dh;
        float* A = att + (b * heads + h) * T * T;
        for (long t = start; t < T; t++) {
          const float* qt = q + (b * T + t) * d + off;
          float* row = A + t * T;
          float mx = -INFINITY;
          for (long j = start; j <= t; j++) {
            row[j] = dot(qt, k + (b * T + j) * d + off, dh) * scale;
            mx = std::max(mx, row[j]);
          }
          float sum = 0;
          for (long j = start; j <= t; j++) sum += (row[j] = std::exp(row[j] - mx));
          const float inv = 1.0f / sum;
          float* o = out + (b * T + t) * d + off;
          for (long j = start; j <= t; j++) {
            row[j] *= inv;
            axpy(o, row[j], v + (b * T + j) * d + off, dh);
          }
        }
      }
    }
  });
}

static void attention_bwd(float* dq, float* dk, float* dv, const float* dOut, const float* att, const float* q,
                          const float* k, const float* v, const int32_t* lengths, long batch, long T, long heads,
                          long d) {
  const long dh = d / heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  parallel_for(batch, 8.0 * real_pairs(lengths, batch, T) * d, [&](long b0, long b1) {
    std::vector<float> dp(T);
    for (long b = b0; b < b1; b++) {
      const long start = T - std::min<long>(std::max<int32_t>(lengths[b], 0), T);
      std::memset(dq + b * T * d, 0, sizeof(float) * T * d);
      std::memset(dk + b * T * d, 0, sizeof(float) * T * d);
      std::memset(dv + b * T * d, 0, sizeof(float) * T * d);
      for (long h = 0; h < heads; h++) {
        const long off = h * dh;
        const float* A = att + (b * heads + h) * T * T;
        for (long t = start; t < T; t++) {
          const long qo = (b * T + t) * d + off;
          const float* row = A + t * T;
          float s = 0;
          for (long j = start; j <= t; j++) {
            const long vo = (b * T + j) * d + off;
            dp[j] = dot(dOut + qo, v + vo, dh);
            s += row[j] * dp[j];
            axpy(dv + vo, row[j], dOut + qo, dh);
          }
          for (long j = start; j <= t; j++) {
            const float ds = row[j] * (dp[j] - s) * scale;
            if (ds == 0) continue;
            const long ko = (b * T + j) * d + off;
            axpy(dq + qo, ds, k + ko, dh);
            axpy(dk + ko, ds, q + qo, dh);
          }
        }
      }
    }
  });
}

// Elementwise loops live in functions with __restrict pointers (not in lambdas capturing by reference, where the
// compiler must assume a store can change the captured pointers and gives up vectorizing).
static void relu_fwd_range(float* __restrict out, const float* __restrict x, long i0, long i1) {
  for (long i = i0; i < i1; i++) out[i] = x[i] > 0 ? x[i] : 0.0f;
}
static void relu_bwd_range(float* __restrict dx, const float* __restrict dOut, const float* __restrict x, long i0,
                           long i1) {
  for (long i = i0; i < i1; i++) dx[i] += x[i] > 0 ? dOut[i] : 0.0f;
}
static void relu_fwd(float* out, const float* x, long n) {
  parallel_for(n, n, [=](long i0, long i1) { relu_fwd_range(out, x, i0, i1); });
}
static void relu_bwd(float* dx, const float* dOut, const float* x, long n) {
  parallel_for(n, n, [=](long i0, long i1) { relu_bwd_range(dx, dOut, x, i0, i1); });
}

// GELU, tanh form, written as x * sigmoid(2u) with u = c (x + a x^3), which is 0.5 x (1 + tanh u) without the
// cancellation of 1 + tanh u for negative u.
constexpr float GELU_C = 0.7978845608028654f, GELU_A = 0.044715f;
static void gelu_fwd(float* out, const float* x, long n) {
  parallel_for(n, 20.0 * n, [&](long i0, long i1) {
    long i = i0;
    for (; i + W <= i1; i += W) {
      const vf xv = loadu(x + i);
      const vf u = GELU_C * (xv + GELU_A * xv * xv * xv);
      storeu(out + i, xv / (1.0f + vexp(-2.0f * u)));
    }
    for (; i < i1; i++) {
      const float u = GELU_C * (x[i] + GELU_A * x[i] * x[i] * x[i]);
      out[i] = x[i] / (1.0f + std::exp(std::min(-2.0f * u, 88.3f)));
    }
  });
}
static void gelu_bwd(float* dx, const float* dOut, const float* x, long n) {
  // d/dx [x s(2u)] = s + x * 2 s (1 - s) * c (1 + 3 a x^2)
  parallel_for(n, 25.0 * n, [&](long i0, long i1) {
    long i = i0;
    for (; i + W <= i1; i += W) {
      const vf xv = loadu(x + i);
      const vf u = GELU_C * (xv + GELU_A * xv * xv * xv);
      const vf s = 1.0f / (1.0f + vexp(-2.0f * u));
      const vf g = s + xv * 2.0f * s * (1.0f - s) * GELU_C * (1.0f + 3.0f * GELU_A * xv * xv);
      storeu(dx + i, loadu(dx + i) + loadu(dOut + i) * g);
    }
    for (; i < i1; i++) {
      const float xi = x[i];
      const float u = GELU_C * (xi + GELU_A * xi * xi * xi);
      const float s = 1.0f / (1.0f + std::exp(std::min(-2.0f * u, 88.3f)));
      dx[i] += dOut[i] * (s + xi * 2.0f * s * (1.0f - s) * GELU_C * (1.0f + 3.0f * GELU_A * xi * xi));
    }
  });
}

// Must match dropoutHash in src/kernels/reference.ts bit for bit.
static inline uint32_t fmix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x85ebca6bu;
  x ^= x >> 13;
  x *= 0xc2b2ae35u;
  x ^= x >> 16;
  return x;
}
static void dropout_fwd_range(float* __restrict out, uint8_t* __restrict mask, const float* __restrict x, long i0,
                              long i1, uint32_t s, uint32_t threshold, float keep_scale) {
  for (long i = i0; i < i1; i++) {
    const uint32_t h = fmix(static_cast<uint32_t>(i) * 0x9e3779b1u + s);
    const bool keep = (h >> 8) >= threshold;
    mask[i] = keep;
    out[i] = keep ? x[i] * keep_scale : 0.0f;
  }
}
static void dropout_fwd(float* out, uint8_t* mask, const float* x, long n, double p, uint32_t seed) {
  const uint32_t s = fmix(seed ^ 0x5bd1e995u);
  // keep iff (hash >> 8) / 2^24 >= p  <=>  (hash >> 8) >= ceil(p * 2^24)
  const uint32_t threshold = static_cast<uint32_t>(std::ceil(p * 16777216.0));
  const float keep_scale = static_cast<float>(1.0 / (1.0 - p));
  parallel_for(n, 8.0 * n, [=](long i0, long i1) { dropout_fwd_range(out, mask, x, i0, i1, s, threshold, keep_scale); });
}
static void dropout_bwd_range(float* __restrict dx, const float* __restrict dOut, const uint8_t* __restrict mask,
                              long i0, long i1, float keep_scale) {
  for (long i = i0; i < i1; i++) dx[i] = mask[i] ? dOut[i] * keep_scale : 0.0f;
}
static void dropout_bwd(float* dx, const float* dOut, const uint8_t* mask, long n, double p) {
  const float keep_scale = static_cast<float>(1.0 / (1.0 - p));
  parallel_for(n, n, [=](long i0, long i1) { dropout_bwd_range(dx, dOut, mask, i0, i1, keep_scale); });
}

static void gather(float* out, const float* table, const int32_t* indices, long rows, long d) {
  for (long r = 0; r < rows; r++) std::memcpy(out + r * d, table + static_cast<long>(indices[r]) * d, sizeof(float) * d);
}
static void scatter_add(float* dTable, const float* dOut, const int32_t* indices, long rows, long d) {
  for (long r = 0; r < rows; r++) {
    float* dst = dTable + static_cast<long>(indices[r]) * d;
    const float* src = dOut + r * d;
    for (long p = 0; p < d; p++) dst[p] += src[p];
  }
}

static void adam_range(float* __restrict param, const float* __restrict grad, float* __restrict m,
                       float* __restrict v, long i0, long i1, float b1, float b2, float c1, float c2, float decay,
                       float lr, float eps) {
  for (long i = i0; i < i1; i++) {
    const float g = grad[i];
    const float mi = b1 * m[i] + (1 - b1) * g;
    const float vi = b2 * v[i] + (1 - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] * decay - lr * (mi * c1) / (std::sqrt(vi * c2) + eps);
  }
}
static void adam(float* param, const float* grad, float* m, float* v, long n, double lr, double beta1, double beta2,
                 double eps, double step, double weightDecay) {
  const float b1 = static_cast<float>(beta1), b2 = static_cast<float>(beta2);
  const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(beta1, step)));
  const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(beta2, step)));
  const float decay = static_cast<float>(1.0 - lr * weightDecay);
  const float lrf = static_cast<float>(lr), epsf = static_cast<float>(eps);
  parallel_for(n, 10.0 * n,
               [=](long i0, long i1) { adam_range(param, grad, m, v, i0, i1, b1, b2, c1, c2, decay, lrf, epsf); });
}

// Lazy Adam(W): adam_range on the rows of a compact gradient, then the optional row-norm projection of each row.
static void sparse_adam(float* param, const float* grad, float* m, float* v, const int32_t* rows, long count, long d,
                        double lr, double beta1, double beta2, double eps, double step, double weightDecay,
                        double maxNorm) {
  const float b1 = static_cast<float>(beta1), b2 = static_cast<float>(beta2);
  const float c1 = static_cast<float>(1.0 / (1.0 - std::pow(beta1, step)));
  const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(beta2, step)));
  const float decay = static_cast<float>(1.0 - lr * weightDecay);
  const float lrf = static_cast<float>(lr), epsf = static_cast<float>(eps);
  parallel_for(count, 12.0 * count * d, [=](long u0, long u1) {
    for (long u = u0; u < u1; u++) {
      const long o = static_cast<long>(rows[u]) * d;
      adam_range(param + o, grad + u * d, m + o, v + o, 0, d, b1, b2, c1, c2, decay, lrf, epsf);
      if (maxNorm > 0) {
        float* xr = param + o;
        const double norm = std::sqrt(static_cast<double>(dot(xr, xr, d)));
        if (norm > maxNorm) {
          const float f = static_cast<float>(maxNorm / norm);
          for (long p = 0; p < d; p++) xr[p] *= f;
        }
      }
    }
  });
}

static void clip_rows(float* x, long rows, long d, double maxNorm, long firstRow) {
  if (firstRow >= rows) return;
  parallel_for(rows - firstRow, 3.0 * (rows - firstRow) * d, [&](long r0, long r1) {
    for (long r = firstRow + r0; r < firstRow + r1; r++) {
      float* xr = x + r * d;
      const double norm = std::sqrt(static_cast<double>(dot(xr, xr, d)));
      if (norm > maxNorm) {
        const float f = static_cast<float>(maxNorm / norm);
        for (long p = 0; p < d; p++) xr[p] *= f;
      }
    }
  });
}

// Inserts score x of item j into a row's list os/oi (count entries, at most k, sorted descending; a full list drops
// its last). Equal scores keep the earlier insertion first.
static inline void insert_sorted(int32_t* oi, float* os, long& count, long k, float x, int32_t j) {
  long pos = count < k ? count++ : k - 1;
  while (pos > 0 && x > os[pos - 1]) {
    os[pos] = os[pos - 1];
    oi[pos] = oi[pos - 1];
    pos--;
  }
  os[pos] = x;
  oi[pos] = j;
}

static void topk(int32_t* outIndices, float* outScores, const float* scores, long rows, long n, long k) {
  if (k <= 0) return;
  parallel_for(rows, 2.0 * rows * n, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      int32_t* oi = outIndices + r * k;
      float* os = outScores + r * k;
      const float* s = scores + r * n;
      long count = 0;
      float worst = -INFINITY;  // admission threshold once full
      for (long j = 0; j < n; j++) {
        const float x = s[j];
        if (!(x > -INFINITY)) continue;  // -Infinity and NaN
        if (count == k && !(x > worst)) continue;
        insert_sorted(oi, os, count, k, x, static_cast<int32_t>(j));
        if (count == k) worst = os[k - 1];
      }
      for (long c = count; c < k; c++) {
        os[c] = -INFINITY;
        oi[c] = -1;
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------
// score_topk: exact top-k of `rows` user states (rows x d) against n items packed in panels of PW items (panel p holds
// items p*PW .. p*PW + PW-1 as d rows of PW floats, zero padded), without a rows x n score matrix: a panel's scores
// for a tile of MR rows are computed into a small block that stays in L1, and a row's candidates are only looked at
// when some score of the panel beats its current k-th (one vector compare per 16 scores). Row r considers items
// 0 .. limits[r]-1 with active[item] != 0. Threads take contiguous panel ranges with their own lists, merged in range
// order, so ties keep the lower index as in topk. The item matrix is streamed once per call for the whole batch.
constexpr long PW = 64;

static void score_topk(int32_t* outIndices, float* outScores, const float* states, const float* panels,
                       const uint8_t* active, const int32_t* limits, long rows, long n, long d, long k) {
  if (k <= 0 || rows <= 0) return;
  static_assert(PW % NT == 0, "a panel is a whole number of register tiles");
  long max_limit = 0;
  for (long r = 0; r < rows; r++) max_limit = std::max(max_limit, std::min<long>(std::max(limits[r], 0), n));
  const long npanels = (max_limit + PW - 1) / PW;
  int nthreads = threads_for(2.0 * rows * max_limit * d);
  if (nthreads > npanels) nthreads = static_cast<int>(std::max<long>(1, npanels));
  std::vector<long> counts(static_cast<size_t>(nthreads) * rows, 0);
  std::vector<int32_t*> lists_i(nthreads);
  std::vector<float*> lists_s(nthreads);
  parallel_run(nthreads, [&](int tid, int nt) {
    long p0, p1;
    split_range(npanels, tid, nt, p0, p1);
    // One thread writes the answer in place; several keep private lists for the merge below.
    int32_t* li = nt == 1 ? outIndices
                          : reinterpret_cast<int32_t*>(thread_scratch(5, tid, static_cast<size_t>(rows) * k));
    float* ls = nt == 1 ? outScores : thread_scratch(6, tid, static_cast<size_t>(rows) * k);
    lists_i[tid] = li;
    lists_s[tid] = ls;
    long* count = counts.data() + static_cast<size_t>(tid) * rows;
    alignas(64) float block[MR * PW];
    for (long p = p0; p < p1; p++) {
      const float* panel = panels + p * d * PW;
      const long j0 = p * PW;
      // The matrix streams from memory: ask for the panel after next now, so that its transfer overlaps this
      // panel's products instead of following them (into L2; a panel is d x 256 bytes).
      if (p + 2 < p1) {
        const char* ahead = reinterpret_cast<const char*>(panel + 2 * d * PW);
        for (long line = 0; line < d * PW * 4; line += 64) __builtin_prefetch(ahead + line, 0, 2);
      }
      for (long i0 = 0; i0 < rows; i0 += MR) {
        const int m = static_cast<int>(std::min<long>(MR, rows - i0));
        for (long c0 = 0; c0 < PW; c0 += NT)
          tile_any(m, NVMAX, d, states + i0 * d, d, 1, panel + c0, PW, block + c0, PW, false);
        for (int i = 0; i < m; i++) {
          const long r = i0 + i;
          long end = std::min<long>(std::max(limits[r], 0), n) - j0;
          if (end <= 0) continue;
          if (end > PW) end = PW;
          float* os = ls + r * k;
          int32_t* oi = li + r * k;
          long& c = count[r];
          float worst = c == k ? os[k - 1] : -INFINITY;
          const float* b = block + i * PW;
          vi any = vi{};
          const vf w = splat(worst);
          for (long q = 0; q < PW; q += W) any |= loadu(b + q) > w;
          bool hit = false;
          for (int l = 0; l < W; l++) hit |= any[l] != 0;
          if (!hit) continue;
          for (long q = 0; q < end; q++) {
            const float x = b[q];
            if (!(x > worst) || !active[j0 + q]) continue;  // also skips NaN and -Infinity
            insert_sorted(oi, os, c, k, x, static_cast<int32_t>(j0 + q));
            if (c == k) worst = os[k - 1];
          }
        }
      }
    }
  });
  for (long r = 0; r < rows; r++) {
    int32_t* oi = outIndices + r * k;
    float* os = outScores + r * k;
    long c = counts[r];
    if (nthreads > 1) {
      c = 0;
      for (int t = 0; t < nthreads; t++) {
        const long n_t = counts[static_cast<size_t>(t) * rows + r];
        for (long e = 0; e < n_t; e++) {
          const float x = lists_s[t][r * k + e];
          if (c == k && !(x > os[k - 1])) break;  // each list is sorted, best first
          insert_sorted(oi, os, c, k, x, lists_i[t][r * k + e]);
        }
      }
    }
    for (long e = c; e < k; e++) {
      os[e] = -INFINITY;
      oi[e] = -1;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The int8 first pass (layout, bounds and the proof of exactness: src/kernels/quantized.ts): qtile computes a panel's
// integer dot products for a few requests, scan_quantized (below) keeps per request the running threshold and the
// exact scores of the items that can reach it, score_topk_quantized runs it over the whole catalog.
constexpr long QG = 4;  // values per code group (CODE_GROUP)
constexpr float QTINY = 0x1p-120f;

typedef int32_t viu __attribute__((vector_size(W * 4), aligned(4)));

// out (m x PW int32) = the panel's sums of (code + 128) x query code over dp = 4 G values (generic vector code).
template <int M>
static inline void qtile(long G, const int32_t* qc, long dp, const uint8_t* panel, int32_t* out) {
  for (long c0 = 0; c0 < PW; c0 += NT) {
    vi acc[M][NVMAX];
    for (int i = 0; i < M; i++)
      for (int v = 0; v < NVMAX; v++) acc[i][v] = vi{};
    for (long g = 0; g < G; g++) {
      const uint8_t* grp = panel + g * PW * QG + c0 * QG;
      for (int v = 0; v < NVMAX; v++) {
        const vu x = reinterpret_cast<vu>(*reinterpret_cast<const viu*>(grp + v * W * QG));
        for (int b = 0; b < QG; b++) {
          const vi xb = reinterpret_cast<vi>((x >> (8 * b)) & 255u);
          for (int i = 0; i < M; i++) acc[i][v] += xb * qc[i * dp + g * QG + b];
        }
      }
    }
    for (int i = 0; i < M; i++)
      for (int v = 0; v < NVMAX; v++) *reinterpret_cast<viu*>(out + i * PW + c0 + v * W) = acc[i][v];
  }
}
static void qblock(int m, long G, const int32_t* qc, long dp, const uint8_t* panel, int32_t* out) {
  switch (m) {
#define DR_CASE(M) \
  case M:          \
    if constexpr (M <= MR) qtile<M>(G, qc, dp, panel, out); \
    break;
    DR_CASE(1) DR_CASE(2) DR_CASE(3) DR_CASE(4) DR_CASE(5) DR_CASE(6) DR_CASE(7) DR_CASE(8)
#undef DR_CASE
  }
}

#if DR_W == 16 && defined(__AVX512F__) && defined(__x86_64__)
// The same with AVX-512 VNNI (vpdpbusd: 4 unsigned item bytes x 4 signed query bytes into each 32-bit lane), used
// when the CPU has it (checked at run time; the rest of this file does not assume it).
#define DR_HAS_VNNI_PATH 1
template <int M>
__attribute__((target("avx512vnni"))) static inline void qtile_vnni(long G, const int8_t* qb, long dp,
                                                                     const uint8_t* panel, int32_t* out) {
  __m512i acc[M][4];
  for (int i = 0; i < M; i++)
    for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_si512();
  for (long g = 0; g < G; g++) {
    const uint8_t* grp = panel + g * PW * QG;
    __m512i x[4];
    for (int v = 0; v < 4; v++) x[v] = _mm512_loadu_si512(grp + v * 64);
    // The same lines of the panel 4 ahead, a few per step rather than a whole panel at once: the stream then keeps
    // going while the products run (1M items, one thread: 4 requests 13.5 ms a pass instead of 17.6, 1 request 11.0
    // instead of 13.5; 2, 4 or 8 panels ahead measured alike).
    for (int v = 0; v < 4; v++) __builtin_prefetch(grp + 4 * PW * dp + v * 64, 0, 2);
    for (int i = 0; i < M; i++) {
      int32_t word;
      std::memcpy(&word, qb + i * dp + g * QG, 4);
      const __m512i q = _mm512_set1_epi32(word);
      for (int v = 0; v < 4; v++) acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], x[v], q);
    }
  }
  for (int i = 0; i < M; i++)
    for (int v = 0; v < 4; v++) _mm512_storeu_si512(out + i * PW + v * 16, acc[i][v]);
}
__attribute__((target("avx512vnni"))) static void qblock_vnni(int m, long G, const int8_t* qb, long dp,
                                                               const uint8_t* panel, int32_t* out) {
  switch (m) {
    case 1: qtile_vnni<1>(G, qb, dp, panel, out); break;
    case 2: qtile_vnni<2>(G, qb, dp, panel, out); break;
    case 3: qtile_vnni<3>(G, qb, dp, panel, out); break;
    case 4: qtile_vnni<4>(G, qb, dp, panel, out); break;
    case 5: qtile_vnni<5>(G, qb, dp, panel, out); break;
    case 6: qtile_vnni<6>(G, qb, dp, panel, out); break;
  }
}
static bool has_vnni() {
  static const bool yes = [] {
    __builtin_cpu_init();
    const char* off = std::getenv("DELTAREC_VNNI");  // for tests: 0 = the generic path
    return __builtin_cpu_supports("avx512vnni") && !(off && off[0] == '0');
  }();
  return yes;
}

// The same with AMX (Sapphire Rapids and later: tile registers, `tdpbsud`: a 16 x 64 block of signed query bytes
// times a 64 x 16 block of unsigned item bytes in one instruction), used when the CPU has it and Linux grants this
// process the tile state (checked at run time). 16 query rows at a time (rows beyond the batch are zero codes);
// dp must be a multiple of 64. The panel layout is already the B-tile layout: 16 code groups of 16 items x 4 bytes,
// rows 256 bytes apart.
#define DR_HAS_AMX_PATH 1
static bool has_amx() {
  static const bool yes = [] {
    const char* off = std::getenv("DELTAREC_AMX");  // for tests: 0 = the VNNI or generic path
    if (off && off[0] == '0') return false;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25))) return false;
    constexpr long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
  }();
  return yes;
}
struct alignas(64) TileConfig {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
// Tiles 0-3: the dot products of 16 rows x 16 items (int32); 4: 16 rows x 64 query bytes; 6, 7: 64 x 16 item bytes.
__attribute__((target("amx-tile,amx-int8"))) static void amx_begin() {
  TileConfig config{};
  config.palette = 1;
  for (int t = 0; t < 8; t++) {
    config.colsb[t] = 64;
    config.rows[t] = 16;
  }
  // GCC 12 does not see that ldtilecfg reads the config and drops the stores above without this.
  asm volatile("" : : "r"(&config) : "memory");
  _tile_loadconfig(&config);
}
__attribute__((target("amx-tile,amx-int8"))) static void amx_end() { _tile_release(); }
// out (16 x PW int32, rows PW apart) = the panel's sums of query code x (item code + 128) for 16 query rows
// (qb: 16 rows dp apart).
__attribute__((target("amx-tile,amx-int8"))) static void qblock_amx(long dp, const int8_t* qb, const uint8_t* panel,
                                                                     int32_t* out) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (long kb = 0; kb < dp / 64; kb++) {
    const uint8_t* b = panel + kb * 16 * PW * QG;
    _tile_loadd(4, qb + kb * 64, dp);
    _tile_loadd(6, b, PW * QG);
    _tile_dpbsud(0, 4, 6);
    _tile_loadd(7, b + 64, PW * QG);
    _tile_dpbsud(1, 4, 7);
    _tile_loadd(6, b + 128, PW * QG);
    _tile_dpbsud(2, 4, 6);
    _tile_loadd(7, b + 192, PW * QG);
    _tile_dpbsud(3, 4, 7);
  }
  _tile_stored(0, out, PW * 4);
  _tile_stored(1, out + 16, PW * 4);
  _tile_stored(2, out + 32, PW * 4);
  _tile_stored(3, out + 48, PW * 4);
}
#endif

// One sequential multiply-add chain over p, like a lane of `tile` (so the score equals score_topk's bit for bit):
// fused where the vector code is contracted to FMA (-ffp-contract=fast with FMA hardware), which GCC does not
// always do for this scalar loop, so it is written out.
static inline float exact_score(const float* __restrict q, const float* __restrict x, long d) {
  float s = 0.0f;
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
  for (long p = 0; p < d; p++) s = __builtin_fmaf(q[p], x[p], s);
#else
  for (long p = 0; p < d; p++) s += q[p] * x[p];
#endif
  return s;
}

// Inserts x into a descending list of values (count <= k).
static inline void insert_value(float* list, long& count, long k, float x) {
  long pos = count < k ? count++ : k - 1;
  while (pos > 0 && x > list[pos - 1]) {
    list[pos] = list[pos - 1];
    pos--;
  }
  list[pos] = x;
}

// Inserts score x of item j into a list ranked by score descending, then index ascending (count <= k): the order
// score_topk's item-order scan gives, whatever order the items come in. -Infinity and NaN are never inserted.
static inline void insert_ranked(int32_t* oi, float* os, long& count, long k, float x, int32_t j) {
  if (!(x > -INFINITY) || (count == k && !(x > os[k - 1] || (x == os[k - 1] && j < oi[k - 1])))) return;
  long pos = count < k ? count++ : k - 1;
  while (pos > 0 && (x > os[pos - 1] || (x == os[pos - 1] && j < oi[pos - 1]))) {
    os[pos] = os[pos - 1];
    oi[pos] = oi[pos - 1];
    pos--;
  }
  os[pos] = x;
  oi[pos] = j;
}

// Query codes of user states (quantizeQuery in quantized.ts): t, ||q||, ||q - q^||, the sum of the codes; the codes
// as int8 (VNNI) and as int32 (generic code).
struct QueryCodes {
  std::vector<int8_t> b8;
  std::vector<int32_t> b32;
  std::vector<float> t, norm, err, extra;
  std::vector<int32_t> sum;
};
static void quantize_queries(const float* states, long rows, long d, long dp, QueryCodes& q) {
  const float slack = static_cast<float>((d + 16) * std::ldexp(1.0, -22));
  q.b8.assign(static_cast<size_t>((rows + 15) / 16 * 16) * dp, 0);  // whole AMX tiles of 16 rows
  q.b32.assign(static_cast<size_t>(rows) * dp, 0);
  q.t.assign(rows, 0);
  q.norm.assign(rows, 0);
  q.err.assign(rows, 0);
  q.extra.assign(rows, 0);
  q.sum.assign(rows, 0);
  for (long r = 0; r < rows; r++) {
    const float* s = states + r * d;
    double max = 0;
    for (long p = 0; p < d; p++) max = std::max(max, std::fabs(static_cast<double>(s[p])));
    if (!std::isfinite(max)) {
      q.t[r] = 0;
      q.norm[r] = q.err[r] = INFINITY;
    } else {
      const float t = static_cast<float>(max / 127);
      double norm = 0, err = 0;
      long sum = 0;
      for (long p = 0; p < d; p++) {
        const double b = t > 0 ? std::min(127.0, std::max(-127.0, std::floor(s[p] / static_cast<double>(t) + 0.5))) : 0;
        q.b8[r * dp + p] = static_cast<int8_t>(b);
        q.b32[r * dp + p] = static_cast<int32_t>(b);
        sum += static_cast<long>(b);
        norm += static_cast<double>(s[p]) * s[p];
        const double e = s[p] - static_cast<double>(t) * b;
        err += e * e;
      }
      q.t[r] = t;
      q.norm[r] = static_cast<float>(std::sqrt(norm));
      q.err[r] = static_cast<float>(std::sqrt(err));
      q.sum[r] = static_cast<int32_t>(sum);
    }
    q.extra[r] = slack * (q.norm[r] + q.err[r]);
  }
}

// The bounds' arithmetic (itemBounds in quantized.ts), in separate float operations, never contracted into FMAs:
// each operation's result then only grows when its operands grow (rounding is monotone), which the panel-wide test
// below relies on. dot: sum of item code x query code (without the +128 offset); ts = t s_j.
__attribute__((optimize("fp-contract=off"))) static void item_bounds(int32_t dot, float ts, float res, float nrm,
                                                                     float qn, float qe, float qx, float wide,
                                                                     float& lb, float& ub) {
  const float a = static_cast<float>(dot) * ts;
  const float e = ((qn * res + qe * nrm) + qx * (nrm + res)) + QTINY;
  lb = a - e;
  ub = a + e;
  // (||q|| + ||q - q^||) (norms + residuals) >= ||q|| ||x|| bounds every product and partial sum of the exact
  // score; below 2^126 none overflows (else the item gets no bounds).
  if (!((nrm + res) < wide) || lb != lb) lb = -INFINITY;
  if (!((nrm + res) < wide) || ub != ub) ub = INFINITY;
}
// e of item_bounds for a panel's largest residual and norm: >= every item's e (same operations, larger operands).
__attribute__((optimize("fp-contract=off"))) static float panel_error(float qn, float qe, float qx, float rmax,
                                                                      float nmax) {
  return ((qn * rmax + qe * nmax) + qx * (nmax + rmax)) + QTINY;
}
// The panel-wide test of one request against a panel: per item, a as item_bounds computes it, plus E (>= every
// item's e: panel_error), so a + E < worst implies ub < worst (and lb < worst) for that item. reach[e] = -1 for the
// items that may reach `worst` (NaN counts as reaching), 0 for the others; returns whether any may.
__attribute__((optimize("fp-contract=off"))) static bool panel_reaches(const int32_t* dots, int32_t offset, float tq,
                                                                       const float* scales, float E, float worst,
                                                                       int32_t* reach) {
  vi any = vi{};
  for (long c = 0; c < PW; c += W) {
    const vf a = __builtin_convertvector(*reinterpret_cast<const viu*>(dots + c) - offset, vf) * (tq * loadu(scales + c));
    const vi m = ~((a + E) < worst);
    *reinterpret_cast<viu*>(reach + c) = m;
    any |= m;
  }
  bool hit = false;
  for (int l = 0; l < W; l++) hit |= any[l] != 0;
  return hit;
}

// scan_quantized: one step of score_topk_quantized over items from .. to - 1, for requests whose state persists
// between calls (the shared scan of the scoring worker, src/serve/scan.ts; score_topk_quantized is one call over the
// whole catalog). Per row r, with k_r = offsets[r+1] - offsets[r]:
//   lower[offsets[r] ..], lowerCount[r]: the k_r largest lower bounds seen so far, descending (its k_r-th, once
//     full, is the running threshold w: a lower bound of the final t);
//   outIndices / outScores [offsets[r] ..], outCount[r]: the best exact scores so far, ranked by score, then index;
//   outCandidates[r]: items scored exactly so far.
// Each eligible item (j < limits[r], active) of the range gets its bounds; its lb joins `lower` when it beats w, and
// it is kept while ub >= w; at the end of the call the kept items with ub >= w (w as it stands then) are scored
// exactly (exact_score: score_topk's arithmetic) and join the exact list. Since w only rises and never exceeds t,
// every item with ub >= t is scored, in whatever order the ranges come, so once every item has been covered the
// exact list is score_topk's answer (the proof: quantized.ts).
// Panel-wide test first (panel_reaches): each item's approximate score plus the largest error bound of its panel
// (from the panel's largest residual and norm), against w: this discards nearly every item at a few vector
// operations per 16 items and request; only the others get their own bounds (item_bounds).
// Threads take contiguous ranges of panels, each with its own lists (starting empty, admitting against the larger
// of the row's shared w and its own), merged into the row's lists at the end.
static void scan_quantized(float* lower, int32_t* lowerCount, int32_t* outIndices, float* outScores,
                           int32_t* outCount, int32_t* outCandidates, const int32_t* offsets, const float* states,
                           const uint8_t* codes, const float* scales, const float* residuals, const float* norms,
                           const float* items, const uint8_t* active, const int32_t* limits, long rows, long n, long d,
                           long from, long to) {
  if (rows <= 0 || from >= to) return;
  const long dp = (d + QG - 1) / QG * QG, G = dp / QG;
  QueryCodes qs;
  quantize_queries(states, rows, d, dp, qs);
  long end_item = from;
  for (long r = 0; r < rows; r++)
    if (offsets[r + 1] > offsets[r]) end_item = std::max(end_item, std::min<long>({std::max(limits[r], 0), n, to}));
  if (end_item <= from) return;
  const long p_first = from / PW, npanels = (end_item + PW - 1) / PW - p_first;
  int nthreads = threads_for(0.5 * rows * (end_item - from) * d);
  if (nthreads > npanels) nthreads = static_cast<int>(std::max<long>(1, npanels));
  const long total = offsets[rows];
  std::vector<float> t_lower(static_cast<size_t>(nthreads) * total);
  std::vector<long> t_lcount(static_cast<size_t>(nthreads) * rows, 0);
  // Per thread and row: the kept items and their upper bounds, in item order.
  std::vector<std::vector<int32_t>> kept_item(static_cast<size_t>(nthreads) * rows);
  std::vector<std::vector<float>> kept_ub(static_cast<size_t>(nthreads) * rows);
#if defined(DR_HAS_VNNI_PATH)
  const bool vnni = has_vnni();
  // From 12 rows on: below, AMX's fixed cost per panel (16 rows computed, 4 KB of products stored) outweighs its
  // faster products (1M items x d = 128, one thread, against VNNI with its interleaved prefetch: 20.6 against
  // 17.4 ms for 8 rows, equal for 12, 24.2 against 26.4 for 16).
  const bool amx = rows >= 12 && dp % 64 == 0 && has_amx();
#else
  const bool vnni = false, amx = false;
#endif
  // Query rows per register tile: 16 for AMX.
  const long tile_rows = amx ? 16 : MR;
  parallel_run(nthreads, [&](int tid, int nt) {
    long p0, p1;
    split_range(npanels, tid, nt, p0, p1);
    p0 += p_first;
    p1 += p_first;
#if defined(DR_HAS_AMX_PATH)
    if (amx) amx_begin();
#endif
    float* lists = t_lower.data() + static_cast<size_t>(tid) * total;
    long* lcount = t_lcount.data() + static_cast<size_t>(tid) * rows;
    alignas(64) int32_t block[16 * PW];
    alignas(64) int32_t reach[PW];
    for (long p = p0; p < p1; p++) {
      const uint8_t* panel = codes + p * PW * dp;
      const long j0 = p * PW;
      if (!(vnni && !amx) && p + 2 < p1) {  // (qtile_vnni prefetches as it goes)
        const char* ahead = reinterpret_cast<const char*>(panel + 2 * PW * dp);
        for (long line = 0; line < PW * dp; line += 64) __builtin_prefetch(ahead + line, 0, 2);
      }
      // The panel's largest residual and norm; a NaN or infinite one (a non-finite row, padding that holds
      // anything) turns the panel-wide test off (E = Infinity: every item is looked at).
      vf rmax = vf{}, nmax = vf{};
      vi bad = vi{};
      for (long c = 0; c < PW; c += W) {
        const vf res = loadu(residuals + j0 + c), nrm = loadu(norms + j0 + c);
        bad |= ~((res == res) & (nrm == nrm));
        rmax = vmax(rmax, res);
        nmax = vmax(nmax, nrm);
      }
      float r_hi = 0, n_hi = 0;
      bool finite = true;
      for (int l = 0; l < W; l++) {
        r_hi = std::max(r_hi, rmax[l]);
        n_hi = std::max(n_hi, nmax[l]);
        finite &= bad[l] == 0;
      }
      finite &= r_hi < INFINITY && n_hi < INFINITY;
      for (long i0 = 0; i0 < rows; i0 += tile_rows) {
        const int m = static_cast<int>(std::min<long>(tile_rows, rows - i0));
        bool needed = false;
        for (int i = 0; i < m; i++) needed |= std::min<long>(std::max(limits[i0 + i], 0), n) > j0;
        if (!needed) continue;
#if defined(DR_HAS_AMX_PATH)
        if (amx)
          qblock_amx(dp, qs.b8.data() + i0 * dp, panel, block);
        else
#endif
#if defined(DR_HAS_VNNI_PATH)
        if (vnni)
          qblock_vnni(m, G, qs.b8.data() + i0 * dp, dp, panel, block);
        else
#endif
          qblock(m, G, qs.b32.data() + i0 * dp, dp, panel, block);
        for (int i = 0; i < m; i++) {
          const long r = i0 + i;
          const long k = offsets[r + 1] - offsets[r];
          long end = std::min<long>({std::max(limits[r], 0), n, to}) - j0;
          if (end <= 0 || k == 0) continue;
          if (end > PW) end = PW;
          float* list = lists + offsets[r];
          const float shared = lowerCount[r] == k ? lower[offsets[r] + k - 1] : -INFINITY;
          float worst = lcount[r] == k ? std::max(list[k - 1], shared) : shared;
          const float qn = qs.norm[r], qe = qs.err[r], qx = qs.extra[r], tq = qs.t[r];
          const int32_t offset = 128 * qs.sum[r];
          const float wide = 0x1p126f / (qn + qe);
          const int32_t* dots = block + i * PW;
          const float E = finite && (n_hi + r_hi) < wide ? panel_error(qn, qe, qx, r_hi, n_hi) : INFINITY;
          if (!panel_reaches(dots, offset, tq, scales + j0, E, worst, reach)) continue;
          auto& items_kept = kept_item[static_cast<size_t>(tid) * rows + r];
          auto& ubs_kept = kept_ub[static_cast<size_t>(tid) * rows + r];
          for (long e = 0; e < end; e++) {
            if (!reach[e]) continue;
            const long j = j0 + e;
            if (!active[j]) continue;
            float lb, ub;
            item_bounds(dots[e] - offset, tq * scales[j], residuals[j], norms[j], qn, qe, qx, wide, lb, ub);
            if (lb > worst) {
              insert_value(list, lcount[r], k, lb);
              if (lcount[r] == k) worst = std::max(list[k - 1], shared);
            }
            if (ub >= worst) {
              items_kept.push_back(static_cast<int32_t>(j));
              ubs_kept.push_back(ub);
            }
          }
          // Drop what the risen threshold excludes once the list is long (amortized: it at least halves).
          if (static_cast<long>(items_kept.size()) > 4 * k + 1024) {
            size_t w = 0;
            for (size_t e = 0; e < items_kept.size(); e++)
              if (ubs_kept[e] >= worst) {
                items_kept[w] = items_kept[e];
                ubs_kept[w++] = ubs_kept[e];
              }
            items_kept.resize(w);
            ubs_kept.resize(w);
          }
        }
      }
    }
#if defined(DR_HAS_AMX_PATH)
    if (amx) amx_end();
#endif
  });
  for (long r = 0; r < rows; r++) {
    const long k = offsets[r + 1] - offsets[r];
    long lc = lowerCount[r], c = outCount[r];
    float* list = lower + offsets[r];
    for (int t = 0; t < nthreads; t++) {
      const size_t slot = static_cast<size_t>(t) * rows + r, base = static_cast<size_t>(t) * total + offsets[r];
      for (long e = 0; e < t_lcount[slot]; e++) {
        const float x = t_lower[base + e];
        if (lc == k && !(x > list[k - 1])) break;  // each list is sorted, best first
        insert_value(list, lc, k, x);
      }
    }
    const float worst = k > 0 && lc == k ? list[k - 1] : -INFINITY;
    const float* q = states + r * d;
    for (int t = 0; t < nthreads; t++) {
      const size_t slot = static_cast<size_t>(t) * rows + r;
      for (size_t e = 0; e < kept_item[slot].size(); e++) {
        if (!(kept_ub[slot][e] >= worst)) continue;
        outCandidates[r]++;
        const int32_t j = kept_item[slot][e];
        insert_ranked(outIndices + offsets[r], outScores + offsets[r], c, k, exact_score(q, items + j * d, d), j);
      }
    }
    lowerCount[r] = static_cast<int32_t>(lc);
    outCount[r] = static_cast<int32_t>(c);
  }
}

// score_topk_quantized: score_topk's exact answer with an int8 first pass: scan_quantized over the whole catalog
// from empty lists, the lists then padded (-Infinity, index -1) to k.
static void score_topk_quantized(int32_t* outIndices, float* outScores, int32_t* outCandidates, const float* states,
                                 const uint8_t* codes, const float* scales, const float* residuals, const float* norms,
                                 const float* items, const uint8_t* active, const int32_t* limits, long rows, long n,
                                 long d, long k) {
  if (k <= 0 || rows <= 0) return;
  std::vector<float> lower(static_cast<size_t>(rows) * k);
  std::vector<int32_t> lower_count(rows, 0), count(rows, 0), offsets(rows + 1);
  for (long r = 0; r <= rows; r++) offsets[r] = static_cast<int32_t>(r * k);
  for (long r = 0; r < rows; r++) outCandidates[r] = 0;
  scan_quantized(lower.data(), lower_count.data(), outIndices, outScores, count.data(), outCandidates, offsets.data(),
                 states, codes, scales, residuals, norms, items, active, limits, rows, n, d, 0, n);
  for (long r = 0; r < rows; r++)
    for (long e = count[r]; e < k; e++) {
      outScores[r * k + e] = -INFINITY;
      outIndices[r * k + e] = -1;
    }
}

// quantize_items: the int8 copy of rows from .. to - 1 (quantizeRow in src/kernels/quantized.ts, the reference, which
// this matches bit for bit: the same double operations in the same order, none contracted into an FMA).
__attribute__((optimize("fp-contract=off"))) static void quantize_items(uint8_t* codes, float* scales,
                                                                         float* residuals, float* norms,
                                                                         const float* matrix, long from, long to,
                                                                         long d) {
  const long dp = (d + QG - 1) / QG * QG, stride = PW * QG;
  for (long j = from; j < to; j++) {
    const float* row = matrix + j * d;
    double max = 0;
    for (long p = 0; p < d; p++) {
      const double x = row[p];
      if (x > max) max = x;
      else if (-x > max) max = -x;
      else if (x != x) max = NAN;
    }
    uint8_t* base = codes + (j / PW) * PW * dp + (j % PW) * QG;
    if (!(max < INFINITY)) {
      for (long p = 0; p < dp; p++) base[(p >> 2) * stride + (p & 3)] = 128;
      scales[j] = NAN;
      residuals[j] = norms[j] = INFINITY;
      continue;
    }
    const float scale = static_cast<float>(max / 127);
    const double inverse = scale > 0 ? 1 / static_cast<double>(scale) : 0;
    double residual = 0, norm = 0;
    for (long p = 0; p < dp; p++) {
      const double x = p < d ? row[p] : 0;
      double c = std::floor(x * inverse + 0.5);
      c = c > 127 ? 127 : c < -127 ? -127 : c;
      base[(p >> 2) * stride + (p & 3)] = static_cast<uint8_t>(c + 128);
      const double q = static_cast<double>(scale) * c;
      residual += (x - q) * (x - q);
      norm += q * q;
    }
    scales[j] = scale;
    residuals[j] = static_cast<float>(std::sqrt(residual));
    norms[j] = static_cast<float>(std::sqrt(norm));
  }
}

static double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Floating-point operations per second of this thread's CPU time, measured for `seconds` of it.
static double fma_loop(double seconds) {
  constexpr int CHAINS = 2 * 4 * 2;  // enough independent chains to cover FMA latency on two ports
  vf acc[CHAINS];
  for (int c = 0; c < CHAINS; c++) acc[c] = splat(1.0f + c * 1e-3f);
  const vf mul = splat(0.999999f), add = splat(1e-6f);
  const long inner = 1 << 16;
  double ops = 0;
  // Timed on this thread's CPU clock, so that time the scheduler gives to other processes is not counted and the
  // rate is the core's peak even on a loaded machine.
  const double start = thread_cpu_seconds();
  double used = 0;
  do {
    for (long it = 0; it < inner; it++) {
#pragma GCC unroll 16
      for (int c = 0; c < CHAINS; c++) acc[c] = acc[c] * mul + add;
    }
    ops += 2.0 * W * CHAINS * inner;
    used = thread_cpu_seconds() - start;
  } while (used < seconds);
  float sink = 0;
  for (int c = 0; c < CHAINS; c++) sink += hsum(acc[c]);
  volatile float keep = sink;
  (void)keep;
  return ops / used;
}

}  // namespace DR_NAMESPACE

const KernelTable* DR_TABLE_FN() {
  using namespace DR_NAMESPACE;
  static const KernelTable table = {
      DR_ISA_NAME,   matmul,        softmax_ce, layernorm_fwd, layernorm_bwd, attention_fwd,
      attention_bwd, relu_fwd,      relu_bwd,   gelu_fwd,      gelu_bwd,      dropout_fwd,
      dropout_bwd,   gather,        scatter_add, adam,         clip_rows,     topk,
      fma_loop,      sampled_loss,  sparse_adam,   score_topk,
      score_topk_quantized, quantize_items, scan_quantized,
  };
  return &table;
}

}  // namespace deltarec
