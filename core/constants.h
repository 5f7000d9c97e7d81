// Constants more than one floor must agree on.
#pragma once

namespace nd {

// Most dimensions a tensor may have: the kernels' strided layouts hold this many, the engine and
// the checkpoint readers refuse more.
constexpr int kMaxDims = 8;

}  // namespace nd
