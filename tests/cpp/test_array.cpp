// Borrowed arrays: a job reads an input array in memory (the Python bindings' NumPy buffers) in
// place when it already has the compute type, and never writes into it.
#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "jobs_detail.hpp"
#include "ntk/array.hpp"
#include "ntk/jobs.hpp"
#include "ntk/network.hpp"

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

// Parameters given as arrays that already lie in place as the flat vector (the Python package's
// init()) are read where they are; any other arrays are copied, with the same checks either way.
TEST(ArrayBorrow, ParametersInPlaceAreBorrowedOthersCopied) {
  const ntk::Network net("Dense(3, b_std=0.1), Relu, Dense(2)", {4});
  std::vector<float> flat = net.init<float>(5);
  ntk::ParamSource in_place;
  for (const ntk::ParamView& v : net.param_views())
    in_place.views[v.name] = ntk::ArrayView{ntk::DType::float32, v.shape, flat.data() + v.offset};
  ntk::detail::ResolvedParams<float> a = ntk::detail::resolve_params<float>(net, in_place, 1);
  EXPECT_TRUE(a.owned.empty());
  EXPECT_EQ(a.values.data(), flat.data());
  EXPECT_EQ(a.values.size(), flat.size());

  // The same values in separate arrays: copied, equal.
  std::vector<std::vector<float>> separate;
  ntk::ParamSource apart;
  for (const ntk::ParamView& v : net.param_views()) {
    separate.emplace_back(flat.begin() + v.offset, flat.begin() + v.offset + ntk::numel(v.shape));
    apart.views[v.name] = ntk::ArrayView{ntk::DType::float32, v.shape, separate.back().data()};
  }
  ntk::detail::ResolvedParams<float> b = ntk::detail::resolve_params<float>(net, apart, 1);
  EXPECT_FALSE(b.owned.empty());
  EXPECT_EQ(std::vector<float>(b.values.begin(), b.values.end()), flat);

  // float64 views of the float32 network's parameters are converted, not borrowed.
  std::vector<double> flat64(flat.begin(), flat.end());
  ntk::ParamSource wider;
  for (const ntk::ParamView& v : net.param_views())
    wider.views[v.name] = ntk::ArrayView{ntk::DType::float64, v.shape, flat64.data() + v.offset};
  EXPECT_FALSE(ntk::detail::resolve_params<float>(net, wider, 1).owned.empty());

  // A NaN is refused on both paths, naming the parameter.
  flat[net.param_views()[2].offset + 1] = std::numeric_limits<float>::quiet_NaN();
  for (const ntk::ParamSource* src : {&in_place, &wider}) {
    if (src == &wider) flat64[net.param_views()[2].offset + 1] = std::numeric_limits<double>::quiet_NaN();
    try {
      ntk::detail::resolve_params<float>(net, *src, 1);
      ADD_FAILURE() << "no error";
    } catch (const ntk::InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("parameter '2.W' has a non-finite value at flat index 1"), std::string::npos)
          << e.what();
    }
  }
}

template <class T>
void check_first_non_finite() {
  const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> v(3000, T(1));
  v[7] = std::numeric_limits<T>::max();
  v[8] = -std::numeric_limits<T>::max();
  v[9] = std::numeric_limits<T>::denorm_min();
  EXPECT_EQ(ntk::first_non_finite(v.data(), index_t(v.size())), -1);
  EXPECT_EQ(ntk::first_non_finite(v.data(), 0), -1);
  for (index_t at : {0, 1, 1023, 1024, 2047, 2999})
    for (T bad : {nan, inf, -inf, -nan}) {
      std::vector<T> w = v;
      w[size_t(at)] = bad;
      if (at + 5 < index_t(w.size())) w[size_t(at + 5)] = nan;  // only the first counts
      EXPECT_EQ(ntk::first_non_finite(w.data(), index_t(w.size())), at) << at;
      EXPECT_EQ(ntk::first_non_finite(w.data(), at), -1) << at;  // a count that stops before it
    }
}

TEST(FirstNonFinite, FindsTheFirstNanOrInfAcrossBlocks) {
  check_first_non_finite<float>();
  check_first_non_finite<double>();
}

}  // namespace
