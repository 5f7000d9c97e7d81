// IDX reader: a sequential byte source that serves a raw file or inflates a gzip file (zlib's
// inflate, concatenated members allowed, CRC checked), and read_idx on top of it, which parses and
// validates the header, reads the data in large chunks and converts it to host byte order.
#include "data/idx.h"

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <sstream>

namespace nd::data {

namespace {

constexpr uint64_t kMaxDataBytes = uint64_t{1} << 34;
constexpr size_t kInputChunkBytes = size_t{1} << 20;
// A gzip file's data buffer starts at this size and doubles as data arrives, so a damaged header
// that claims gigabytes costs no more than twice what the file really inflates to.
constexpr size_t kFirstDataChunkBytes = size_t{1} << 20;
// Deflate's largest expansion (258-byte matches in 2-bit codes): a gzip file inflates to at most
// this many times its size.
constexpr uint64_t kMaxInflateRatio = 1032;

struct FileCloser {
  void operator()(FILE* file) const { std::fclose(file); }
};

// Serves the bytes of a file in order, inflating it when it starts with the gzip magic. read()
// returns fewer bytes than asked only at the end of the data; every failure throws nd::Error.
class ByteSource {
 public:
  explicit ByteSource(const std::string& path) : path_(path) {
    errno = 0;
    file_.reset(std::fopen(path.c_str(), "rb"));
    if (!file_) ND_FAIL("cannot open ", path, ": ", std::strerror(errno));
    struct stat st {};
    if (::fstat(::fileno(file_.get()), &st) != 0)
      ND_FAIL("cannot read ", path, ": ", std::strerror(errno));
    if (S_ISDIR(st.st_mode)) ND_FAIL("cannot read ", path, ": ", std::strerror(EISDIR));
    file_bytes_ = uint64_t(st.st_size);
    // No bigger than the file: a tiny damaged file costs tiny buffers.
    input_.resize(size_t(std::clamp<uint64_t>(file_bytes_, 16, kInputChunkBytes)));
    zs_.next_in = input_.data();
    zs_.avail_in = 0;
    fill_input();
    gzip_ = zs_.avail_in >= 2 && zs_.next_in[0] == 0x1f && zs_.next_in[1] == 0x8b;
    if (gzip_) {
      // 16 + MAX_WBITS: gzip wrapper only, with its CRC-32 and length trailer checked.
      int rc = inflateInit2(&zs_, 16 + MAX_WBITS);
      if (rc != Z_OK) ND_FAIL(path, ": cannot start zlib inflate (error ", rc, ")");
      inflate_open_ = true;
    }
  }
  ~ByteSource() {
    if (inflate_open_) inflateEnd(&zs_);
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  bool gzip() const { return gzip_; }
  uint64_t file_bytes() const { return file_bytes_; }

  size_t read(uint8_t* dst, size_t n) { return gzip_ ? read_gzip(dst, n) : read_raw(dst, n); }

 private:
  // Moves unread input to the front of the buffer and appends from the file.
  void fill_input() {
    if (file_eof_) return;
    if (zs_.avail_in > 0 && zs_.next_in != input_.data())
      std::memmove(input_.data(), zs_.next_in, zs_.avail_in);
    zs_.next_in = input_.data();
    size_t room = input_.size() - zs_.avail_in;
    size_t got = std::fread(input_.data() + zs_.avail_in, 1, room, file_.get());
    check_file_error();
    if (got < room) file_eof_ = true;
    zs_.avail_in += static_cast<uInt>(got);
  }

  void check_file_error() {
    if (std::ferror(file_.get())) ND_FAIL("cannot read ", path_, ": ", std::strerror(errno));
  }

  size_t read_raw(uint8_t* dst, size_t n) {
    size_t from_buffer = std::min<size_t>(n, zs_.avail_in);
    if (from_buffer > 0) {
      std::memcpy(dst, zs_.next_in, from_buffer);
      zs_.next_in += from_buffer;
      zs_.avail_in -= static_cast<uInt>(from_buffer);
    }
    size_t got = from_buffer;
    if (got < n && !file_eof_) {
      // Large requests go straight from the file into dst, not through the input buffer.
      size_t direct = std::fread(dst + got, 1, n - got, file_.get());
      check_file_error();
      if (direct < n - got) file_eof_ = true;
      got += direct;
    }
    return got;
  }

  size_t read_gzip(uint8_t* dst, size_t n) {
    // zlib counts in uInt; ask for at most 1 GiB per inflate round.
    size_t done = 0;
    while (done < n && !stream_done_) {
      size_t ask = std::min<size_t>(n - done, size_t{1} << 30);
      zs_.next_out = dst + done;
      zs_.avail_out = static_cast<uInt>(ask);
      inflate_into_output();
      done += ask - zs_.avail_out;
      if (zs_.avail_out > 0) break;  // stream ended
    }
    return done;
  }

  // Inflates until zs_.avail_out is 0 or the last gzip member has ended.
  void inflate_into_output() {
    while (zs_.avail_out > 0 && !stream_done_) {
      if (zs_.avail_in == 0) fill_input();
      int rc = inflate(&zs_, Z_NO_FLUSH);
      if (rc == Z_OK) continue;
      if (rc == Z_STREAM_END) {
        // gzip allows several members back to back; anything else after a member is damage.
        if (zs_.avail_in < 2) fill_input();
        if (zs_.avail_in == 0) {
          stream_done_ = true;
        } else if (zs_.avail_in >= 2 && zs_.next_in[0] == 0x1f && zs_.next_in[1] == 0x8b) {
          inflateReset(&zs_);
        } else {
          ND_FAIL(path_,
                  ": unexpected bytes after the end of the gzip stream; the file is "
                  "damaged, re-download it");
        }
        continue;
      }
      if (rc == Z_BUF_ERROR && zs_.avail_in == 0) {
        if (file_eof_)
          ND_FAIL(path_,
                  ": truncated gzip stream: the file ends before the compressed data "
                  "does; re-download it");
        continue;
      }
      if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT)
        ND_FAIL(path_, ": corrupt gzip data (zlib: ", zs_.msg ? zs_.msg : "data error",
                "); re-download the file");
      if (rc == Z_MEM_ERROR) ND_FAIL(path_, ": out of memory while inflating the gzip data");
      ND_FAIL(path_, ": zlib inflate failed (error ", rc, zs_.msg ? ": " : "",
              zs_.msg ? zs_.msg : "", ")");
    }
  }

  std::string path_;
  std::unique_ptr<FILE, FileCloser> file_;
  std::vector<uint8_t> input_;
  z_stream zs_{};  // next_in / avail_in also track the input buffer in raw mode
  bool gzip_ = false;
  bool inflate_open_ = false;
  bool file_eof_ = false;
  bool stream_done_ = false;
  uint64_t file_bytes_ = 0;
};

std::string dims_text(const std::vector<int64_t>& dims) {
  std::ostringstream os;
  for (size_t i = 0; i < dims.size(); ++i) os << (i ? "x" : "") << dims[i];
  return os.str();
}

std::string hex_byte(uint8_t b) {
  static const char kDigits[] = "0123456789ABCDEF";
  return std::string{kDigits[b >> 4], kDigits[b & 15]};
}

bool host_is_big_endian() {
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__)
  return __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__;
#else
  const uint16_t probe = 1;
  uint8_t first;
  std::memcpy(&first, &probe, 1);
  return first == 0;
#endif
}

void swap_elements_in_place(std::vector<uint8_t>& bytes, int element_size) {
  uint8_t* p = bytes.data();
  const size_t count = bytes.size() / element_size;
  for (size_t i = 0; i < count; ++i, p += element_size) std::reverse(p, p + element_size);
}

}  // namespace

int idx_element_size(uint8_t type) {
  switch (type) {
    case kIdxUint8:
    case kIdxInt8:
      return 1;
    case kIdxInt16:
      return 2;
    case kIdxInt32:
    case kIdxFloat32:
      return 4;
    case kIdxFloat64:
      return 8;
    default:
      return 0;
  }
}

const char* idx_type_name(uint8_t type) {
  switch (type) {
    case kIdxUint8:
      return "uint8";
    case kIdxInt8:
      return "int8";
    case kIdxInt16:
      return "int16";
    case kIdxInt32:
      return "int32";
    case kIdxFloat32:
      return "float32";
    case kIdxFloat64:
      return "float64";
    default:
      return "unknown";
  }
}

IdxArray read_idx(const std::string& path) {
  ByteSource source(path);
  const char* layer = source.gzip() ? " (after gunzip)" : "";

  uint8_t magic[4];
  size_t got = source.read(magic, 4);
  if (got < 4)
    ND_FAIL(path, ": truncated header: the file", layer, " holds ", got,
            " bytes, an IDX header needs at least 4; the file is damaged or not IDX");
  if (magic[0] != 0 || magic[1] != 0)
    ND_FAIL(path, ": not an IDX file: bad magic ", hex_byte(magic[0]), " ", hex_byte(magic[1]), " ",
            hex_byte(magic[2]), " ", hex_byte(magic[3]), layer,
            ", an IDX file starts with 00 00 <type> <ndim>");

  IdxArray array;
  array.type = magic[2];
  const int element_size = idx_element_size(array.type);
  if (element_size == 0)
    ND_FAIL(path, ": unknown IDX element type 0x", hex_byte(array.type),
            " (known: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64)");
  const int ndim = magic[3];
  if (ndim == 0 || ndim > 4)
    ND_FAIL(path, ": the IDX header declares ", ndim,
            " dimensions; this reader supports 1 to 4 (is the file damaged?)");

  uint8_t dim_bytes[16];
  got = source.read(dim_bytes, 4 * ndim);
  if (got < size_t(4 * ndim))
    ND_FAIL(path, ": truncated header: ", ndim, " dimensions need ", 4 + 4 * ndim,
            " header bytes, the file", layer, " holds ", 4 + got);
  bool any_zero = false;
  for (int i = 0; i < ndim; ++i) {
    const uint8_t* b = dim_bytes + 4 * i;
    uint32_t d = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
    array.dims.push_back(d);
    any_zero = any_zero || d == 0;
  }

  // Multiply with an overflow guard; a zero anywhere makes the array empty.
  uint64_t total = 0;
  if (!any_zero) {
    total = static_cast<uint64_t>(element_size);
    for (int64_t d : array.dims) {
      if (total > kMaxDataBytes / static_cast<uint64_t>(d))
        ND_FAIL(path, ": the IDX header declares dimensions ", dims_text(array.dims), " of ",
                idx_type_name(array.type),
                ", more than 2^34 bytes of data; the header is damaged or not IDX");
      total *= static_cast<uint64_t>(d);
    }
  }

  // Before allocating: a raw file holds exactly the data the header declares; a gzip file cannot
  // inflate to more than kMaxInflateRatio times its size.
  const uint64_t header_bytes = 4 + 4 * uint64_t(ndim);
  if (!source.gzip() && source.file_bytes() < header_bytes + total)
    ND_FAIL(path, ": truncated: expected ", total, " bytes of data after the header, found ",
            source.file_bytes() - std::min(header_bytes, source.file_bytes()),
            " (header: ", dims_text(array.dims), " ", idx_type_name(array.type),
            "); the file is incomplete, re-download it");
  if (source.gzip() && total + header_bytes > kMaxInflateRatio * source.file_bytes())
    ND_FAIL(path, ": the IDX header declares ", total, " bytes of data (", dims_text(array.dims),
            " ", idx_type_name(array.type), "), more than a gzip file of ", source.file_bytes(),
            " bytes can hold; the header is damaged or the file is truncated, re-download it");

  size_t have = 0;
  array.bytes.resize(source.gzip() ? std::min<uint64_t>(total, kFirstDataChunkBytes) : total);
  while (have < total) {
    if (have == array.bytes.size())
      array.bytes.resize(std::min<uint64_t>(total, 2 * static_cast<uint64_t>(have)));
    size_t want = array.bytes.size() - have;
    size_t got_now = source.read(array.bytes.data() + have, want);
    have += got_now;
    if (got_now < want) break;
  }
  if (have < total)
    ND_FAIL(path, ": truncated: expected ", total, " bytes of data after the header, found ", have,
            " (header: ", dims_text(array.dims), " ", idx_type_name(array.type),
            "); the file is incomplete, re-download it");

  // Count what is left rather than only noticing it: the number helps spot a wrong header.
  uint64_t extra = 0;
  std::vector<uint8_t> probe(std::min<size_t>(kInputChunkBytes, size_t(total) + 4096));
  for (size_t n; (n = source.read(probe.data(), probe.size())) > 0;) extra += n;
  if (extra > 0)
    ND_FAIL(path, ": trailing garbage: expected ", total, " bytes of data after the header, found ",
            total + extra, " (header: ", dims_text(array.dims), " ", idx_type_name(array.type),
            "); the header does not match the data, the file is damaged");

  if (element_size > 1 && !host_is_big_endian()) swap_elements_in_place(array.bytes, element_size);
  return array;
}

IdxArray read_idx_u8(const std::string& path, int expected_ndim) {
  IdxArray array = read_idx(path);
  if (array.type != kIdxUint8)
    ND_FAIL(path, ": expected uint8 elements, the file holds ", idx_type_name(array.type));
  if (static_cast<int>(array.dims.size()) != expected_ndim)
    ND_FAIL(path, ": expected a ", expected_ndim, "-dimensional IDX array, the file holds ",
            array.dims.size(), " dimensions (", dims_text(array.dims), ")");
  return array;
}

}  // namespace nd::data
