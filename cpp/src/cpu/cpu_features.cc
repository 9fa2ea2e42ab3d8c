// CPU feature detection (once) and the EDGEPACK_ISA override.
//
// x86: cpuid leaf 1/7 plus xgetbv, because a CPU can support AVX while the OS does not save the
// ymm/zmm state; only both together make the instructions usable. aarch64: Linux HWCAP bits.
#include "edgepack/cpu.h"

#include <cstdint>
#include <cstdlib>
#include <stdexcept>

#if defined(EDGEPACK_ARCH_X86)
#include <cpuid.h>
#elif defined(EDGEPACK_ARCH_ARM) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace edgepack {
namespace {

#if defined(EDGEPACK_ARCH_X86)
uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1;
  const bool fma = (c >> 12) & 1;
  if (!osxsave) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_os = (xcr0 & 0x6) == 0x6;          // SSE + AVX state
  const bool zmm_os = (xcr0 & 0xe6) == 0xe6;        // + opmask, ZMM_Hi256, Hi16_ZMM
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = ymm_os && ((b >> 5) & 1);
  f.fma = ymm_os && fma;
  f.avx512f = zmm_os && ((b >> 16) & 1);
  f.avx512bw = zmm_os && ((b >> 30) & 1);
  f.avx512vl = zmm_os && ((b >> 31) & 1);
  f.avx512vnni = zmm_os && ((c >> 11) & 1);
  __cpuid_count(7, 1, a, b, c, d);
  f.avxvnni = ymm_os && ((a >> 4) & 1);
  return f;
}
#elif defined(EDGEPACK_ARCH_ARM)
CpuFeatures detect() {
  CpuFeatures f;
#if defined(__linux__)
  const unsigned long hw = getauxval(AT_HWCAP);
  const unsigned long hw2 = getauxval(AT_HWCAP2);
  f.asimd = (hw >> 1) & 1;     // HWCAP_ASIMD
  f.dotprod = (hw >> 20) & 1;  // HWCAP_ASIMDDP
  f.i8mm = (hw2 >> 13) & 1;    // HWCAP2_I8MM
#else
  f.asimd = true;  // ASIMD is architectural on AArch64.
#endif
  return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

Isa best_supported() {
  Isa best = Isa::kScalar;
  for (Isa isa : isa_ladder())
    if (isa_supported_by_cpu(isa)) best = isa;
  return best;
}

Isa compute_selected() {
  const char* env = std::getenv("EDGEPACK_ISA");
  if (env == nullptr || env[0] == '\0') return best_supported();
  Isa want;
  try {
    want = isa_from_name(env);
  } catch (const std::invalid_argument&) {
    throw std::invalid_argument(std::string("EDGEPACK_ISA='") + env +
                                "' is not a known ISA; use one of scalar, avx2, avx512vnni, "
                                "neon, neondot, i8mm");
  }
  bool on_ladder = false;
  for (Isa isa : isa_ladder()) on_ladder |= (isa == want);
  if (!on_ladder || !isa_supported_by_cpu(want))
    throw std::invalid_argument(std::string("EDGEPACK_ISA='") + env +
                                "' is not supported by this CPU/build (best available: " +
                                isa_name(best_supported()) + ")");
  return want;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512Vnni: return "avx512vnni";
    case Isa::kNeon: return "neon";
    case Isa::kNeonDot: return "neondot";
    case Isa::kI8mm: return "i8mm";
  }
  return "unknown";
}

Isa isa_from_name(const std::string& name) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512Vnni, Isa::kNeon, Isa::kNeonDot,
                  Isa::kI8mm})
    if (name == isa_name(isa)) return isa;
  throw std::invalid_argument("unknown ISA '" + name + "'");
}

const std::vector<Isa>& isa_ladder() {
#if defined(EDGEPACK_ARCH_X86)
  static const std::vector<Isa> ladder{Isa::kScalar, Isa::kAvx2, Isa::kAvx512Vnni};
#elif defined(EDGEPACK_ARCH_ARM)
  static const std::vector<Isa> ladder{Isa::kScalar, Isa::kNeon, Isa::kNeonDot, Isa::kI8mm};
#else
  static const std::vector<Isa> ladder{Isa::kScalar};
#endif
  return ladder;
}

bool isa_supported_by_cpu(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx2: return f.avx2 && f.fma;
    case Isa::kAvx512Vnni: return f.avx2 && f.fma && f.avx512f && f.avx512bw && f.avx512vl &&
                                  f.avx512vnni;
    case Isa::kNeon: return f.asimd;
    case Isa::kNeonDot: return f.asimd && f.dotprod;
    case Isa::kI8mm: return f.asimd && f.dotprod && f.i8mm;
  }
  return false;
}

Isa selected_isa() {
  static const Isa sel = compute_selected();
  return sel;
}

bool isa_enabled(Isa isa) {
  if (!isa_supported_by_cpu(isa)) return false;
  const std::vector<Isa>& ladder = isa_ladder();
  int pos = -1, sel = -1;
  for (int i = 0; i < static_cast<int>(ladder.size()); ++i) {
    if (ladder[i] == isa) pos = i;
    if (ladder[i] == selected_isa()) sel = i;
  }
  return pos >= 0 && pos <= sel;
}

}  // namespace edgepack
