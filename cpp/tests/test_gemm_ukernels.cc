// Every GEMM micro-kernel table compiled in (and runnable on this CPU) against the scalar
// reference (the front of gemm_kernel_list()), bit for bit on raw int32 outputs: every mr up to
// the kernel's max_mr, K depths from one granule up to kMaxK, strided and misaligned A rows,
// garbage in A's row padding, exact-size buffers (so ASan catches over-reads), guard values
// around C (so stray writes are caught), and adversarial values that overflow any int16
// intermediate (A = 255 / 0 / 128 everywhere against B = -128 / 127 / alternating).
//
// A kS8 kernel reads a_u8 - 128 and so computes sum (a_u8 - 128) * w = ref(a_u8) - 128 * colsum;
// the test derives that expectation in int64 from the reference output.
#include <algorithm>
#include <cstring>
#include <string>

#include "edgepack/gemm.h"
#include "test_util.h"

using namespace edgepack;

namespace {

constexpr int32_t kGuard = 0x5A5A5A5A;

// kHigh: A 255 / B 127; kLow: A 0 / B -128; kMid: A 128 / B 0; kAlternating: high, low, ...
enum class Fill { kRandom, kExtremes, kHigh, kLow, kMid, kAlternating };

uint8_t a_value(Fill f, std::size_t i) {
  switch (f) {
    case Fill::kRandom: return static_cast<uint8_t>(eptest::rng()() & 0xFF);
    case Fill::kExtremes: return (eptest::rng()() & 1) ? 255 : 0;
    case Fill::kHigh: return 255;
    case Fill::kLow: return 0;
    case Fill::kMid: return 128;
    case Fill::kAlternating: return (i & 1) ? 0 : 255;
  }
  return 0;
}

int8_t b_value(Fill f, std::size_t i) {
  switch (f) {
    case Fill::kRandom: return static_cast<int8_t>(static_cast<int>(eptest::rng()() & 0xFF) - 128);
    case Fill::kExtremes: return (eptest::rng()() & 1) ? 127 : -128;
    case Fill::kHigh: return 127;
    case Fill::kLow: return -128;
    case Fill::kMid: return 0;
    case Fill::kAlternating: return (i & 1) ? 127 : -128;
  }
  return 0;
}

// Runs kernel k on one panel and compares with the reference. Returns false on a mismatch.
bool check_one(const GemmKernels& ref, const GemmKernels& k, std::size_t mr, std::size_t kp,
               std::size_t lda_pad, std::size_t a_offset, std::size_t ldc_pad, Fill fa, Fill fb) {
  const std::size_t lda = kp + lda_pad, ldc = kNR + ldc_pad;
  // Exact-size buffers: the last row ends at the last byte a kernel may read.
  const std::size_t a_bytes = (mr - 1) * lda + kp;
  std::vector<uint8_t> a_u8(a_bytes);
  std::vector<uint8_t> a_buf(a_offset + a_bytes);
  for (std::size_t m = 0; m < mr; ++m)
    for (std::size_t j = 0; j < (m + 1 < mr ? lda : kp); ++j) {
      // Row padding (j >= kp) holds garbage: B is zero there in real use, but the contract
      // says the kernel reads only kp bytes, so it must not matter at all.
      a_u8[m * lda + j] = j < kp ? a_value(fa, j) : static_cast<uint8_t>(eptest::rng()() & 0xFF);
    }
  for (std::size_t i = 0; i < a_bytes; ++i)
    a_buf[a_offset + i] =
        k.a_format == AFormat::kS8 ? static_cast<uint8_t>(a_u8[i] ^ 0x80) : a_u8[i];
  std::vector<int8_t> panel(kp / 4 * 4 * kNR);
  for (std::size_t i = 0; i < panel.size(); ++i) panel[i] = b_value(fb, i);

  // Expected: the reference one row at a time (its max_mr may be below the kernel's).
  std::vector<int32_t> want(mr * kNR);
  for (std::size_t m = 0; m < mr; ++m)
    ref.ukernel(1, kp, a_u8.data() + m * lda, lda, panel.data(), want.data() + m * kNR, kNR);
  if (k.a_format == AFormat::kS8)
    for (std::size_t n = 0; n < kNR; ++n) {
      int64_t colsum = 0;
      for (std::size_t kk = 0; kk < kp; ++kk)
        colsum += panel[(kk / 4) * (4 * kNR) + n * 4 + kk % 4];
      for (std::size_t m = 0; m < mr; ++m)
        want[m * kNR + n] = static_cast<int32_t>(static_cast<uint32_t>(
            static_cast<uint64_t>(int64_t{want[m * kNR + n]} - 128 * colsum)));
    }

  // Output with guards on every element the kernel must not touch, rows up to max_mr.
  const std::size_t rows = std::max(mr, k.max_mr) + 1;
  std::vector<int32_t> c(rows * ldc, kGuard);
  k.ukernel(mr, kp, a_buf.data() + a_offset, lda, panel.data(), c.data(), ldc);
  bool ok = true;
  for (std::size_t m = 0; m < rows && ok; ++m)
    for (std::size_t n = 0; n < ldc && ok; ++n) {
      const bool inside = m < mr && n < kNR;
      const int32_t expect = inside ? want[m * kNR + n] : kGuard;
      if (c[m * ldc + n] != expect) {
        EXPECT(c[m * ldc + n] == expect)
            << isa_name(k.isa) << " mr=" << mr << " kp=" << kp << " lda=" << lda << " ldc=" << ldc
            << " fill=" << int(fa) << "/" << int(fb) << " at m=" << m << " n=" << n << ": got "
            << c[m * ldc + n] << " want " << expect << (inside ? "" : " (guard overwritten)");
        ok = false;
      }
    }
  return ok;
}

std::vector<std::size_t> depths() {
  std::vector<std::size_t> kps;
  for (std::size_t kp = kKP; kp <= 128; kp += kKP) kps.push_back(kp);
  for (std::size_t kp : {136, 200, 256, 264, 504, 512, 520, 1000, 1032}) kps.push_back(kp);
  return kps;
}

// Tables this CPU can run; prints their names so a qemu log shows what was exercised.
std::vector<const GemmKernels*> runnable(const char* what) {
  std::vector<const GemmKernels*> out;
  std::string names;
  for (const GemmKernels& k : gemm_kernel_list())
    if (isa_supported_by_cpu(k.isa)) {
      out.push_back(&k);
      names += std::string(" ") + isa_name(k.isa);
    }
  std::cout << "  " << what << ": gemm ukernels tested:" << names << "\n";
  return out;
}

}  // namespace

TEST(gemm_ukernels_random_match_reference) {
  const GemmKernels& ref = gemm_kernel_list().front();
  EXPECT(ref.isa == Isa::kScalar && ref.a_format == AFormat::kU8) << "reference must be first";
  for (const GemmKernels* k : runnable("random")) {
    int bad = 0;
    for (std::size_t trial = 0; trial < 3; ++trial)
      for (std::size_t kp : depths())
        for (std::size_t mr = 1; mr <= k->max_mr && bad < 5; ++mr) {
          // lda == kp sometimes, else strided by 1..37 bytes; A misaligned by 0..3 bytes.
          const std::size_t lda_pad =
              (kp + mr + trial) % 3 == 0 ? 0 : 1 + (kp * 7 + mr + trial) % 37;
          const std::size_t a_off = (kp / 8 + mr + trial) % 4;
          const std::size_t ldc_pad = (mr + trial) % 2 ? 0 : 3 + kp % 5;
          if (!check_one(ref, *k, mr, kp, lda_pad, a_off, ldc_pad, Fill::kRandom, Fill::kRandom))
            ++bad;
        }
  }
}

TEST(gemm_ukernels_adversarial_match_reference) {
  const GemmKernels& ref = gemm_kernel_list().front();
  const Fill fills[] = {Fill::kRandom, Fill::kExtremes, Fill::kHigh,
                        Fill::kLow,    Fill::kMid,      Fill::kAlternating};
  for (const GemmKernels* k : runnable("adversarial")) {
    int bad = 0;
    for (std::size_t kp : {std::size_t{8}, std::size_t{24}, std::size_t{64}, std::size_t{520}})
      for (std::size_t mr = 1; mr <= k->max_mr; ++mr)
        for (Fill fa : fills)
          for (Fill fb : fills)
            if (bad < 5 && !check_one(ref, *k, mr, kp, 5, 1, 2, fa, fb)) ++bad;
  }
}

// The largest depth the contract allows: A = 255 (or 0) against B = -128 gives the largest
// magnitude sums, -255*128*65536 = -2139095040 (kU8) and 128*128*65536 = 2^30 (kS8, a_u8 = 0).
TEST(gemm_ukernels_max_depth_match_reference) {
  const GemmKernels& ref = gemm_kernel_list().front();
  for (const GemmKernels* k : runnable("max depth"))
    for (Fill fa : {Fill::kHigh, Fill::kLow})
      for (Fill fb : {Fill::kHigh, Fill::kLow})
        check_one(ref, *k, k->max_mr, kMaxK, 8, 0, 0, fa, fb);
}

// On ARM every level the CPU supports has a GEMM kernel, and dispatch picks the selected one,
// so the qemu runs (cortex-a53, max, max with EDGEPACK_ISA=neondot) exercise each of them.
TEST(gemm_dispatch_picks_selected_isa) {
  const GemmKernels& k = gemm_kernels();
  EXPECT(isa_enabled(k.isa)) << isa_name(k.isa);
  std::cout << "  gemm dispatch: " << isa_name(k.isa) << " (max_mr " << k.max_mr << ")\n";
#if defined(EDGEPACK_ARCH_ARM)
  EXPECT(k.isa == selected_isa()) << isa_name(k.isa) << " vs " << isa_name(selected_isa());
  for (Isa isa : isa_ladder()) {
    if (!isa_supported_by_cpu(isa)) continue;
    bool found = false;
    for (const GemmKernels& t : gemm_kernel_list()) found = found || t.isa == isa;
    EXPECT(found) << "no GEMM kernel for " << isa_name(isa);
  }
#endif
  for (const GemmKernels& t : gemm_kernel_list())
    EXPECT(t.max_mr >= 1 && t.ukernel != nullptr) << isa_name(t.isa);
}
