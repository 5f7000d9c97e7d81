// stb_image's code compiled from the system header (libstb-dev) for the fuzz build only, so the
// decoder runs with the same instrumentation (coverage, ASan, UBSan) as our code; the normal build
// links Debian's libstb instead.
#define STB_IMAGE_IMPLEMENTATION
#include "stb_image.h"
