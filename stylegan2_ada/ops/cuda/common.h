// Helpers shared by our kernels. Every function here also compiles for the host, so the exact
// per-element code of a kernel can run on the CPU (that is how it is tested without a GPU).
#pragma once

#include <cmath>
#include <cstdint>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#if defined(__CUDACC__)
#define GDA_HD __host__ __device__ __forceinline__
#else
#define GDA_HD inline
#endif

namespace gda {

// Arithmetic type: half and bfloat16 values are computed in float, like PyTorch's own kernels.
template <typename T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

// Math functions by precision; the C names exist both in device code and on the host.
GDA_HD float exp_(float v) { return expf(v); }
GDA_HD double exp_(double v) { return exp(v); }
GDA_HD float expm1_(float v) { return expm1f(v); }
GDA_HD double expm1_(double v) { return expm1(v); }
GDA_HD float log1p_(float v) { return log1pf(v); }
GDA_HD double log1p_(double v) { return log1p(v); }
GDA_HD float tanh_(float v) { return tanhf(v); }
GDA_HD double tanh_(double v) { return tanh(v); }

// Integer division rounding towards minus / plus infinity (b > 0); C++ truncates towards zero,
// which is wrong for the negative coordinates that padding produces.
GDA_HD int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
GDA_HD int ceil_div(int a, int b) { return -floor_div(-a, b); }
// a mod m in [0, m) for any sign of a (m > 0).
GDA_HD int pos_mod(int a, int m) { return ((a % m) + m) % m; }

}  // namespace gda
