// Error type and check macros shared by every floor of the engine. Checks throw nd::Error with a
// message for the user (what is wrong and what to do), so a caller can report and recover. The
// source file:line of the check is prepended only when the environment has ND_DEBUG=1: users read
// the message, developers chasing a report ask for the location.
#pragma once
#include <cstdlib>
#include <cstring>
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

// Whether ND_DEBUG=1 is set (read once).
inline bool debug_messages() {
  static const bool on = [] {
    const char* v = std::getenv("ND_DEBUG");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return on;
}

// "file.cpp:42: " with ND_DEBUG=1, else "".
inline std::string location_prefix(const char* path, int line) {
  if (!debug_messages()) return {};
  std::ostringstream os;
  os << file_name(path) << ":" << line << ": ";
  return os.str();
}

template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace nd

// ND_CHECK(cond, parts...): throw nd::Error("parts...") when cond is false ("file:line: parts..."
// with ND_DEBUG=1).
#define ND_CHECK(cond, ...)                                                 \
  do {                                                                      \
    if (!(cond))                                                            \
      throw ::nd::Error(::nd::detail::location_prefix(__FILE__, __LINE__) + \
                        ::nd::detail::concat(__VA_ARGS__));                 \
  } while (0)

#define ND_FAIL(...)                                                    \
  throw ::nd::Error(::nd::detail::location_prefix(__FILE__, __LINE__) + \
                    ::nd::detail::concat(__VA_ARGS__))
