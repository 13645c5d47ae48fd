#include "checkpoint.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "check.hpp"
#include "io_detail.hpp"
#include "ntk/error.hpp"

namespace ntk::detail {

namespace {

constexpr const char* kMagic = "ntkit checkpoint 1";
// A record is a few lines; anything larger is not one (and is not read into memory).
constexpr std::uintmax_t kMaxRecordBytes = 1 << 20;

std::string rows_line(index_t rows, index_t total) {
  return "rows: " + std::to_string(rows) + " of " + std::to_string(total);
}

struct Record {
  JobIdentity identity;
  index_t rows = 0, total = 0;
};

// The record at path; IoError naming what to do if it is not one.
Record read_record(const std::string& path, const std::string& partial) {
  const std::string damaged = "checkpoint '" + path + "' is damaged (";
  const std::string fix = "); delete it and '" + partial + "' to start over";
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec || size > kMaxRecordBytes) throw IoError(damaged + (ec ? ec.message() : "too large") + fix);
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line) || line != kMagic) throw IoError(damaged + "no '" + kMagic + "' line" + fix);
  Record r;
  bool rows = false;
  while (std::getline(in, line)) {
    const size_t colon = line.find(": ");
    if (colon == std::string::npos) throw IoError(damaged + "line '" + line.substr(0, 60) + "'" + fix);
    std::string key = line.substr(0, colon), value = line.substr(colon + 2);
    if (key != "rows") {
      r.identity.emplace_back(std::move(key), std::move(value));
      continue;
    }
    long long done = -1, total = -1;
    char tail = 0;
    if (std::sscanf(value.c_str(), "%lld of %lld%c", &done, &total, &tail) != 2 || done < 0 || total < done)
      throw IoError(damaged + "rows '" + value.substr(0, 60) + "'" + fix);
    r.rows = done, r.total = total, rows = true;
  }
  if (!rows) throw IoError(damaged + "no rows line" + fix);
  return r;
}

// The first line in which two identities differ, for the refusal.
std::string first_difference(const JobIdentity& there, const JobIdentity& here) {
  std::map<std::string, std::string> theirs(there.begin(), there.end());
  for (const auto& [key, value] : here) {
    auto it = theirs.find(key);
    if (it == theirs.end()) return key + ": absent there";
    if (it->second != value) return key + ": '" + it->second + "' there, '" + value + "' here";
  }
  return there.size() != here.size() ? "the number of lines" : "";
}

}  // namespace

std::string content_hash(const void* data, std::size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t h = 0xcbf29ce484222325ull ^ bytes;
  std::size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  for (; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

std::string file_identity(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    throw IoError("cannot read '" + path + "': " + why);
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  std::string hash = content_hash(nullptr, 0);
  if (size > 0) {
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      throw IoError("cannot read '" + path + "': " + why);
    }
    ::madvise(map, size, MADV_SEQUENTIAL);
    hash = content_hash(map, size);
    ::munmap(map, size);
  }
  ::close(fd);
  return std::to_string(size) + " bytes " + hash;
}

Checkpoint::Checkpoint(std::string path, JobIdentity identity, index_t total, bool resume)
    : path_(std::move(path)), partial_(path_ + ".partial"), record_(path_ + ".ntk-checkpoint"),
      identity_(std::move(identity)), total_(total) {
  for (const auto& [key, value] : identity_)
    NTK_ASSERT(key != "rows" && key.find(": ") == std::string::npos && value.find('\n') == std::string::npos,
               "Checkpoint: identity lines are 'key: value' on one line");
  remove_stale_temps(record_);  // a record being replaced when an earlier run was killed
  if (!std::filesystem::exists(record_)) return;  // a fresh run (with or without --resume)
  const Record r = read_record(record_, partial_);
  const std::string delete_both = "delete '" + record_ + "' and '" + partial_ + "' to start over";
  std::string diff = first_difference(r.identity, identity_);
  if (diff.empty() && r.total != total_)
    diff = "rows: " + std::to_string(r.total) + " there, " + std::to_string(total_) + " here";
  if (!diff.empty())
    throw InvalidArgument("'" + record_ + "' is the checkpoint of a different job (" + diff +
                          "): run the job it belongs to with --resume, or " + delete_both);
  if (!resume)
    throw InvalidArgument("an interrupted run of this job finished " + std::to_string(r.rows) + " of " +
                          std::to_string(total_) + " rows of '" + path_ + "' (checkpoint '" + record_ +
                          "'): add --resume to continue it, or " + delete_both);
  start_ = r.rows;
  complete_ = r.rows == total_ && !std::filesystem::exists(partial_) && std::filesystem::exists(path_);
}

void Checkpoint::record(index_t rows) {
  std::string text = std::string(kMagic) + "\n";
  for (const auto& [key, value] : identity_) text += key + ": " + value + "\n";
  text += rows_line(rows, total_) + "\n";
  write_file_atomic_stream(record_, [&](const ByteSink& sink) {
    sink(reinterpret_cast<const std::byte*>(text.data()), text.size());
  });
}

void Checkpoint::record_synced(NpyFileWriter& file, index_t rows) {
  file.sync();
  fault_point("band-synced");
  record(rows);
  recorded_ = rows;
  file.keep_partial_on_failure();
  fault_point("band-recorded");
}

IoError Checkpoint::kept_error(const IoError& e) const {
  const index_t kept = std::max(recorded_, start_);
  if (kept == 0) return e;
  return IoError(std::string(e.what()) + "; the " + std::to_string(kept) + " finished rows are kept in '" + partial_ +
                 "': make room and rerun with --resume");
}

void Checkpoint::finish() { std::filesystem::remove(record_); }

namespace {

constexpr const char* kStateMagic = "ntkit state 1";

// "(a, b, ...)" as shape_string writes it; false for anything else.
bool parse_shape(const std::string& text, Shape& shape) {
  if (text.size() < 2 || text.front() != '(' || text.back() != ')') return false;
  shape.clear();
  std::string inner = text.substr(1, text.size() - 2);
  if (inner.empty()) return true;
  // One dimension is written "(n,)", as NumPy does.
  if (inner.back() == ',' && inner.find(',') == inner.size() - 1) inner.pop_back();
  std::stringstream in(inner);
  std::string part;
  while (std::getline(in, part, ',')) {
    if (!part.empty() && part.front() == ' ') part.erase(0, 1);
    if (part.empty() || part.size() > 18 || part.find_first_not_of("0123456789") != std::string::npos) return false;
    shape.push_back(std::stoll(part));
    if (shape.size() > 8) return false;
  }
  return !inner.empty() && inner.back() != ',';
}

}  // namespace

std::pair<JobIdentity, SolverState> read_state(const std::string& path) {
  const std::string damaged = "solver state '" + path + "' is damaged (";
  const std::string fix = "); delete it to start the solve over";
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) throw IoError("cannot read solver state '" + path + "': " + ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open solver state '" + path + "'");
  std::string line;
  std::uintmax_t header = 0;
  auto next_line = [&]() -> bool {
    if (!std::getline(in, line)) return false;
    header += line.size() + 1;
    if (header > kMaxRecordBytes) throw IoError(damaged + "no data line in its first MiB" + fix);
    return true;
  };
  if (!next_line() || line != kStateMagic) throw IoError(damaged + "no '" + kStateMagic + "' line" + fix);
  JobIdentity identity;
  SolverState state;
  std::vector<std::pair<std::string, std::string>> arrays;  // name, hash, in data order
  std::uintmax_t data_bytes = 0;
  bool data = false;
  while (!data && next_line()) {
    if (line == "data:") {
      data = true;
      break;
    }
    const size_t colon = line.find(": ");
    if (colon == std::string::npos) throw IoError(damaged + "line '" + line.substr(0, 60) + "'" + fix);
    std::string key = line.substr(0, colon), value = line.substr(colon + 2);
    if (key == "array") {
      // "<name> <shape> <hash>": the name has no spaces, the shape has no letters.
      const size_t first = value.find(' '), last = value.rfind(' ');
      Shape shape;
      if (first == std::string::npos || last <= first || !parse_shape(value.substr(first + 1, last - first - 1), shape) ||
          value.size() - last - 1 != 16)
        throw IoError(damaged + "array line '" + value.substr(0, 60) + "'" + fix);
      std::string name = value.substr(0, first);
      index_t count = 1;
      for (const index_t d : shape) {
        if (d > index_t(size / 8) || (d > 0 && count > index_t(size / 8) / d))
          throw IoError(damaged + "array '" + name.substr(0, 40) + "' is larger than the file" + fix);
        count *= d;
      }
      data_bytes += 8 * std::uintmax_t(count);
      if (data_bytes > size || state.arrays.count(name))
        throw IoError(damaged + "array '" + name.substr(0, 40) + "' " + (data_bytes > size ? "is larger than the file" : "twice") + fix);
      state.arrays.emplace(name, Array<double>(shape));
      arrays.emplace_back(std::move(name), value.substr(last + 1));
    } else {
      identity.emplace_back(std::move(key), std::move(value));
    }
  }
  if (!data) throw IoError(damaged + "no data line" + fix);
  if (header + data_bytes != size)
    throw IoError(damaged + std::to_string(size) + " bytes where its lines say " + std::to_string(header + data_bytes) + fix);
  for (const auto& [name, hash] : arrays) {
    Array<double>& a = state.arrays.at(name);
    const size_t bytes = size_t(a.size()) * 8;
    if (bytes && !in.read(reinterpret_cast<char*>(a.data()), std::streamsize(bytes)))
      throw IoError(damaged + "array '" + name + "' is cut short" + fix);
    if (content_hash(a.data(), bytes) != hash) throw IoError(damaged + "array '" + name + "' does not match its hash" + fix);
  }
  return {std::move(identity), std::move(state)};
}

void load_state_array(const SolverState& state, const std::string& name, double* out, index_t size) {
  const auto it = state.arrays.find(name);
  if (it == state.arrays.end() || it->second.size() != size)
    throw IoError("the saved solver state " +
                  (it == state.arrays.end() ? "has no array '" + name + "'"
                                            : "has " + std::to_string(it->second.size()) + " values in '" + name +
                                                  "' where this solve has " + std::to_string(size)) +
                  ": it is not this solve's; delete it to start over");
  std::copy(it->second.data(), it->second.data() + size, out);
}

StateCheckpoint::StateCheckpoint(std::string output, JobIdentity identity, bool resume, double interval_seconds)
    : path_(std::move(output) + ".ntk-state"), identity_(std::move(identity)), interval_(interval_seconds),
      last_(std::chrono::steady_clock::now()) {
  for (const auto& [key, value] : identity_)
    NTK_ASSERT(key != "array" && key.find(": ") == std::string::npos && value.find('\n') == std::string::npos,
               "StateCheckpoint: identity lines are 'key: value' on one line");
  remove_stale_temps(path_);  // a state being replaced when an earlier run was killed
  if (!std::filesystem::exists(path_)) return;
  auto [there, state] = read_state(path_);
  const std::string diff = first_difference(there, identity_);
  if (!diff.empty())
    throw InvalidArgument("'" + path_ + "' is the solver state of a different job (" + diff +
                          "): run the job it belongs to with --resume, or delete it to start over");
  if (!resume)
    throw InvalidArgument("an interrupted run of this job left its solver state in '" + path_ +
                          "': add --resume to continue it, or delete it to start over");
  saved_ = std::move(state);
}

bool StateCheckpoint::due() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - last_).count() >= interval_;
}

void StateCheckpoint::save(const std::vector<StateArray>& arrays) {
  std::string header = std::string(kStateMagic) + "\n";
  for (const auto& [key, value] : identity_) header += key + ": " + value + "\n";
  for (const StateArray& a : arrays) {
    NTK_ASSERT(!a.name.empty() && a.name.find_first_of(" \n") == std::string::npos, "StateCheckpoint: array names are one word");
    header += "array: " + a.name + " " + shape_string(a.shape) + " " +
              content_hash(a.data, size_t(numel(a.shape)) * 8) + "\n";
  }
  header += "data:\n";
  write_file_atomic_stream(path_, [&](const ByteSink& sink) {
    sink(reinterpret_cast<const std::byte*>(header.data()), header.size());
    for (const StateArray& a : arrays)
      sink(reinterpret_cast<const std::byte*>(a.data), size_t(numel(a.shape)) * 8);
  });
  last_ = std::chrono::steady_clock::now();
  fault_point("state-saved");
}

void StateCheckpoint::finish() { std::filesystem::remove(path_); }

void fault_point(const char* name) {
  static const char* wanted = std::getenv("NTK_FAULT_POINT");
  if (!wanted) return;
  const size_t n = std::strlen(name);
  if (std::strncmp(wanted, name, n) != 0 || (wanted[n] != '\0' && wanted[n] != ':')) return;
  static long hits = 0;
  const long at = wanted[n] == ':' ? std::atol(wanted + n + 1) : 1;
  if (++hits == at) std::raise(SIGKILL);
}

}  // namespace ntk::detail
