// Internals shared by the .npy, .npz and IDX readers and writers (not part of the public API).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ntk/io.hpp"

namespace ntk::detail {

// No array read from a file may claim more than this many bytes. It is far above any parameter
// file or dataset ntkit handles, and it keeps a corrupt header from driving a huge allocation
// even where the payload size cannot be checked against the file length up front (compressed data).
inline constexpr std::uint64_t kMaxArrayBytes = std::uint64_t{64} << 30;

// Deflate cannot expand data by more than about 1032:1, so a compressed stream of n bytes that
// claims more than this many uncompressed bytes is corrupt; checking it before allocating keeps
// small malicious inputs from requesting gigabytes.
inline std::uint64_t max_inflated_size(std::uint64_t compressed) {
  constexpr std::uint64_t kRatio = 1032, kSlack = 4096;
  return compressed > (UINT64_MAX - kSlack) / kRatio ? UINT64_MAX : compressed * kRatio + kSlack;
}

// Whole file contents; throws IoError "<prefix><reason>" if it cannot be read.
std::vector<std::byte> read_file(const std::string& path, const std::string& prefix);

// The directory a file path lives in ("." for a bare name).
std::string directory_of(const std::string& path);

// Creates a fresh temporary file beside path ("<path>.tmp.XXXXXX") like mkstemp, but with mode
// 0666 so the umask decides the final permissions (mkstemp's 0600 would make every saved file
// private). Returns the open descriptor (opened with `flags` | O_CREAT | O_EXCL | O_CLOEXEC) and
// sets tmp to its name; throws IoError "<prefix>..." naming the directory on failure.
int create_temp_beside(const std::string& path, int flags, const std::string& prefix, std::string& tmp);
// Removes the temporary files create_temp_beside made for `path` ("<path>.tmp.XXXXXX") that are
// still there: left by a process killed while writing. For a job (re)starting on its own files.
void remove_stale_temps(const std::string& path);

// Called by a producer with successive chunks of the file contents.
using ByteSink = std::function<void(const std::byte*, size_t)>;
// Streams the producer's output to a temporary file next to path, fsyncs it and renames it over
// path. If the producer throws or any step fails, the temporary file is removed and the old
// contents of path (if any) are left untouched.
void write_file_atomic_stream(const std::string& path, const std::function<void(const ByteSink&)>& produce);

// Checks that a.bytes matches a.shape and a.dtype (InvalidArgument otherwise); returns the byte count.
size_t checked_byte_size(const RawArray& a);

// .npy: header bytes (magic, version, length, padded dict) for an array, without its data.
std::vector<std::byte> npy_header(const RawArray& a);
// The same for an array of this type and shape (validated with numel; a's bytes are not needed).
// Its length is a multiple of 64, so the data that follows it is 64-byte aligned, as in NumPy.
std::vector<std::byte> npy_header(DType dtype, const Shape& shape);
// Where the array of a .npy file held in data[0, size) is: its header validated, the data size
// checked against size (a truncated or padded file is an IoError), C order.
struct NpyLayout {
  DType dtype = DType::float64;
  Shape shape;
  size_t data_offset = 0;
  size_t data_bytes = 0;
};
NpyLayout parse_npy_layout(const std::byte* data, size_t size, const std::string& prefix);

// A .npy file memory-mapped read-only, for arrays larger than memory read a few rows at a time:
// pages come from the page cache on demand and nothing is copied up front.
class MappedNpyReader {
 public:
  explicit MappedNpyReader(const std::string& path);  // IoError naming the file
  ~MappedNpyReader();
  MappedNpyReader(const MappedNpyReader&) = delete;
  MappedNpyReader& operator=(const MappedNpyReader&) = delete;

  const std::string& path() const { return path_; }
  DType dtype() const { return layout_.dtype; }
  const Shape& shape() const { return layout_.shape; }
  // Start of the data, C order, little-endian; not necessarily aligned for its type (NumPy before
  // 1.13 padded headers to 16 bytes only), so read it with memcpy.
  const std::byte* data() const { return map_ + layout_.data_offset; }

 private:
  std::string path_;
  std::byte* map_ = nullptr;
  size_t map_len_ = 0;
  NpyLayout layout_;
};

// Parses a .npy file held in buf, reusing buf's storage for the array data. Error messages start
// with prefix (which names the file).
RawArray parse_npy_owned(std::vector<std::byte>&& buf, const std::string& prefix);
RawArray parse_npy_prefixed(const std::byte* data, size_t size, const std::string& prefix);


}  // namespace ntk::detail
