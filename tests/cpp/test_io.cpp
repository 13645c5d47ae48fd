// File formats: .npy / .npz / IDX round trips, files written by real NumPy, and malformed files
// (truncated, corrupt headers, absurd sizes), which must all give IoError and never crash.
#include <gtest/gtest.h>

#include "file_fixture.hpp"
#include <unistd.h>
#include <zip.h>
#include <zlib.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "ntk/io.hpp"

namespace fs = std::filesystem;
using ntk::DType;
using ntk::IoError;
using ntk::RawArray;
using ntk::Shape;

namespace {

using ntk::test::Bytes;
using ntk::test::read_bytes;
using ntk::test::to_bytes;
using ntk::test::write_bytes;

std::set<std::string> list_dir(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

// Little-endian bytes of a sequence of values of type T.
template <class T>
RawArray make_raw(DType dtype, Shape shape, const std::vector<T>& values) {
  RawArray r;
  r.dtype = dtype;
  r.shape = std::move(shape);
  r.bytes.resize(values.size() * sizeof(T));
  if (!values.empty()) std::memcpy(r.bytes.data(), values.data(), r.bytes.size());
  return r;
}

// n values 0.5, 1.5, ... (exact in every float type) of dtype, shaped as given.
RawArray ramp(DType dtype, const Shape& shape) {
  const auto n = static_cast<size_t>(ntk::numel(shape));
  switch (dtype) {
    case DType::float32: {
      std::vector<float> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i) + 0.5f;
      return make_raw(dtype, shape, v);
    }
    case DType::float64: {
      std::vector<double> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = static_cast<double>(i) + 0.5;
      return make_raw(dtype, shape, v);
    }
    case DType::uint8: {
      std::vector<std::uint8_t> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(200 + i % 50);
      return make_raw(dtype, shape, v);
    }
    case DType::int8: {
      std::vector<std::int8_t> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::int8_t>(-100 + static_cast<int>(i % 50));
      return make_raw(dtype, shape, v);
    }
    case DType::int16: {
      std::vector<std::int16_t> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::int16_t>(-30000 + static_cast<int>(i));
      return make_raw(dtype, shape, v);
    }
    case DType::int32: {
      std::vector<std::int32_t> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = -2000000000 + static_cast<std::int32_t>(i);
      return make_raw(dtype, shape, v);
    }
    case DType::int64: {
      std::vector<std::int64_t> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = (std::int64_t{1} << 40) - static_cast<std::int64_t>(i);
      return make_raw(dtype, shape, v);
    }
  }
  return {};
}

void expect_same(const RawArray& a, const RawArray& b) {
  EXPECT_EQ(a.dtype, b.dtype);
  EXPECT_EQ(a.shape, b.shape);
  EXPECT_TRUE(a.bytes == b.bytes);
}

// Runs f and expects an IoError whose message contains every one of parts.
void expect_io_error(const std::function<void()>& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected IoError";
  } catch (const IoError& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\n  lacks: " << p;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected IoError, got: " << e.what();
  }
}

// A v1.0 .npy file with the given header dict (padded as NumPy pads it) and payload.
Bytes npy_with_header(const std::string& dict, size_t payload_bytes, int major = 1) {
  const size_t preamble = major == 1 ? 10 : 12;
  std::string h = dict;
  while ((preamble + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  for (size_t i = 0; i < preamble - 8; ++i) out += static_cast<char>((h.size() >> (8 * i)) & 0xff);
  out += h;
  out.append(payload_bytes, '\x01');
  return to_bytes(out);
}

const std::vector<DType> kAllDtypes = {DType::float32, DType::float64, DType::uint8, DType::int8,
                                       DType::int16,   DType::int32,   DType::int64};

using IoFiles = ntk::test::FileTest;

class IoNpy : public IoFiles {};
class IoNpz : public IoFiles {};
class IoNumpy : public IoFiles {};
class IoIdx : public IoFiles {};
class IoAtomic : public IoFiles {};

// Builds a zip with libzip directly, for members ntkit's own writer would never produce.
void make_zip(const std::string& path, const std::vector<std::pair<std::string, Bytes>>& members, bool deflate) {
  int err = 0;
  zip_t* za = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  ASSERT_NE(za, nullptr);
  for (const auto& [name, data] : members) {
    zip_source_t* s = zip_source_buffer(za, data.data(), data.size(), 0);
    ASSERT_NE(s, nullptr);
    const zip_int64_t i = zip_file_add(za, name.c_str(), s, 0);
    ASSERT_GE(i, 0);
    zip_set_file_compression(za, static_cast<zip_uint64_t>(i), deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
  }
  ASSERT_EQ(zip_close(za), 0);
}

// IDX bytes: magic, big-endian dims, then the values in big-endian order.
Bytes idx_bytes(unsigned type, const std::vector<std::uint32_t>& dims, const RawArray& data) {
  Bytes out = {std::byte{0}, std::byte{0}, std::byte(type), std::byte(dims.size())};
  for (std::uint32_t d : dims)
    for (int k = 3; k >= 0; --k) out.push_back(std::byte((d >> (8 * k)) & 0xff));
  const size_t item = ntk::dtype_size(data.dtype);
  for (size_t off = 0; off < data.bytes.size(); off += item)
    for (size_t k = item; k-- > 0;) out.push_back(data.bytes[off + k]);
  return out;
}

void gzip_to(const std::string& path, const Bytes& b, const char* mode = "wb") {
  gzFile g = gzopen(path.c_str(), mode);
  ASSERT_NE(g, nullptr);
  if (!b.empty()) ASSERT_EQ(gzwrite(g, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  ASSERT_EQ(gzclose(g), Z_OK);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Element types and RawArray

TEST(IoDtype, NamesAndSizesMatchNumpy) {
  EXPECT_STREQ(ntk::dtype_name(DType::float32), "float32");
  EXPECT_STREQ(ntk::dtype_name(DType::float64), "float64");
  EXPECT_STREQ(ntk::dtype_name(DType::uint8), "uint8");
  EXPECT_STREQ(ntk::dtype_name(DType::int8), "int8");
  EXPECT_STREQ(ntk::dtype_name(DType::int16), "int16");
  EXPECT_STREQ(ntk::dtype_name(DType::int32), "int32");
  EXPECT_STREQ(ntk::dtype_name(DType::int64), "int64");
  const std::vector<size_t> sizes = {4, 8, 1, 1, 2, 4, 8};
  for (size_t i = 0; i < kAllDtypes.size(); ++i) EXPECT_EQ(ntk::dtype_size(kAllDtypes[i]), sizes[i]);
}

TEST(IoRawArray, AsConvertsEveryDtype) {
  for (DType t : kAllDtypes) {
    const RawArray r = ramp(t, {2, 3});
    const ntk::Array<double> d = r.as<double>();
    const ntk::Array<float> f = r.as<float>();
    ASSERT_EQ(d.shape(), (Shape{2, 3}));
    ASSERT_EQ(f.shape(), (Shape{2, 3}));
    for (int i = 0; i < 6; ++i) {
      double expect = 0;
      switch (t) {
        case DType::float32:
        case DType::float64: expect = i + 0.5; break;
        case DType::uint8: expect = 200 + i; break;
        case DType::int8: expect = -100 + i; break;
        case DType::int16: expect = -30000 + i; break;
        case DType::int32: expect = -2000000000.0 + i; break;
        case DType::int64: expect = static_cast<double>((std::int64_t{1} << 40) - i); break;
      }
      EXPECT_EQ(d[i], expect) << ntk::dtype_name(t) << " element " << i;
      EXPECT_EQ(f[i], static_cast<float>(expect)) << ntk::dtype_name(t) << " element " << i;
    }
  }
}

TEST(IoRawArray, FromArrayRoundTrip) {
  ntk::Array<float> a({2, 2}, {1.f, -2.f, 3.5f, 4.f});
  const RawArray r = RawArray::from(a);
  EXPECT_EQ(r.dtype, DType::float32);
  EXPECT_EQ(r.as<float>().vector(), a.vector());
  ntk::Array<double> b({3}, {0.1, 0.2, 0.3});
  const RawArray rb = RawArray::from(b);
  EXPECT_EQ(rb.dtype, DType::float64);
  EXPECT_EQ(rb.as<double>().vector(), b.vector());
}

TEST(IoRawArray, AsRejectsBytesThatDoNotMatchTheShape) {
  RawArray r = ramp(DType::float32, {3});
  r.bytes.pop_back();
  EXPECT_THROW(r.as<double>(), ntk::InvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// .npy

TEST_F(IoNpy, RoundTripFloatShapes) {
  const std::vector<Shape> shapes = {{}, {0}, {5}, {2, 3, 4}, {3, 0, 2}, {1, 1}, {0, 0}};
  for (DType t : {DType::float32, DType::float64}) {
    for (const Shape& s : shapes) {
      const RawArray a = ramp(t, s);
      const std::string p = path("a.npy");
      ntk::write_npy(p, a);
      expect_same(ntk::read_npy(p), a);
    }
  }
  ntk::Array<float> f({2, 2}, {1.f, 2.f, 3.f, 4.f});
  ntk::write_npy(path("f.npy"), f);
  EXPECT_EQ(ntk::read_npy(path("f.npy")).as<float>().vector(), f.vector());
}

TEST_F(IoNpy, RoundTripEveryDtype) {
  for (DType t : kAllDtypes) {
    const RawArray a = ramp(t, {4, 3});
    ntk::write_npy(path("a.npy"), a);
    expect_same(ntk::read_npy(path("a.npy")), a);
  }
}

TEST_F(IoNpy, SerializedHeaderIsAlignedLikeNumpy) {
  for (const Shape& s : {Shape{}, Shape{7}, Shape{2, 3, 4, 5, 6, 7, 8}}) {
    const RawArray a = ramp(DType::float64, s);
    const Bytes b = ntk::serialize_npy(a);
    ASSERT_GE(b.size(), 10u);
    EXPECT_EQ(std::memcmp(b.data(), "\x93NUMPY\x01\x00", 8), 0);
    const size_t hlen = std::to_integer<size_t>(b[8]) | std::to_integer<size_t>(b[9]) << 8;
    EXPECT_EQ((10 + hlen) % 64, 0u);
    EXPECT_EQ(b[10 + hlen - 1], std::byte{'\n'});
    EXPECT_EQ(b.size(), 10 + hlen + a.bytes.size());
    const std::string header(reinterpret_cast<const char*>(b.data()) + 10, hlen);
    EXPECT_EQ(header.rfind("{'descr': '<f8', 'fortran_order': False, 'shape': (", 0), 0u) << header;
    expect_same(ntk::parse_npy(b.data(), b.size(), "mem"), a);
  }
}

TEST_F(IoNpy, ReadsVersion2And3AndEquivalentSpellings) {
  for (int major : {2, 3}) {
    const Bytes b = npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24, major);
    const RawArray r = ntk::parse_npy(b.data(), b.size(), "mem");
    EXPECT_EQ(r.dtype, DType::float32);
    EXPECT_EQ(r.shape, (Shape{2, 3}));
  }
  // Double quotes, no trailing comma, another key order, native order, Python 2 long literals.
  const Bytes b = npy_with_header("{\"shape\":(2L,3L,),\"fortran_order\":False,\"descr\":\"=i2\"}", 12);
  const RawArray r = ntk::parse_npy(b.data(), b.size(), "mem");
  EXPECT_EQ(r.dtype, DType::int16);
  EXPECT_EQ(r.shape, (Shape{2, 3}));
  const Bytes u = npy_with_header("{'descr': '|u1', 'fortran_order': False, 'shape': (), }", 1);
  EXPECT_EQ(ntk::parse_npy(u.data(), u.size(), "mem").dtype, DType::uint8);
}

TEST_F(IoNpy, TruncatedFileThrows) {
  const Bytes full = ntk::serialize_npy(ramp(DType::float64, {3, 5}));
  for (size_t cut = 0; cut < full.size(); ++cut) {
    write_bytes(path("t.npy"), Bytes(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut)));
    EXPECT_THROW(ntk::read_npy(path("t.npy")), IoError) << "cut at " << cut;
  }
  write_bytes(path("t.npy"), Bytes(full.begin(), full.end() - 1));
  expect_io_error([&] { ntk::read_npy(path("t.npy")); }, {path("t.npy"), "truncated", "(3, 5)", "120"});
  write_bytes(path("t.npy"), Bytes(full.begin(), full.begin() + 9));
  expect_io_error([&] { ntk::read_npy(path("t.npy")); }, {"truncated"});
  write_bytes(path("t.npy"), Bytes(full.begin(), full.begin() + 40));
  expect_io_error([&] { ntk::read_npy(path("t.npy")); }, {"truncated"});
}

TEST_F(IoNpy, TrailingDataThrows) {
  Bytes b = ntk::serialize_npy(ramp(DType::float32, {2}));
  b.push_back(std::byte{0});
  expect_io_error([&] { ntk::parse_npy(b.data(), b.size(), "x.npy"); }, {"x.npy", "unexpected bytes"});
}

TEST_F(IoNpy, CorruptHeadersThrow) {
  const std::vector<std::string> bad = {
      "",
      "{",
      "}",
      "{'descr': '<f8', 'fortran_order': False}",                            // no shape
      "{'fortran_order': False, 'shape': (2,)}",                             // no descr
      "{'descr': '<f8', 'shape': (2,)}",                                     // no fortran_order
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2), }",            // (2) is not a tuple
      "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }",          // negative
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,,), }",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'shape': (2,), }",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'extra': 1, }",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), } x",
      "{'descr': '<f8' 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '<f8', 'fortran_order': false, 'shape': (2,), }",
      "{'descr': '<f8, 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '<f\\x38', 'fortran_order': False, 'shape': (2,), }",
      "{'descr': <f8, 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '<f8', 'fortran_order': False, 'shape': [2], }",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (2.0,), }",
      std::string("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\0", 58),
  };
  for (const auto& h : bad) {
    const Bytes b = npy_with_header(h, 16);
    expect_io_error([&] { ntk::parse_npy(b.data(), b.size(), "bad.npy"); }, {"bad.npy"});
  }
  // Bad magic, unsupported version, header length beyond the file.
  Bytes b = npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16);
  Bytes m = b;
  m[1] = std::byte{'X'};
  expect_io_error([&] { ntk::parse_npy(m.data(), m.size(), "m"); }, {"not a .npy file"});
  Bytes v = b;
  v[6] = std::byte{4};
  expect_io_error([&] { ntk::parse_npy(v.data(), v.size(), "v"); }, {"version 4.0"});
  Bytes l = b;
  l[8] = l[9] = std::byte{0xff};
  expect_io_error([&] { ntk::parse_npy(l.data(), l.size(), "l"); }, {"truncated"});
  const Bytes empty;
  expect_io_error([&] { ntk::parse_npy(empty.data(), 0, "e"); }, {"empty"});
}

TEST_F(IoNpy, HugeShapesThrowWithoutAllocating) {
  const std::vector<std::string> shapes = {
      "(4611686018427387904, 4611686018427387904)",  // product overflows 64 bits
      "(99999999999999999999999,)",                  // does not fit in 64 bits
      "(1099511627776,)",                            // 8 TiB of float64
      "(1000000000,)",                               // 8 GB, but the file holds 16 bytes
      "(3037000500, 3037000500, 0, 3037000500, 3037000500)",
      "(1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
      "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1)",  // more than 64 dimensions
  };
  for (const auto& s : shapes) {
    const Bytes b = npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': " + s + ", }", 16);
    EXPECT_THROW(ntk::parse_npy(b.data(), b.size(), "huge.npy"), IoError) << s;
  }
  // A version 2 header length of 4 GiB in a small file.
  Bytes b = npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16, 2);
  b[8] = b[9] = b[10] = b[11] = std::byte{0xff};
  EXPECT_THROW(ntk::parse_npy(b.data(), b.size(), "huge.npy"), IoError);
}

TEST_F(IoNpy, UnsupportedLayoutsAndDtypesThrow) {
  auto with_descr = [](const std::string& descr, bool fortran = false) {
    return npy_with_header("{'descr': " + descr + ", 'fortran_order': " + (fortran ? "True" : "False") +
                               ", 'shape': (2, 2), }",
                           32);
  };
  Bytes b = with_descr("'>f8'");
  expect_io_error([&] { ntk::parse_npy(b.data(), b.size(), "be.npy"); }, {"be.npy", "big-endian", ">f8"});
  b = with_descr("'<f8'", true);
  expect_io_error([&] { ntk::parse_npy(b.data(), b.size(), "f.npy"); }, {"f.npy", "Fortran"});
  b = with_descr("'|O'");
  expect_io_error([&] { ntk::parse_npy(b.data(), b.size(), "o.npy"); }, {"o.npy", "object"});
  b = with_descr("[('a', '<f8')]");
  expect_io_error([&] { ntk::parse_npy(b.data(), b.size(), "s.npy"); }, {"structured"});
  for (const char* d : {"'<c16'", "'<u2'", "'|b1'", "'<f2'", "'|f8'", "'f8'", "''", "'<U3'"}) {
    b = with_descr(d);
    expect_io_error([&] { ntk::parse_npy(b.data(), b.size(), "d.npy"); }, {"d.npy", "dtype"});
  }
}

TEST_F(IoNpy, MissingFileNamesThePath) {
  expect_io_error([&] { ntk::read_npy(path("missing.npy")); }, {path("missing.npy"), "No such file"});
  expect_io_error([&] { ntk::read_npy(dir_.string()); }, {"directory"});
}

// ---------------------------------------------------------------------------------------------
// .npz

TEST_F(IoNpz, RoundTrip) {
  std::map<std::string, RawArray> m = {
      {"0.W", ramp(DType::float32, {3, 4})}, {"0.b", ramp(DType::float32, {4})},
      {"2.0.W", ramp(DType::float64, {3, 3, 2, 5})}, {"scalar", ramp(DType::float64, {})},
      {"empty", ramp(DType::float64, {0, 3})},       {"labels", ramp(DType::uint8, {7})},
  };
  ntk::write_npz(path("p.npz"), m);
  const auto back = ntk::read_npz(path("p.npz"));
  ASSERT_EQ(back.size(), m.size());
  for (const auto& [k, a] : m) {
    ASSERT_TRUE(back.contains(k)) << k;
    expect_same(back.at(k), a);
  }
  const Bytes b = read_bytes(path("p.npz"));
  EXPECT_EQ(ntk::parse_npz(b.data(), b.size(), "mem").size(), m.size());
  // Equal inputs give identical files.
  ntk::write_npz(path("q.npz"), m);
  EXPECT_TRUE(read_bytes(path("q.npz")) == b);
}

TEST_F(IoNpz, EmptyArchiveRoundTrip) {
  ntk::write_npz(path("e.npz"), {});
  EXPECT_TRUE(ntk::read_npz(path("e.npz")).empty());
}

TEST_F(IoNpz, TruncatedThrows) {
  ntk::write_npz(path("p.npz"), {{"a", ramp(DType::float64, {20})}, {"b", ramp(DType::float32, {3, 3})}});
  const Bytes full = read_bytes(path("p.npz"));
  for (size_t cut = 0; cut < full.size(); ++cut) {
    write_bytes(path("t.npz"), Bytes(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut)));
    EXPECT_THROW(ntk::read_npz(path("t.npz")), IoError) << "cut at " << cut;
    EXPECT_THROW(ntk::parse_npz(full.data(), cut, "mem"), IoError) << "cut at " << cut;
  }
  write_bytes(path("t.npz"), Bytes(full.begin(), full.end() - 10));
  expect_io_error([&] { ntk::read_npz(path("t.npz")); }, {path("t.npz"), "truncated"});
}

TEST_F(IoNpz, CorruptDataThrows) {
  ntk::write_npz(path("p.npz"), {{"a", ramp(DType::float64, {20})}});
  Bytes b = read_bytes(path("p.npz"));
  // Flip a byte inside the array data: the CRC no longer matches.
  b[150] ^= std::byte{0x40};
  expect_io_error([&] { ntk::parse_npz(b.data(), b.size(), "c.npz"); }, {"c.npz", "a.npy"});
  const Bytes junk = to_bytes("this is not a zip archive at all, just text");
  expect_io_error([&] { ntk::parse_npz(junk.data(), junk.size(), "j.npz"); }, {"j.npz"});
}

TEST_F(IoNpz, DuplicateKeysThrow) {
  ntk::write_npz(path("p.npz"), {{"a", ramp(DType::float64, {2})}, {"b", ramp(DType::float64, {2})}});
  Bytes b = read_bytes(path("p.npz"));
  // Rename member b.npy to a.npy in both the local and the central headers.
  const std::string from = "b.npy";
  int replaced = 0;
  for (size_t i = 0; i + from.size() <= b.size(); ++i)
    if (std::memcmp(b.data() + i, from.data(), from.size()) == 0) {
      b[i] = std::byte{'a'};
      ++replaced;
    }
  ASSERT_EQ(replaced, 2);
  expect_io_error([&] { ntk::parse_npz(b.data(), b.size(), "d.npz"); }, {"d.npz", "duplicate"});
}

TEST_F(IoNpz, InconsistentSizesThrow) {
  ntk::write_npz(path("p.npz"), {{"a", ramp(DType::float64, {20})}});
  const Bytes good = read_bytes(path("p.npz"));
  auto patch_u32 = [](Bytes& b, size_t at, std::uint32_t v) {
    for (int k = 0; k < 4; ++k) b[at + k] = std::byte((v >> (8 * k)) & 0xff);
  };
  auto find = [&](const char* sig) {
    for (size_t i = 0; i + 4 <= good.size(); ++i)
      if (std::memcmp(good.data() + i, sig, 4) == 0) return i;
    return size_t{0};
  };
  const size_t local = find("PK\x03\x04"), central = find("PK\x01\x02");
  ASSERT_GT(central, 0u);
  for (std::uint32_t size : {0x7fffffffu, 0xfffffff0u, 1u}) {
    Bytes b = good;
    patch_u32(b, central + 24, size);  // uncompressed size
    patch_u32(b, local + 22, size);
    EXPECT_THROW(ntk::parse_npz(b.data(), b.size(), "s.npz"), IoError) << size;
    b = good;
    patch_u32(b, central + 20, size);  // compressed size
    patch_u32(b, central + 24, size);
    patch_u32(b, local + 18, size);
    patch_u32(b, local + 22, size);
    EXPECT_THROW(ntk::parse_npz(b.data(), b.size(), "s.npz"), IoError) << size;
  }
}

TEST_F(IoNpz, RejectsBadMembers) {
  make_zip(path("txt.npz"), {{"a.npy", ntk::serialize_npy(ramp(DType::float32, {2}))}, {"readme.txt", to_bytes("hi")}},
           false);
  expect_io_error([&] { ntk::read_npz(path("txt.npz")); }, {path("txt.npz"), "readme.txt", "not a .npy"});
  const Bytes be = npy_with_header("{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }", 16);
  make_zip(path("be.npz"), {{"w.npy", be}}, true);
  expect_io_error([&] { ntk::read_npz(path("be.npz")); }, {path("be.npz"), "w.npy", "big-endian"});
  // Deflated members written by libzip are read like np.savez_compressed's.
  make_zip(path("z.npz"), {{"w.npy", ntk::serialize_npy(ramp(DType::float64, {50, 4}))}}, true);
  expect_same(ntk::read_npz(path("z.npz")).at("w"), ramp(DType::float64, {50, 4}));
}

TEST_F(IoNpz, MissingOrEmptyFileThrows) {
  expect_io_error([&] { ntk::read_npz(path("missing.npz")); }, {path("missing.npz"), "No such file"});
  write_bytes(path("empty.npz"), {});
  expect_io_error([&] { ntk::read_npz(path("empty.npz")); }, {path("empty.npz"), "empty"});
}

// ---------------------------------------------------------------------------------------------
// Files written and read by real NumPy

TEST_F(IoNumpy, WrittenNpyIsRead) {
  if (!has_numpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  ASSERT_EQ(python(R"(
np.save(d + '/f32.npy', (np.arange(6, dtype=np.float32) + 0.5).reshape(2, 3))
np.save(d + '/f64.npy', (np.arange(24, dtype=np.float64) + 0.5).reshape(2, 3, 4))
np.save(d + '/u8.npy', np.arange(200, 210, dtype=np.uint8))
np.save(d + '/i8.npy', np.arange(-5, 5, dtype=np.int8))
np.save(d + '/i16.npy', np.arange(-5, 5, dtype=np.int16))
np.save(d + '/i32.npy', np.arange(-5, 5, dtype=np.int32))
np.save(d + '/i64.npy', np.arange(-5, 5, dtype=np.int64))
np.save(d + '/scalar.npy', np.float64(2.5))
np.save(d + '/empty.npy', np.zeros((0, 3)))
np.save(d + '/fortran.npy', np.asfortranarray(np.ones((2, 3))))
np.save(d + '/big.npy', np.ones(3, dtype='>f8'))
np.save(d + '/obj.npy', np.array([1, 'a'], dtype=object), allow_pickle=True)
)"),
            0);
  const RawArray f32 = ntk::read_npy(path("f32.npy"));
  EXPECT_EQ(f32.dtype, DType::float32);
  EXPECT_EQ(f32.as<float>().vector(), (std::vector<float>{0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f}));
  const RawArray f64 = ntk::read_npy(path("f64.npy"));
  expect_same(f64, ramp(DType::float64, {2, 3, 4}));
  EXPECT_EQ(ntk::read_npy(path("u8.npy")).as<double>()[9], 209.0);
  for (const char* n : {"i8", "i16", "i32", "i64"}) {
    const auto v = ntk::read_npy(path(std::string(n) + ".npy")).as<double>();
    ASSERT_EQ(v.size(), 10) << n;
    EXPECT_EQ(v[0], -5.0) << n;
    EXPECT_EQ(v[9], 4.0) << n;
  }
  const RawArray s = ntk::read_npy(path("scalar.npy"));
  EXPECT_EQ(s.shape, Shape{});
  EXPECT_EQ(s.as<double>()[0], 2.5);
  EXPECT_EQ(ntk::read_npy(path("empty.npy")).shape, (Shape{0, 3}));
  expect_io_error([&] { ntk::read_npy(path("fortran.npy")); }, {"Fortran"});
  expect_io_error([&] { ntk::read_npy(path("big.npy")); }, {"big-endian"});
  expect_io_error([&] { ntk::read_npy(path("obj.npy")); }, {"object"});
}

TEST_F(IoNumpy, WrittenNpzIsRead) {
  if (!has_numpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  ASSERT_EQ(python(R"(
arrays = {'0.W': (np.arange(12, dtype=np.float32) + 0.5).reshape(3, 4), '0.b': np.zeros(4, np.float32),
          '2.0.W': (np.arange(24, dtype=np.float64) + 0.5).reshape(2, 3, 4), 's': np.float64(1.5)}
np.savez(d + '/plain.npz', **arrays)
np.savez_compressed(d + '/compressed.npz', **arrays)
np.savez_compressed(d + '/big.npz', w=np.linspace(0, 1, 200000))
)"),
            0);
  for (const char* name : {"plain.npz", "compressed.npz"}) {
    const auto m = ntk::read_npz(path(name));
    ASSERT_EQ(m.size(), 4u) << name;
    EXPECT_EQ(m.at("0.W").shape, (Shape{3, 4}));
    EXPECT_EQ(m.at("0.W").as<float>()[11], 11.5f);
    EXPECT_EQ(m.at("0.b").as<double>().vector(), std::vector<double>(4, 0.0));
    expect_same(m.at("2.0.W"), ramp(DType::float64, {2, 3, 4}));
    EXPECT_EQ(m.at("s").as<double>()[0], 1.5);
  }
  const auto big = ntk::read_npz(path("big.npz")).at("w").as<double>();
  ASSERT_EQ(big.size(), 200000);
  EXPECT_EQ(big[199999], 1.0);
}

TEST_F(IoNumpy, ReadsOurFiles) {
  if (!has_numpy()) GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  for (DType t : kAllDtypes) ntk::write_npy(path(std::string(ntk::dtype_name(t)) + ".npy"), ramp(t, {4, 3}));
  ntk::write_npy(path("scalar.npy"), ramp(DType::float64, {}));
  ntk::write_npy(path("empty.npy"), ramp(DType::float32, {3, 0}));
  ntk::write_npz(path("p.npz"), {{"0.W", ramp(DType::float32, {3, 4})}, {"1.b", ramp(DType::float64, {5})}});
  ntk::write_npz(path("e.npz"), {});
  EXPECT_EQ(python(R"(
for t in ['float32', 'float64', 'uint8', 'int8', 'int16', 'int32', 'int64']:
    a = np.load(d + '/' + t + '.npy')
    assert a.dtype == np.dtype(t) and a.shape == (4, 3), (t, a.dtype, a.shape)
    if t.startswith('float'):
        assert (a.ravel() == np.arange(12) + 0.5).all(), a
s = np.load(d + '/scalar.npy'); assert s.shape == () and s == 0.5
e = np.load(d + '/empty.npy'); assert e.shape == (3, 0) and e.dtype == np.float32
with np.load(d + '/p.npz') as z:
    assert sorted(z.files) == ['0.W', '1.b'], z.files
    assert z['0.W'].dtype == np.float32 and (z['0.W'].ravel() == np.arange(12) + 0.5).all()
    assert (z['1.b'] == np.arange(5) + 0.5).all()
with np.load(d + '/e.npz') as z:
    assert z.files == []
)"),
            0);
}

// ---------------------------------------------------------------------------------------------
// IDX

TEST_F(IoIdx, PlainRoundTripEveryType) {
  const std::vector<std::pair<unsigned, DType>> types = {{0x08, DType::uint8},  {0x09, DType::int8},
                                                         {0x0B, DType::int16},  {0x0C, DType::int32},
                                                         {0x0D, DType::float32}, {0x0E, DType::float64}};
  for (const auto& [code, t] : types) {
    const RawArray a = ramp(t, {3, 2, 2});
    write_bytes(path("x.idx"), idx_bytes(code, {3, 2, 2}, a));
    expect_same(ntk::read_idx(path("x.idx")), a);
    const Bytes b = idx_bytes(code, {3, 2, 2}, a);
    expect_same(ntk::parse_idx(b.data(), b.size(), "mem"), a);
  }
  write_bytes(path("empty.idx"), idx_bytes(0x08, {0, 28, 28}, ramp(DType::uint8, {0})));
  EXPECT_EQ(ntk::read_idx(path("empty.idx")).shape, (Shape{0, 28, 28}));
}

TEST_F(IoIdx, GzipRoundTrip) {
  const RawArray images = ramp(DType::uint8, {10, 28, 28});
  gzip_to(path("images-idx3-ubyte.gz"), idx_bytes(0x08, {10, 28, 28}, images));
  expect_same(ntk::read_idx(path("images-idx3-ubyte.gz")), images);
  // Gzip is detected by content, not by name.
  const RawArray f = ramp(DType::float32, {5, 3});
  gzip_to(path("floats.idx"), idx_bytes(0x0D, {5, 3}, f));
  expect_same(ntk::read_idx(path("floats.idx")), f);
  const Bytes gz = read_bytes(path("floats.idx"));
  expect_same(ntk::parse_idx(gz.data(), gz.size(), "mem"), f);
  // Concatenated gzip members, as `cat a.gz b.gz` produces.
  const Bytes all = idx_bytes(0x0E, {4, 4}, ramp(DType::float64, {4, 4}));
  gzip_to(path("multi.gz"), Bytes(all.begin(), all.begin() + 50));
  gzip_to(path("multi.gz"), Bytes(all.begin() + 50, all.end()), "ab");
  expect_same(ntk::read_idx(path("multi.gz")), ramp(DType::float64, {4, 4}));
}

TEST_F(IoIdx, TruncatedThrows) {
  const RawArray a = ramp(DType::int16, {6, 5});
  const Bytes plain = idx_bytes(0x0B, {6, 5}, a);
  for (size_t cut = 0; cut < plain.size(); ++cut) {
    write_bytes(path("t.idx"), Bytes(plain.begin(), plain.begin() + static_cast<std::ptrdiff_t>(cut)));
    EXPECT_THROW(ntk::read_idx(path("t.idx")), IoError) << "cut at " << cut;
  }
  write_bytes(path("t.idx"), Bytes(plain.begin(), plain.end() - 3));
  expect_io_error([&] { ntk::read_idx(path("t.idx")); }, {path("t.idx"), "truncated", "(6, 5)"});

  gzip_to(path("t.gz"), plain);
  const Bytes gz = read_bytes(path("t.gz"));
  for (size_t cut = 2; cut < gz.size(); ++cut)
    EXPECT_THROW(ntk::parse_idx(gz.data(), cut, "t.gz"), IoError) << "cut at " << cut;
  write_bytes(path("t.gz"), Bytes(gz.begin(), gz.end() - 12));
  expect_io_error([&] { ntk::read_idx(path("t.gz")); }, {path("t.gz"), "truncated"});
  // A complete gzip stream whose content is short.
  gzip_to(path("short.gz"), Bytes(plain.begin(), plain.end() - 2));
  expect_io_error([&] { ntk::read_idx(path("short.gz")); }, {"truncated"});
}

TEST_F(IoIdx, MalformedThrows) {
  const RawArray a = ramp(DType::uint8, {4});
  Bytes b = idx_bytes(0x08, {4}, a);
  b.push_back(std::byte{0});
  expect_io_error([&] { ntk::parse_idx(b.data(), b.size(), "x"); }, {"more data"});
  gzip_to(path("long.gz"), b);
  expect_io_error([&] { ntk::read_idx(path("long.gz")); }, {"more data"});
  b = idx_bytes(0x08, {4}, a);
  b[0] = std::byte{1};
  expect_io_error([&] { ntk::parse_idx(b.data(), b.size(), "x"); }, {"not an IDX file"});
  b = idx_bytes(0x0A, {4}, a);
  expect_io_error([&] { ntk::parse_idx(b.data(), b.size(), "x"); }, {"0x0A"});
  b = idx_bytes(0x08, {}, a);
  expect_io_error([&] { ntk::parse_idx(b.data(), b.size(), "x"); }, {"no dimensions"});
  // Absurd dimensions, plain and gzipped: rejected before anything that size is allocated.
  b = idx_bytes(0x0E, {0xffffffffu, 0xffffffffu, 0xffffffffu}, ramp(DType::uint8, {0}));
  EXPECT_THROW(ntk::parse_idx(b.data(), b.size(), "x"), IoError);
  b = idx_bytes(0x0E, {100000, 100000}, ramp(DType::uint8, {0}));
  EXPECT_THROW(ntk::parse_idx(b.data(), b.size(), "x"), IoError);
  b = idx_bytes(0x0E, {50000, 50000}, ramp(DType::uint8, {0}));  // 20 GB, under the 64 GiB cap
  gzip_to(path("huge.gz"), b);
  expect_io_error([&] { ntk::read_idx(path("huge.gz")); }, {"corrupt header"});
  Bytes junk = {std::byte{0x1f}, std::byte{0x8b}, std::byte{8}, std::byte{0}, std::byte{1}, std::byte{2}};
  EXPECT_THROW(ntk::parse_idx(junk.data(), junk.size(), "x"), IoError);
  gzip_to(path("trail.gz"), idx_bytes(0x08, {4}, a));
  Bytes trail = read_bytes(path("trail.gz"));
  trail.push_back(std::byte{'x'});
  expect_io_error([&] { ntk::parse_idx(trail.data(), trail.size(), "x"); }, {"trailing"});
  expect_io_error([&] { ntk::read_idx(path("missing.idx")); }, {path("missing.idx"), "No such file"});
}

// ---------------------------------------------------------------------------------------------
// Atomic writes

TEST_F(IoAtomic, MissingDirectoryLeavesNothing) {
  const std::string p = path("no/such/dir/a.npy");
  expect_io_error([&] { ntk::write_npy(p, ramp(DType::float32, {2})); }, {p, "No such file"});
  expect_io_error([&] { ntk::write_npz(path("nodir/p.npz"), {{"a", ramp(DType::float32, {2})}}); },
                  {path("nodir/p.npz")});
  EXPECT_FALSE(fs::exists(path("no")));
  EXPECT_FALSE(fs::exists(path("nodir")));
  EXPECT_TRUE(list_dir(dir_).empty());
}

TEST_F(IoAtomic, NoTempFilesLeftBehind) {
  ntk::write_npy(path("a.npy"), ramp(DType::float64, {3}));
  ntk::write_npy(path("a.npy"), ramp(DType::float64, {4}));  // overwrite
  ntk::write_npz(path("p.npz"), {{"w", ramp(DType::float32, {2, 2})}});
  ntk::write_npz(path("p.npz"), {{"w", ramp(DType::float32, {3, 2})}});
  ntk::write_file_atomic(path("raw.bin"), to_bytes("hello"));
  EXPECT_EQ(list_dir(dir_), (std::set<std::string>{"a.npy", "p.npz", "raw.bin"}));
  EXPECT_EQ(ntk::read_npy(path("a.npy")).shape, Shape{4});
  EXPECT_EQ(ntk::read_npz(path("p.npz")).at("w").shape, (Shape{3, 2}));
  EXPECT_TRUE(read_bytes(path("raw.bin")) == to_bytes("hello"));
  // Permissions come from the umask, not mkstemp's 0600.
  EXPECT_NE(fs::status(path("a.npy")).permissions() & fs::perms::owner_read, fs::perms::none);
}

TEST_F(IoAtomic, FailuresLeaveOldContentsAndNoTemp) {
  ntk::write_npy(path("a.npy"), ramp(DType::float64, {3}));
  // Inconsistent arrays are rejected before any file is touched.
  RawArray bad = ramp(DType::float64, {3});
  bad.shape = {4};
  EXPECT_THROW(ntk::write_npy(path("a.npy"), bad), ntk::InvalidArgument);
  EXPECT_THROW(ntk::write_npz(path("b.npz"), {{"ok", ramp(DType::float32, {1})}, {"x", bad}}), ntk::InvalidArgument);
  expect_same(ntk::read_npy(path("a.npy")), ramp(DType::float64, {3}));
  // Renaming onto a directory fails after the data was written: the temporary must go.
  fs::create_directories(path("sub.npy"));
  fs::create_directories(path("sub.npy/keep"));
  expect_io_error([&] { ntk::write_npy(path("sub.npy"), ramp(DType::float64, {3})); }, {path("sub.npy")});
  EXPECT_EQ(list_dir(dir_), (std::set<std::string>{"a.npy", "sub.npy"}));
}
