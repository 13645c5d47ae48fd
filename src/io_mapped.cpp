// MappedNpyWriter: an .npy file written in place through a shared memory mapping, for outputs
// larger than memory. The whole file (header included) is mapped from offset 0, because mmap
// offsets must be page aligned and the data starts at the header length (a multiple of 64).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <random>

#include "io_detail.hpp"
#include "ntk/io.hpp"

namespace ntk {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

size_t page_size() {
  static const size_t p = [] {
    const long v = ::sysconf(_SC_PAGESIZE);
    return v > 0 ? static_cast<size_t>(v) : size_t{4096};
  }();
  return p;
}

// Reserves [0, len) of fd on disk. Returns 0 or an errno value; EOPNOTSUPP means the file system
// cannot reserve space. On Linux fallocate(2) is called directly: glibc's posix_fallocate would
// instead emulate it by writing one byte per block, which is slow for huge files and not atomic.
int reserve(int fd, off_t len) {
#ifdef __linux__
  for (;;) {
    if (::fallocate(fd, 0, 0, len) == 0) return 0;
    if (errno == EINTR) continue;
    return errno == ENOSYS ? EOPNOTSUPP : errno;
  }
#else
  int err;
  do err = ::posix_fallocate(fd, 0, len);
  while (err == EINTR);
  return err;
#endif
}

// Creates the temporary file of an .npy output of this dtype and shape beside path, sized (disk
// space reserved where the file system can) with the header written. Sets tmp, header_len and
// bytes (the data size); returns the descriptor, or throws IoError after removing the file.
int create_npy_output(const std::string& path, DType dtype, const Shape& shape, const char* writer, std::string& tmp,
                      size_t& header_len, size_t& bytes) {
  const std::string prefix = "cannot write '" + path + "': ";
  if (path.empty()) throw IoError("cannot write a file with an empty name");
  if (dtype != DType::float32 && dtype != DType::float64)
    throw InvalidArgument(prefix + writer + " supports float32 and float64, not " + dtype_name(dtype));
  const std::vector<std::byte> header = detail::npy_header(dtype, shape);  // validates shape
  const auto n = static_cast<std::uint64_t>(numel(shape));
  const std::uint64_t item = dtype_size(dtype);
  constexpr auto kMaxOff = static_cast<std::uint64_t>(std::numeric_limits<off_t>::max());
  const std::uint64_t max_data = std::min<std::uint64_t>(kMaxOff, std::numeric_limits<size_t>::max()) - header.size();
  if (n > max_data / item)
    throw InvalidArgument(prefix + "array of shape " + shape_string(shape) + " is too large for one file");
  header_len = header.size();
  bytes = static_cast<size_t>(n * item);
  const size_t file_len = header_len + bytes;
  const std::string dir = detail::directory_of(path);

  // A caller-chosen name (a resumable output's partial file) is created afresh; otherwise a fresh
  // unique name beside path.
  const int fd = tmp.empty() ? detail::create_temp_beside(path, O_RDWR, prefix, tmp)
                             : ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) throw IoError(prefix + "cannot create '" + tmp + "': " + errno_text(errno));
  auto fail = [&](const std::string& what) {
    ::close(fd);
    ::unlink(tmp.c_str());
    tmp.clear();
    throw IoError(prefix + what);
  };
  // Free space as the caller may use it (root may use the reserved blocks too); nullopt where the
  // file system does not report it.
  auto free_bytes = [&]() -> std::optional<std::uint64_t> {
    struct statvfs vfs {};
    if (::statvfs(dir.c_str(), &vfs) != 0 || vfs.f_blocks == 0) return std::nullopt;
    const std::uint64_t blocks = ::geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail;
    return blocks * static_cast<std::uint64_t>(vfs.f_frsize);
  };
  auto no_space = [&](std::optional<std::uint64_t> avail) {
    fail("not enough disk space: the file needs " + std::to_string(file_len) + " bytes, " +
         (avail ? std::to_string(*avail) : std::string("an unknown number of")) + " bytes are available in '" + dir + "'");
  };
  // Checked first because a file system may allocate blocks up to the point where it runs out
  // before fallocate fails, filling the disk for everyone in the meantime.
  if (const auto avail = free_bytes(); avail && *avail < file_len) no_space(avail);
  const auto total = static_cast<off_t>(file_len);
  const int err = reserve(fd, total);
  if (err == ENOSPC) no_space(free_bytes());
  if (err == EOPNOTSUPP || err == EINVAL) {
    // No space reservation on this file system: a sparse file, whose blocks are allocated as the
    // data is written (a full disk then shows up as a failed write, or SIGBUS through a mapping).
    if (::ftruncate(fd, total) != 0) fail("cannot set the file size to " + std::to_string(file_len) + " bytes: " + errno_text(errno));
  } else if (err != 0) {
    fail("cannot allocate " + std::to_string(file_len) + " bytes: " + errno_text(err));
  }
  for (size_t done = 0; done < header.size();) {
    const ssize_t w = ::pwrite(fd, header.data() + done, header.size() - done, off_t(done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("cannot write the header: " + errno_text(errno));
    done += size_t(w);
  }
  return fd;
}

// fsync, close and rename tmp over path, then persist the rename (best effort). On failure the
// temporary file is removed and IoError thrown.
void finish_npy_output(int fd, std::string& tmp, const std::string& path) {
  const std::string prefix = "cannot write '" + path + "': ";
  auto fail = [&](const std::string& what, int err) {
    ::unlink(tmp.c_str());
    tmp.clear();
    throw IoError(prefix + what + ": " + errno_text(err));
  };
  // fsync before rename: otherwise a crash can leave the new name pointing at an incomplete file.
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    fail("fsync failed", err);
  }
  if (::close(fd) != 0) fail("close failed", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename the temporary file into place", errno);
  tmp.clear();
  const std::string dir = detail::directory_of(path);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace

MappedNpyWriter::MappedNpyWriter(const std::string& path, DType dtype, const Shape& shape) : path_(path) {
  fd_ = create_npy_output(path, dtype, shape, "MappedNpyWriter", tmp_, header_len_, bytes_);
  map_len_ = header_len_ + bytes_;
  auto fail = [&](const std::string& what, int err) {
    discard();
    throw IoError("cannot write '" + path + "': " + what + ": " + errno_text(err));
  };
  void* m = ::mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (m == MAP_FAILED) fail("cannot map the file into memory", errno);
  map_ = static_cast<std::byte*>(m);
}

MappedNpyWriter::~MappedNpyWriter() {
  if (!committed_) discard();
}

void MappedNpyWriter::discard() noexcept {
  if (map_) ::munmap(map_, map_len_);
  map_ = nullptr;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
  tmp_.clear();
}

void* MappedNpyWriter::data() { return map_ ? map_ + header_len_ : nullptr; }

size_t MappedNpyWriter::bytes() const { return bytes_; }

void MappedNpyWriter::release(size_t offset, size_t len) {
  if (offset > bytes_ || len > bytes_ - offset)
    throw InvalidArgument("MappedNpyWriter::release: range [" + std::to_string(offset) + ", +" + std::to_string(len) +
                          ") is outside the " + std::to_string(bytes_) + " data bytes of '" + path_ + "'");
  if (!map_)
    throw InvalidArgument("MappedNpyWriter::release: '" + path_ + "' is already committed or discarded");
  if (len == 0) return;
  const size_t page = page_size();
  // File offsets (the mapping starts at file offset 0, so these are also offsets into map_).
  const size_t begin = (header_len_ + offset + page - 1) / page * page;
  const size_t end_data = header_len_ + offset + len;
  // The page holding the end of the data is not shared with anything not yet written.
  const size_t end = end_data == map_len_ ? (map_len_ + page - 1) / page * page : end_data / page * page;
  if (begin >= end) return;
  const size_t span = std::min(end, map_len_) - begin;
  // Writing back first keeps dirty memory bounded too: MADV_DONTNEED alone would keep the data
  // (for a shared file mapping the kernel moves the dirty bit to the page cache) but leave the
  // page cache full of dirty pages for writeback to catch up with.
  if (::msync(map_ + begin, span, MS_SYNC) != 0)
    throw IoError("cannot write '" + path_ + "': writing back data failed: " + errno_text(errno));
  if (::madvise(map_ + begin, end - begin, MADV_DONTNEED) != 0)
    throw IoError("cannot write '" + path_ + "': madvise(MADV_DONTNEED) failed: " + errno_text(errno));
  // The pages are clean now; let the page cache drop them as well (best effort).
  ::posix_fadvise(fd_, static_cast<off_t>(begin), static_cast<off_t>(span), POSIX_FADV_DONTNEED);
}

void MappedNpyWriter::commit() {
  const std::string prefix = "cannot write '" + path_ + "': ";
  if (committed_ || !map_) throw InvalidArgument(prefix + "already committed or discarded after an earlier failure");
  auto fail = [&](const std::string& what, int err) {
    discard();
    throw IoError(prefix + what + ": " + errno_text(err));
  };
  if (::msync(map_, map_len_, MS_SYNC) != 0) fail("writing back data failed", errno);
  if (::munmap(map_, map_len_) != 0) fail("munmap failed", errno);
  map_ = nullptr;
  const int fd = fd_;
  fd_ = -1;
  finish_npy_output(fd, tmp_, path_);
  committed_ = true;
}

NpyFileWriter::NpyFileWriter(const std::string& path, DType dtype, const Shape& shape) : path_(path) {
  fd_ = create_npy_output(path, dtype, shape, "NpyFileWriter", tmp_, header_len_, bytes_);
}

NpyFileWriter::NpyFileWriter(const std::string& path, DType dtype, const Shape& shape, const std::string& partial,
                             bool reopen)
    : path_(path), tmp_(partial) {
  if (!reopen) {
    fd_ = create_npy_output(path, dtype, shape, "NpyFileWriter", tmp_, header_len_, bytes_);
    return;
  }
  // An interrupted run's partial file: it must be this array's file, whole (it was sized when
  // created), or resuming into it would mix in bytes of something else.
  const std::string prefix = "cannot resume '" + path + "' from '" + partial + "': ";
  const std::vector<std::byte> header = detail::npy_header(dtype, shape);
  header_len_ = header.size();
  bytes_ = size_t(numel(shape)) * dtype_size(dtype);
  const int fd = ::open(partial.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    tmp_.clear();
    throw IoError(prefix + errno_text(errno) + "; delete its checkpoint to start over");
  }
  std::vector<std::byte> found(header.size());
  struct stat st {};
  const bool same = ::fstat(fd, &st) == 0 && size_t(st.st_size) == header_len_ + bytes_ &&
                    ::pread(fd, found.data(), found.size(), 0) == ssize_t(found.size()) && found == header;
  if (!same) {
    ::close(fd);
    tmp_.clear();
    throw IoError(prefix + "it is not the " + shape_string(shape) + " " + dtype_name(dtype) +
                  " array this job writes (damaged or replaced); delete it and its checkpoint to start over");
  }
  fd_ = fd;
}

NpyFileWriter::~NpyFileWriter() {
  if (direct_fd_ >= 0) ::close(direct_fd_);
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_.empty() && !keep_partial_) ::unlink(tmp_.c_str());
}

void NpyFileWriter::sync() {
  if (fd_ < 0) throw InvalidArgument("cannot sync '" + path_ + "': already committed or discarded");
  if (::fdatasync(fd_) != 0) throw IoError("cannot write '" + path_ + "': fdatasync failed: " + errno_text(errno));
}

void NpyFileWriter::check_range(size_t offset, size_t len, const char* what) const {
  if (fd_ < 0) throw InvalidArgument(std::string("NpyFileWriter::") + what + ": '" + path_ + "' is already committed or discarded");
  if (offset > bytes_ || len > bytes_ - offset)
    throw InvalidArgument(std::string("NpyFileWriter::") + what + ": range [" + std::to_string(offset) + ", +" +
                          std::to_string(len) + ") is outside the " + std::to_string(bytes_) + " data bytes of '" + path_ + "'");
}

void NpyFileWriter::write(size_t offset, const void* data, size_t len) {
  check_range(offset, len, "write");
  for (size_t done = 0; done < len;) {
    const ssize_t w = ::pwrite(fd_, static_cast<const char*>(data) + done, len - done, off_t(header_len_ + offset + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw IoError("cannot write '" + path_ + "': " + errno_text(w < 0 ? errno : ENOSPC) + " (is the disk full?)");
    done += size_t(w);
  }
}

void NpyFileWriter::write_direct(size_t offset, const void* data, size_t len) {
  check_range(offset, len, "write_direct");
  constexpr size_t A = kDirectAlignment;
  const size_t begin = header_len_ + offset, end = begin + len;
  const size_t inner_begin = (begin + A - 1) / A * A, inner_end = end / A * A;
  const char* src = static_cast<const char*>(data);
  const bool aligned = inner_begin < inner_end && reinterpret_cast<std::uintptr_t>(src + (inner_begin - begin)) % A == 0;
#if defined(__linux__) && defined(O_DIRECT)
  if (aligned && direct_fd_ == -2) direct_fd_ = ::open(tmp_.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
#else
  direct_fd_ = -1;
#endif
  if (!aligned || direct_fd_ < 0) {
    write(offset, data, len);
    return;
  }
  // The unaligned edges through the page cache, the aligned middle straight to disk.
  write(offset, src, inner_begin - begin);
  for (size_t done = inner_begin; done < inner_end;) {
    const ssize_t w = ::pwrite(direct_fd_, src + (done - begin), inner_end - done, off_t(done));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EINVAL) {
      // Opened, but this file system or device refuses the request (a larger block size, say):
      // the rest through the page cache, and no more direct writes.
      ::close(direct_fd_);
      direct_fd_ = -1;
      write(done - header_len_, src + (done - begin), inner_end - done);
      break;
    }
    if (w <= 0) throw IoError("cannot write '" + path_ + "': " + errno_text(w < 0 ? errno : ENOSPC) + " (is the disk full?)");
    done += size_t(w);
  }
  write(inner_end - header_len_, src + (inner_end - begin), end - inner_end);
}

void NpyFileWriter::read(size_t offset, void* data, size_t len) const {
  check_range(offset, len, "read");
  for (size_t done = 0; done < len;) {
    const ssize_t r = ::pread(fd_, static_cast<char*>(data) + done, len - done, off_t(header_len_ + offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) throw IoError("cannot read back '" + path_ + "': " + errno_text(r < 0 ? errno : EIO));
    done += size_t(r);
  }
}

void NpyFileWriter::flush(size_t offset, size_t len) {
  check_range(offset, len, "flush");
#ifdef __linux__
  ::sync_file_range(fd_, off_t(header_len_ + offset), off_t(len), SYNC_FILE_RANGE_WRITE);  // best effort
#endif
}

void NpyFileWriter::forget(size_t offset, size_t len) {
  check_range(offset, len, "forget");
  // Writes back what is dirty (without waiting) and drops what is clean; best effort.
  ::posix_fadvise(fd_, off_t(header_len_ + offset), off_t(len), POSIX_FADV_DONTNEED);
}

void NpyFileWriter::commit() {
  if (fd_ < 0) throw InvalidArgument("cannot write '" + path_ + "': already committed or discarded after an earlier failure");
  if (direct_fd_ >= 0) ::close(direct_fd_);  // its writes are complete (O_DIRECT); fsync below covers metadata
  direct_fd_ = -1;
  const int fd = fd_;
  fd_ = -1;
  finish_npy_output(fd, tmp_, path_);
}

}  // namespace ntk
