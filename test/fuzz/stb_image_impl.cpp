// stb_image's code compiled from the system header (libstb-dev) for the fuzz build only, so the
// decoder runs with the same instrumentation (coverage, ASan, UBSan) as our code; the normal build
// links Debian's libstb instead. Without libjpeg (data/jpeg_decoder.h) JPEG pixels go through
// stb_image, and STBI_ASSERT is off: after the bit-reader shift bug (see CMakeLists.txt) its JPEG
// Huffman decoder can fail its own assertion on corrupt data; both are known
// (docs/reliability.md), and fuzzing looks past them for others.
#if !ND_WITH_LIBJPEG
#define STBI_ASSERT(x) ((void)0)
#endif
#define STB_IMAGE_IMPLEMENTATION
#include "stb_image.h"
