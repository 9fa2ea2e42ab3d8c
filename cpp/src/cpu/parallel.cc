// A small persistent thread pool. Why our own: kernels are short (a GEMV is microseconds), so
// waking threads must be cheap (workers spin briefly before sleeping), the split must be static
// and deterministic, and the core must not depend on OpenMP or torch's pool.
#include "edgepack/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace edgepack {
namespace {

thread_local bool t_in_parallel = false;

class Pool {
 public:
  Pool() {
    unsigned hc = std::thread::hardware_concurrency();
    threads_ = hc == 0 ? 1 : static_cast<int>(hc);
  }
  ~Pool() { stop_workers(); }

  int threads() const { return threads_; }

  void set_threads(int n) {
    std::lock_guard<std::mutex> run_lock(run_mu_);
    stop_workers();
    threads_ = n;
  }

  void run(std::size_t n, std::size_t grain,
           const std::function<void(std::size_t, std::size_t)>& fn) {
    if (n == 0) return;
    grain = std::max<std::size_t>(grain, 1);
    std::size_t chunks = std::min<std::size_t>(threads_, (n + grain - 1) / grain);
    std::unique_lock<std::mutex> run_lock(run_mu_, std::try_to_lock);
    if (chunks <= 1 || t_in_parallel || !run_lock.owns_lock()) {
      fn(0, n);
      return;
    }
    start_workers();
    chunks = std::min<std::size_t>(chunks, workers_.size() + 1);
    // Static, even split: chunk i covers [i*n/chunks, (i+1)*n/chunks).
    job_ = &fn;
    job_n_ = n;
    job_chunks_ = chunks;
    errors_.assign(chunks, nullptr);
    pending_.store(static_cast<int>(chunks - 1), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(mu_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    run_chunk(0);
    while (pending_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    job_ = nullptr;
    for (auto& e : errors_)
      if (e) std::rethrow_exception(e);
  }

 private:
  void run_chunk(std::size_t i) {
    const std::size_t b = i * job_n_ / job_chunks_, e = (i + 1) * job_n_ / job_chunks_;
    bool prev = t_in_parallel;
    t_in_parallel = true;
    try {
      if (b < e) (*job_)(b, e);
    } catch (...) {
      errors_[i] = std::current_exception();
    }
    t_in_parallel = prev;
  }

  // `seen` is the generation at creation: a worker that starts late must still run the job
  // published right after it was created.
  void worker(std::size_t idx, uint64_t seen) {
    for (;;) {
      // Spin a little: back-to-back kernel calls then avoid a futex wake-up.
      uint64_t g = seen;
      for (int spin = 0; spin < 20000; ++spin) {
        g = generation_.load(std::memory_order_acquire);
        if (g != seen || stop_.load(std::memory_order_relaxed)) break;
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] {
          return generation_.load(std::memory_order_acquire) != seen ||
                 stop_.load(std::memory_order_relaxed);
        });
        g = generation_.load(std::memory_order_acquire);
      }
      if (stop_.load(std::memory_order_relaxed)) return;
      seen = g;
      if (idx < job_chunks_) {
        run_chunk(idx);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  void start_workers() {
    if (static_cast<int>(workers_.size()) == threads_ - 1) return;
    stop_workers();
    stop_.store(false);
    const uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int i = 1; i < threads_; ++i)
      workers_.emplace_back(&Pool::worker, this, static_cast<std::size_t>(i), gen);
  }

  void stop_workers() {
    if (workers_.empty()) return;
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_.store(true);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // one parallel region at a time; others run serially
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> pending_{0};
  const std::function<void(std::size_t, std::size_t)>* job_ = nullptr;
  std::size_t job_n_ = 0, job_chunks_ = 0;
  std::vector<std::exception_ptr> errors_;
};

Pool& pool() {
  static Pool* p = new Pool();  // leaked on purpose: no join during static destruction
  return *p;
}

}  // namespace

int get_num_threads() { return pool().threads(); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
  pool().set_threads(n);
}

void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& fn) {
  pool().run(n, grain, fn);
}

}  // namespace edgepack
