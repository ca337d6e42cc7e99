// upfirdn2d kernel: one block per (output tile, plane), built from upfirdn2d_kernel.h.
#include <algorithm>
#include <vector>

#include "upfirdn2d_kernel.h"

namespace {

constexpr int64_t kMaxGridY = 65535;

template <typename T> __global__ void upfirdn2d_kernel(UpFirDn2dParams p) {
    using A = typename gda::Acc<T>::type;
    extern __shared__ __align__(16) unsigned char smem[];
    float* sf = reinterpret_cast<float*>(smem);
    A* sx = reinterpret_cast<A*>(smem + gda::upfirdn2d_filter_bytes(p));

    for (int k = threadIdx.x; k < p.filter_h * p.filter_w; k += blockDim.x)
        gda::upfirdn2d_load_filter(p, sf, k);
    const gda::TileOrigin o = gda::upfirdn2d_tile_origin(p, blockIdx.x);
    const int window = p.window_h * p.window_w, outputs = p.tile_h * p.tile_w;

    // The grid's y dimension is capped, so a block may serve several planes of the same tile.
    for (int64_t plane = blockIdx.y; plane < p.planes; plane += gridDim.y) {
        const T* x = static_cast<const T*>(p.x) +
                     gda::upfirdn2d_plane_offset(p.x_stride, plane, p.channels);
        T* y = static_cast<T*>(p.y) + gda::upfirdn2d_plane_offset(p.y_stride, plane, p.channels);
        __syncthreads();  // the filter is staged and the previous plane's window is no longer read
        for (int k = threadIdx.x; k < window; k += blockDim.x)
            gda::upfirdn2d_load_input(p, x, o, sx, k);
        __syncthreads();
        for (int k = threadIdx.x; k < outputs; k += blockDim.x)
            gda::upfirdn2d_output(p, y, o, sx, sf, k);
    }
}

template <typename T> cudaError_t launch(UpFirDn2dParams p, cudaStream_t stream) {
    using A = typename gda::Acc<T>::type;
    gda::upfirdn2d_plan(p, int(sizeof(A)));
    if (p.tiles > INT32_MAX) return cudaErrorInvalidConfiguration;
    const dim3 grid(unsigned(p.tiles), unsigned(std::min(p.planes, kMaxGridY)));
    upfirdn2d_kernel<T><<<grid, p.threads, p.smem_bytes, stream>>>(p);
    return cudaGetLastError();
}

// The kernel's blocks in sequence; each block's two phases run as the loops they are on the GPU.
template <typename T> void run_host(UpFirDn2dParams p) {
    using A = typename gda::Acc<T>::type;
    gda::upfirdn2d_plan(p, int(sizeof(A)));
    std::vector<float> sf(p.filter_h * p.filter_w);
    std::vector<A> sx(p.window_h * p.window_w);
    for (int k = 0; k < int(sf.size()); ++k) gda::upfirdn2d_load_filter(p, sf.data(), k);
    for (int64_t tile = 0; tile < p.tiles; ++tile) {
        const gda::TileOrigin o = gda::upfirdn2d_tile_origin(p, tile);
        for (int64_t plane = 0; plane < p.planes; ++plane) {
            const T* x = static_cast<const T*>(p.x) +
                         gda::upfirdn2d_plane_offset(p.x_stride, plane, p.channels);
            T* y = static_cast<T*>(p.y) + gda::upfirdn2d_plane_offset(p.y_stride, plane, p.channels);
            for (int k = 0; k < int(sx.size()); ++k)
                gda::upfirdn2d_load_input(p, x, o, sx.data(), k);
            for (int k = 0; k < p.tile_h * p.tile_w; ++k)
                gda::upfirdn2d_output(p, y, o, sx.data(), sf.data(), k);
        }
    }
}

}  // namespace

cudaError_t upfirdn2d_cuda(UpFirDn2dParams p, c10::ScalarType dtype, cudaStream_t stream) {
    switch (dtype) {
        case c10::ScalarType::Float: return launch<float>(p, stream);
        case c10::ScalarType::Double: return launch<double>(p, stream);
        case c10::ScalarType::Half: return launch<c10::Half>(p, stream);
        case c10::ScalarType::BFloat16: return launch<c10::BFloat16>(p, stream);
        default: return cudaErrorInvalidValue;
    }
}

void upfirdn2d_host(UpFirDn2dParams p, c10::ScalarType dtype) {
    switch (dtype) {
        case c10::ScalarType::Float: run_host<float>(p); break;
        case c10::ScalarType::Double: run_host<double>(p); break;
        case c10::ScalarType::Half: run_host<c10::Half>(p); break;
        case c10::ScalarType::BFloat16: run_host<c10::BFloat16>(p); break;
        default: break;
    }
}
