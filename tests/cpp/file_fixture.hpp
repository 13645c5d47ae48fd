// A test fixture with a fresh directory per test and a way to run NumPy scripts in it, for the
// file-format tests (their oracle for "NumPy reads / writes this" is NumPy itself).
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace ntk::test {

// Raw file contents, for byte-exact comparisons and for truncating or corrupting files.
using Bytes = std::vector<std::byte>;

inline Bytes to_bytes(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return Bytes(p, p + s.size());
}

inline void write_bytes(const std::filesystem::path& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(f.good()) << path;
}

inline Bytes read_bytes(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  return to_bytes(std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>()));
}

class FileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = std::filesystem::temp_directory_path() /
           ("ntk_file_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    // Tests may leave the directory read-only; make it removable again.
    std::filesystem::permissions(dir_, std::filesystem::perms::owner_all, std::filesystem::perm_options::add);
    std::filesystem::remove_all(dir_);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  static bool has_numpy() {
    static const bool ok = std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
    return ok;
  }
  // Runs a Python script (numpy imported as np, d = this test's directory); returns its exit status.
  int python(const std::string& body) const {
    const std::string script = path("script.py");
    std::ofstream(script) << "import numpy as np\nd = " << "'" << dir_.string() << "'\n" << body << "\n";
    const int rc = std::system(("/usr/bin/python3 '" + script + "'").c_str());
    std::filesystem::remove(script);
    return rc;
  }

  std::filesystem::path dir_;
};

}  // namespace ntk::test
