// Error types. User-facing problems (bad input, bad spec, bad files) throw one of these with a
// message that says what was wrong and what to do; internal invariants use assert.
#pragma once
#include <stdexcept>
#include <string>

namespace ntk {

// Base of every error ntkit reports to a user. Python maps it to RuntimeError.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A value, shape or argument is invalid (Python: ValueError, CLI: exit 1).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

// A network spec or command line could not be parsed (Python: ValueError, CLI: exit 2).
class ParseError : public InvalidArgument {
 public:
  using InvalidArgument::InvalidArgument;
};

// A file could not be read or written, or its contents are malformed (CLI: exit 1).
class IoError : public Error {
 public:
  using Error::Error;
};

// The request is valid but not supported (Python: NotImplementedError).
class NotSupported : public Error {
 public:
  using Error::Error;
};

// The computation would exceed the memory budget (Python: MemoryError).
class MemoryBudgetError : public Error {
 public:
  using Error::Error;
};

// A computation produced NaN or Inf from finite inputs (an overflow): reported instead of writing a
// kernel of NaN (Python: FloatingPointError via ArithmeticError, CLI: exit 1).
class NumericalError : public Error {
 public:
  using Error::Error;
};

}  // namespace ntk
