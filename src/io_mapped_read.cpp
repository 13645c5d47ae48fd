// MappedNpyReader: a .npy file mapped read-only (MAP_SHARED, PROT_READ), so a kernel or feature
// matrix larger than memory is read block by block through the page cache.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "io_detail.hpp"

namespace ntk::detail {

MappedNpyReader::MappedNpyReader(const std::string& path) : path_(path) {
  const std::string prefix = "cannot read .npy file '" + path + "': ";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(prefix + std::strerror(errno) + "; check the path");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw IoError(prefix + "fstat failed: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IoError(prefix + "not a regular file");
  }
  map_len_ = size_t(st.st_size);
  if (map_len_ == 0) {
    ::close(fd);
    throw IoError(prefix + "empty file, not a .npy file");
  }
  void* m = ::mmap(nullptr, map_len_, PROT_READ, MAP_SHARED, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file open
  if (m == MAP_FAILED) throw IoError(prefix + "cannot map the file into memory: " + std::strerror(err));
  map_ = static_cast<std::byte*>(m);
  try {
    layout_ = parse_npy_layout(map_, map_len_, prefix);
  } catch (...) {
    ::munmap(map_, map_len_);
    throw;
  }
}

MappedNpyReader::~MappedNpyReader() {
  if (map_) ::munmap(map_, map_len_);
}

}  // namespace ntk::detail
