// JPEG decoding through libjpeg-turbo (see jpeg_decoder.h).
#include "data/jpeg_decoder.h"

#if ND_WITH_LIBJPEG
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>
// After jpeglib.h: the message codes (JWRN_...).
#include <jerror.h>
#endif

namespace nd::data {

#if ND_WITH_LIBJPEG
namespace {

// libjpeg reports fatal errors through error_exit, which must not return: it jumps back to
// decode_jpeg_rgb's setjmp. Only C frames (libjpeg's) lie between, so no destructor is skipped.
struct ErrorManager {
  jpeg_error_mgr base;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool warned;  // a warning other than stray bytes between markers: the data is damaged
};

void on_error(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  longjmp(e->jump, 1);
}

// Level -1 is a warning (corrupt or truncated data: libjpeg would go on and fill the rest with
// grey). Stray bytes before a marker are harmless and common in files from the web; every other
// warning stops the decoding, as a truncated PNG does. Trace messages (level >= 0) are dropped.
void on_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;
  auto* e = reinterpret_cast<ErrorManager*>(cinfo->err);
  if (cinfo->err->msg_code == JWRN_EXTRANEOUS_DATA) return;
  (*cinfo->err->format_message)(cinfo, e->message);
  e->warned = true;
}

struct ScanLimit {
  jpeg_progress_mgr base;
};

void on_progress(j_common_ptr cinfo) {
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > kMaxJpegScans) {
    auto* e = reinterpret_cast<ErrorManager*>(cinfo->err);
    std::snprintf(e->message, sizeof e->message, "more than %d progressive scans", kMaxJpegScans);
    longjmp(e->jump, 1);
  }
}

// Adobe's CMYK JPEGs store the inks inverted: each channel times K over 255, as stb_image does.
void cmyk_to_rgb(const uint8_t* cmyk, size_t pixels, uint8_t* rgb) {
  for (size_t i = 0; i < pixels; ++i) {
    const unsigned k = cmyk[4 * i + 3];
    for (int c = 0; c < 3; ++c) rgb[3 * i + c] = uint8_t((cmyk[4 * i + c] * k + 127) / 255);
  }
}

}  // namespace

bool decode_jpeg_rgb(const uint8_t* bytes, size_t n, JpegSizeCheck size_ok, const void* context,
                     RgbImage& out, std::string& error) {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  ScanLimit progress;
  // malloc'd and freed on both paths (a vector's destructor would be skipped); volatile: read
  // after longjmp.
  JSAMPLE* volatile row = nullptr;
  cinfo.mem = nullptr;  // what jpeg_destroy_decompress checks, should create itself fail
  cinfo.err = jpeg_std_error(&err.base);
  err.base.error_exit = on_error;
  err.base.emit_message = on_message;
  err.message[0] = '\0';
  err.warned = false;
  if (setjmp(err.jump)) {
    error = err.message;
    std::free(row);
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  progress.base.progress_monitor = on_progress;
  cinfo.progress = &progress.base;
  jpeg_mem_src(&cinfo, bytes, static_cast<unsigned long>(n));
  jpeg_read_header(&cinfo, TRUE);
  {  // a block: no object with a destructor may be alive when libjpeg jumps back
    const std::string size_problem =
        size_ok(int(cinfo.image_width), int(cinfo.image_height), context);
    if (!size_problem.empty()) {
      error = size_problem;
      jpeg_destroy_decompress(&cinfo);
      return false;
    }
  }
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  const size_t width = cinfo.output_width, components = size_t(cinfo.output_components);
  out = RgbImage(int64_t(cinfo.output_height), int64_t(width));
  row = static_cast<JSAMPLE*>(std::malloc(width * components));
  if (!row) {
    error = "out of memory for one row of pixels";
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  while (cinfo.output_scanline < cinfo.output_height && !err.warned) {
    uint8_t* dst = out.pixels.data() + size_t(cinfo.output_scanline) * width * 3;
    JSAMPROW rows[1] = {cmyk ? row : dst};
    jpeg_read_scanlines(&cinfo, rows, 1);
    if (cmyk) cmyk_to_rgb(row, width, dst);
  }
  std::free(row);
  row = nullptr;  // jpeg_finish_decompress may still jump to the handler, which frees row
  if (!err.warned) jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  if (err.warned) {
    error = std::string(err.message) + " (corrupt or truncated)";
    return false;
  }
  return true;
}
#else
bool decode_jpeg_rgb(const uint8_t*, size_t, JpegSizeCheck, const void*, RgbImage&,
                     std::string& error) {
  error = "built without libjpeg-turbo";
  return false;
}
#endif

}  // namespace nd::data
