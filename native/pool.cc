#include "pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace deltarec {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// How long an idle worker spins before sleeping.
constexpr auto kSpin = std::chrono::microseconds(200);

class Pool {
 public:
  explicit Pool(int size) : size_(size) {
    for (int t = 1; t < size_; t++) workers_.emplace_back([this, t] { worker(t); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int size() const { return size_; }

  void run(int nthreads, const std::function<void(int, int)>& fn) {
    std::lock_guard<std::mutex> serial(run_mu_);
    if (nthreads > size_) nthreads = size_;
    if (nthreads <= 1) {
      active_ = 1;
      fn(0, 1);
      return;
    }
    job_ = &fn;
    active_ = nthreads;
    barrier_count_.store(0);
    pending_.store(nthreads - 1);
    {
      std::lock_guard<std::mutex> lock(mu_);
      generation_.fetch_add(1, std::memory_order_release);
      if (sleepers_ > 0) cv_.notify_all();
    }
    fn(0, nthreads);
    // Spin briefly, then yield: on a loaded machine the worker we wait for may need this core.
    for (long spins = 0; pending_.load(std::memory_order_acquire) > 0; spins++) {
      if (spins < 4000) cpu_relax();
      else std::this_thread::yield();
    }
    job_ = nullptr;
  }

  void barrier() {
    if (active_ <= 1) return;
    int phase = barrier_phase_.load(std::memory_order_acquire);
    if (barrier_count_.fetch_add(1, std::memory_order_acq_rel) + 1 == active_) {
      barrier_count_.store(0, std::memory_order_relaxed);
      barrier_phase_.fetch_add(1, std::memory_order_release);
      return;
    }
    long spins = 0;
    while (barrier_phase_.load(std::memory_order_acquire) == phase) {
      if (++spins < 4000) cpu_relax();
      else std::this_thread::yield();
    }
  }

 private:
  void worker(int tid) {
    unsigned long seen = 0;
    for (;;) {
      auto start = std::chrono::steady_clock::now();
      long spins = 0;
      while (generation_.load(std::memory_order_acquire) == seen) {
        cpu_relax();
        if ((++spins & 1023) == 0 && std::chrono::steady_clock::now() - start > kSpin) {
          std::unique_lock<std::mutex> lock(mu_);
          sleepers_++;
          cv_.wait(lock, [&] { return generation_.load() != seen; });
          sleepers_--;
          break;
        }
      }
      if (stop_) return;
      seen = generation_.load(std::memory_order_acquire);
      if (tid < active_) {
        (*job_)(tid, active_);
        pending_.fetch_sub(1, std::memory_order_release);
      }
    }
  }

  int size_;
  std::vector<std::thread> workers_;
  std::mutex run_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  int sleepers_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<unsigned long> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> barrier_count_{0};
  std::atomic<int> barrier_phase_{0};
  const std::function<void(int, int)>* job_ = nullptr;
  int active_ = 1;
};

int configured_size() {
  const char* env = std::getenv("DELTAREC_THREADS");
  int n = env ? std::atoi(env) : 0;
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  return n > 64 ? 64 : n;
}

Pool& pool() {
  // Leaked on purpose: joining threads during process exit (static destructors) can deadlock in Node.
  static Pool* p = new Pool(configured_size());
  return *p;
}

}  // namespace

int pool_size() { return pool().size(); }
void parallel_run(int nthreads, const std::function<void(int, int)>& fn) { pool().run(nthreads, fn); }
void pool_barrier() { pool().barrier(); }

}  // namespace deltarec
