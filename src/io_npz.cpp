// NumPy .npz: a zip archive of .npy members named "<key>.npy", stored (np.savez) or deflated
// (np.savez_compressed). Reading goes through libzip with consistency checks; every member's
// declared sizes are checked against the archive size before anything is allocated. Members that
// are not .npy arrays are rejected rather than ignored: a parameter file with unexpected content is
// more likely the wrong file than a file with harmless extras.
#include <zip.h>

#include <array>
#include <filesystem>
#include <memory>

#include "io_detail.hpp"
#include "ntk/io.hpp"

namespace ntk {
namespace {

std::string npz_prefix(const std::string& what) { return "cannot read .npz file '" + what + "': "; }

struct ZipDiscard {
  void operator()(zip_t* z) const { zip_discard(z); }
};
using ZipPtr = std::unique_ptr<zip_t, ZipDiscard>;
struct ZipFileClose {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};
using ZipFilePtr = std::unique_ptr<zip_file_t, ZipFileClose>;
struct ZipSourceFree {
  void operator()(zip_source_t* s) const { zip_source_free(s); }
};
using ZipSourcePtr = std::unique_ptr<zip_source_t, ZipSourceFree>;

struct ZipError {
  zip_error_t e;
  ZipError() { zip_error_init(&e); }
  ~ZipError() { zip_error_fini(&e); }
  ZipError(const ZipError&) = delete;
  ZipError& operator=(const ZipError&) = delete;
  std::string text() { return zip_error_strerror(&e); }
};

std::vector<std::byte> read_member(zip_t* za, zip_uint64_t index, std::uint64_t archive_size, std::uint64_t& total,
                                   const std::string& mprefix) {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(za, index, 0, &st) != 0) throw IoError(mprefix + zip_strerror(za));
  constexpr zip_uint64_t kNeeded = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD;
  if ((st.valid & kNeeded) != kNeeded) throw IoError(mprefix + "sizes or compression method unknown");
  if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE)
    throw IoError(mprefix + "encrypted members are not supported");
  if (st.comp_method != ZIP_CM_STORE && st.comp_method != ZIP_CM_DEFLATE)
    throw IoError(mprefix + "unsupported compression method " + std::to_string(st.comp_method) +
                  " (only stored and deflated members are supported, as NumPy writes them)");
  if (st.comp_size > archive_size)
    throw IoError(mprefix + "compressed size " + std::to_string(st.comp_size) + " exceeds the archive size " +
                  std::to_string(archive_size) + " (corrupt or truncated archive)");
  if (st.comp_method == ZIP_CM_STORE && st.size != st.comp_size)
    throw IoError(mprefix + "stored member has inconsistent sizes (" + std::to_string(st.size) + " vs " +
                  std::to_string(st.comp_size) + " bytes)");
  if (st.size > detail::max_inflated_size(st.comp_size))
    throw IoError(mprefix + "uncompressed size " + std::to_string(st.size) + " is inconsistent with compressed size " +
                  std::to_string(st.comp_size));
  if (st.size > detail::kMaxArrayBytes || total + st.size > detail::kMaxArrayBytes)
    throw IoError(mprefix + "uncompressed size " + std::to_string(st.size) + " takes the archive over the " +
                  std::to_string(detail::kMaxArrayBytes >> 30) + " GiB limit");
  total += st.size;

  ZipFilePtr zf(zip_fopen_index(za, index, 0));
  if (!zf) throw IoError(mprefix + zip_strerror(za));
  std::vector<std::byte> buf(static_cast<size_t>(st.size));
  size_t got = 0;
  while (got < buf.size()) {
    const zip_int64_t n = zip_fread(zf.get(), buf.data() + got, buf.size() - got);
    if (n < 0) throw IoError(mprefix + zip_file_strerror(zf.get()));
    if (n == 0)
      throw IoError(mprefix + "truncated: data ends after " + std::to_string(got) + " of " +
                    std::to_string(buf.size()) + " bytes");
    got += static_cast<size_t>(n);
  }
  // libzip verifies the CRC only when a read reaches the end of the member, so read once more.
  std::byte probe;
  const zip_int64_t extra = zip_fread(zf.get(), &probe, 1);
  if (extra < 0) throw IoError(mprefix + zip_file_strerror(zf.get()));
  if (extra > 0) throw IoError(mprefix + "member holds more data than its declared size");
  return buf;
}

// zip_open_from_source with ZIP_CHECKCONS, explaining the failures libzip words tersely.
ZipPtr open_archive(zip_source_t* src, const std::string& prefix) {
  ZipError err;
  ZipPtr za(zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &err.e));
  if (za) return za;
  if (zip_error_code_zip(&err.e) == ZIP_ER_EXISTS)
    throw IoError(prefix + "duplicate member names (each key may appear only once)");
  // libzip says "Not a zip archive" when the end-of-archive record is missing, as after truncation.
  if (zip_error_code_zip(&err.e) == ZIP_ER_NOZIP)
    throw IoError(prefix + err.text() + " (truncated, or not an .npz file)");
  throw IoError(prefix + err.text());
}

std::map<std::string, RawArray> read_archive(zip_t* za, std::uint64_t archive_size, const std::string& prefix) {
  const zip_int64_t count = zip_get_num_entries(za, 0);
  if (count < 0) throw IoError(prefix + zip_strerror(za));
  std::map<std::string, RawArray> out;
  std::uint64_t total = 0;
  for (zip_uint64_t i = 0; i < static_cast<zip_uint64_t>(count); ++i) {
    const char* raw = zip_get_name(za, i, 0);
    if (!raw) throw IoError(prefix + zip_strerror(za));
    const std::string name = raw;
    const std::string mprefix = prefix + "member '" + name + "': ";
    if (!name.ends_with(".npy"))
      throw IoError(mprefix + "not a .npy array (an .npz file holds only <key>.npy members)");
    std::string key = name.substr(0, name.size() - 4);
    if (out.contains(key)) throw IoError(prefix + "duplicate member '" + name + "'");
    out.emplace(std::move(key), detail::parse_npy_owned(read_member(za, i, archive_size, total, mprefix), mprefix));
  }
  return out;
}

// The end-of-central-directory record alone: how a zip with no members looks (libzip would write
// no file at all for one).
constexpr std::array<unsigned char, 22> kEmptyZip = {'P', 'K', 5, 6};

// 2000-01-01 12:00 UTC for every member, so equal inputs give byte-identical files; midday keeps
// the DOS timestamp valid in every time zone.
constexpr time_t kMemberTime = 946728000;

}  // namespace

std::map<std::string, RawArray> parse_npz(const std::byte* data, size_t size, const std::string& what) {
  const std::string prefix = npz_prefix(what);
  if (size == 0) throw IoError(prefix + "empty file, not a zip archive");
  ZipError err;
  ZipSourcePtr src(zip_source_buffer_create(data, size, 0, &err.e));
  if (!src) throw IoError(prefix + err.text());
  ZipPtr za = open_archive(src.get(), prefix);
  src.release();  // the archive owns it now
  return read_archive(za.get(), size, prefix);
}

std::map<std::string, RawArray> read_npz(const std::string& path) {
  const std::string prefix = npz_prefix(path);
  std::error_code ec;
  const auto file_size = std::filesystem::file_size(path, ec);
  if (!ec && file_size == 0) throw IoError(prefix + "empty file, not a zip archive");
  // Through a file source rather than zip_open, whose error code loses errno ("No such file").
  ZipError err;
  ZipSourcePtr src(zip_source_file_create(path.c_str(), 0, 0, &err.e));
  if (!src) throw IoError(prefix + err.text());
  ZipPtr za = open_archive(src.get(), prefix);
  src.release();  // the archive owns it now
  // If the size is unknown (not a regular file), libzip's own checks are all that bound the reads.
  return read_archive(za.get(), ec ? UINT64_MAX : file_size, prefix);
}

void write_npz(const std::string& path, const std::map<std::string, RawArray>& arrays) {
  if (arrays.empty()) {
    const auto* p = reinterpret_cast<const std::byte*>(kEmptyZip.data());
    write_file_atomic(path, std::vector<std::byte>(p, p + kEmptyZip.size()));
    return;
  }
  const std::string prefix = "cannot write .npz file '" + path + "': ";
  // Headers first: this validates every array before anything is created.
  std::vector<std::vector<std::byte>> headers;
  headers.reserve(arrays.size());
  for (const auto& [key, a] : arrays) {
    if (key.empty()) throw InvalidArgument(prefix + "empty array key");
    headers.push_back(detail::npy_header(a));
  }

  // The archive is assembled in memory and then written with write_file_atomic_stream, so that a
  // failure at any point leaves no file behind and a success is fsynced before the rename.
  ZipError err;
  ZipSourcePtr out(zip_source_buffer_create(nullptr, 0, 0, &err.e));
  if (!out) throw IoError(prefix + err.text());
  ZipPtr za(zip_open_from_source(out.get(), ZIP_TRUNCATE, &err.e));
  if (!za) throw IoError(prefix + err.text());
  zip_source_keep(out.get());  // the archive takes one reference; ours must outlive zip_close

  size_t i = 0;
  for (const auto& [key, a] : arrays) {
    const std::vector<std::byte>& header = headers[i++];
    zip_buffer_fragment_t fragments[2] = {{reinterpret_cast<zip_uint8_t*>(const_cast<std::byte*>(header.data())),
                                           header.size()},
                                          {reinterpret_cast<zip_uint8_t*>(const_cast<std::byte*>(a.bytes.data())),
                                           a.bytes.size()}};
    zip_source_t* member = zip_source_buffer_fragment(za.get(), fragments, a.bytes.empty() ? 1 : 2, 0);
    if (!member) throw IoError(prefix + zip_strerror(za.get()));
    const std::string name = key + ".npy";
    const zip_int64_t index = zip_file_add(za.get(), name.c_str(), member, ZIP_FL_ENC_UTF_8);
    if (index < 0) {
      zip_source_free(member);
      throw IoError(prefix + "member '" + name + "': " + zip_strerror(za.get()));
    }
    const auto ui = static_cast<zip_uint64_t>(index);
    if (zip_set_file_compression(za.get(), ui, ZIP_CM_STORE, 0) != 0 ||
        zip_file_set_mtime(za.get(), ui, kMemberTime, 0) != 0)
      throw IoError(prefix + "member '" + name + "': " + zip_strerror(za.get()));
  }
  if (zip_close(za.get()) != 0) throw IoError(prefix + zip_strerror(za.get()));
  za.release();  // zip_close freed it

  detail::write_file_atomic_stream(path, [&](const detail::ByteSink& sink) {
    if (zip_source_open(out.get()) != 0) throw IoError(prefix + zip_error_strerror(zip_source_error(out.get())));
    std::vector<std::byte> chunk(size_t{1} << 20);
    for (;;) {
      const zip_int64_t n = zip_source_read(out.get(), chunk.data(), chunk.size());
      if (n < 0) {
        const std::string why = zip_error_strerror(zip_source_error(out.get()));
        zip_source_close(out.get());
        throw IoError(prefix + why);
      }
      if (n == 0) break;
      sink(chunk.data(), static_cast<size_t>(n));
    }
    zip_source_close(out.get());
  });
}

}  // namespace ntk
