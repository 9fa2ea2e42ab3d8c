// The library's own thread pool. Work is split statically into contiguous ranges, so which
// thread computes an output never changes what it computes: results are identical for any
// thread count.
#pragma once

#include <cstddef>
#include <functional>

namespace edgepack {

// Number of threads kernels may use (including the caller). Default: hardware concurrency.
int get_num_threads();
// n >= 1. Throws std::invalid_argument otherwise.
void set_num_threads(int n);

// Calls fn(begin, end) over disjoint ranges covering [0, n). Ranges hold at least `grain` items
// (except possibly the last), so tiny problems stay on the calling thread. Nested calls and calls
// made while the pool is busy run serially on the caller. Exceptions thrown by fn are rethrown
// on the caller.
void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& fn);

}  // namespace edgepack
