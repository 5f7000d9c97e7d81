// Reader for the IDX format of the MNIST family: a big-endian header (two zero bytes, an element
// type byte, a dimension count, then each dimension as uint32) followed by row-major big-endian
// data. Files may be raw or gzip-compressed; the gzip magic (1f 8b), not the name, decides. The
// result is a plain byte buffer in host byte order; turning it into a Tensor happens elsewhere.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"

namespace nd::data {

// Element type codes of the IDX header's third byte.
enum IdxType : uint8_t {
  kIdxUint8 = 0x08,
  kIdxInt8 = 0x09,
  kIdxInt16 = 0x0B,
  kIdxInt32 = 0x0C,
  kIdxFloat32 = 0x0D,
  kIdxFloat64 = 0x0E,
};

// Bytes per element of an IDX type code, or 0 for a code that is not one of the six above.
int idx_element_size(uint8_t type);
// "uint8", "int32", ... or "unknown".
const char* idx_type_name(uint8_t type);

struct IdxArray {
  uint8_t type = 0;            // one of IdxType
  std::vector<int64_t> dims;   // 1 to 4 dimensions, outermost first
  std::vector<uint8_t> bytes;  // product(dims) * idx_element_size(type) bytes, host byte order

  // 0 when any dimension is 0 (the others may then be anything up to 2^32 - 1).
  int64_t element_count() const {
    for (int64_t d : dims)
      if (d == 0) return 0;
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return n;
  }
};

// Reads a raw or gzip IDX file. Throws nd::Error naming the path and the problem: unreadable
// file, bad magic, unknown type, 0 or more than 4 dimensions, a size over 2^34 bytes, truncated
// header or data, bytes after the declared data, or a corrupt / truncated gzip stream.
IdxArray read_idx(const std::string& path);

// read_idx, then checks that the elements are uint8 and that there are expected_ndim dimensions.
IdxArray read_idx_u8(const std::string& path, int expected_ndim);

template <typename T>
struct IdxTypeOf;
template <>
struct IdxTypeOf<uint8_t> {
  static constexpr uint8_t code = kIdxUint8;
};
template <>
struct IdxTypeOf<int8_t> {
  static constexpr uint8_t code = kIdxInt8;
};
template <>
struct IdxTypeOf<int16_t> {
  static constexpr uint8_t code = kIdxInt16;
};
template <>
struct IdxTypeOf<int32_t> {
  static constexpr uint8_t code = kIdxInt32;
};
template <>
struct IdxTypeOf<float> {
  static constexpr uint8_t code = kIdxFloat32;
};
template <>
struct IdxTypeOf<double> {
  static constexpr uint8_t code = kIdxFloat64;
};

// Copies the elements out as T (memcpy, so no aliasing questions); T must match the file's type.
template <typename T>
std::vector<T> idx_values(const IdxArray& array) {
  ND_CHECK(array.type == IdxTypeOf<T>::code, "IDX array holds ", idx_type_name(array.type),
           " elements, asked for ", idx_type_name(IdxTypeOf<T>::code));
  std::vector<T> values(array.bytes.size() / sizeof(T));
  if (!values.empty()) std::memcpy(values.data(), array.bytes.data(), values.size() * sizeof(T));
  return values;
}

}  // namespace nd::data
