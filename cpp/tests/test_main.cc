// Runs every registered test. Prints the detected CPU and selected ISA first, so a qemu run's
// log shows which paths it exercised. `--expect-isa NAME` fails unless dispatch selected NAME.
#include <cstring>

#include "edgepack/cpu.h"
#include "test_util.h"

namespace eptest {
std::vector<Case>& registry() {
  static std::vector<Case> r;
  return r;
}
int& failures() {
  static int f = 0;
  return f;
}
}  // namespace eptest

int main(int argc, char** argv) {
  const char* expect_isa = nullptr;
  const char* filter = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--expect-isa") && i + 1 < argc) expect_isa = argv[++i];
    else if (!std::strcmp(argv[i], "--filter") && i + 1 < argc) filter = argv[++i];
  }
  const char* sel = edgepack::isa_name(edgepack::selected_isa());
  std::cout << "edgepack_tests: selected ISA " << sel << "\n";
  if (expect_isa && std::strcmp(expect_isa, sel) != 0) {
    std::cerr << "dispatch selected '" << sel << "' but '" << expect_isa << "' was expected\n";
    return 2;
  }
  int ran = 0;
  for (const auto& c : eptest::registry()) {
    if (filter && !std::strstr(c.name, filter)) continue;
    const int before = eptest::failures();
    c.fn();
    ++ran;
    std::cout << (eptest::failures() == before ? "[ OK ] " : "[FAIL] ") << c.name << "\n";
  }
  std::cout << ran - 0 << " tests, " << eptest::failures() << " failed checks\n";
  return eptest::failures() == 0 && ran > 0 ? 0 : 1;
}
