// bias_act kernel: a grid-stride loop over bias_act_element (bias_act_kernel.h).
#include <algorithm>
#include <climits>

#include "bias_act_kernel.h"

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

template <typename T, typename I> __global__ void bias_act_kernel(BiasActParams p) {
    const int64_t step = int64_t(blockDim.x) * gridDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.n; i += step)
        gda::bias_act_element<T, I>(p, i);
}

template <typename T> cudaError_t launch(const BiasActParams& p, cudaStream_t stream) {
    if (p.n == 0) return cudaSuccess;
    const int blocks = int(std::min((p.n + kThreads - 1) / kThreads, kMaxBlocks));
    if (p.n <= INT_MAX)
        bias_act_kernel<T, int32_t><<<blocks, kThreads, 0, stream>>>(p);
    else
        bias_act_kernel<T, int64_t><<<blocks, kThreads, 0, stream>>>(p);
    return cudaGetLastError();
}

template <typename T> void run_host(const BiasActParams& p) {
    for (int64_t i = 0; i < p.n; ++i) gda::bias_act_element<T, int64_t>(p, i);
}

}  // namespace

cudaError_t bias_act_cuda(const BiasActParams& p, c10::ScalarType dtype, cudaStream_t stream) {
    switch (dtype) {
        case c10::ScalarType::Float: return launch<float>(p, stream);
        case c10::ScalarType::Double: return launch<double>(p, stream);
        case c10::ScalarType::Half: return launch<c10::Half>(p, stream);
        case c10::ScalarType::BFloat16: return launch<c10::BFloat16>(p, stream);
        default: return cudaErrorInvalidValue;
    }
}

void bias_act_host(const BiasActParams& p, c10::ScalarType dtype) {
    switch (dtype) {
        case c10::ScalarType::Float: run_host<float>(p); break;
        case c10::ScalarType::Double: run_host<double>(p); break;
        case c10::ScalarType::Half: run_host<c10::Half>(p); break;
        case c10::ScalarType::BFloat16: run_host<c10::BFloat16>(p); break;
        default: break;
    }
}
