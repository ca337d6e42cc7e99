// The interface between the upfirdn2d binding (upfirdn2d.cpp, host compiler) and its kernel
// (upfirdn2d.cu, nvcc): a plain parameter record and two entry points.
#pragma once

#include <cstdint>

#include <c10/core/ScalarType.h>
#include <cuda_runtime_api.h>

// Largest filter side; keeps the filter plus the smallest input window within 48 KB of shared
// memory in every dtype. Bigger filters go to the reference op (see _cuda_upfirdn2d.py).
constexpr int kUpFirDn2dMaxFilter = 32;

// y[n, c, oy, ox] = gain * sum_ij u[oy * down_y + i - pad_y0][ox * down_x + j - pad_x0] * F[i][j]
// where u is x upsampled by zero insertion and F is f flipped in both axes unless `flip` (so the
// default is a true convolution). Padding at the far ends only shows in the output size.
struct UpFirDn2dParams {
    const void* x;
    const float* f;        // [filter_h, filter_w], contiguous float32
    void* y;
    int64_t x_stride[4];   // n, c, h, w in elements: any layout (channels_last, expanded grads)
    int64_t y_stride[4];
    int64_t planes;        // n * c
    int channels;
    int in_h, in_w, out_h, out_w;
    int up_x, up_y, down_x, down_y, pad_x0, pad_y0;
    int filter_h, filter_w;
    bool flip;
    float gain;
    // Work split, chosen by upfirdn2d_plan (upfirdn2d_kernel.h): each block computes a
    // tile_h x tile_w output tile of one plane from a window_h x window_w input window.
    int tile_h, tile_w, window_h, window_w;
    int64_t tiles;
    int threads;
    int smem_bytes;
};

// Plans and launches the kernel on `stream`; returns the launch error, if any.
cudaError_t upfirdn2d_cuda(UpFirDn2dParams p, c10::ScalarType dtype, cudaStream_t stream);

// Runs the kernel's blocks one after another on the host, for CPU tensors (tests without a GPU).
void upfirdn2d_host(UpFirDn2dParams p, c10::ScalarType dtype);
