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

#include <chrono>

#include "ntk/array.hpp"
#include "ntk/io.hpp"
#include "ntk/nystrom.hpp"

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

// "<bytes> bytes <content_hash>" of a file's contents (memory-mapped, so a kernel file larger than
// memory is hashed in one pass); IoError naming the file if it cannot be read.
std::string file_identity(const std::string& path);

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

// Resumable solvers (ntk/nystrom.hpp's SolverCheckpoint: the regression job's Nyström and feature
// ridge): their progress is a state (CG vectors, accumulated FᵀF), not rows of an output, so it is
// saved whole, in one file beside the job's first output, replaced atomically at each save:
//
//   <output>.ntk-state   "ntkit state 1", the job's identity lines, "array: <name> <shape> <hash>"
//                        per array, "data:", then the arrays' float64
//                        values (little-endian) in the order of their lines
//
// Every array's values are checked against its hash on load, so a damaged file is refused rather
// than resumed from; an identity that differs is refused as the rows' checkpoint refuses it.
class StateCheckpoint final : public SolverCheckpoint {
 public:
  // For a job whose first output is `output`; saves when offered, at most every `interval_seconds`
  // (0: at every offer). Without resume an existing state file is refused (its work would be lost).
  StateCheckpoint(std::string output, JobIdentity identity, bool resume, double interval_seconds);
  const std::string& path() const { return path_; }
  const SolverState& saved() const override { return saved_; }
  bool due() const override;
  void save(const std::vector<StateArray>& arrays) override;
  // The outputs are in place: the state goes.
  void finish();

 private:
  std::string path_;
  JobIdentity identity_;
  SolverState saved_;
  double interval_;
  std::chrono::steady_clock::time_point last_;
};

// A state file's identity and state (IoError, naming `path`, for anything but a well-formed file
// whose arrays match their hashes). For StateCheckpoint and the fuzzer.
std::pair<JobIdentity, SolverState> read_state(const std::string& path);

// The saved array `name` of a state, which must hold `size` values (IoError otherwise: the file is
// not this solve's), copied to out.
void load_state_array(const SolverState& state, const std::string& name, double* out, index_t size);

// Test hook for the kill tests: when the environment variable NTK_FAULT_POINT equals `name`, or is
// "name:K" and this is the K-th time (from 1) the point is reached, the process kills itself with
// SIGKILL there, as a crash or an OOM kill would. Points: "band-synced" (data on disk, record not
// yet updated), "band-recorded", "before-rename", "after-rename"; "state-saved" (a solver's state
// file replaced).
void fault_point(const char* name);

}  // namespace ntk::detail
