// A tiny self-registering test harness (no dependency, so the same binary cross-compiles for
// aarch64 and runs under qemu). TEST(name) { ... } ; EXPECT(cond) << "message";
#pragma once

#include <cstdint>
#include <functional>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace eptest {

struct Case {
  const char* name;
  std::function<void()> fn;
};
std::vector<Case>& registry();
int& failures();

struct Register {
  Register(const char* name, std::function<void()> fn) { registry().push_back({name, fn}); }
};

// Collects a message and reports a failure when it goes out of scope.
class Failure {
 public:
  Failure(const char* file, int line, const char* expr) {
    os_ << file << ":" << line << ": EXPECT(" << expr << ") failed ";
  }
  ~Failure() {
    std::cerr << os_.str() << "\n";
    ++failures();
  }
  template <class T>
  Failure& operator<<(const T& v) {
    os_ << v;
    return *this;
  }

 private:
  std::ostringstream os_;
};

inline std::mt19937& rng() {
  static std::mt19937 g(12345);
  return g;
}

}  // namespace eptest

#define EP_CONCAT2(a, b) a##b
#define EP_CONCAT(a, b) EP_CONCAT2(a, b)
#define TEST(name)                                                          \
  static void name();                                                       \
  static ::eptest::Register EP_CONCAT(reg_, name)(#name, name);             \
  static void name()
#define EXPECT(cond) \
  if (cond) {        \
  } else             \
    ::eptest::Failure(__FILE__, __LINE__, #cond)
