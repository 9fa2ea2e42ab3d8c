// AMX-INT8 two-panel micro-kernel (gemm_wide.h): 16 rows x 32 columns. Exact.
//
// Why it fits: an AMX B tile for tdpbusd is K/4 rows of [n][4 k] bytes, which is exactly a run of
// 16 c4n16 groups (1 KiB, contiguous, row stride 64): panels load as tiles with no repacking. An
// A tile is 16 rows x 64 bytes straight from the A rows (stride lda). tdpbusd multiplies u8 (A)
// by s8 (B) and accumulates groups of four products into int32 C tiles without saturation, so
// the result equals the VNNI and reference kernels bit for bit (AFormat::kU8).
// Per 64 k: one A tile, two B tiles, two tdpbusd into two 16x16 int32 C tiles (measured ~2.7x the
// AVX-512 VNNI 8x32 kernel here; a 32x32 variant was slower). K beyond the last full 64 and tiles
// of fewer than kAmxMinRows rows go through the AVX-512 VNNI kernels.
// Availability is decided at run time: CPUID AMX-TILE/AMX-INT8, the OS enabling tile state in
// XCR0, Linux granting the tile-data permission (arch_prctl), and EDGEPACK_AMX not set to 0.
// Compiled with the AVX-512 VNNI flags plus -mamx-tile -mamx-int8 (sources.cmake).
#include <cpuid.h>
#include <immintrin.h>

#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "kernels_internal.h"

namespace edgepack {
namespace {

struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

bool detect_amx() {
  const char* env = std::getenv("EDGEPACK_AMX");
  if (env && std::strcmp(env, "0") == 0) return false;
  unsigned a, b, c, d;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  const bool tile = (d >> 24) & 1, int8 = (d >> 25) & 1;
  if (!tile || !int8) return false;
  __cpuid(1, a, b, c, d);
  if (!((c >> 27) & 1)) return false;  // OSXSAVE
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if (((lo >> 17) & 3) != 3) return false;  // XTILECFG and XTILEDATA enabled by the OS
#if defined(__linux__)
  // ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18): without it the first tile
  // instruction raises SIGILL.
  return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
  return false;
#endif
}

// Fewer rows than this go to the VNNI kernels (GEMV-like tiles: AMX's fixed cost per tile and
// the tile configuration do not pay for one or two rows).
constexpr std::size_t kAmxMinRows = 4;

// VNNI kernels for the parts AMX does not cover (very short tiles, K tail).
const GemmKernels& vnni() {
  static const GemmKernels k = gemm_kernels_avx512vnni();
  return k;
}
const GemmWideKernels& vnni_wide() {
  static const GemmWideKernels k = gemm_wide_kernels_avx512vnni();
  return k;
}

// Session state (gemm_wide.h): inside a session the tile configuration stays loaded between
// calls and is reloaded only when the tile height changes; outside one every call configures
// and releases, so direct calls never depend on earlier ones.
struct AmxSession {
  bool active = false;
  std::size_t rows = 0;  // configured tile height, 0: tiles not configured
};
thread_local AmxSession t_session;

void session_begin() { t_session = AmxSession{true, 0}; }

void session_end() {
  if (t_session.rows) _tile_release();
  t_session = AmxSession{};
}

void ukernel2(std::size_t mr, std::size_t kp, const uint8_t* a, std::size_t lda, const int8_t* b,
              int32_t* c, std::size_t ldc) {
  const std::size_t kmain = kp / 64 * 64;
  if (mr < kAmxMinRows || kmain == 0) {
    // Rows in slices the VNNI two-panel kernel takes (max_mr 8).
    const std::size_t step = vnni_wide().max_mr;
    for (std::size_t r = 0; r < mr; r += step)
      vnni_wide().ukernel2(std::min(step, mr - r), kp, a + r * lda, lda, b, c + r * ldc, ldc);
    return;
  }
  const int8_t* b1 = b + kNR * kp;
  // Short tiles (mr < 16: a 14-token transformer input, the tail of any M) run on AMX too, with
  // the A and C tiles configured to mr rows: a tdpbusd costs the same for any row count, so
  // this beats splitting the rows over the VNNI kernel (measured 2x at M = 14, K = N = 384).
  // B tiles always hold 16 rows (64 k) of one panel.
  if (!t_session.active || t_session.rows != mr) {
    TileConfig cfg{};
    cfg.palette = 1;
    for (int t = 0; t < 5; ++t) {
      cfg.rows[t] = static_cast<uint8_t>(t == 3 || t == 4 ? 16 : mr);
      cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
    if (t_session.active) t_session.rows = mr;
  }
  _tile_zero(0);
  _tile_zero(1);
  for (std::size_t k = 0; k < kmain; k += 64) {
    _tile_loadd(2, a + k, static_cast<long>(lda));
    _tile_loadd(3, b + k * kNR, 64);
    _tile_loadd(4, b1 + k * kNR, 64);
    _tile_dpbusd(0, 2, 3);
    _tile_dpbusd(1, 2, 4);
  }
  _tile_stored(0, c, static_cast<long>(ldc * 4));
  _tile_stored(1, c + kNR, static_cast<long>(ldc * 4));
  if (!t_session.active) _tile_release();
  if (kmain < kp) {
    // K tail (a multiple of 8 below 64): one-panel VNNI kernel on the remaining groups, added
    // in wrap-around int32 (the total is exact).
    alignas(64) int32_t t[16 * kNR];
    for (int half = 0; half < 2; ++half) {
      const int8_t* bp = (half ? b1 : b) + kmain * kNR;
      vnni().ukernel(mr, kp - kmain, a + kmain, lda, bp, t, kNR);
      for (std::size_t r = 0; r < mr; ++r)
        for (std::size_t n = 0; n < kNR; ++n) {
          int32_t& o = c[r * ldc + half * kNR + n];
          o = static_cast<int32_t>(static_cast<uint32_t>(o) +
                                   static_cast<uint32_t>(t[r * kNR + n]));
        }
    }
  }
}

}  // namespace

bool amx_usable() {
  static const bool ok = detect_amx();
  return ok;
}

GemmWideKernels gemm_wide_kernels_amx() {
  return GemmWideKernels{"amx",    Isa::kAvx512Vnni, AFormat::kU8, 16,
                         ukernel2, session_begin,    session_end};
}

}  // namespace edgepack
