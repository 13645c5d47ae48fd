// File formats: NumPy .npy and .npz (the parameter file), and IDX (MNIST-style, optionally gzipped).
// Readers validate everything they read (magic, header, sizes against the file length) and throw
// IoError naming the file and the problem; writers write to a temporary name in the target
// directory and rename on success, so a failure never leaves a partial file behind.
#pragma once
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "ntk/array.hpp"

namespace ntk {

enum class DType { float32, float64, uint8, int8, int16, int32, int64 };
const char* dtype_name(DType d);
size_t dtype_size(DType d);

// An array as stored in a file: element type, shape and little-endian bytes, C order.
struct RawArray {
  DType dtype = DType::float64;
  Shape shape;
  std::vector<std::byte> bytes;

  // Converts to T from any stored numeric type. Finiteness is the caller's check.
  template <class T>
  Array<T> as() const;
  template <class T>
  static RawArray from(const Array<T>& a);
};

// .npy
RawArray read_npy(const std::string& path);
RawArray parse_npy(const std::byte* data, size_t size, const std::string& what);
std::vector<std::byte> serialize_npy(const RawArray& a);
void write_npy(const std::string& path, const RawArray& a);
template <class T>
void write_npy(const std::string& path, const Array<T>& a) { write_npy(path, RawArray::from(a)); }

// .npz (stored or deflated members, as np.savez / np.savez_compressed write them). Keys are the
// member names without the ".npy" suffix; members that are not .npy arrays are rejected. write_npz
// stores members uncompressed, as np.savez does.
std::map<std::string, RawArray> read_npz(const std::string& path);
// The same from memory; what names the source in error messages.
std::map<std::string, RawArray> parse_npz(const std::byte* data, size_t size, const std::string& what);
void write_npz(const std::string& path, const std::map<std::string, RawArray>& arrays);

// IDX (big-endian header, ubyte/byte/short/int/float/double payload), plain or gzip-compressed
// (detected by content, not by name).
RawArray read_idx(const std::string& path);
RawArray parse_idx(const std::byte* data, size_t size, const std::string& what);

// Writes bytes to path atomically (temporary file in the same directory, fsync, rename).
void write_file_atomic(const std::string& path, const std::vector<std::byte>& bytes);

}  // namespace ntk
