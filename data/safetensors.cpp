// safetensors reader and writer. The writer builds the JSON header by hand (nlohmann only escapes
// the strings) so the bytes are fixed: "__metadata__" first, then tensors sorted by name, each as
// {"dtype","shape","data_offsets"} with no spaces, padded with spaces to an 8-byte boundary; it
// writes through AtomicFile (temporary file, fsync, rename). The reader parses the
// header with nlohmann (a parser callback catches duplicate keys, which nlohmann would merge),
// checks every entry and that the tensors tile the data section with no hole or overlap, then
// reads each tensor's bytes straight into a new CPU tensor.
#include "data/safetensors.h"

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

#include "data/atomic_file.h"
#include "kernels/common.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors I/O copies tensor bytes as they are: it needs a little-endian host");

namespace nd::data {

namespace {

using json = nlohmann::json;

// safetensors' own limit (MAX_HEADER_SIZE in the reference implementation).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kSupportedDtypes = "F32, F64, I32, I64, U8";
constexpr const char* kMetadataKey = "__metadata__";

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

// The dtype of a header's "dtype" string; on failure, *problem says why.
bool parse_dtype(const std::string& s, DType* out, std::string* problem) {
  static const std::pair<const char*, DType> kKnown[] = {{"F32", DType::F32},
                                                         {"F64", DType::F64},
                                                         {"I32", DType::I32},
                                                         {"I64", DType::I64},
                                                         {"U8", DType::U8}};
  for (const auto& [name, t] : kKnown) {
    if (s == name) {
      *out = t;
      return true;
    }
  }
  // Other dtypes the format defines, which this engine has no tensor type for.
  static const char* kUnsupported[] = {"BOOL",    "I8",      "I16",     "U16",     "U32",
                                       "U64",     "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3",
                                       "F6_E3M2", "F4",      "C64"};
  if (s == "BF16" || s == "F16") {
    *problem = "dtype " + s + " is not supported yet (convert to F32 before saving; supported: " +
               kSupportedDtypes + ")";
  } else if (std::find_if(std::begin(kUnsupported), std::end(kUnsupported),
                          [&](const char* u) { return s == u; }) != std::end(kUnsupported)) {
    *problem = "dtype " + s + " is not supported (supported: " + kSupportedDtypes + ")";
  } else {
    *problem = "unknown dtype '" + s + "' (supported: " + kSupportedDtypes + ")";
  }
  return false;
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

}  // namespace

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
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
    const uint64_t bytes = uint64_t(t.numel()) * dtype_size(t.dtype());
    if (header.size() > 1) header += ",";
    header += json_string(name, path, "tensor name");
    header += std::string(":{\"dtype\":\"") + safetensors_dtype(t.dtype()) + "\",\"shape\":[";
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
            tmp.path(), "' failed: ", std::strerror(err));
  };
  if (int err = tmp.open()) fail("creating", err);
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
  if (int err = tmp.write(length, 8)) fail("writing", err);
  if (int err = tmp.write(header.data(), header.size())) fail("writing", err);
  for (const auto& [name, t] : tensors) {
    Tensor host;
    try {
      host = t.detach().to(Device::cpu()).contiguous();
    } catch (const Error& e) {
      ND_FAIL("cannot write safetensors file '", path, "': copying tensor '", name,
              "' to the host failed: ", e.what());
    }
    const size_t bytes = size_t(host.numel()) * dtype_size(host.dtype());
    if (int err = tmp.write(host.raw_data(), bytes)) fail("writing", err);
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
  Shape shape;
  uint64_t begin, end;
};

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

  ND_CHECK(file_size >= 8, where, " is ", file_size,
           " bytes, shorter than the 8-byte header length that starts a safetensors file");
  uint8_t length[8];
  read_exact(length, 8, "header length");
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
    ND_CHECK(parse_dtype(dtype.get<std::string>(), &e.dtype, &problem), tensor, ": ", problem);

    const json& shape = info["shape"];
    ND_CHECK(shape.is_array(), tensor, ": shape is a JSON ", shape.type_name(),
             ", not an array of integers");
    ND_CHECK(shape.size() <= size_t(kernels::kMaxDims), tensor, ": shape ", shape.dump(), " has ",
             shape.size(), " dimensions, tensors have at most ", kernels::kMaxDims);
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
    const uint64_t elem = dtype_size(e.dtype);
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
             safetensors_dtype(e.dtype), " needs ", bytes);
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

  std::map<std::string, Tensor> out;
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype, Device::cpu());
    read_exact(t.raw_data(), size_t(e.end - e.begin), "data of tensor '" + e.name + "'");
    out.emplace(e.name, std::move(t));
  }
  if (metadata) *metadata = std::move(meta);
  return out;
}

}  // namespace nd::data
