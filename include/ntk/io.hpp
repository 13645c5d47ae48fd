// File formats: NumPy .npy and .npz (the parameter file), and IDX (MNIST-style, optionally gzipped).
// Readers validate everything they read (magic, header, sizes against the file length) and throw
// IoError naming the file and the problem; writers write to a temporary name in the target
// directory and rename on success, so a failure never leaves a partial file behind.
#pragma once
#include <cstddef>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "ntk/array.hpp"

namespace ntk {

enum class DType { float32, float64, uint8, int8, int16, int32, int64 };
const char* dtype_name(DType d);
size_t dtype_size(DType d);

// The element type of float and double arrays.
template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::float32;
  else if constexpr (std::is_same_v<T, double>) return DType::float64;
  else static_assert(sizeof(T) == 0, "float and double arrays only");
}

// A borrowed, dtype-erased C-order array in memory, e.g. a NumPy array's buffer: read during the
// call, never kept or freed.
struct ArrayView {
  DType dtype = DType::float32;
  Shape shape;
  const void* data = nullptr;
};

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
  ArrayView view() const { return {dtype, shape, bytes.data()}; }
};

// The numel(a.shape) values of a, of any stored type, converted to T into out (as many values).
// Reads element by element through memcpy: a's buffer needs no alignment for its type.
template <class T>
void convert_values(const ArrayView& a, T* out);

// .npy
RawArray read_npy(const std::string& path);
RawArray parse_npy(const std::byte* data, size_t size, const std::string& what);
std::vector<std::byte> serialize_npy(const RawArray& a);
void write_npy(const std::string& path, const RawArray& a);
// Streams the array's own buffer to the file (no copy of the data: a kernel as large as half of
// memory can still be written). float32 and float64.
template <class T>
void write_npy(const std::string& path, const Array<T>& a);

// Out-of-core .npy output, for arrays larger than memory. The file is created at a temporary name
// next to path with its header written and its data region memory-mapped (MAP_SHARED) for writing;
// commit() flushes it and renames it into place, and the destructor removes the temporary file if
// commit() was never called, so a failure leaves nothing behind. Disk space is reserved up front
// (fallocate) where the file system supports it, so a full disk is an IoError here rather than a
// SIGBUS while writing; elsewhere the file is sparse (ftruncate). float32 and float64 only.
class MappedNpyWriter {
 public:
  MappedNpyWriter(const std::string& path, DType dtype, const Shape& shape);
  ~MappedNpyWriter();
  MappedNpyWriter(const MappedNpyWriter&) = delete;
  MappedNpyWriter& operator=(const MappedNpyWriter&) = delete;

  // Start of the array data (C order, little-endian), initially zero; 64-byte aligned. Null after
  // commit().
  void* data();
  // Size of the data region in bytes.
  std::size_t bytes() const;
  // Declares [offset, offset + len) of the data finished: its pages are written back (msync
  // MS_SYNC) and dropped from this process's mapping (MADV_DONTNEED), so resident memory stays
  // bounded while a huge file is filled tile by tile. The range is rounded inward to whole pages
  // (except that a range reaching the end of the data includes the last, partial page). Touching
  // released data again is allowed; it is read back from the file. Calls for disjoint ranges may
  // run concurrently. Throws IoError if the write-back fails, InvalidArgument if the range is
  // outside the data.
  void release(std::size_t offset, std::size_t len);
  // msync(MS_SYNC), munmap, fsync and rename to path. On failure the temporary file is removed.
  void commit();

 private:
  void discard() noexcept;  // unmaps, closes and removes the temporary file

  std::string path_, tmp_;
  int fd_ = -1;
  std::byte* map_ = nullptr;
  std::size_t map_len_ = 0, header_len_ = 0, bytes_ = 0;
  bool committed_ = false;
};

// Out-of-core .npy output written by position (pwrite), for producers that finish the array in
// large contiguous pieces (rows of a kernel): nothing is mapped, so resident memory is only the
// caller's buffers and nothing is faulted in or re-read. Created, sized and atomic like
// MappedNpyWriter: commit() fsyncs and renames; the destructor removes an uncommitted file.
class NpyFileWriter {
 public:
  NpyFileWriter(const std::string& path, DType dtype, const Shape& shape);
  // A resumable output: written in `partial` (a fixed name, not a unique one), which is created
  // afresh, or with reopen an interrupted run's partial file is opened as it is (IoError unless it
  // is this dtype and shape's file, whole). commit() renames it to path as usual.
  NpyFileWriter(const std::string& path, DType dtype, const Shape& shape, const std::string& partial, bool reopen);
  ~NpyFileWriter();
  NpyFileWriter(const NpyFileWriter&) = delete;
  NpyFileWriter& operator=(const NpyFileWriter&) = delete;

  std::size_t bytes() const { return bytes_; }  // size of the data region
  // Data bytes [offset, offset + len) from / into the file; IoError on failure (a full disk
  // included), InvalidArgument outside the data. Calls for disjoint ranges may run concurrently.
  void write(std::size_t offset, const void* data, std::size_t len);
  void read(std::size_t offset, void* data, std::size_t len) const;
  // The same as write for data that will not be read back: the part of the range that is aligned
  // to kDirectAlignment in the file goes straight to disk (O_DIRECT), bypassing the page cache, when
  // `data` has the same alignment there (data_alignment() tells which address that is); the rest,
  // or all of it where the file system has no O_DIRECT, is written as by write(). Synchronous.
  void write_direct(std::size_t offset, const void* data, std::size_t len);
  static constexpr std::size_t kDirectAlignment = 4096;
  // Where in the file data byte `offset` lies, modulo kDirectAlignment: a buffer holding it at an
  // address with this remainder is eligible for write_direct.
  std::size_t data_alignment(std::size_t offset) const { return (header_len_ + offset) % kDirectAlignment; }
  // Hints, for files larger than memory: start writing [offset, offset + len) back to disk now
  // (flush), or say it will not be read again so that its pages, once written back, leave the page
  // cache (forget); memory freed early is reused for the next writes instead of fresh pages.
  void flush(std::size_t offset, std::size_t len);
  void forget(std::size_t offset, std::size_t len);
  void commit();
  // Data written so far is on disk when this returns (fdatasync): a checkpoint may then say so.
  void sync();
  // The partial file stays when the writer is destroyed uncommitted (finished work to resume from).
  void keep_partial_on_failure(bool keep = true) { keep_partial_ = keep; }
  const std::string& partial_path() const { return tmp_; }

 private:
  void check_range(std::size_t offset, std::size_t len, const char* what) const;
  std::string path_, tmp_;
  int fd_ = -1;
  int direct_fd_ = -2;  // the same file opened with O_DIRECT; -2: not tried yet, -1: unavailable
  bool keep_partial_ = false;
  std::size_t header_len_ = 0, bytes_ = 0;
};

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
