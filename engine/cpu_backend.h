// How ops:: runs on the CPU: the fast paths (convolutions on oneDNN, the deconvolution kernels on
// BLAS) or the plain reference loops they are tested against, and the number of threads.
// The paths are read once from the environment (ND_CPU_CONV=onednn|ref, ND_CPU_DECONV=blas|ref)
// and may be changed by tests. float64 always runs the reference convolution (oneDNN has no
// float64); the deconvolution fast path serves both types.
#pragma once

namespace nd {

enum class CpuConvPath { OneDnn, Reference };
enum class CpuDeconvPath { Blas, Reference };

// oneDNN when the build has it and ND_CPU_CONV is not "ref".
CpuConvPath cpu_conv_path();
// Throws when asked for oneDNN in a build without it.
void set_cpu_conv_path(CpuConvPath p);
bool onednn_available();
CpuDeconvPath cpu_deconv_path();
void set_cpu_deconv_path(CpuDeconvPath p);

// Threads of OpenBLAS, oneDNN and the kernels' parallel loops (one OpenMP pool); n >= 1.
// Results repeat bitwise for the same count.
void set_cpu_threads(int n);
int cpu_threads();
// The threads this process may run on (its CPU affinity): the default of nd-train --threads.
int cpu_threads_available();
// The thread count when none is asked for (nd-train --threads 0): OMP_NUM_THREADS when it is set
// to a positive number (as PyTorch does), else cpu_threads_available().
int default_cpu_threads();

}  // namespace nd
