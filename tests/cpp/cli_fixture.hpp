// The ntk binary run as a separate process, for the CLI tests (test_cli.cpp, test_cli_regress.cpp):
// a fresh directory per test, stdout / stderr captured, and the failure contract (exit status, one
// "error:" line, no file left behind) checked in one place.
#pragma once
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace ntk {

namespace fs = std::filesystem;

struct Result {
  int status = -1;
  std::string out, err;
};

inline std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Single-quotes a word for /bin/sh.
inline std::string q(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}


class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "ntk_cli_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    io_ = dir_ / ".io";
    fs::create_directory(io_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Runs `ntk ARGS` with stdout and stderr captured (outside dir_, so listings stay clean).
  Result run(const std::string& args) const {
    const std::string cmd =
        q(NTK_BIN) + " " + args + " >" + q((io_ / "out").string()) + " 2>" + q((io_ / "err").string());
    Result r;
    int rc = std::system(cmd.c_str());
    r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    r.out = slurp(io_ / "out");
    r.err = slurp(io_ / "err");
    return r;
  }

  std::set<std::string> listing() const {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_))
      if (e.path() != io_) names.insert(e.path().filename().string());
    return names;
  }

  // Runs a command that must fail with `status`, one "error:" line on stderr, and no file created.
  Result expect_failure(const std::string& args, int status, const std::string& output = "") const {
    const auto before = listing();
    Result r = run(args);
    EXPECT_EQ(r.status, status) << "ntk " << args << "\nstderr: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr: " << r.err;
    EXPECT_TRUE(r.err.starts_with("error: ")) << "stderr: " << r.err;
    EXPECT_TRUE(r.out.empty()) << "stdout: " << r.out;
    EXPECT_EQ(listing(), before) << "ntk " << args << " left files behind";
    if (!output.empty()) {
      EXPECT_FALSE(fs::exists(output)) << output;
    }
    return r;
  }

  // ntk init of spec for input_shape, checked to succeed.
  std::string init(const std::string& spec, const std::string& shape, const std::string& name,
                   const std::string& extra = "") const {
    const std::string p = path(name);
    Result r = run("init --net " + q(spec) + " --input-shape " + shape + " -o " + q(p) + " " + extra);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(r.err.empty()) << r.err;
    return p;
  }

  fs::path dir_, io_;
};

}  // namespace ntk
