// Error type and check macros shared by every floor of the engine. Checks throw nd::Error with
// the failed statement, file:line and a message, so a caller can report and recover.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace nd {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Thrown when the GPU runs out of memory, so trainers can say what to do (smaller batch).
class OutOfMemoryError : public Error {
 public:
  explicit OutOfMemoryError(const std::string& what) : Error(what) {}
};

namespace detail {
// "dir/sub/file.cpp" -> "file.cpp": messages name the source file without the build's paths.
constexpr const char* file_name(const char* path) {
  const char* name = path;
  for (const char* p = path; *p; ++p)
    if (*p == '/') name = p + 1;
  return name;
}

template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace nd

// ND_CHECK(cond, parts...): throw nd::Error("file:line: parts...") when cond is false.
#define ND_CHECK(cond, ...)                                                                    \
  do {                                                                                         \
    if (!(cond))                                                                               \
      throw ::nd::Error(::nd::detail::concat(::nd::detail::file_name(__FILE__), ":", __LINE__, \
                                             ": ", __VA_ARGS__));                              \
  } while (0)

#define ND_FAIL(...) \
  throw ::nd::Error( \
      ::nd::detail::concat(::nd::detail::file_name(__FILE__), ":", __LINE__, ": ", __VA_ARGS__))
