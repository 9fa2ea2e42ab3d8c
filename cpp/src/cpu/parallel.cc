// A small persistent thread pool. Why our own: kernels are short (a GEMV is microseconds), so
// waking threads must be cheap (workers spin briefly before sleeping), the split must be static
// and deterministic, and the core must not depend on OpenMP or torch's pool.
//
// Chunks are fixed ([i*n/c, (i+1)*n/c)) but CLAIMED dynamically: the caller and the workers take
// the next unclaimed chunk from one atomic counter. Which thread runs a chunk never changes what
// it computes, so results stay identical for any thread count, and the caller never waits for a
// worker that has not been scheduled yet (on a busy machine, or next to torch's spinning OpenMP
// threads): it simply runs the unclaimed chunks itself. Only chunks a worker already started are
// waited for.
#include "edgepack/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace edgepack {
namespace {

thread_local bool t_in_parallel = false;

// How long an idle worker spins before it sleeps on the condition variable: long enough to
// catch the next kernel of a layer sequence, short enough not to steal a core for long.
constexpr auto kSpin = std::chrono::microseconds(200);

inline void cpu_relax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

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
    // At most one chunk per thread (threads_ >= 1: set_num_threads refuses less); chunks are
    // claimed dynamically, so the split never depends on which thread runs first.
    std::size_t chunks =
        std::min<std::size_t>(static_cast<std::size_t>(threads_), (n + grain - 1) / grain);
    std::unique_lock<std::mutex> run_lock(run_mu_, std::try_to_lock);
    if (chunks <= 1 || t_in_parallel || !run_lock.owns_lock()) {
      fn(0, n);
      return;
    }
    start_workers();
    job_ = &fn;
    job_n_ = n;
    job_chunks_ = chunks;
    errors_.assign(chunks, nullptr);
    done_.store(0, std::memory_order_relaxed);
    // Publish the job: the claim word carries the generation, so a worker that wakes late can
    // never claim a chunk of a job other than the one it was woken for.
    const uint64_t gen = generation_.load(std::memory_order_relaxed) + 1;
    claim_.store(gen << 32, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lk(mu_);
      generation_.store(gen, std::memory_order_release);
    }
    cv_.notify_all();
    work(gen);
    while (done_.load(std::memory_order_acquire) != chunks) std::this_thread::yield();
    job_ = nullptr;
    for (auto& e : errors_)
      if (e) std::rethrow_exception(e);
  }

 private:
  // Claims and runs chunks of job `gen` until none is left.
  void work(uint64_t gen) {
    for (;;) {
      uint64_t c = claim_.load(std::memory_order_acquire);
      std::size_t i;
      do {
        if ((c >> 32) != gen) return;
        i = static_cast<std::size_t>(c & 0xffffffffu);
        if (i >= job_chunks_) return;
      } while (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel));
      run_chunk(i);
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

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

  // `seen` is the generation at creation: a worker that starts late must still take part in the
  // job published right after it was created.
  void worker(uint64_t seen) {
    for (;;) {
      uint64_t g = generation_.load(std::memory_order_acquire);
      const auto until = std::chrono::steady_clock::now() + kSpin;
      for (int spin = 0; g == seen && !stop_.load(std::memory_order_relaxed); ++spin) {
        cpu_relax();
        g = generation_.load(std::memory_order_acquire);
        if ((spin & 63) == 63 && std::chrono::steady_clock::now() > until) break;
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
      work(g);
    }
  }

  void start_workers() {
    if (static_cast<int>(workers_.size()) == threads_ - 1) return;
    stop_workers();
    stop_.store(false);
    const uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int i = 1; i < threads_; ++i) workers_.emplace_back(&Pool::worker, this, gen);
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
  std::atomic<uint64_t> claim_{0};  // (generation << 32) | next unclaimed chunk
  std::atomic<std::size_t> done_{0};
  std::atomic<bool> stop_{false};
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
