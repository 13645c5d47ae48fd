// The empirical NTK's modes and methods by name, and the output shapes of the modes.
#include <charconv>
#include <cstdio>

#include "ntk/empirical.hpp"
#include "ntk/error.hpp"

namespace ntk {

EntkMethod parse_entk_method(const std::string& s) {
  if (s == "auto") return EntkMethod::automatic;
  if (s == "jc") return EntkMethod::jc;
  if (s == "vp") return EntkMethod::vp;
  if (s == "sd") return EntkMethod::sd;
  throw InvalidArgument("unknown eNTK method '" + s + "' (use auto, jc, vp or sd)");
}

const char* to_string(EntkMethod m) {
  switch (m) {
    case EntkMethod::automatic: return "auto";
    case EntkMethod::jc: return "jc";
    case EntkMethod::vp: return "vp";
    case EntkMethod::sd: return "sd";
  }
  return "?";
}

EntkMode parse_entk_mode(const std::string& s) {
  if (s == "full") return {EntkMode::full};
  if (s == "trace") return {EntkMode::trace};
  if (s == "trace-sum") return {EntkMode::trace_sum};
  if (s == "pntk") return {EntkMode::pntk};
  if (s == "diagonal") return {EntkMode::diagonal};
  if (s.rfind("logit=", 0) == 0) {
    index_t k = -1;
    const char* b = s.data() + 6;
    const char* e = s.data() + s.size();
    auto r = std::from_chars(b, e, k);
    if (r.ec == std::errc() && r.ptr == e && b != e && k >= 0) return {EntkMode::logit, k};
  }
  throw InvalidArgument("unknown eNTK mode '" + s + "' (use full, trace, trace-sum, pntk, logit=K or diagonal)");
}

std::string to_string(const EntkMode& m) {
  switch (m.kind) {
    case EntkMode::full: return "full";
    case EntkMode::trace: return "trace";
    case EntkMode::trace_sum: return "trace-sum";
    case EntkMode::pntk: return "pntk";
    case EntkMode::logit: return "logit=" + std::to_string(m.logit_index);
    case EntkMode::diagonal: return "diagonal";
  }
  return "?";
}

std::string format_bytes(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

Shape entk_output_shape(const EntkMode& mode, index_t n1, index_t n2, index_t outputs) {
  if (mode.kind == EntkMode::full) return {n1, n2, outputs, outputs};
  if (mode.kind == EntkMode::diagonal) return {n1, n2, outputs};
  return {n1, n2};
}

}  // namespace ntk
