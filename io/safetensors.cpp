// safetensors reader and writer. The writer builds the JSON header by hand (nlohmann only escapes
// the strings) so the bytes are fixed: "__metadata__" first, then tensors sorted by name, each as
// {"dtype","shape","data_offsets"} with no spaces, padded with spaces to an 8-byte boundary; it
// writes through AtomicFile (temporary file, fsync, rename), converting F32 to F16 / BF16 when
// asked. The reader refuses pickle and zip files by their first bytes, parses the header with
// nlohmann (a parser callback catches duplicate keys, which nlohmann would merge), checks every
// entry and that the tensors tile the data section with no hole or overlap, then reads each
// tensor's bytes straight into a new CPU tensor (half precision through a small buffer, widened).
#include "io/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <vector>

#include "core/constants.h"
#include "io/atomic_file.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors I/O copies tensor bytes as they are: it needs a little-endian host");

namespace nd::io {

namespace {

using json = nlohmann::json;

// safetensors' own limit (MAX_HEADER_SIZE in the reference implementation).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kSupportedDtypes = "F32, F64, F16 and BF16 (read as F32), I32, I64, U8";
constexpr const char* kMetadataKey = "__metadata__";

// How a tensor's elements lie in the file: the engine's dtype, or half precision read as F32.
enum class Stored { Native, F16, BF16 };

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
    case DType::U8:
      return "U8";
  }
  ND_FAIL("safetensors: unknown DType ", int(t));
}

const char* stored_name(DType t, Stored stored) {
  return stored == Stored::F16 ? "F16" : stored == Stored::BF16 ? "BF16" : safetensors_dtype(t);
}

uint64_t stored_size(DType t, Stored stored) {
  return stored == Stored::Native ? uint64_t(dtype_size(t)) : 2;
}

// The dtype of a header's "dtype" string; on failure, *problem says why.
bool parse_dtype(const std::string& s, DType* out, Stored* stored, std::string* problem) {
  static const std::pair<const char*, DType> kKnown[] = {{"F32", DType::F32},
                                                         {"F64", DType::F64},
                                                         {"I32", DType::I32},
                                                         {"I64", DType::I64},
                                                         {"U8", DType::U8}};
  *stored = Stored::Native;
  for (const auto& [name, t] : kKnown) {
    if (s == name) {
      *out = t;
      return true;
    }
  }
  if (s == "F16" || s == "BF16") {
    *out = DType::F32;
    *stored = s == "F16" ? Stored::F16 : Stored::BF16;
    return true;
  }
  // Other dtypes the format defines, which this engine has no tensor type for.
  static const char* kUnsupported[] = {"BOOL",    "I8",      "I16",     "U16",     "U32",
                                       "U64",     "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3",
                                       "F6_E3M2", "F4",      "C64"};
  if (std::find_if(std::begin(kUnsupported), std::end(kUnsupported),
                   [&](const char* u) { return s == u; }) != std::end(kUnsupported)) {
    *problem = "dtype " + s + " is not supported (supported: " + kSupportedDtypes + ")";
  } else {
    *problem = "unknown dtype '" + s + "' (supported: " + kSupportedDtypes + ")";
  }
  return false;
}

// ------------------------------------------------------------------------ half precision

uint32_t float_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

float bits_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// IEEE binary16 -> float32, exact (every half is a float).
float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f,
                 mantissa = h & 0x3ff;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
    const float magnitude = std::ldexp(float(mantissa), -24);
    return bits_float(sign | float_bits(magnitude));
  }
  if (exponent == 31) return bits_float(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN
  return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// float32 -> binary16, rounding to nearest even; overflow gives infinity, NaN stays NaN.
uint16_t f32_to_f16(float f) {
  const uint32_t x = float_bits(f), sign = (x >> 16) & 0x8000, magnitude = x & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return uint16_t(sign | 0x7e00 | ((magnitude >> 13) & 0x1ff));
  if (magnitude >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // >= 65520 rounds to infinity
  if (magnitude < 0x38800000u) {  // below 2^-14: a subnormal half, m * 2^-24 (m = 1024: 2^-14)
    const float m = std::nearbyint(bits_float(magnitude) * 16777216.0f);  // exact scaling
    return uint16_t(sign | uint32_t(m));
  }
  const uint32_t rounded = magnitude + 0xfff + ((magnitude >> 13) & 1);
  return uint16_t(sign | ((rounded - (112u << 23)) >> 13));
}

float bf16_to_f32(uint16_t h) {
  return bits_float(uint32_t(h) << 16);
}

uint16_t f32_to_bf16(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);  // quiet NaN
  return uint16_t((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

std::string offsets_str(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// ------------------------------------------------------------------------------------- writing

std::string json_string(const std::string& s, const std::string& path, const char* what) {
  try {
    return json(s).dump();
  } catch (const json::exception&) {
    ND_FAIL("cannot write safetensors file '", path, "': ", what, " '", s, "' is not valid UTF-8");
  }
}

// Whether the writer stores t as half precision.
Stored stored_for(const Tensor& t, FloatStorage floats) {
  if (t.dtype() != DType::F32 || floats == FloatStorage::F32) return Stored::Native;
  return floats == FloatStorage::F16 ? Stored::F16 : Stored::BF16;
}

}  // namespace

FloatStorage parse_float_storage(const std::string& name, const std::string& flag) {
  if (name == "F32") return FloatStorage::F32;
  if (name == "F16") return FloatStorage::F16;
  if (name == "BF16") return FloatStorage::BF16;
  ND_FAIL(flag, " '", name, "' is not one of F32|F16|BF16");
}

const char* float_storage_name(FloatStorage storage) {
  switch (storage) {
    case FloatStorage::F32:
      return "F32";
    case FloatStorage::F16:
      return "F16";
    case FloatStorage::BF16:
      return "BF16";
  }
  return "?";
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata, FloatStorage floats) {
  // Everything that can be checked is checked before a byte is written.
  std::string header = "{";
  if (!metadata.empty()) {
    header += std::string("\"") + kMetadataKey + "\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      if (!first) header += ",";
      first = false;
      header += json_string(key, path, "metadata key");
      header += ":";
      header += json_string(value, path, "metadata value");
    }
    header += "}";
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    ND_CHECK(t.defined(), "cannot write safetensors file '", path, "': tensor '", name,
             "' is undefined");
    ND_CHECK(name != kMetadataKey, "cannot write safetensors file '", path, "': '", kMetadataKey,
             "' is reserved for metadata and cannot name a tensor");
    const Stored stored = stored_for(t, floats);
    const uint64_t bytes = uint64_t(t.numel()) * stored_size(t.dtype(), stored);
    if (header.size() > 1) header += ",";
    header += json_string(name, path, "tensor name");
    header += std::string(":{\"dtype\":\"") + stored_name(t.dtype(), stored) + "\",\"shape\":[";
    for (int64_t d = 0; d < t.dim(); ++d) {
      if (d > 0) header += ",";
      header += std::to_string(t.shape()[d]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  AtomicFile tmp(path);
  auto fail = [&](const char* step, int err) {
    ND_FAIL("cannot write safetensors file '", path, "': ", step, " the temporary file '",
            tmp.path(), "' failed: ", std::strerror(err), disk_full_advice(err, path));
  };
  if (int err = tmp.open()) fail("creating", err);
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
  if (int err = tmp.write(length, 8)) fail("writing", err);
  if (int err = tmp.write(header.data(), header.size())) fail("writing", err);
  std::vector<uint16_t> halves;
  for (const auto& [name, t] : tensors) {
    Tensor host;
    try {
      host = t.detach().to(Device::cpu()).contiguous();
    } catch (const Error& e) {
      ND_FAIL("cannot write safetensors file '", path, "': copying tensor '", name,
              "' to the host failed: ", e.what());
    }
    const Stored stored = stored_for(host, floats);
    if (stored == Stored::Native) {
      const size_t bytes = size_t(host.numel()) * dtype_size(host.dtype());
      if (int err = tmp.write(host.raw_data(), bytes)) fail("writing", err);
      continue;
    }
    const float* values = host.data<float>();
    const size_t count = size_t(host.numel());
    halves.resize(std::min<size_t>(count, size_t{1} << 20));
    for (size_t begin = 0; begin < count; begin += halves.size()) {
      const size_t n = std::min(halves.size(), count - begin);
      for (size_t i = 0; i < n; ++i)
        halves[i] =
            stored == Stored::F16 ? f32_to_f16(values[begin + i]) : f32_to_bf16(values[begin + i]);
      if (int err = tmp.write(halves.data(), 2 * n)) fail("writing", err);
    }
  }
  if (int err = tmp.flush_sync_close()) fail("flushing", err);
  if (int err = tmp.commit()) fail("renaming", err);
}

// ------------------------------------------------------------------------------------- reading

namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

struct Entry {
  std::string name;
  DType dtype;
  Stored stored;
  Shape shape;
  uint64_t begin, end;
};

// The start of a file torch.save writes: a zip archive (PyTorch >= 1.6) or a bare pickle stream
// (protocol 2 to 5; older PyTorch, pickle.dump). A safetensors file's first 8 bytes are a small
// little-endian length, so it cannot start like either unless its header were exactly 67324752
// bytes long and began with '{' right after, which the check allows.
const char* pickle_kind(const uint8_t* b, size_t n) {
  if (n >= 4 && b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4) {
    const bool safetensors_like =
        n >= 9 && b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 0 && b[8] == '{';
    if (!safetensors_like) return "a zip archive (the format of torch.save)";
  }
  if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
    return "a Python pickle (the format of older torch.save and pickle.dump)";
  return nullptr;
}

constexpr const char* kConvertHint =
    "; it is never unpickled here, because unpickling runs code stored in the file. Convert it to "
    "safetensors where PyTorch is installed: python3 -c \"import torch; from safetensors.torch "
    "import save_file; save_file(torch.load('model.pth', map_location='cpu', weights_only=True), "
    "'model.safetensors')\" (a checkpoint holding more than the state_dict: take its "
    "'state_dict' entry first)";

// A non-negative JSON integer, or false.
bool as_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = uint64_t(v.get<int64_t>());
    return true;
  }
  return false;
}

}  // namespace

std::map<std::string, Tensor> load_safetensors(const std::string& path,
                                               std::map<std::string, std::string>* metadata) {
  const std::string where = "safetensors file '" + path + "'";
  errno = 0;
  std::unique_ptr<FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) ND_FAIL("cannot open ", where, ": ", std::strerror(errno ? errno : EIO));
  struct stat st {};
  if (::fstat(::fileno(file.get()), &st) != 0)
    ND_FAIL("cannot stat ", where, ": ", std::strerror(errno));
  ND_CHECK(!S_ISDIR(st.st_mode), "cannot read ", where, ": it is a directory");
  const uint64_t file_size = uint64_t(st.st_size);
  auto read_exact = [&](void* dst, size_t bytes, const std::string& what) {
    if (bytes == 0) return;
    errno = 0;
    size_t got = std::fread(dst, 1, bytes, file.get());
    if (got == bytes) return;
    if (std::ferror(file.get()))
      ND_FAIL("cannot read ", where, " (", what, "): ", std::strerror(errno ? errno : EIO));
    ND_FAIL(where, " is truncated: ", what, " ends early (file changed while reading?)");
  };

  uint8_t length[9] = {};
  const size_t head = std::fread(length, 1, 9, file.get());
  if (const char* kind = pickle_kind(length, head))
    ND_FAIL(where, " is ", kind, ", not a safetensors file", kConvertHint);
  ND_CHECK(file_size >= 8, where, " is ", file_size,
           " bytes, shorter than the 8-byte header length that starts a safetensors file");
  ND_CHECK(head >= 8, where,
           " is truncated: the header length ends early (file changed while reading?)");
  ND_CHECK(std::fseek(file.get(), 8, SEEK_SET) == 0, "cannot read ", where, ": ",
           std::strerror(errno ? errno : EIO));
  uint64_t header_size = 0;
  for (int i = 0; i < 8; ++i) header_size |= uint64_t(length[i]) << (8 * i);
  ND_CHECK(header_size <= kMaxHeaderBytes, where, ": header length ", header_size,
           " is over the 100 MB limit (not a safetensors file?)");
  ND_CHECK(header_size <= file_size - 8, where, ": header length ", header_size,
           " runs past the end of the file (", file_size, " bytes)");
  std::string header(header_size, '\0');
  read_exact(header.data(), header.size(), "header");

  // Duplicate keys: nlohmann keeps the last one silently, so watch the keys of every object.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  json root;
  try {
    root = json::parse(header, [&](int, json::parse_event_t event, json& parsed) {
      if (event == json::parse_event_t::object_start) {
        open_objects.emplace_back();
      } else if (event == json::parse_event_t::object_end) {
        open_objects.pop_back();
      } else if (event == json::parse_event_t::key && !open_objects.empty()) {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!open_objects.back().insert(key).second && duplicate.empty())
          duplicate = open_objects.size() == 1 ? "names '" + key + "' more than once"
                                               : "repeats the key '" + key + "' inside one entry";
      }
      return true;
    });
  } catch (const json::exception& e) {
    ND_FAIL(where, ": header is not valid JSON: ", e.what());
  }
  ND_CHECK(root.is_object(), where, ": header is a JSON ", root.type_name(),
           ", not an object of tensors");
  ND_CHECK(duplicate.empty(), where, ": header ", duplicate);

  const uint64_t data_size = file_size - 8 - header_size;
  std::vector<Entry> entries;
  std::map<std::string, std::string> meta;
  for (const auto& [name, info] : root.items()) {
    if (name == kMetadataKey) {
      ND_CHECK(info.is_object(), where, ": \"", kMetadataKey, "\" is a JSON ", info.type_name(),
               ", not an object of strings");
      for (const auto& [key, value] : info.items()) {
        ND_CHECK(value.is_string(), where, ": \"", kMetadataKey, "\" entry '", key, "' is a JSON ",
                 value.type_name(), ", not a string");
        meta[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string tensor = where + ": tensor '" + name + "'";
    ND_CHECK(info.is_object(), tensor, ": entry is a JSON ", info.type_name(),
             ", not an object with dtype, shape and data_offsets");
    for (const auto& [field, value] : info.items()) {
      (void)value;
      ND_CHECK(field == "dtype" || field == "shape" || field == "data_offsets", tensor,
               ": unexpected field '", field, "' (expected dtype, shape, data_offsets)");
    }
    for (const char* field : {"dtype", "shape", "data_offsets"})
      ND_CHECK(info.contains(field), tensor, ": entry has no \"", field, "\"");

    Entry e;
    e.name = name;
    const json& dtype = info["dtype"];
    ND_CHECK(dtype.is_string(), tensor, ": dtype is a JSON ", dtype.type_name(), ", not a string");
    std::string problem;
    ND_CHECK(parse_dtype(dtype.get<std::string>(), &e.dtype, &e.stored, &problem), tensor, ": ",
             problem);

    const json& shape = info["shape"];
    ND_CHECK(shape.is_array(), tensor, ": shape is a JSON ", shape.type_name(),
             ", not an array of integers");
    ND_CHECK(shape.size() <= size_t(kMaxDims), tensor, ": shape ", shape.dump(), " has ",
             shape.size(), " dimensions, tensors have at most ", kMaxDims);
    uint64_t numel = 1;
    bool overflow = false, zero = false;
    for (const json& d : shape) {
      ND_CHECK(d.is_number_integer(), tensor, ": shape ", shape.dump(),
               " holds a value that is not an integer");
      ND_CHECK(d.is_number_unsigned() || d.get<int64_t>() >= 0, tensor,
               ": negative dimension in shape ", shape.dump());
      const uint64_t n = d.get<uint64_t>();
      ND_CHECK(n <= uint64_t(std::numeric_limits<int64_t>::max()), tensor, ": dimension ", n,
               " in shape ", shape.dump(), " is too large");
      e.shape.push_back(int64_t(n));
      if (n == 0) zero = true;
      if (n != 0 && numel > std::numeric_limits<uint64_t>::max() / n) overflow = true;
      numel *= n;
    }
    if (zero) {  // a zero dimension makes any product zero
      numel = 0;
      overflow = false;
    }
    const uint64_t elem = stored_size(e.dtype, e.stored);
    ND_CHECK(!overflow && numel <= std::numeric_limits<uint64_t>::max() / elem, tensor, ": shape ",
             shape.dump(), " has too many elements");
    const uint64_t bytes = numel * elem;

    const json& offsets = info["data_offsets"];
    ND_CHECK(offsets.is_array() && offsets.size() == 2, tensor, ": data_offsets ", offsets.dump(),
             " is not a pair [begin, end]");
    ND_CHECK(as_u64(offsets[0], &e.begin) && as_u64(offsets[1], &e.end), tensor, ": data_offsets ",
             offsets.dump(), " are not non-negative integers");
    ND_CHECK(e.begin <= e.end, tensor, ": data_offsets ", offsets_str(e.begin, e.end),
             " end before they begin");
    ND_CHECK(e.end <= data_size, tensor, ": data_offsets ", offsets_str(e.begin, e.end),
             " run past the end of the data section (", data_size, " bytes)");
    ND_CHECK(e.end - e.begin == bytes, tensor, ": data_offsets ", offsets_str(e.begin, e.end),
             " span ", e.end - e.begin, " bytes but shape ", shape.dump(), " of ",
             stored_name(e.dtype, e.stored), " needs ", bytes);
    entries.push_back(std::move(e));
  }

  // The tensors must tile the data section: each begins where the previous one ends.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t covered = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.begin < covered) {
      const Entry& p = entries[i - 1];
      ND_FAIL(where, ": tensors '", p.name, "' ", offsets_str(p.begin, p.end), " and '", e.name,
              "' ", offsets_str(e.begin, e.end), " overlap");
    }
    ND_CHECK(e.begin == covered, where, ": bytes [", covered, ", ", e.begin,
             ") of the data section belong to no tensor (a hole before tensor '", e.name, "')");
    covered = e.end;
  }
  ND_CHECK(covered == data_size, where, ": the data section has ", data_size,
           " bytes but the tensors cover only ", covered, " (", data_size - covered,
           " trailing bytes belong to no tensor)");

  // Every tensor's bytes lie inside the file now, so no allocation exceeds what it justifies.
  std::map<std::string, Tensor> out;
  std::vector<uint16_t> halves;
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype, Device::cpu());
    const std::string what = "data of tensor '" + e.name + "'";
    if (e.stored == Stored::Native) {
      read_exact(t.raw_data(), size_t(e.end - e.begin), what);
    } else {
      float* values = t.data<float>();
      const size_t count = size_t(t.numel());
      halves.resize(std::min<size_t>(count, size_t{1} << 20));
      for (size_t begin = 0; begin < count; begin += halves.size()) {
        const size_t n = std::min(halves.size(), count - begin);
        read_exact(halves.data(), 2 * n, what);
        for (size_t i = 0; i < n; ++i)
          values[begin + i] =
              e.stored == Stored::F16 ? f16_to_f32(halves[i]) : bf16_to_f32(halves[i]);
      }
    }
    out.emplace(e.name, std::move(t));
  }
  if (metadata) *metadata = std::move(meta);
  return out;
}

}  // namespace nd::io
