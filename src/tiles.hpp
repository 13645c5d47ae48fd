// The tile engine: the one loop under every kernel ntkit computes (empirical and infinite-width).
// A kernel of n1 × n2 example pairs, with `values` numbers per pair (O·O in full mode, O in
// diagonal mode, 1 otherwise), is produced tile by tile by a TileProducer and handed to a
// KernelSink in bands of whole rows:
//
//   for each band of rows [b0, b0 + B):
//     symmetric only: columns [0, b0) are the mirror image of rows [0, b0), read back from the sink;
//     for each tile row i0 in the band: producer.begin_row; for each tile j0 (j0 ≥ i0 if symmetric):
//       producer.tile -> tile buffer -> non-finite check -> the band (and its mirror, inside the band);
//     sink.commit_rows(b0, B): the band is final and is never touched again.
//
// In memory the band is the whole array (one band, nothing read back); out of core each band is
// written once, sequentially, and the symmetric path reads the already written upper triangle back
// in contiguous row pieces instead of mirroring into rows that are not in memory.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "ntk/array.hpp"
#include "ntk/io.hpp"

namespace ntk::detail {

// Where finished rows of a kernel go. Rows hold n2 · values numbers, C order.
template <class T>
class KernelSink {
 public:
  virtual ~KernelSink() = default;
  // Writable storage for rows [r0, r0 + count), valid until commit_rows(r0, count).
  virtual T* rows(index_t r0, index_t count) = 0;
  // Rows [r0, r0 + count) are final; of them only pairs [reread_from, n2) will be read() again.
  virtual void commit_rows(index_t r0, index_t count, index_t reread_from) = 0;
  // Pairs [c0, c0 + nc) of committed row r, into dst (nc · values numbers).
  virtual void read(index_t r, index_t c0, index_t nc, T* dst) const = 0;
  // Pairs [0, c1) of committed rows [r0, r1) will not be read again.
  virtual void forget(index_t, index_t, index_t) {}
};

// The whole kernel in memory (an Array's buffer).
template <class T>
class ArraySink final : public KernelSink<T> {
 public:
  ArraySink(T* data, index_t row_length, index_t values) : data_(data), row_(row_length), values_(values) {}
  T* rows(index_t r0, index_t) override { return data_ + r0 * row_; }
  void commit_rows(index_t, index_t, index_t) override {}
  void read(index_t r, index_t c0, index_t nc, T* dst) const override;

 private:
  T* data_;
  index_t row_, values_;
};

// An .npy file written band by band (NpyFileWriter): one band in memory at a time.
template <class T>
class FileSink final : public KernelSink<T> {
 public:
  FileSink(NpyFileWriter& file, index_t row_length, index_t values) : file_(file), row_(row_length), values_(values) {}
  T* rows(index_t r0, index_t count) override;
  void commit_rows(index_t r0, index_t count, index_t reread_from) override;
  void read(index_t r, index_t c0, index_t nc, T* dst) const override;
  void forget(index_t r0, index_t r1, index_t c1) override;
  // Called with r0 + count once committed rows are written (a checkpoint syncs and records them).
  std::function<void(index_t)> on_final;

 private:
  NpyFileWriter& file_;
  index_t row_, values_;
  std::unique_ptr<char[], void (*)(char*)> buffer_{nullptr, [](char*) {}};
  std::size_t buffer_bytes_ = 0;
  T* band_ = nullptr;  // in buffer_, placed so that rows are aligned as in the file (write_direct)
};

// The layout of the tiles a kernel is computed in.
struct TileGrid {
  index_t n1 = 0, n2 = 0;
  index_t values = 1;       // numbers per pair
  index_t block_dim = 0;    // > 0: a pair's values are a block_dim × block_dim block, transposed by mirroring
  bool symmetric = false;   // x2 = x1: tiles j0 ≥ i0 are computed, the rest mirrored (tile1 == tile2)
  index_t tile1 = 1, tile2 = 1;
  index_t band = 0;         // rows per band, a multiple of tile1; 0: all rows
  // On the symmetric path, whether the producer fills a diagonal tile's entries below its diagonal
  // (otherwise the engine mirrors them from above it).
  bool producer_fills_diagonal_tiles = true;
  // Rows [0, start_row) are final in the sink already (a resumed run): computing starts there. A
  // multiple of band (of tile1 when band is 0).
  index_t start_row = 0;
};

// What produces the tiles of one kernel.
template <class T>
class TileProducer {
 public:
  virtual ~TileProducer() = default;
  // Called before the tiles of the tile row [i0, i0 + c1): what depends on x1's tile alone.
  virtual void begin_row(index_t, index_t) {}
  // The values of pairs [i0, i0 + c1) × [j0, j0 + c2) into tile (c1 × c2 × values, C order).
  virtual void tile(index_t i0, index_t c1, index_t j0, index_t c2, T* tile) = 0;
  // Names the computation in error messages ("the empirical NTK", "the infinite-width NTK").
  virtual std::string what() const = 0;
};

// Runs the producer over the grid into the sink. progress(pairs done, pairs in all), if set, is
// called after every tile. A tile with a NaN or infinite value throws NumericalError naming the pair
// before anything of its band is committed.
template <class T>
void run_tiles(const TileGrid& grid, TileProducer<T>& producer, KernelSink<T>& sink,
               const std::function<void(index_t, index_t)>& progress);

// Runs the producer over the grid into the .npy file at path (shape, dtype of T), band by band,
// resumably (checkpoint.hpp): each band is synced and recorded, and with resume a checkpoint of the
// same job (identity) continues from its last recorded row. A process that is killed leaves the
// partial file and its record for --resume, and so does an IoError (a full disk) after a recorded
// band; any other exception leaves nothing, unless the run continued an earlier one (whose finished
// bands stay). Returns the row the run started from (0 unless resumed).
template <class T>
index_t run_tiles_to_file(TileGrid grid, TileProducer<T>& producer, const std::string& path, const Shape& shape,
                          const JobIdentity& identity, bool resume,
                          const std::function<void(index_t, index_t)>& progress);

// The band for out-of-core output: the most rows (a multiple of tile1, at least one tile row) whose
// buffer of `row_bytes` each takes at most half of `budget` bytes (0: 256 MiB), the other half left
// to what the file's pages and the read-back need around it.
index_t band_rows(index_t n1, index_t tile1, std::uint64_t row_bytes, std::uint64_t budget);

}  // namespace ntk::detail
