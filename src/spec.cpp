#include "ntk/spec.hpp"

#include <cctype>
#include <charconv>
#include <cmath>

#include "check.hpp"
#include "ntk/error.hpp"

namespace ntk {

namespace {

struct Token {
  enum Kind { kAtom, kLParen, kRParen, kLBracket, kRBracket, kComma, kEquals, kEnd } kind;
  std::string text;
  size_t pos;  // 1-based
};

bool is_atom_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '+' || c == '-';
}

std::vector<Token> tokenize(const std::string& s) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    size_t pos = i + 1;
    switch (c) {
      case '(': out.push_back({Token::kLParen, "(", pos}); ++i; continue;
      case ')': out.push_back({Token::kRParen, ")", pos}); ++i; continue;
      case '[': out.push_back({Token::kLBracket, "[", pos}); ++i; continue;
      case ']': out.push_back({Token::kRBracket, "]", pos}); ++i; continue;
      case ',': out.push_back({Token::kComma, ",", pos}); ++i; continue;
      case '=': out.push_back({Token::kEquals, "=", pos}); ++i; continue;
      default: break;
    }
    if (!is_atom_char(c)) {
      std::string shown = std::isprint(static_cast<unsigned char>(c)) ? std::string(1, c) : "\\x" + std::to_string(static_cast<unsigned char>(c));
      throw ParseError("spec: unexpected character '" + shown + "' at position " + std::to_string(pos));
    }
    size_t j = i;
    while (j < s.size() && is_atom_char(s[j])) ++j;
    out.push_back({Token::kAtom, s.substr(i, j - i), pos});
    i = j;
  }
  out.push_back({Token::kEnd, "end of spec", s.size() + 1});
  return out;
}

bool is_layer_name(const std::string& t) {
  return !t.empty() && std::isupper(static_cast<unsigned char>(t[0]));
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  std::vector<LayerSpec> parse_all() {
    if (peek().kind == Token::kEnd) throw ParseError("spec: empty network spec (expected a layer such as Dense(10))");
    std::vector<LayerSpec> layers = parse_list(Token::kEnd);
    return layers;
  }

 private:
  const Token& peek() const { return t_[i_]; }
  const Token& next() { return t_[i_++]; }

  [[noreturn]] void unexpected(const Token& tok, const std::string& expected) const {
    throw ParseError("spec: expected " + expected + " but found '" + tok.text + "' at position " +
                     std::to_string(tok.pos));
  }

  // Layers separated by commas, up to `end` (not consumed).
  std::vector<LayerSpec> parse_list(Token::Kind end) {
    std::vector<LayerSpec> layers;
    while (true) {
      layers.push_back(parse_layer());
      const Token& tok = peek();
      if (tok.kind == end) return layers;
      if (tok.kind != Token::kComma)
        unexpected(tok, end == Token::kEnd ? "',' or end of spec" : end == Token::kRBracket ? "',' or ']'" : "',' or ')'");
      next();
    }
  }

  LayerSpec parse_layer() {
    const Token& name = next();
    if (name.kind != Token::kAtom || !is_layer_name(name.text)) unexpected(name, "a layer name such as Dense");
    // Bounded recursion: a hostile spec must not overflow the stack.
    if (depth_ >= kMaxNesting)
      throw ParseError("spec: layers nested more than " + std::to_string(kMaxNesting) + " deep at position " +
                       std::to_string(name.pos));
    ++depth_;
    LayerSpec layer = parse_layer_body(name);
    --depth_;
    return layer;
  }

  LayerSpec parse_layer_body(const Token& name) {
    LayerSpec layer{name.text, name.pos, {}, {}, {}};
    if (peek().kind != Token::kLParen) return layer;
    next();
    if (peek().kind == Token::kRParen) {
      next();
      return layer;
    }
    while (true) {
      const Token& first = peek();
      if (first.kind != Token::kAtom) unexpected(first, "an argument");
      if (t_[i_ + 1].kind == Token::kEquals && t_[i_ + 2].kind == Token::kLBracket) {
        // key=[layers...]: a named list of layers (Residual's shortcut).
        next();
        next();
        next();
        for (const auto& [key, list] : layer.lists)
          if (key == first.text)
            throw ParseError("spec: '" + first.text + "' is given twice in " + layer.name + " at position " +
                             std::to_string(first.pos));
        layer.lists.push_back({first.text, parse_list(Token::kRBracket)});
        next();
      } else if (t_[i_ + 1].kind == Token::kEquals) {
        next();
        next();
        const Token& value = next();
        if (value.kind != Token::kAtom) unexpected(value, "a value after '" + first.text + "='");
        layer.args.push_back({first.text, value.text, first.pos});
      } else if (is_layer_name(first.text)) {
        layer.children.push_back(parse_layer());
      } else {
        next();
        layer.args.push_back({"", first.text, first.pos});
      }
      const Token& sep = next();
      if (sep.kind == Token::kRParen) return layer;
      if (sep.kind != Token::kComma) unexpected(sep, "',' or ')' in the arguments of " + layer.name);
    }
  }

  static constexpr int kMaxNesting = 64;
  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
};

std::string layer_text(const LayerSpec& l) {
  std::string s = l.name;
  if (l.args.empty() && l.children.empty() && l.lists.empty()) return s;
  s += "(";
  bool first = true;
  for (const auto& c : l.children) {
    s += (first ? "" : ", ") + layer_text(c);
    first = false;
  }
  for (const auto& a : l.args) {
    s += first ? "" : ", ";
    first = false;
    s += a.key.empty() ? a.value : a.key + "=" + a.value;
  }
  for (const auto& [key, list] : l.lists) {
    s += (first ? "" : ", ") + key + "=[";
    first = false;
    for (size_t i = 0; i < list.size(); ++i) s += (i ? ", " : "") + layer_text(list[i]);
    s += "]";
  }
  return s + ")";
}

}  // namespace

std::vector<LayerSpec> parse_spec(const std::string& spec) { return Parser(tokenize(spec)).parse_all(); }

std::string to_string(const std::vector<LayerSpec>& layers) {
  std::string s;
  for (size_t i = 0; i < layers.size(); ++i) s += (i ? ", " : "") + layer_text(layers[i]);
  return s;
}

ArgReader::ArgReader(const LayerSpec& layer, std::vector<std::string> names)
    : layer_(layer), names_(std::move(names)), bound_(names_.size(), nullptr) {
  size_t next_positional = 0;
  for (const SpecArg& a : layer.args) {
    size_t slot;
    if (a.key.empty()) {
      if (next_positional >= names_.size())
        fail(a, "too many positional arguments (" + layer.name + " takes " + std::to_string(names_.size()) + ")");
      slot = next_positional++;
    } else {
      slot = names_.size();
      for (size_t i = 0; i < names_.size(); ++i)
        if (names_[i] == a.key) slot = i;
      if (slot == names_.size()) {
        std::string known;
        for (const auto& n : names_) known += (known.empty() ? "" : ", ") + n;
        fail(a, "unknown argument '" + a.key + "' (" + layer.name + " takes: " + (known.empty() ? "nothing" : known) + ")");
      }
    }
    if (bound_[slot]) fail(a, "argument '" + names_[slot] + "' given twice");
    bound_[slot] = &a;
  }
}

void ArgReader::fail(const SpecArg& arg, const std::string& why) const {
  throw ParseError("spec: " + layer_.name + " at position " + std::to_string(layer_.pos) + ": " + why +
                   " (argument '" + (arg.key.empty() ? arg.value : arg.key + "=" + arg.value) +
                   "' at position " + std::to_string(arg.pos) + ")");
}

const SpecArg* ArgReader::find(const std::string& name) const {
  for (size_t i = 0; i < names_.size(); ++i)
    if (names_[i] == name) return bound_[i];
  NTK_UNREACHABLE("ArgReader: undeclared argument " + name);
}

bool ArgReader::has(const std::string& name) const { return find(name) != nullptr; }

static bool parse_number(const std::string& s, double& v) {
  const char* b = s.data();
  const char* e = b + s.size();
  if (b != e && *b == '+') ++b;
  auto r = std::from_chars(b, e, v);
  return r.ec == std::errc() && r.ptr == e && std::isfinite(v);
}

long long ArgReader::get_int(const std::string& name, std::optional<long long> fallback, long long min_value) const {
  const SpecArg* a = find(name);
  if (!a) {
    if (!fallback) throw ParseError("spec: " + layer_.name + " at position " + std::to_string(layer_.pos) + ": missing argument '" + name + "'");
    return *fallback;
  }
  long long v = 0;
  auto r = std::from_chars(a->value.data(), a->value.data() + a->value.size(), v);
  if (r.ec != std::errc() || r.ptr != a->value.data() + a->value.size()) fail(*a, "'" + name + "' must be an integer");
  if (v < min_value) fail(*a, "'" + name + "' must be at least " + std::to_string(min_value));
  if (v > (1ll << 31)) fail(*a, "'" + name + "' is too large");
  return v;
}

double ArgReader::get_double(const std::string& name, std::optional<double> fallback) const {
  const SpecArg* a = find(name);
  if (!a) {
    if (!fallback) throw ParseError("spec: " + layer_.name + " at position " + std::to_string(layer_.pos) + ": missing argument '" + name + "'");
    return *fallback;
  }
  double v;
  if (!parse_number(a->value, v)) fail(*a, "'" + name + "' must be a finite number");
  return v;
}

std::optional<double> ArgReader::get_optional_double(const std::string& name, std::optional<double> fallback) const {
  const SpecArg* a = find(name);
  if (!a) return fallback;
  if (a->value == "none" || a->value == "None") return std::nullopt;
  double v;
  if (!parse_number(a->value, v)) fail(*a, "'" + name + "' must be a finite number or none");
  return v;
}

std::string ArgReader::get_choice(const std::string& name, const std::vector<std::string>& choices,
                                  const std::string& fallback) const {
  const SpecArg* a = find(name);
  if (!a) return fallback;
  for (const auto& c : choices)
    if (a->value == c) return c;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : "|") + c;
  fail(*a, "'" + name + "' must be one of " + list);
}

std::pair<long long, long long> ArgReader::get_size2(const std::string& name,
                                                     std::optional<std::pair<long long, long long>> fallback) const {
  const SpecArg* a = find(name);
  if (!a) {
    if (!fallback) throw ParseError("spec: " + layer_.name + " at position " + std::to_string(layer_.pos) + ": missing argument '" + name + "'");
    return *fallback;
  }
  const std::string& s = a->value;
  auto parse_part = [&](const char* b, const char* e) {
    long long v = 0;
    auto r = std::from_chars(b, e, v);
    if (r.ec != std::errc() || r.ptr != e || v < 1 || v > (1 << 20)) fail(*a, "'" + name + "' must be a positive size such as 3 or 3x5");
    return v;
  };
  size_t x = s.find('x');
  if (x == std::string::npos) {
    long long v = parse_part(s.data(), s.data() + s.size());
    return {v, v};
  }
  return {parse_part(s.data(), s.data() + x), parse_part(s.data() + x + 1, s.data() + s.size())};
}

}  // namespace ntk
