#include "checkpoint.hpp"

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

Checkpoint::Checkpoint(std::string path, JobIdentity identity, index_t total, bool resume)
    : path_(std::move(path)), partial_(path_ + ".partial"), record_(path_ + ".ntk-checkpoint"),
      identity_(std::move(identity)), total_(total) {
  for (const auto& [key, value] : identity_)
    NTK_ASSERT(key != "rows" && key.find(": ") == std::string::npos && value.find('\n') == std::string::npos,
               "Checkpoint: identity lines are 'key: value' on one line");
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
