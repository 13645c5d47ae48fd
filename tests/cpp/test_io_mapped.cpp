// MappedNpyWriter: out-of-core .npy output. Round trips through read_npy and NumPy, headers
// identical to serialize_npy's, nothing left behind on failure or without commit(), and resident
// memory bounded by release() while a 1 GiB file is filled.
#include <gtest/gtest.h>

#include "file_fixture.hpp"
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <set>

#include "ntk/io.hpp"

namespace fs = std::filesystem;
using ntk::DType;
using ntk::IoError;
using ntk::MappedNpyWriter;
using ntk::RawArray;
using ntk::Shape;

namespace {

using ntk::test::Bytes;
using ntk::test::read_bytes;

std::set<std::string> list_dir(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

template <class E>
void expect_throws(const std::function<void()>& f, std::initializer_list<const char*> needles) {
  try {
    f();
    ADD_FAILURE() << "expected an exception";
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const char* n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

// Element i holds i + 0.5 (exact in float32 below 2^23).
template <class T>
void fill_ramp(MappedNpyWriter& w) {
  auto* p = static_cast<T*>(w.data());
  const size_t n = w.bytes() / sizeof(T);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<T>(i) + T(0.5);
}

template <class T>
RawArray ramp_raw(DType dtype, const Shape& shape) {
  RawArray r;
  r.dtype = dtype;
  r.shape = shape;
  const auto n = static_cast<size_t>(ntk::numel(shape));
  r.bytes.resize(n * sizeof(T));
  for (size_t i = 0; i < n; ++i) {
    const T v = static_cast<T>(i) + T(0.5);
    std::memcpy(r.bytes.data() + i * sizeof(T), &v, sizeof(T));
  }
  return r;
}

// Resident set size of this process in bytes, or -1 without /proc.
long long vm_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "VmRSS:  1234 kB"
  return -1;
}

using IoMapped = ntk::test::FileTest;

TEST_F(IoMapped, RoundTripFloat32) {
  const Shape shape{37, 129};
  {
    MappedNpyWriter w(path("a.npy"), DType::float32, shape);
    ASSERT_EQ(w.bytes(), 37u * 129u * 4u);
    ASSERT_NE(w.data(), nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(w.data()) % 64, 0u);
    // Zero-filled to begin with.
    const auto* p = static_cast<const float*>(w.data());
    for (size_t i = 0; i < w.bytes() / 4; ++i) ASSERT_EQ(p[i], 0.0f) << i;
    fill_ramp<float>(w);
    EXPECT_FALSE(fs::exists(path("a.npy")));  // not in place before commit
    w.commit();
    EXPECT_EQ(w.data(), nullptr);
  }
  EXPECT_EQ(list_dir(dir_), std::set<std::string>{"a.npy"});
  const RawArray back = ntk::read_npy(path("a.npy"));
  EXPECT_EQ(back.dtype, DType::float32);
  EXPECT_EQ(back.shape, shape);
  EXPECT_EQ(back.bytes, ramp_raw<float>(DType::float32, shape).bytes);
  // Byte for byte what write_npy writes.
  EXPECT_EQ(read_bytes(path("a.npy")), ntk::serialize_npy(ramp_raw<float>(DType::float32, shape)));
}

TEST_F(IoMapped, Float64FourD) {
  const Shape shape{3, 5, 7, 11};
  {
    MappedNpyWriter w(path("k.npy"), DType::float64, shape);
    ASSERT_EQ(w.bytes(), 3u * 5u * 7u * 11u * 8u);
    fill_ramp<double>(w);
    w.commit();
  }
  const RawArray back = ntk::read_npy(path("k.npy"));
  EXPECT_EQ(back.dtype, DType::float64);
  EXPECT_EQ(back.shape, shape);
  EXPECT_EQ(back.as<double>().vector(), ramp_raw<double>(DType::float64, shape).as<double>().vector());
  EXPECT_EQ(read_bytes(path("k.npy")), ntk::serialize_npy(ramp_raw<double>(DType::float64, shape)));
}

TEST_F(IoMapped, HeaderMatchesSerializeNpy) {
  // Long dimensions with no data give long headers without large files.
  const std::vector<Shape> shapes = {{},          {0},          {5},          {3, 0},
                                     {2, 3, 4, 5}, {100000, 3}, {7, 1, 1, 1}, {123456789, 0},
                                     {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {0, 1234567890, 5}};
  for (DType t : {DType::float32, DType::float64}) {
    for (const Shape& s : shapes) {
      const std::string name = "h.npy";
      size_t data_bytes = 0;
      {
        MappedNpyWriter w(path(name), t, s);
        data_bytes = w.bytes();
        w.commit();
      }
      const size_t file_size = fs::file_size(path(name));
      ASSERT_GE(file_size, data_bytes);
      const size_t header_len = file_size - data_bytes;
      EXPECT_EQ(header_len % 64, 0u) << ntk::shape_string(s);
      // serialize_npy's header for the same dtype and shape: an empty-data array of it needs the
      // data bytes too, so compare only the header prefix, computed from a zero-filled array.
      RawArray r;
      r.dtype = t;
      r.shape = s;
      r.bytes.resize(data_bytes);
      const Bytes expect = ntk::serialize_npy(r);
      ASSERT_EQ(expect.size(), file_size) << ntk::shape_string(s);
      std::ifstream f(path(name), std::ios::binary);
      std::string head(header_len, '\0');
      f.read(head.data(), static_cast<std::streamsize>(header_len));
      EXPECT_EQ(0, std::memcmp(head.data(), expect.data(), header_len)) << ntk::shape_string(s);
      // And the file reads back as zeros of that shape.
      const RawArray back = ntk::read_npy(path(name));
      EXPECT_EQ(back.shape, s);
      EXPECT_EQ(back.bytes, r.bytes);
      fs::remove(path(name));
    }
  }
}

TEST_F(IoMapped, NumpyReadsIt) {
  if (!has_numpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  {
    MappedNpyWriter w(path("f32.npy"), DType::float32, {4, 6});
    fill_ramp<float>(w);
    w.commit();
  }
  {
    MappedNpyWriter w(path("f64.npy"), DType::float64, {2, 3, 4, 5});
    fill_ramp<double>(w);
    w.commit();
  }
  {
    MappedNpyWriter w(path("s.npy"), DType::float64, {});
    static_cast<double*>(w.data())[0] = 2.5;
    w.commit();
  }
  EXPECT_EQ(python(R"(
a = np.load(d + '/f32.npy')
assert a.dtype == np.float32 and a.shape == (4, 6), (a.dtype, a.shape)
assert (a.ravel() == np.arange(24) + 0.5).all(), a
b = np.load(d + '/f64.npy', mmap_mode='r')
assert b.dtype == np.float64 and b.shape == (2, 3, 4, 5), (b.dtype, b.shape)
assert (np.asarray(b).ravel() == np.arange(120) + 0.5).all(), b
s = np.load(d + '/s.npy')
assert s.shape == () and s == 2.5
)"),
            0);
}

TEST_F(IoMapped, DestructorWithoutCommitLeavesNothing) {
  {
    MappedNpyWriter w(path("a.npy"), DType::float32, {100, 100});
    fill_ramp<float>(w);
    EXPECT_EQ(list_dir(dir_).size(), 1u);  // the temporary file
  }
  EXPECT_TRUE(list_dir(dir_).empty());
  // An existing file at the path is left as it was.
  ntk::write_npy(path("b.npy"), ramp_raw<double>(DType::float64, {3}));
  const Bytes before = read_bytes(path("b.npy"));
  {
    MappedNpyWriter w(path("b.npy"), DType::float32, {10});
    fill_ramp<float>(w);
    w.release(0, w.bytes());
  }
  EXPECT_EQ(list_dir(dir_), std::set<std::string>{"b.npy"});
  EXPECT_EQ(read_bytes(path("b.npy")), before);
  // An exception unwinding past an uncommitted writer is the case this is for.
  EXPECT_THROW(
      {
        MappedNpyWriter w(path("c.npy"), DType::float64, {8, 8});
        throw std::runtime_error("tile failed");
      },
      std::runtime_error);
  EXPECT_EQ(list_dir(dir_), std::set<std::string>{"b.npy"});
}

TEST_F(IoMapped, UnwritableDirectoryGivesIoError) {
  const std::string missing = path("no/such/dir/k.npy");
  expect_throws<IoError>([&] { MappedNpyWriter w(missing, DType::float32, {4, 4}); },
                         {missing.c_str(), "No such file or directory"});
  // A path through a regular file fails the same way, even for root.
  std::ofstream(path("file")) << "x";
  const std::string through_file = path("file/k.npy");
  expect_throws<IoError>([&] { MappedNpyWriter w(through_file, DType::float32, {4, 4}); },
                         {through_file.c_str(), "Not a directory"});
  EXPECT_EQ(list_dir(dir_), std::set<std::string>{"file"});
  // A read-only directory (permissions do not stop root, so only checked for other users).
  if (::geteuid() != 0) {
    fs::create_directory(path("ro"));
    fs::permissions(path("ro"), fs::perms::owner_read | fs::perms::owner_exec);
    const std::string ro = path("ro/k.npy");
    expect_throws<IoError>([&] { MappedNpyWriter w(ro, DType::float32, {4, 4}); }, {ro.c_str(), "Permission denied"});
    fs::permissions(path("ro"), fs::perms::owner_all);
    EXPECT_TRUE(list_dir(path("ro")).empty());
  }
}

TEST_F(IoMapped, NotEnoughDiskSpaceIsReportedUpFront) {
  struct statvfs vfs {};
  if (::statvfs(dir_.c_str(), &vfs) != 0 || vfs.f_blocks == 0) GTEST_SKIP() << "file system reports no sizes";
  const std::uint64_t free = std::uint64_t{vfs.f_bfree} * vfs.f_frsize;
  // More than is free (and than the disk holds), yet a file size ext4 and XFS allow.
  const auto n = static_cast<ntk::index_t>((std::uint64_t{vfs.f_blocks} * vfs.f_frsize + (free + (std::uint64_t{1} << 30))) / 4);
  const std::string p = path("huge.npy");
  const auto start = std::chrono::steady_clock::now();
  expect_throws<IoError>([&] { MappedNpyWriter w(p, DType::float32, {n}); },
                         {p.c_str(), "not enough disk space", "needs", "available"});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(list_dir(dir_).empty());
}

TEST_F(IoMapped, InvalidUse) {
  expect_throws<ntk::InvalidArgument>([&] { MappedNpyWriter w(path("i.npy"), DType::int32, {4}); }, {"int32"});
  expect_throws<ntk::InvalidArgument>([&] { MappedNpyWriter w(path("n.npy"), DType::float32, {-1, 4}); }, {});
  EXPECT_TRUE(list_dir(dir_).empty());
  MappedNpyWriter w(path("a.npy"), DType::float32, {10});
  EXPECT_THROW(w.release(0, 41), ntk::InvalidArgument);
  EXPECT_THROW(w.release(41, 0), ntk::InvalidArgument);
  EXPECT_THROW(w.release(8, SIZE_MAX), ntk::InvalidArgument);
  w.release(40, 0);
  w.commit();
  EXPECT_THROW(w.commit(), ntk::InvalidArgument);
  EXPECT_THROW(w.release(0, 4), ntk::InvalidArgument);
  EXPECT_EQ(ntk::read_npy(path("a.npy")).shape, Shape{10});
}

// Releasing ranges that are not page aligned, and writing again after a release, keeps the data.
TEST_F(IoMapped, ReleaseUnalignedRangesKeepsData) {
  const Shape shape{3001, 17};  // 204068 bytes: about 50 pages, not a whole number of them
  {
    MappedNpyWriter w(path("r.npy"), DType::float32, shape);
    auto* p = static_cast<float*>(w.data());
    const size_t n = w.bytes() / 4;
    // Fill in uneven tiles, releasing each as it is finished.
    const size_t tile = 1237;
    for (size_t i0 = 0; i0 < n; i0 += tile) {
      const size_t i1 = std::min(n, i0 + tile);
      for (size_t i = i0; i < i1; ++i) p[i] = static_cast<float>(i) + 0.5f;
      w.release(i0 * 4, (i1 - i0) * 4);
    }
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(p[i], static_cast<float>(i) + 0.5f) << i;
    w.release(3, w.bytes() - 5);
    w.release(0, w.bytes());
    p[n - 1] = -1.0f;  // written after its release
    w.commit();
  }
  RawArray expect = ramp_raw<float>(DType::float32, shape);
  const float last = -1.0f;
  std::memcpy(expect.bytes.data() + expect.bytes.size() - 4, &last, 4);
  EXPECT_EQ(ntk::read_npy(path("r.npy")).bytes, expect.bytes);
}

// 1 GiB of float32 written in 64 MiB chunks, each released when done: resident memory stays far
// below the file size.
TEST_F(IoMapped, ReleaseKeepsRssBounded) {
  constexpr size_t kChunk = size_t{64} << 20, kTotal = size_t{1} << 30;
  const auto start = std::chrono::steady_clock::now();
  const long long rss0 = vm_rss_bytes();
  long long peak = rss0;
  const std::string p = path("big.npy");
  {
    MappedNpyWriter w(p, DType::float32, {static_cast<ntk::index_t>(kTotal / 4 / 1024), 1024});
    ASSERT_EQ(w.bytes(), kTotal);
    auto* base = static_cast<std::byte*>(w.data());
    for (size_t off = 0; off < kTotal; off += kChunk) {
      auto* f = reinterpret_cast<float*>(base + off);
      const size_t first = off / 4;
      for (size_t i = 0; i < kChunk / 4; ++i) f[i] = static_cast<float>((first + i) % 1000003);
      peak = std::max(peak, vm_rss_bytes());  // the most resident: the chunk is written, not released
      w.release(off, kChunk);
    }
    peak = std::max(peak, vm_rss_bytes());
    w.commit();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ IoMapped ] 1 GiB in %.2f s; VmRSS before %.1f MB, peak %.1f MB\n", seconds, rss0 / 1e6, peak / 1e6);
  RecordProperty("peak_vm_rss_mb", std::to_string(peak / 1000000));
  ASSERT_EQ(fs::file_size(p) % 64, 0u);
  const size_t header = fs::file_size(p) - kTotal;
  // Spot checks of the data through the file itself (read_npy would need 1 GiB of memory).
  std::ifstream f(p, std::ios::binary);
  for (size_t i : {size_t{0}, size_t{1}, kChunk / 4 - 1, kChunk / 4, size_t{123456789}, kTotal / 4 - 1}) {
    float v = 0;
    f.seekg(static_cast<std::streamoff>(header + i * 4));
    f.read(reinterpret_cast<char*>(&v), 4);
    ASSERT_TRUE(f.good());
    EXPECT_EQ(v, static_cast<float>(i % 1000003)) << i;
  }
  fs::remove(p);
  if (rss0 < 0) GTEST_SKIP() << "/proc/self/status not available; RSS not checked";
  EXPECT_LT(peak, 300LL * 1000 * 1000) << "peak VmRSS " << peak;
  EXPECT_LT(peak - rss0, 200LL * 1000 * 1000) << "VmRSS grew by " << (peak - rss0);
  EXPECT_LT(seconds, 10.0);
}

}  // namespace
