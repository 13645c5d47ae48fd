#include "check.hpp"

#include <stdexcept>

namespace ntk::detail {

void assertion_failed(const char* condition, const std::string& what, const char* file, int line) {
  throw std::logic_error("ntkit internal error: " + what + " (" + condition + " failed at " + file + ":" +
                         std::to_string(line) + "); please report it with the command that caused it");
}

}  // namespace ntk::detail
