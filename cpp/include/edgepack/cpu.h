// CPU feature detection and ISA selection. Detection runs once; EDGEPACK_ISA may only lower the
// ISA level (it never enables an instruction set the CPU lacks).
#pragma once

#include <string>
#include <vector>

namespace edgepack {

// ISA levels. On each architecture the levels form a ladder: x86 scalar < avx2 < avx512vnni,
// arm scalar < neon < neondot < i8mm. A kernel of level L runs when L <= the selected level.
enum class Isa : int {
  kScalar = 0,
  kAvx2 = 1,
  kAvx512Vnni = 2,
  kNeon = 11,
  kNeonDot = 12,
  kI8mm = 13,
};

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512vnni = false;
  bool avxvnni = false;
  bool asimd = false;
  bool dotprod = false;
  bool i8mm = false;
};

// Detected once (cpuid + xgetbv on x86, HWCAP on Linux/aarch64).
const CpuFeatures& cpu_features();

const char* isa_name(Isa isa);
// Throws std::invalid_argument for an unknown name.
Isa isa_from_name(const std::string& name);

// The ISA ladder of the architecture this library was built for, lowest first.
const std::vector<Isa>& isa_ladder();

// True when the hardware (and OS) can run instructions of this level.
bool isa_supported_by_cpu(Isa isa);

// The selected level: the best supported level, or EDGEPACK_ISA if set. Throws
// std::invalid_argument (naming the variable) for an unknown or unsupported value.
Isa selected_isa();

// True when kernels of this level may run: supported by the CPU and at or below selected_isa().
bool isa_enabled(Isa isa);

}  // namespace edgepack
