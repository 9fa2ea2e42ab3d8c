// Optional two-panel micro-kernels, an internal extension of the gemm.h contract: same
// signature and A/B formats as GemmUkernelFn, but each call computes 32 columns, the panel at
// b_panel and the next one (b_panel + 16 * kp, adjacent in the packed buffer), into
// c[m * ldc + n] for n < 32. One A broadcast then feeds two vpdpbusd (or sdot) instead of one,
// which relieves the load ports. The driver uses the entry whose ISA and A format match the
// dispatched GemmKernels, and the one-panel kernel for an odd last panel; ISAs without an entry
// simply run one panel per call.
#pragma once

#include <cstddef>
#include <vector>

#include "edgepack/gemm.h"

namespace edgepack {

// Optional session hooks (nullptr: none). Between begin() and end() on one thread, ukernel2 may
// keep per-thread state across calls (AMX keeps its tile configuration instead of loading and
// releasing it on every call: ~100 ns per call, 10% of a 128x1024x1024 GEMM). Only the kernel's
// own calls may run on that thread inside a session; end() restores the initial state.
using GemmSessionFn = void (*)();

struct GemmWideKernels {
  const char* name;  // for reports and tests ("avx512vnni", "amx")
  Isa isa;
  AFormat a_format;
  std::size_t max_mr;
  GemmUkernelFn ukernel2;
  GemmSessionFn session_begin = nullptr;
  GemmSessionFn session_end = nullptr;
};

// RAII bracket for a session of `w` (no-op when it has no hooks).
class GemmWideSession {
 public:
  explicit GemmWideSession(const GemmWideKernels* w) : w_(w) {
    if (w_ && w_->session_begin) w_->session_begin();
  }
  ~GemmWideSession() {
    if (w_ && w_->session_end) w_->session_end();
  }
  GemmWideSession(const GemmWideSession&) = delete;
  GemmWideSession& operator=(const GemmWideSession&) = delete;

 private:
  const GemmWideKernels* w_;
};

const std::vector<GemmWideKernels>& gemm_wide_kernel_list();
// The wide kernel that matches gk (same ISA and A format), or nullptr.
const GemmWideKernels* gemm_wide_for(const GemmKernels& gk);

}  // namespace edgepack
