// Persistent worker pool shared by all kernels. The calling thread is worker 0; the others spin briefly after a job
// (kernels come back to back within a training step) and then sleep on a condition variable.
#pragma once
#include <functional>

namespace deltarec {

// Threads available (workers + caller), from hardware_concurrency or env DELTAREC_THREADS.
int pool_size();

// Runs fn(tid, nthreads) on nthreads threads (clamped to pool_size()), tid 0 on the caller; returns when all finish.
// Calls are serialized by a mutex: the pool and the kernels' scratch buffers are not reentrant.
void parallel_run(int nthreads, const std::function<void(int tid, int nthreads)>& fn);

// Spin barrier across the threads of the current parallel_run.
void pool_barrier();

// Splits [0, n) into nthreads contiguous ranges; returns range tid.
inline void split_range(long n, int tid, int nthreads, long& begin, long& end) {
  long q = n / nthreads, r = n % nthreads;
  begin = tid * q + (tid < r ? tid : r);
  end = begin + q + (tid < r ? 1 : 0);
}

}  // namespace deltarec
