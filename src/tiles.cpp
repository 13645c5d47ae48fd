#include "tiles.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <new>

#include "check.hpp"
#include "ntk/error.hpp"
#include "ntk/parallel.hpp"

namespace ntk::detail {

template <class T>
void ArraySink<T>::read(index_t r, index_t c0, index_t nc, T* dst) const {
  const T* src = data_ + r * row_ + c0 * values_;
  std::copy(src, src + nc * values_, dst);
}

namespace {

// Memory for `count` T on transparent huge pages where the kernel offers them (THP "madvise" mode):
// copying a band of gigabytes out of 4 KiB pages (into the page cache) was measured 10x slower on
// this project's VM, whose nested page tables make every TLB miss expensive.
std::unique_ptr<char[], void (*)(char*)> huge_page_buffer(std::size_t bytes) {
  constexpr std::size_t huge = std::size_t(2) << 20;
  bytes = (bytes + huge - 1) / huge * huge;
  void* p = std::aligned_alloc(huge, bytes);
  if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  ::madvise(p, bytes, MADV_HUGEPAGE);  // a hint: without it the buffer is ordinary memory
#endif
  return {static_cast<char*>(p), [](char* q) { std::free(q); }};
}

}  // namespace

template <class T>
T* FileSink<T>::rows(index_t r0, index_t count) {
  constexpr std::size_t A = NpyFileWriter::kDirectAlignment;
  const std::size_t need = std::size_t(count * row_) * sizeof(T) + A;
  if (need > buffer_bytes_) buffer_ = huge_page_buffer(buffer_bytes_ = need);
  band_ = reinterpret_cast<T*>(buffer_.get() + file_.data_alignment(std::size_t(r0 * row_) * sizeof(T)));
  return band_;
}

// What will not be read again goes straight to disk (write_direct), what will through the page cache:
// on this project's VM, copying a 14.4 GB kernel into page-cache pages it had never used cost 35 s
// of system time (each such page is first backed by the host), direct writes a fraction of that.
template <class T>
void FileSink<T>::commit_rows(index_t r0, index_t count, index_t reread_from) {
  const std::size_t offset = std::size_t(r0 * row_) * sizeof(T), bytes = std::size_t(count * row_) * sizeof(T);
  const index_t direct = reread_from * values_;  // per row, the values not read again
  if (direct >= row_) {
    file_.write_direct(offset, band_, bytes);
  } else {
    for (index_t i = 0; i < count; ++i) {
      const std::size_t at = std::size_t((r0 + i) * row_) * sizeof(T);
      file_.write_direct(at, band_ + i * row_, std::size_t(direct) * sizeof(T));
      file_.write(at + std::size_t(direct) * sizeof(T), band_ + i * row_ + direct, std::size_t(row_ - direct) * sizeof(T));
    }
  }
  file_.flush(offset, bytes);  // what went through the page cache, to disk while the next band is computed
  if (on_final) on_final(r0 + count);
}

// What went through the page cache and will not be read again leaves it once written back, so a
// kernel larger than memory does not crowd everything else out of the cache.
template <class T>
void FileSink<T>::forget(index_t r0, index_t r1, index_t c1) {
  if (c1 * values_ == row_) {  // whole rows: one contiguous range
    file_.forget(std::size_t(r0 * row_) * sizeof(T), std::size_t((r1 - r0) * row_) * sizeof(T));
    return;
  }
  for (index_t r = r0; r < r1; ++r) file_.forget(std::size_t(r * row_) * sizeof(T), std::size_t(c1 * values_) * sizeof(T));
}

template <class T>
void FileSink<T>::read(index_t r, index_t c0, index_t nc, T* dst) const {
  file_.read(std::size_t(r * row_ + c0 * values_) * sizeof(T), dst, std::size_t(nc * values_) * sizeof(T));
}

namespace {

// Copies one pair's values, transposing a block_dim × block_dim block (the mirror of (i, j, a, b)
// is (j, i, b, a)).
template <class T>
void mirror_pair(const T* src, T* dst, index_t values, index_t block_dim) {
  if (block_dim == 0) {
    std::copy(src, src + values, dst);
    return;
  }
  for (index_t a = 0; a < block_dim; ++a)
    for (index_t b = 0; b < block_dim; ++b) dst[b * block_dim + a] = src[a * block_dim + b];
}

template <class T>
void check_finite(const T* tile, index_t i0, index_t c1, index_t j0, index_t c2, index_t values, const std::string& what) {
  const index_t bad = first_non_finite(tile, c1 * c2 * values);
  if (bad < 0) return;
  const index_t pair = bad / values, i = i0 + pair / c2, j = j0 + pair % c2;
  throw NumericalError(what + " is not finite (" + (std::isnan(tile[bad]) ? "NaN" : "Inf") + ") at pair (" +
                       std::to_string(i) + ", " + std::to_string(j) +
                       "): the computation overflowed; check the inputs' scale and W_std / b_std, or use --dtype float64");
}

}  // namespace

template <class T>
void run_tiles(const TileGrid& g, TileProducer<T>& producer, KernelSink<T>& sink,
               const std::function<void(index_t, index_t)>& progress) {
  NTK_ASSERT(!g.symmetric || (g.n1 == g.n2 && g.tile1 == g.tile2), "run_tiles: a symmetric grid needs square tiles");
  NTK_ASSERT(g.band == 0 || g.band % g.tile1 == 0, "run_tiles: bands must hold whole tile rows");
  const index_t V = g.values, row = g.n2 * V;
  const index_t band = g.band > 0 ? g.band : std::max<index_t>(g.n1, 1);
  const index_t total = g.symmetric ? g.n1 * (g.n1 + 1) / 2 : g.n1 * g.n2;
  NTK_ASSERT(g.start_row >= 0 && g.start_row <= g.n1 && (g.start_row % band == 0 || g.start_row == g.n1),
             "run_tiles: a resumed run starts at a band boundary");
  // Pairs in the rows already final: all of their columns, or on the symmetric path those from the
  // diagonal on (Σ over r < s of n1 − r).
  const index_t s0 = g.start_row;
  index_t done = g.symmetric ? s0 * g.n1 - s0 * (s0 - 1) / 2 : s0 * g.n2;
  std::vector<T> tile(static_cast<size_t>(std::min(g.tile1, g.n1) * std::min(g.tile2, g.n2) * V));
  std::vector<T> mirrored;
  for (index_t b0 = g.start_row; b0 < g.n1; b0 += band) {
    const index_t nb = std::min(band, g.n1 - b0);
    T* rows = sink.rows(b0, nb);
    if (g.symmetric && b0 > 0) {
      // Columns [0, b0) of the band mirror rows [0, b0), which earlier bands committed: read each
      // of those rows' piece [b0, b0 + nb) (contiguous) and scatter it down the band's columns.
      mirrored.resize(static_cast<size_t>(nb * V));
      for (index_t r = 0; r < b0; ++r) {
        sink.read(r, b0, nb, mirrored.data());
        for (index_t i = 0; i < nb; ++i) mirror_pair(mirrored.data() + i * V, rows + i * row + r * V, V, g.block_dim);
      }
    }
    for (index_t i0 = b0; i0 < b0 + nb; i0 += g.tile1) {
      const index_t c1 = std::min(g.tile1, b0 + nb - i0);
      producer.begin_row(i0, c1);
      for (index_t j0 = g.symmetric ? i0 : 0; j0 < g.n2; j0 += g.tile2) {
        const index_t c2 = std::min(g.tile2, g.n2 - j0);
        const bool diagonal_tile = g.symmetric && j0 == i0;
        producer.tile(i0, c1, j0, c2, tile.data());
        if (diagonal_tile && !g.producer_fills_diagonal_tiles)
          for (index_t i = 0; i < c1; ++i)
            for (index_t j = 0; j < i; ++j) mirror_pair(tile.data() + (j * c2 + i) * V, tile.data() + (i * c2 + j) * V, V, g.block_dim);
        check_finite(tile.data(), i0, c1, j0, c2, V, producer.what());
        parallel_for(c1, [&](index_t begin, index_t end) {
          for (index_t i = begin; i < end; ++i)
            std::copy(tile.data() + i * c2 * V, tile.data() + (i + 1) * c2 * V, rows + (i0 - b0 + i) * row + j0 * V);
        });
        // The mirror image of an off-diagonal tile, where it lands inside this band; rows after the
        // band read it back from the sink when their band comes.
        const index_t mirror_rows = std::min(c2, b0 + nb - j0);
        if (g.symmetric && !diagonal_tile && mirror_rows > 0)
          parallel_for(mirror_rows, [&](index_t begin, index_t end) {
            for (index_t j = begin; j < end; ++j)
              for (index_t i = 0; i < c1; ++i)
                mirror_pair(tile.data() + (i * c2 + j) * V, rows + (j0 - b0 + j) * row + (i0 + i) * V, V, g.block_dim);
          });
        done += diagonal_tile ? c1 * (c1 + 1) / 2 : c1 * c2;
        if (progress) progress(done, total);
      }
    }
    // On the symmetric path later bands read back the columns past this band (their mirror images).
    sink.commit_rows(b0, nb, g.symmetric ? b0 + nb : g.n2);
    // What later bands will still read: on the symmetric path the columns past this band of the rows
    // so far; nothing otherwise.
    if (g.symmetric)
      sink.forget(0, b0 + nb, b0 + nb);
    else
      sink.forget(b0, b0 + nb, g.n2);
  }
}

template <class T>
index_t run_tiles_to_file(TileGrid grid, TileProducer<T>& producer, const std::string& path, const Shape& shape,
                          const JobIdentity& identity, bool resume,
                          const std::function<void(index_t, index_t)>& progress) {
  Checkpoint checkpoint(path, identity, grid.n1, resume);
  if (checkpoint.already_complete()) {
    checkpoint.finish();
    return grid.n1;
  }
  NpyFileWriter file(path, dtype_of<T>(), shape, checkpoint.partial_path(), checkpoint.reopen());
  const index_t row = numel(shape) / std::max<index_t>(grid.n1, 1);
  FileSink<T> sink(file, row, grid.values);
  sink.on_final = [&](index_t rows) { checkpoint.record_synced(file, rows); };
  grid.start_row = checkpoint.start_row();
  try {
    run_tiles(grid, producer, sink, progress);
  } catch (const IoError& e) {
    throw checkpoint.kept_error(e);  // a full disk, say: the finished bands and their record stay
  } catch (...) {
    // Any other failure (bad values, an exception from the progress callback) leaves nothing,
    // unless this run continued an earlier one: that one's finished bands stay.
    if (checkpoint.start_row() == 0) {
      file.keep_partial_on_failure(false);
      checkpoint.finish();
    }
    throw;
  }
  fault_point("before-rename");
  file.commit();
  fault_point("after-rename");
  checkpoint.finish();
  return grid.start_row;
}

index_t band_rows(index_t n1, index_t tile1, std::uint64_t row_bytes, std::uint64_t budget) {
  if (budget == 0) budget = std::uint64_t(256) << 20;
  const std::uint64_t rows = budget / std::max<std::uint64_t>(2 * row_bytes, 1);
  const index_t tiles = std::max<index_t>(1, index_t(rows) / std::max<index_t>(tile1, 1));
  return std::min(n1, tiles * tile1);
}

template class ArraySink<float>;
template class ArraySink<double>;
template class FileSink<float>;
template class FileSink<double>;
template void run_tiles(const TileGrid&, TileProducer<float>&, KernelSink<float>&,
                        const std::function<void(index_t, index_t)>&);
template void run_tiles(const TileGrid&, TileProducer<double>&, KernelSink<double>&,
                        const std::function<void(index_t, index_t)>&);
template index_t run_tiles_to_file(TileGrid, TileProducer<float>&, const std::string&, const Shape&,
                                   const JobIdentity&, bool, const std::function<void(index_t, index_t)>&);
template index_t run_tiles_to_file(TileGrid, TileProducer<double>&, const std::string&, const Shape&,
                                   const JobIdentity&, bool, const std::function<void(index_t, index_t)>&);

}  // namespace ntk::detail
