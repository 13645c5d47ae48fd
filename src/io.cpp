// Element types, RawArray conversions and the file primitives (whole-file read, atomic write) that
// the .npy / .npz / IDX code builds on.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <type_traits>

#include "io_detail.hpp"
#include "ntk/io.hpp"

// Stored data is little-endian and RawArray::bytes is used in place, so the host must match.
static_assert(std::endian::native == std::endian::little, "ntkit's file IO assumes a little-endian host");

namespace ntk {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
    case DType::uint8: return "uint8";
    case DType::int8: return "int8";
    case DType::int16: return "int16";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
  }
  return "unknown";
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::float32: return 4;
    case DType::float64: return 8;
    case DType::uint8: return 1;
    case DType::int8: return 1;
    case DType::int16: return 2;
    case DType::int32: return 4;
    case DType::int64: return 8;
  }
  return 0;
}

namespace {

// memcpy per element because RawArray::bytes carries no alignment guarantee for its element type.
template <class Src, class T>
void convert(const std::byte* src, size_t n, T* dst) {
  if constexpr (std::is_same_v<Src, T>) {
    if (n) std::memcpy(dst, src, n * sizeof(T));
  } else {
    for (size_t i = 0; i < n; ++i) {
      Src v;
      std::memcpy(&v, src + i * sizeof(Src), sizeof(Src));
      dst[i] = static_cast<T>(v);
    }
  }
}

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

namespace detail {

size_t checked_byte_size(const RawArray& a) {
  const index_t n = numel(a.shape);  // throws InvalidArgument on negative dims or overflow
  const size_t item = dtype_size(a.dtype);
  if (static_cast<std::uint64_t>(n) > std::numeric_limits<size_t>::max() / item)
    throw InvalidArgument("array of shape " + shape_string(a.shape) + " is too large");
  const size_t expect = static_cast<size_t>(n) * item;
  if (a.bytes.size() != expect)
    throw InvalidArgument(std::string("array of shape ") + shape_string(a.shape) + " and dtype " +
                          dtype_name(a.dtype) + " needs " + std::to_string(expect) + " bytes, holds " +
                          std::to_string(a.bytes.size()));
  return expect;
}

std::vector<std::byte> read_file(const std::string& path, const std::string& prefix) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(prefix + errno_text(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) throw IoError(prefix + errno_text(errno));
  if (S_ISDIR(st.st_mode)) throw IoError(prefix + "is a directory");
  // A regular file is read into one allocation of its size; anything else (or a file that grows
  // meanwhile) is detected by a small probe read and grows the buffer geometrically.
  std::vector<std::byte> buf(S_ISREG(st.st_mode) ? static_cast<size_t>(st.st_size) : 0);
  size_t used = 0;
  for (;;) {
    if (used == buf.size()) {
      std::byte probe[4096];
      const ssize_t got = ::read(fd, probe, sizeof probe);
      if (got < 0) {
        if (errno == EINTR) continue;
        throw IoError(prefix + errno_text(errno));
      }
      if (got == 0) break;
      buf.resize(used + std::max<size_t>(used, size_t{1} << 16));
      std::memcpy(buf.data() + used, probe, static_cast<size_t>(got));
      used += static_cast<size_t>(got);
      continue;
    }
    const ssize_t got = ::read(fd, buf.data() + used, buf.size() - used);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw IoError(prefix + errno_text(errno));
    }
    if (got == 0) break;
    used += static_cast<size_t>(got);
  }
  buf.resize(used);
  return buf;
}

std::string directory_of(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  return dir.empty() ? std::string(".") : dir.string();
}

int create_temp_beside(const std::string& path, int flags, const std::string& prefix, std::string& tmp) {
  const std::string dir = directory_of(path);
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, "%06x", static_cast<unsigned>(rd()) & 0xffffffu);
    tmp = path + ".tmp." + suffix;
    const int fd = ::open(tmp.c_str(), flags | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) return fd;
    if (errno != EEXIST) {
      const int err = errno;
      throw IoError(prefix + "cannot create a file in directory '" + dir + "': " + errno_text(err));
    }
  }
  throw IoError(prefix + "cannot find an unused temporary file name in '" + dir + "'");
}

void remove_stale_temps(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const std::string stem = target.filename().string() + ".tmp.";
  std::error_code ec;
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() == stem.size() + 6 && name.compare(0, stem.size(), stem) == 0 &&
        name.find_first_not_of("0123456789abcdef", stem.size()) == std::string::npos) {
      std::error_code ignored;
      fs::remove(it->path(), ignored);
    }
  }
}

void write_file_atomic_stream(const std::string& path, const std::function<void(const ByteSink&)>& produce) {
  const std::string prefix = "cannot write '" + path + "': ";
  if (path.empty()) throw IoError("cannot write a file with an empty name");
  const std::string dir = directory_of(path);

  std::string tmp;
  const int fd = create_temp_beside(path, O_WRONLY, prefix, tmp);

  bool open = true, removed = false;
  auto cleanup = [&] {
    if (open) ::close(fd);
    open = false;
    if (!removed) ::unlink(tmp.c_str());
    removed = true;
  };
  auto fail = [&](const std::string& what, int err) {
    cleanup();
    throw IoError(prefix + what + ": " + errno_text(err));
  };
  try {
    produce([&](const std::byte* data, size_t n) {
      while (n > 0) {
        const ssize_t put = ::write(fd, data, std::min<size_t>(n, size_t{1} << 30));
        if (put < 0) {
          if (errno == EINTR) continue;
          fail("write failed", errno);
        }
        data += put;
        n -= static_cast<size_t>(put);
      }
    });
  } catch (...) {
    cleanup();
    throw;
  }
  // fsync before rename: otherwise a crash can leave the new name pointing at an empty file.
  if (::fsync(fd) != 0) fail("fsync failed", errno);
  open = false;
  if (::close(fd) != 0) fail("close failed", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename the temporary file into place", errno);
  // Persist the rename itself; best effort, since the data is already safely in place.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace detail

void write_file_atomic(const std::string& path, const std::vector<std::byte>& bytes) {
  detail::write_file_atomic_stream(path, [&](const detail::ByteSink& sink) { sink(bytes.data(), bytes.size()); });
}

template <class T>
Array<T> RawArray::as() const {
  detail::checked_byte_size(*this);
  Array<T> out(shape);
  convert_values(view(), out.data());
  return out;
}

template <class T>
void convert_values(const ArrayView& a, T* out) {
  const size_t n = static_cast<size_t>(numel(a.shape));
  const auto* src = static_cast<const std::byte*>(a.data);
  switch (a.dtype) {
    case DType::float32: convert<float>(src, n, out); break;
    case DType::float64: convert<double>(src, n, out); break;
    case DType::uint8: convert<std::uint8_t>(src, n, out); break;
    case DType::int8: convert<std::int8_t>(src, n, out); break;
    case DType::int16: convert<std::int16_t>(src, n, out); break;
    case DType::int32: convert<std::int32_t>(src, n, out); break;
    case DType::int64: convert<std::int64_t>(src, n, out); break;
  }
}

template void convert_values<float>(const ArrayView&, float*);
template void convert_values<double>(const ArrayView&, double*);

template <class T>
RawArray RawArray::from(const Array<T>& a) {
  RawArray r;
  r.dtype = dtype_of<T>();
  r.shape = a.shape();
  r.bytes.resize(static_cast<size_t>(a.size()) * sizeof(T));
  if (!r.bytes.empty()) std::memcpy(r.bytes.data(), a.data(), r.bytes.size());
  return r;
}

template <class T>
void write_npy(const std::string& path, const Array<T>& a) {
  const std::vector<std::byte> header = detail::npy_header(dtype_of<T>(), a.shape());  // before any file exists
  detail::write_file_atomic_stream(path, [&](const detail::ByteSink& sink) {
    sink(header.data(), header.size());
    sink(reinterpret_cast<const std::byte*>(a.data()), static_cast<size_t>(a.size()) * sizeof(T));
  });
}
template void write_npy(const std::string&, const Array<float>&);
template void write_npy(const std::string&, const Array<double>&);

template Array<float> RawArray::as<float>() const;
template Array<double> RawArray::as<double>() const;
template RawArray RawArray::from<float>(const Array<float>&);
template RawArray RawArray::from<double>(const Array<double>&);

}  // namespace ntk
