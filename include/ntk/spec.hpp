// The network spec grammar of DESIGN.md:
//   spec   := layer (',' layer)*
//   layer  := NAME [ '(' [arg (',' arg)*] ')' ]
//   arg    := layer | NAME '=' atom | NAME '=' '[' layer (',' layer)* ']' | atom
//             (layers and lists of layers only inside Residual: its block, shortcut=[...])
//   atom   := a number, a word such as SAME / none, or a size such as 3x5
// Parsing produces a syntax tree; the layer registry gives each layer's arguments their meaning.
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ntk {

struct SpecArg {
  std::string key;    // empty for positional arguments
  std::string value;  // the atom's text
  size_t pos = 0;     // 1-based character position of the argument in the spec
};

struct LayerSpec {
  std::string name;
  size_t pos = 0;                   // 1-based position of the name
  std::vector<SpecArg> args;        // atoms, positional and keyword, in order
  std::vector<LayerSpec> children;  // nested layers (Residual's block)
  // Named lists of layers, key=[...] (Residual's shortcut), in order.
  std::vector<std::pair<std::string, std::vector<LayerSpec>>> lists;
};

// Parses a whole spec. Throws ParseError naming the offending token and its position.
std::vector<LayerSpec> parse_spec(const std::string& spec);

// Canonical text of a parsed spec (round-trips through parse_spec).
std::string to_string(const std::vector<LayerSpec>& layers);

// Reads a layer's arguments by name, checks types, and reports leftovers. Positional arguments
// are matched to names in declaration order; a name may be given once, positionally or by key.
class ArgReader {
 public:
  ArgReader(const LayerSpec& layer, std::vector<std::string> names);

  bool has(const std::string& name) const;
  const SpecArg* find(const std::string& name) const;
  long long get_int(const std::string& name, std::optional<long long> fallback = std::nullopt,
                    long long min_value = 1) const;
  double get_double(const std::string& name, std::optional<double> fallback = std::nullopt) const;
  // Number or `none` (returned as nullopt).
  std::optional<double> get_optional_double(const std::string& name, std::optional<double> fallback) const;
  std::string get_choice(const std::string& name, const std::vector<std::string>& choices,
                         const std::string& fallback) const;
  // `3` -> {3, 3}; `3x5` -> {3, 5}.
  std::pair<long long, long long> get_size2(const std::string& name,
                                            std::optional<std::pair<long long, long long>> fallback) const;
  [[noreturn]] void fail(const SpecArg& arg, const std::string& why) const;

 private:
  const LayerSpec& layer_;
  std::vector<std::string> names_;
  std::vector<const SpecArg*> bound_;  // one slot per name
};

}  // namespace ntk
