// IDX (the MNIST format): 0x00 0x00 <type> <ndim>, ndim big-endian u32 dimensions, then the
// big-endian payload. Gzip-compressed files are recognised by their magic bytes and inflated with a
// size bound taken from the (decompressed) header, so a corrupt header cannot force a huge
// allocation and a truncated stream is reported as such.
#include <zlib.h>

#include <climits>
#include <cstdio>
#include <cstring>

#include "io_detail.hpp"
#include "ntk/io.hpp"

namespace ntk {
namespace {

std::string idx_prefix(const std::string& what) { return "cannot read IDX file '" + what + "': "; }

bool is_gzip(const std::byte* data, size_t size) {
  return size >= 2 && data[0] == std::byte{0x1f} && data[1] == std::byte{0x8b};
}

// Validates the first four bytes and returns the full header length (4 + 4 * ndim).
size_t header_size(const std::byte* p, const std::string& prefix) {
  if (p[0] != std::byte{0} || p[1] != std::byte{0}) throw IoError(prefix + "not an IDX file (bad magic bytes)");
  const auto ndim = std::to_integer<size_t>(p[3]);
  if (ndim == 0) throw IoError(prefix + "IDX header declares no dimensions");
  return 4 + 4 * ndim;
}

struct IdxHeader {
  DType dtype = DType::uint8;
  Shape shape;
  size_t data_bytes = 0;
};

// hdr holds header_size(hdr) bytes.
IdxHeader decode_header(const std::byte* hdr, const std::string& prefix) {
  IdxHeader h;
  const auto type = std::to_integer<unsigned>(hdr[2]);
  switch (type) {
    case 0x08: h.dtype = DType::uint8; break;
    case 0x09: h.dtype = DType::int8; break;
    case 0x0B: h.dtype = DType::int16; break;
    case 0x0C: h.dtype = DType::int32; break;
    case 0x0D: h.dtype = DType::float32; break;
    case 0x0E: h.dtype = DType::float64; break;
    default: {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", type);
      throw IoError(prefix + "unsupported IDX data type " + hex);
    }
  }
  const auto ndim = std::to_integer<size_t>(hdr[3]);
  std::uint64_t bytes = dtype_size(h.dtype);
  bool empty = false;
  for (size_t i = 0; i < ndim; ++i) {
    const std::byte* q = hdr + 4 + 4 * i;
    std::uint64_t d = 0;
    for (int k = 0; k < 4; ++k) d = (d << 8) | std::to_integer<std::uint64_t>(q[k]);
    h.shape.push_back(static_cast<index_t>(d));
    // As for .npy: zero dimensions stay out of the product so the check does not depend on order.
    if (d == 0) {
      empty = true;
    } else if (bytes > detail::kMaxArrayBytes / d) {
      throw IoError(prefix + "dimensions are too large (over " + std::to_string(detail::kMaxArrayBytes >> 30) +
                    " GiB of data)");
    } else {
      bytes *= d;
    }
  }
  h.data_bytes = empty ? 0 : static_cast<size_t>(bytes);
  return h;
}

std::string too_little(const IdxHeader& h, size_t found) {
  return "truncated: dimensions " + shape_string(h.shape) + " of " + dtype_name(h.dtype) + " need " +
         std::to_string(h.data_bytes) + " bytes of data, found " + std::to_string(found);
}
std::string too_much(const IdxHeader& h) {
  return "more data than dimensions " + shape_string(h.shape) + " of " + dtype_name(h.dtype) + " need (" +
         std::to_string(h.data_bytes) + " bytes)";
}

// Big-endian to host (little-endian) order, in place.
void swap_bytes(std::byte* p, size_t bytes, size_t item) {
  auto swap_all = [&](auto tag) {
    using U = decltype(tag);
    for (size_t off = 0; off + sizeof(U) <= bytes; off += sizeof(U)) {
      U v;
      std::memcpy(&v, p + off, sizeof v);
      if constexpr (sizeof(U) == 2) v = __builtin_bswap16(v);
      else if constexpr (sizeof(U) == 4) v = __builtin_bswap32(v);
      else v = __builtin_bswap64(v);
      std::memcpy(p + off, &v, sizeof v);
    }
  };
  if (item == 2) swap_all(std::uint16_t{});
  else if (item == 4) swap_all(std::uint32_t{});
  else if (item == 8) swap_all(std::uint64_t{});
}

// Streams the decompressed bytes of a gzip file (one or more concatenated members) from memory.
class GzipReader {
 public:
  GzipReader(const std::byte* data, size_t size, const std::string& prefix)
      : data_(data), size_(size), prefix_(prefix) {
    // 16 + MAX_WBITS: gzip wrapper only.
    if (inflateInit2(&zs_, 16 + MAX_WBITS) != Z_OK) throw IoError(prefix_ + "cannot initialise zlib");
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(data_));
  }
  ~GzipReader() { inflateEnd(&zs_); }
  GzipReader(const GzipReader&) = delete;
  GzipReader& operator=(const GzipReader&) = delete;

  // Fills out with up to n bytes; returns fewer only at the end of the data.
  size_t read(std::byte* out, size_t n) {
    size_t produced = 0;
    while (produced < n && !finished_) {
      const size_t in_left = remaining_input();
      // zlib counts in uInt; feed and drain at most UINT_MAX bytes per call.
      zs_.avail_in = static_cast<uInt>(std::min<size_t>(in_left, UINT_MAX));
      zs_.next_out = reinterpret_cast<Bytef*>(out + produced);
      zs_.avail_out = static_cast<uInt>(std::min<size_t>(n - produced, UINT_MAX));
      const uInt out_before = zs_.avail_out;
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      produced += out_before - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        const size_t rest = remaining_input();
        if (rest == 0) {
          finished_ = true;
        } else if (is_gzip(data_ + (size_ - rest), rest)) {
          // Another gzip member follows (as gzip(1) writes for concatenated files).
          if (inflateReset(&zs_) != Z_OK) throw IoError(prefix_ + "cannot reset zlib");
        } else {
          throw IoError(prefix_ + std::to_string(rest) + " bytes of trailing garbage after the gzip data");
        }
      } else if (rc == Z_BUF_ERROR) {
        // No progress was possible although output space remained: the input ran out mid-stream.
        if (remaining_input() == 0) throw IoError(prefix_ + "truncated gzip data");
      } else if (rc != Z_OK) {
        throw IoError(prefix_ + "corrupt gzip data" + (zs_.msg ? std::string(": ") + zs_.msg : std::string()));
      }
    }
    return produced;
  }

 private:
  size_t remaining_input() const {
    return size_ - static_cast<size_t>(reinterpret_cast<const std::byte*>(zs_.next_in) - data_);
  }

  z_stream zs_{};
  const std::byte* data_;
  size_t size_;
  const std::string& prefix_;
  bool finished_ = false;
};

RawArray parse_gzip(const std::byte* data, size_t size, const std::string& prefix) {
  GzipReader gz(data, size, prefix);
  std::vector<std::byte> hdr(4);
  if (gz.read(hdr.data(), 4) < 4) throw IoError(prefix + "truncated: the IDX header is incomplete");
  const size_t hsize = header_size(hdr.data(), prefix);
  hdr.resize(hsize);
  if (gz.read(hdr.data() + 4, hsize - 4) < hsize - 4) throw IoError(prefix + "truncated: the IDX header is incomplete");
  const IdxHeader h = decode_header(hdr.data(), prefix);
  if (h.data_bytes > detail::max_inflated_size(size))
    throw IoError(prefix + "dimensions " + shape_string(h.shape) + " need " + std::to_string(h.data_bytes) +
                  " bytes, more than " + std::to_string(size) + " bytes of gzip data can hold (corrupt header)");
  RawArray a;
  a.dtype = h.dtype;
  a.shape = h.shape;
  a.bytes.resize(h.data_bytes);
  const size_t got = gz.read(a.bytes.data(), a.bytes.size());
  if (got < h.data_bytes) throw IoError(prefix + too_little(h, got));
  std::byte probe;
  if (gz.read(&probe, 1) != 0) throw IoError(prefix + too_much(h));
  swap_bytes(a.bytes.data(), a.bytes.size(), dtype_size(a.dtype));
  return a;
}

// Plain (uncompressed) IDX in memory: validates and returns the header and the data offset.
IdxHeader parse_plain_header(const std::byte* data, size_t size, const std::string& prefix, size_t& offset) {
  if (size < 4) {
    for (size_t i = 0; i < size && i < 2; ++i)
      if (data[i] != std::byte{0}) throw IoError(prefix + "not an IDX file (bad magic bytes)");
    throw IoError(prefix + (size == 0 ? "empty file" : "truncated: the IDX header is incomplete"));
  }
  offset = header_size(data, prefix);
  if (size < offset) throw IoError(prefix + "truncated: the IDX header is incomplete");
  IdxHeader h = decode_header(data, prefix);
  if (size - offset < h.data_bytes) throw IoError(prefix + too_little(h, size - offset));
  if (size - offset > h.data_bytes) throw IoError(prefix + too_much(h));
  return h;
}

RawArray parse_idx_owned(std::vector<std::byte>&& buf, const std::string& prefix) {
  if (is_gzip(buf.data(), buf.size())) return parse_gzip(buf.data(), buf.size(), prefix);
  size_t offset = 0;
  const IdxHeader h = parse_plain_header(buf.data(), buf.size(), prefix, offset);
  // Reuse the file buffer for the data so that a large dataset is held once.
  buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(offset));
  swap_bytes(buf.data(), buf.size(), dtype_size(h.dtype));
  RawArray a;
  a.dtype = h.dtype;
  a.shape = h.shape;
  a.bytes = std::move(buf);
  return a;
}

}  // namespace

RawArray parse_idx(const std::byte* data, size_t size, const std::string& what) {
  const std::string prefix = idx_prefix(what);
  if (is_gzip(data, size)) return parse_gzip(data, size, prefix);
  size_t offset = 0;
  const IdxHeader h = parse_plain_header(data, size, prefix, offset);
  RawArray a;
  a.dtype = h.dtype;
  a.shape = h.shape;
  a.bytes.assign(data + offset, data + offset + h.data_bytes);
  swap_bytes(a.bytes.data(), a.bytes.size(), dtype_size(a.dtype));
  return a;
}

RawArray read_idx(const std::string& path) {
  const std::string prefix = idx_prefix(path);
  return parse_idx_owned(detail::read_file(path, prefix), prefix);
}

}  // namespace ntk
