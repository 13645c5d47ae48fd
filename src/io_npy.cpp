// NumPy .npy format (versions 1.0, 2.0, 3.0):
//   "\x93NUMPY" major minor header_len(u16 LE for 1.0, u32 LE otherwise) header data
// where header is a Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...), }
// padded with spaces and a final '\n'. The header is parsed as a strict subset of Python literal
// syntax rather than evaluated, and every size is checked against the buffer before use.
#include <cstring>
#include <limits>
#include <optional>
#include <string_view>

#include "io_detail.hpp"
#include "ntk/io.hpp"

namespace ntk {
namespace {

constexpr unsigned char kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
// NumPy itself allows at most 64 dimensions.
constexpr size_t kMaxDims = 64;
// Python's np.save never writes more than this, and capping it keeps header parsing trivially cheap.
constexpr std::uint64_t kMaxHeaderLen = 1u << 20;

struct NpyHeader {
  DType dtype = DType::float64;
  Shape shape;
  size_t data_offset = 0;
  size_t data_bytes = 0;
};

// Appends rather than "'" + s + "'", which trips a GCC 12 -Wrestrict false positive.
std::string quoted(std::string_view s) {
  std::string out(1, '\'');
  out.append(s);
  out += '\'';
  return out;
}

// Maps a descr string to a supported type, or explains why it is not supported.
DType parse_descr(std::string_view d, const std::string& prefix) {
  auto fail = [&](const std::string& why) -> DType { throw IoError(prefix + why); };
  if (d.find('O') != std::string_view::npos) return fail("object arrays (dtype " + quoted(d) + ") are not supported");
  if (d.size() < 2) return fail("unsupported dtype " + quoted(d));
  const char order = d[0];
  const std::string_view code = d.substr(1);
  std::optional<DType> t;
  if (code == "f4") t = DType::float32;
  else if (code == "f8") t = DType::float64;
  else if (code == "u1") t = DType::uint8;
  else if (code == "i1") t = DType::int8;
  else if (code == "i2") t = DType::int16;
  else if (code == "i4") t = DType::int32;
  else if (code == "i8") t = DType::int64;
  if (!t || (order != '<' && order != '>' && order != '=' && order != '|'))
    return fail("unsupported dtype " + quoted(d) +
                " (supported: float32, float64, uint8, int8, int16, int32, int64, little-endian)");
  const bool single_byte = dtype_size(*t) == 1;
  // Byte order is meaningless for one-byte types; '=' is taken as the writer's little-endian.
  if (!single_byte && order == '>')
    return fail("big-endian dtype " + quoted(d) + " is not supported; convert it with .astype('<" +
                std::string(code) + "')");
  if (!single_byte && order == '|') return fail("invalid dtype " + quoted(d) + " (a multi-byte type needs a byte order)");
  return *t;
}

class DictParser {
 public:
  DictParser(std::string_view text, const std::string& prefix) : s_(text), prefix_(prefix) {}

  NpyHeader parse() {
    std::optional<std::string> descr;
    std::optional<bool> fortran;
    std::optional<Shape> shape;
    ws();
    expect('{');
    for (;;) {
      ws();
      if (peek() == '}') break;
      const std::string key = string_literal();
      ws();
      expect(':');
      ws();
      if (key == "descr") {
        if (descr) fail("duplicate key 'descr'");
        if (peek() == '[') throw IoError(prefix_ + "structured dtypes are not supported");
        descr = string_literal();
      } else if (key == "fortran_order") {
        if (fortran) fail("duplicate key 'fortran_order'");
        fortran = boolean();
      } else if (key == "shape") {
        if (shape) fail("duplicate key 'shape'");
        shape = tuple();
      } else {
        fail("unexpected key " + quoted(key));
      }
      ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') fail("expected ',' or '}'");
    }
    ++pos_;
    ws();
    if (pos_ != s_.size()) fail("unexpected text after the closing '}'");
    if (!descr) fail("missing key 'descr'");
    if (!fortran) fail("missing key 'fortran_order'");
    if (!shape) fail("missing key 'shape'");

    NpyHeader h;
    h.dtype = parse_descr(*descr, prefix_);
    if (*fortran)
      throw IoError(prefix_ + "Fortran-ordered arrays are not supported; save a C-ordered copy "
                              "(np.ascontiguousarray)");
    h.shape = std::move(*shape);
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw IoError(prefix_ + "malformed header: " + why + " at header offset " + std::to_string(pos_));
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string string_literal() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a string");
    const size_t start = ++pos_;
    while (pos_ < s_.size() && s_[pos_] != q) {
      // Escapes never occur in the keys and dtypes NumPy writes; refusing them keeps this simple.
      if (s_[pos_] == '\\' || s_[pos_] == '\n') fail("unsupported character in string");
      ++pos_;
    }
    if (pos_ == s_.size()) fail("unterminated string");
    return std::string(s_.substr(start, pos_++ - start));
  }
  bool boolean() {
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("expected True or False");
  }
  index_t integer() {
    if (peek() < '0' || peek() > '9') fail("expected a non-negative integer");
    index_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      const int digit = peek() - '0';
      if (v > (std::numeric_limits<index_t>::max() - digit) / 10) fail("dimension too large");
      v = v * 10 + digit;
      ++pos_;
    }
    if (peek() == 'L') ++pos_;  // Python 2 long literal, written by old NumPy versions
    return v;
  }
  // (), (n,), (n, m), (n, m,): a one-element tuple needs its comma, as in Python.
  Shape tuple() {
    expect('(');
    Shape shape;
    ws();
    if (peek() == ')') {
      ++pos_;
      return shape;
    }
    for (;;) {
      if (shape.size() == kMaxDims) fail("more than " + std::to_string(kMaxDims) + " dimensions");
      shape.push_back(integer());
      ws();
      if (peek() == ')') {
        if (shape.size() == 1) fail("shape (n) must be written (n,)");
        ++pos_;
        return shape;
      }
      expect(',');
      ws();
      if (peek() == ')') {
        ++pos_;
        return shape;
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  const std::string& prefix_;
};

std::uint32_t read_le(const std::byte* p, int n) {
  std::uint32_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint32_t>(p[i]);
  return v;
}

NpyHeader parse_header(const std::byte* data, size_t size, const std::string& prefix) {
  const auto* u = reinterpret_cast<const unsigned char*>(data);
  const size_t magic_len = std::min(size, sizeof kMagic);
  if (size == 0 || std::memcmp(u, kMagic, magic_len) != 0)
    throw IoError(prefix + (size == 0 ? "empty file, not a .npy file" : "not a .npy file (bad magic bytes)"));
  if (size < 10) throw IoError(prefix + "truncated .npy file (" + std::to_string(size) + " bytes)");
  const int major = u[6], minor = u[7];
  size_t preamble = 0;
  if (major == 1 && minor == 0) preamble = 10;
  else if ((major == 2 || major == 3) && minor == 0) preamble = 12;
  else
    throw IoError(prefix + "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor));
  if (size < preamble) throw IoError(prefix + "truncated .npy file (" + std::to_string(size) + " bytes)");
  const std::uint64_t header_len = read_le(data + 8, preamble == 10 ? 2 : 4);
  if (header_len > kMaxHeaderLen)
    throw IoError(prefix + "header length " + std::to_string(header_len) + " is implausibly large");
  if (header_len > size - preamble)
    throw IoError(prefix + "truncated .npy file: header of " + std::to_string(header_len) + " bytes but only " +
                  std::to_string(size - preamble) + " bytes follow the preamble");

  const std::string_view text(reinterpret_cast<const char*>(data + preamble), header_len);
  NpyHeader h = DictParser(text, prefix).parse();
  h.data_offset = preamble + header_len;

  // numel() would throw InvalidArgument; a bad file must give IoError, so check the product here.
  // Zero-length dimensions are left out of the product so that the check does not depend on order.
  const std::uint64_t item = dtype_size(h.dtype);
  std::uint64_t bytes = item;
  bool empty = false;
  for (index_t d : h.shape) {
    const auto ud = static_cast<std::uint64_t>(d);
    if (ud == 0) {
      empty = true;
      continue;
    }
    if (bytes > detail::kMaxArrayBytes / ud)
      throw IoError(prefix + "shape " + shape_string(h.shape) + " is too large (over " +
                    std::to_string(detail::kMaxArrayBytes >> 30) + " GiB)");
    bytes *= ud;
  }
  if (empty) bytes = 0;
  const size_t available = size - h.data_offset;
  if (bytes > available)
    throw IoError(prefix + "truncated .npy file: shape " + shape_string(h.shape) + " of " + dtype_name(h.dtype) +
                  " needs " + std::to_string(bytes) + " bytes of data, found " + std::to_string(available));
  if (bytes < available)
    throw IoError(prefix + std::to_string(available - bytes) + " unexpected bytes after the data of shape " +
                  shape_string(h.shape) + " " + dtype_name(h.dtype));
  h.data_bytes = static_cast<size_t>(bytes);
  return h;
}

std::string npy_prefix(const std::string& what) { return "cannot read .npy file '" + what + "': "; }

}  // namespace

namespace detail {

RawArray parse_npy_prefixed(const std::byte* data, size_t size, const std::string& prefix) {
  const NpyHeader h = parse_header(data, size, prefix);
  RawArray a;
  a.dtype = h.dtype;
  a.shape = h.shape;
  a.bytes.assign(data + h.data_offset, data + h.data_offset + h.data_bytes);
  return a;
}

NpyLayout npy_layout(const std::byte* data, size_t size, const std::string& prefix) {
  const NpyHeader h = parse_header(data, size, prefix);
  return {h.dtype, h.shape, h.data_offset};
}

RawArray parse_npy_owned(std::vector<std::byte>&& buf, const std::string& prefix) {
  const NpyHeader h = parse_header(buf.data(), buf.size(), prefix);
  RawArray a;
  a.dtype = h.dtype;
  a.shape = h.shape;
  // Shift the data down over the header instead of copying, so a large array is held once.
  buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(h.data_offset));
  a.bytes = std::move(buf);
  return a;
}

std::vector<std::byte> npy_header(const RawArray& a) {
  checked_byte_size(a);
  return npy_header(a.dtype, a.shape);
}

std::vector<std::byte> npy_header(DType dtype, const Shape& shape) {
  numel(shape);  // throws InvalidArgument on negative dimensions or overflow
  std::string dict = "{'descr': '";
  dict += dtype_size(dtype) == 1 ? '|' : '<';
  switch (dtype) {
    case DType::float32: dict += "f4"; break;
    case DType::float64: dict += "f8"; break;
    case DType::uint8: dict += "u1"; break;
    case DType::int8: dict += "i1"; break;
    case DType::int16: dict += "i2"; break;
    case DType::int32: dict += "i4"; break;
    case DType::int64: dict += "i8"; break;
  }
  dict += "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) dict += ", ";
    dict += std::to_string(shape[i]);
  }
  if (shape.size() == 1) dict += ",";
  dict += "), }";

  // As NumPy does: pad with spaces so the data starts on a 64-byte boundary, end with '\n'.
  size_t preamble = 10;
  size_t total = (preamble + dict.size() + 1 + 63) / 64 * 64;
  if (total - preamble > 0xffff) {
    preamble = 12;
    total = (preamble + dict.size() + 1 + 63) / 64 * 64;
  }
  dict.append(total - preamble - dict.size() - 1, ' ');
  dict += '\n';

  std::vector<std::byte> out(preamble);
  std::memcpy(out.data(), kMagic, sizeof kMagic);
  out[6] = std::byte{static_cast<unsigned char>(preamble == 10 ? 1 : 2)};
  out[7] = std::byte{0};
  const size_t hlen = dict.size();
  for (size_t i = 0; i < preamble - 8; ++i) out[8 + i] = std::byte{static_cast<unsigned char>(hlen >> (8 * i))};
  const auto* d = reinterpret_cast<const std::byte*>(dict.data());
  out.insert(out.end(), d, d + dict.size());
  return out;
}

}  // namespace detail

RawArray parse_npy(const std::byte* data, size_t size, const std::string& what) {
  return detail::parse_npy_prefixed(data, size, npy_prefix(what));
}

RawArray read_npy(const std::string& path) {
  const std::string prefix = npy_prefix(path);
  return detail::parse_npy_owned(detail::read_file(path, prefix), prefix);
}

std::vector<std::byte> serialize_npy(const RawArray& a) {
  std::vector<std::byte> out = detail::npy_header(a);
  out.insert(out.end(), a.bytes.begin(), a.bytes.end());
  return out;
}

void write_npy(const std::string& path, const RawArray& a) {
  const std::vector<std::byte> header = detail::npy_header(a);  // validates a before any file is created
  detail::write_file_atomic_stream(path, [&](const detail::ByteSink& sink) {
    sink(header.data(), header.size());
    sink(a.bytes.data(), a.bytes.size());
  });
}

}  // namespace ntk
