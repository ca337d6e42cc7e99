// The interface between the bias_act binding (bias_act.cpp, host compiler) and its kernel
// (bias_act.cu, nvcc): a plain parameter record and two entry points.
#pragma once

#include <cstdint>

#include <c10/core/ScalarType.h>
#include <cuda_runtime_api.h>

// One elementwise pass over n elements; every tensor has x's dtype and x's memory layout.
//   order 0: y = clamp(act(x + b) * gain)                      (the op)
//   order 1: y = x * d/ds [act(s) * gain] * mask                (x is an incoming gradient)
//   order 2: y = x * dy * d2/ds2 [act(s) * gain] * mask         (x is a gradient of the gradient)
// s = x + b of the forward pass. Derivatives are read from the saved input (xref, with b) for
// activations that need s, and from the saved output (yref) for the others; mask is 0 where the
// forward output was clamped.
struct BiasActParams {
    const void* x;
    const void* b;      // bias, or nullptr
    const void* xref;   // saved forward input, or nullptr
    const void* yref;   // saved forward output, or nullptr
    const void* dy;     // first-order incoming gradient (order 2), or nullptr
    void* y;
    int64_t n;
    int64_t bias_stride;  // x.stride(dim): element i has bias index (i / bias_stride) % bias_size
    int64_t bias_size;
    int act;              // bias_act.py's cuda_idx: 1 linear, 2 relu, ... 9 swish
    int order;
    double alpha;
    double gain;
    double clamp;         // < 0: no clamping
};

// Which saved tensor an activation's derivatives are computed from: 0 none, 1 input, 2 output.
inline int bias_act_ref(int act) { return act == 1 ? 0 : (act == 9 ? 1 : 2); }

// Launches the kernel on `stream`; returns the launch error, if any.
cudaError_t bias_act_cuda(const BiasActParams& p, c10::ScalarType dtype, cudaStream_t stream);

// Runs the same per-element code on the host, for CPU tensors (tests on machines without a GPU).
void bias_act_host(const BiasActParams& p, c10::ScalarType dtype);
