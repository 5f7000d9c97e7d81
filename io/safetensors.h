// Reading and writing checkpoints in the safetensors format, so weights move between PyTorch
// (state_dict names as tensor names) and this engine. A file is an 8-byte little-endian header
// length N, N bytes of JSON mapping each tensor name to {"dtype", "shape", "data_offsets"} (plus
// an optional "__metadata__" object of strings), padded with spaces, then the raw little-endian
// row-major data, which the tensors cover exactly. Supported dtypes: F32, F64, I32, I64, U8, and
// F16 / BF16 (half precision, as PyTorch checkpoints are often saved), read as F32; scalars (shape
// []) and empty tensors round-trip. Pickle-based PyTorch files (.pth, .pt: zip or pickle) are
// refused with a message saying how to convert them: unpickling would run code from the file.
#pragma once
#include <map>
#include <string>

#include "engine/tensor.h"

namespace nd::io {

// How save_safetensors stores F32 tensors: as they are, or rounded to nearest-even half precision
// (F16: 5-bit exponent, overflow to infinity; BF16: float32's exponent, 8-bit significand). Other
// dtypes are always stored as they are.
enum class FloatStorage { F32, F16, BF16 };

// "F32" | "F16" | "BF16"; throws nd::Error naming `flag` and the allowed values otherwise.
FloatStorage parse_float_storage(const std::string& name, const std::string& flag);
const char* float_storage_name(FloatStorage storage);

// Writes `tensors` (any device, any strides; copied to contiguous host memory as needed) sorted
// by name, with the header padded so the data section starts at an 8-byte boundary; `metadata`
// becomes "__metadata__" when not empty. The file is written to `path + ".tmp.<pid>"`, flushed,
// fsync'ed and renamed over `path`, so `path` holds either its old content or the complete new
// file. Undefined tensors and the reserved name "__metadata__" are rejected before anything is
// written; on any failure the temporary file is removed and nd::Error names the path and the OS
// error (a full disk also says that the previous file is unchanged).
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {},
                      FloatStorage floats = FloatStorage::F32);

// Reads every tensor of a safetensors file into CPU tensors (F16 and BF16 converted exactly to
// F32); fills *metadata (cleared first) with "__metadata__" when asked. Validates the whole file
// before allocating any tensor, so memory never exceeds what the file's size justifies, and throws
// nd::Error naming the file and the tensor: unreadable or short file, a PyTorch pickle or zip file,
// a header length beyond the file or over 100 MB, a header that is not a JSON object, duplicate
// names, entries missing or mistyping dtype / shape / data_offsets, unsupported dtypes, negative
// dimensions, and offsets out of range, overlapping, of the wrong size, or leaving bytes of the
// data section uncovered.
std::map<std::string, Tensor> load_safetensors(
    const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

}  // namespace nd::io
