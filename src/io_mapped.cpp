// MappedNpyWriter: an .npy file written in place through a shared memory mapping, for outputs
// larger than memory. The whole file (header included) is mapped from offset 0, because mmap
// offsets must be page aligned and the data starts at the header length (a multiple of 64).
#include <fcntl.h>
#include <sys/mman.h>
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

}  // namespace

MappedNpyWriter::MappedNpyWriter(const std::string& path, DType dtype, const Shape& shape) : path_(path) {
  const std::string prefix = "cannot write '" + path + "': ";
  if (path.empty()) throw IoError("cannot write a file with an empty name");
  if (dtype != DType::float32 && dtype != DType::float64)
    throw InvalidArgument(prefix + "MappedNpyWriter supports float32 and float64, not " + dtype_name(dtype));
  const std::vector<std::byte> header = detail::npy_header(dtype, shape);  // validates shape
  const auto n = static_cast<std::uint64_t>(numel(shape));
  const std::uint64_t item = dtype_size(dtype);
  constexpr auto kMaxOff = static_cast<std::uint64_t>(std::numeric_limits<off_t>::max());
  const std::uint64_t max_data = std::min<std::uint64_t>(kMaxOff, std::numeric_limits<size_t>::max()) - header.size();
  if (n > max_data / item)
    throw InvalidArgument(prefix + "array of shape " + shape_string(shape) + " is too large for one file");
  header_len_ = header.size();
  bytes_ = static_cast<size_t>(n * item);
  map_len_ = header_len_ + bytes_;
  const std::string dir = detail::directory_of(path);

  fd_ = detail::create_temp_beside(path, O_RDWR, prefix, tmp_);

  auto fail = [&](const std::string& what, int err) {
    discard();
    throw IoError(prefix + what + ": " + errno_text(err));
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
    discard();
    throw IoError(prefix + "not enough disk space: the file needs " + std::to_string(map_len_) + " bytes, " +
                  (avail ? std::to_string(*avail) : std::string("an unknown number of")) +
                  " bytes are available in '" + dir + "'");
  };
  // Checked first because a file system may allocate blocks up to the point where it runs out
  // before fallocate fails, filling the disk for everyone in the meantime.
  if (const auto avail = free_bytes(); avail && *avail < map_len_) no_space(avail);
  const auto total = static_cast<off_t>(map_len_);
  const int err = reserve(fd_, total);
  if (err == ENOSPC) no_space(free_bytes());
  if (err == EOPNOTSUPP || err == EINVAL) {
    // No space reservation on this file system: a sparse file, whose blocks are allocated as the
    // data is written (a full disk then shows up as SIGBUS while writing, not here).
    if (::ftruncate(fd_, total) != 0) fail("cannot set the file size to " + std::to_string(map_len_) + " bytes", errno);
  } else if (err != 0) {
    fail("cannot allocate " + std::to_string(map_len_) + " bytes", err);
  }

  void* m = ::mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (m == MAP_FAILED) fail("cannot map the file into memory", errno);
  map_ = static_cast<std::byte*>(m);
  std::memcpy(map_, header.data(), header_len_);
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
  // fsync before rename: otherwise a crash can leave the new name pointing at an incomplete file.
  if (::fsync(fd_) != 0) fail("fsync failed", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("close failed", errno);
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("cannot rename the temporary file into place", errno);
  committed_ = true;
  tmp_.clear();
  // Persist the rename itself; best effort, since the data is already safely in place.
  const std::string dir = detail::directory_of(path_);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace ntk
