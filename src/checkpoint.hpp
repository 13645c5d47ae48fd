// Resumable outputs. A long computation written out of core (a kernel band by band) records, after
// each part it has put on disk, how far it got, in a small text file beside the output:
//
//   <output>.partial          the output being written (an .npy of its final shape and dtype)
//   <output>.ntk-checkpoint   "ntkit checkpoint 1", the job's identity lines, "rows: R of N"
//
// Parts are final in order (rows [0, R)), so one number is the whole state. The data is synced
// before the record, and the record replaces its predecessor atomically (rename), so a process
// killed at any instant leaves a record no later than the data. The identity names everything
// the bytes depend on (network, parameters' and inputs' hashes, mode, method, dtype); resuming
// another job's checkpoint is refused, naming the first line that differs. After the output is
// renamed into place the record is removed; a record that says "all rows" with the output already
// in place means only that removal was interrupted.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ntk/array.hpp"
#include "ntk/io.hpp"

namespace ntk::detail {

// What a checkpoint belongs to: ordered "key: value" lines (values on one line).
using JobIdentity = std::vector<std::pair<std::string, std::string>>;

// A 64-bit hash of bytes as 16 hex digits (FNV-1a over 8-byte words, then a final mix): identifies
// inputs and parameters in an identity, not a cryptographic digest.
std::string content_hash(const void* data, std::size_t bytes);

// "<shape> <dtype> <content_hash>": an array in an identity.
template <class T>
std::string array_identity(const Array<T>& a) {
  return shape_string(a.shape()) + " " + dtype_name(dtype_of<T>()) + " " +
         content_hash(a.data(), std::size_t(a.size()) * sizeof(T));
}

class Checkpoint {
 public:
  // For output `path` holding `total` rows. With resume, an existing record of the same job gives
  // start_row(); without, an existing record is refused (its work would be overwritten), as is one
  // of another job either way.
  Checkpoint(std::string path, JobIdentity identity, index_t total, bool resume);
  const std::string& partial_path() const { return partial_; }
  const std::string& record_path() const { return record_; }
  // Rows [0, start_row()) are final in partial_path(), which is reopened rather than created.
  index_t start_row() const { return start_; }
  bool reopen() const { return start_ > 0; }
  // The interrupted run had finished: the output is in place and only the record was left.
  bool already_complete() const { return complete_; }
  // Rows [0, rows) are final on disk (the caller synced them): the record says so, atomically.
  void record(index_t rows);
  // Rows [0, rows) of file are written: syncs them, records them, and keeps the partial file from
  // now on (the fault points band-synced and band-recorded lie between).
  void record_synced(NpyFileWriter& file, index_t rows);
  // What to throw for an IoError during the run: the same, saying that the finished rows are kept
  // for --resume once any were recorded.
  IoError kept_error(const IoError& e) const;
  // The output is in place: the record goes.
  void finish();

 private:
  std::string path_, partial_, record_;
  JobIdentity identity_;
  index_t total_ = 0, start_ = 0, recorded_ = 0;
  bool complete_ = false;
};

// Test hook for the kill tests: when the environment variable NTK_FAULT_POINT equals `name`, or is
// "name:K" and this is the K-th time (from 1) the point is reached, the process kills itself with
// SIGKILL there, as a crash or an OOM kill would. Points: "band-synced" (data on disk, record not
// yet updated), "band-recorded", "before-rename", "after-rename".
void fault_point(const char* name);

}  // namespace ntk::detail
