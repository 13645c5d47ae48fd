// Borrowed arrays: a job reads an input array in memory (the Python bindings' NumPy buffers) in
// place when it already has the compute type, and never writes into it.
#include <gtest/gtest.h>

#include <vector>

#include "jobs_detail.hpp"
#include "ntk/array.hpp"
#include "ntk/jobs.hpp"

namespace {

using ntk::Array;
using ntk::index_t;

TEST(ArrayBorrow, ConstAccessReadsTheLendersBuffer) {
  const std::vector<double> lender{1, 2, 3, 4, 5, 6};
  const Array<double> a = Array<double>::borrow({2, 3}, lender.data());
  EXPECT_TRUE(a.borrowed());
  EXPECT_EQ(a.data(), lender.data());
  EXPECT_EQ(a.size(), 6);
  EXPECT_EQ(a.shape(), (ntk::Shape{2, 3}));
  EXPECT_EQ(a[4], 5.0);
  EXPECT_EQ(a.span().data(), lender.data());
  const Array<double> copy = a;  // copies borrow the same buffer
  EXPECT_EQ(copy.data(), lender.data());
}

TEST(ArrayBorrow, MutableAccessCopiesAndLeavesTheLenderUnchanged) {
  std::vector<float> lender{1, 2, 3, 4};
  Array<float> a = Array<float>::borrow({4}, lender.data());
  a[1] = 20.0f;  // the first write owns a copy
  EXPECT_FALSE(a.borrowed());
  EXPECT_NE(a.data(), lender.data());
  EXPECT_EQ(lender[1], 2.0f);
  EXPECT_EQ(a[1], 20.0f);
  EXPECT_EQ(a[3], 4.0f);
  EXPECT_EQ(a.size(), 4);

  Array<float> b = Array<float>::borrow({2, 2}, lender.data());
  b.reshape({4});
  EXPECT_TRUE(b.borrowed());  // a reshape writes nothing
  std::vector<float>& owned = b.vector();
  EXPECT_FALSE(b.borrowed());
  EXPECT_EQ(owned, lender);
}

TEST(ArrayBorrow, AJobInputOfTheComputeTypeIsNotCopied) {
  std::vector<float> x32(4 * 3, 0.5f);
  std::vector<double> x64(4 * 3, 0.25);
  const ntk::JobInput in32 = ntk::JobInput::memory({ntk::DType::float32, {4, 3}, x32.data()});
  const ntk::JobInput in64 = ntk::JobInput::memory({ntk::DType::float64, {4, 3}, x64.data()});

  ntk::detail::LoadedInput same32(in32, {});
  const Array<float> a = same32.take<float>();
  EXPECT_TRUE(a.borrowed());
  EXPECT_EQ(a.data(), x32.data());

  ntk::detail::LoadedInput same64(in64, {});
  const Array<double> b = same64.take<double>();
  EXPECT_EQ(b.data(), x64.data());

  // Another type is converted into owned storage.
  ntk::detail::LoadedInput other(in32, {});
  const Array<double> c = other.take<double>();
  EXPECT_FALSE(c.borrowed());
  EXPECT_EQ(c[0], 0.5);
}

TEST(ArrayBorrow, ApplyOnABorrowedInputEqualsApplyOnACopy) {
  std::vector<double> x(5 * 4);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.1 * double(i) - 0.7;
  const std::vector<double> before = x;
  ntk::ApplyJob job;
  job.net.spec = "Dense(6, b_std=0.1), Relu, Dense(2)";
  job.params.seed = 3;
  job.x = ntk::JobInput::memory({ntk::DType::float64, {5, 4}, x.data()});
  const ntk::JobResult borrowed = ntk::run_apply(job);
  std::vector<double> copy = x;
  job.x = ntk::JobInput::memory({ntk::DType::float64, {5, 4}, copy.data()});
  const ntk::JobResult owned = ntk::run_apply(job);
  EXPECT_EQ(std::get<Array<double>>(*borrowed.array).vector(), std::get<Array<double>>(*owned.array).vector());
  EXPECT_EQ(x, before);
  EXPECT_FALSE(std::get<Array<double>>(*borrowed.array).borrowed());
}

}  // namespace
