// Element types of tensors, shared by every floor: the engine's Tensor carries one, the kernels'
// copy/fill/cast switch on it, the checkpoint readers map file types to it.
#pragma once
#include <cstddef>
#include <cstdint>

namespace nd {

enum class DType : uint8_t { F32, F64, I32, I64, U8 };

size_t dtype_size(DType t);       // bytes per element
const char* dtype_name(DType t);  // "float32", "int64", ...
inline bool is_floating(DType t) {
  return t == DType::F32 || t == DType::F64;
}

}  // namespace nd
