// Python binding of upfirdn2d: checks the arguments, sizes and allocates the output, runs the
// kernel (CUDA tensors) or the same code block by block on the host (CPU tensors, for tests).
#include <torch/extension.h>

#include <c10/cuda/CUDAStream.h>
#include <c10/core/DeviceGuard.h>

#include <climits>

#include "upfirdn2d.h"

namespace {

bool supported_dtype(c10::ScalarType t) {
    return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// Output length along one axis: (in * up + pad0 + pad1 - taps) // down + 1.
int64_t out_size(int64_t in, int64_t up, int64_t down, int64_t pad0, int64_t pad1, int64_t taps) {
    const int64_t span = in * up + pad0 + pad1 - taps;
    TORCH_CHECK(span >= 0, "the padded, upsampled input is smaller than the filter");
    return span / down + 1;
}

}  // namespace

torch::Tensor upfirdn2d(const torch::Tensor& x, const torch::Tensor& f, int64_t up_x,
                        int64_t up_y, int64_t down_x, int64_t down_y, int64_t pad_x0,
                        int64_t pad_x1, int64_t pad_y0, int64_t pad_y1, bool flip, double gain) {
    TORCH_CHECK(x.is_cuda() || x.is_cpu(), "x must be a CUDA or CPU tensor");
    TORCH_CHECK(x.dim() == 4, "x must be [N, C, H, W]");
    TORCH_CHECK(supported_dtype(x.scalar_type()), "x must be float16, bfloat16, float32 or float64");
    TORCH_CHECK(x.numel() > 0, "x must not be empty");
    TORCH_CHECK(f.device() == x.device(), "f must be on x's device");
    TORCH_CHECK(f.scalar_type() == at::kFloat && f.dim() == 2 && f.is_contiguous(),
                "f must be a contiguous 2-D float32 tensor");
    TORCH_CHECK(f.size(0) >= 1 && f.size(0) <= kUpFirDn2dMaxFilter && f.size(1) >= 1 &&
                f.size(1) <= kUpFirDn2dMaxFilter,
                "each filter side must be 1..", kUpFirDn2dMaxFilter);
    TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1, "up and down must be >= 1");

    const int64_t out_h = out_size(x.size(2), up_y, down_y, pad_y0, pad_y1, f.size(0));
    const int64_t out_w = out_size(x.size(3), up_x, down_x, pad_x0, pad_x1, f.size(1));
    // Coordinates in the upsampled, padded image are ints in the kernel.
    const int64_t limit = INT_MAX / 4;
    for (int64_t v : {x.size(2) * up_y, x.size(3) * up_x, out_h * down_y, out_w * down_x,
                      std::abs(pad_x0) + std::abs(pad_x1), std::abs(pad_y0) + std::abs(pad_y1)})
        TORCH_CHECK(v < limit, "image too large for the upfirdn2d kernel");
    TORCH_CHECK(x.size(1) <= INT_MAX, "too many channels for the upfirdn2d kernel");

    const c10::DeviceGuard guard(x.device());
    torch::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w},
                                x.options().memory_format(x.suggest_memory_format()));
    UpFirDn2dParams p{};
    p.x = x.data_ptr();
    p.f = f.data_ptr<float>();
    p.y = y.data_ptr();
    for (int d = 0; d < 4; ++d) {
        p.x_stride[d] = x.stride(d);
        p.y_stride[d] = y.stride(d);
    }
    p.planes = x.size(0) * x.size(1);
    p.channels = int(x.size(1));
    p.in_h = int(x.size(2));
    p.in_w = int(x.size(3));
    p.out_h = int(out_h);
    p.out_w = int(out_w);
    p.up_x = int(up_x);
    p.up_y = int(up_y);
    p.down_x = int(down_x);
    p.down_y = int(down_y);
    p.pad_x0 = int(pad_x0);
    p.pad_y0 = int(pad_y0);
    p.filter_h = int(f.size(0));
    p.filter_w = int(f.size(1));
    p.flip = flip;
    p.gain = float(gain);

    if (x.is_cuda()) {
        const cudaError_t err =
            upfirdn2d_cuda(p, x.scalar_type(), c10::cuda::getCurrentCUDAStream());
        TORCH_CHECK(err == cudaSuccess, "upfirdn2d kernel launch failed: ", cudaGetErrorString(err));
    } else {
        upfirdn2d_host(p, x.scalar_type());
    }
    return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("upfirdn2d", &upfirdn2d, "Upsample, pad, FIR-filter and downsample a batch of 2-D images");
}
