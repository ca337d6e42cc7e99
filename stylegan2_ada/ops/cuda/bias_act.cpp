// Python binding of bias_act: checks the arguments, allocates the output, runs the kernel (CUDA
// tensors) or the same element code on the host (CPU tensors, for tests without a GPU).
#include <torch/extension.h>

#include <c10/cuda/CUDAStream.h>
#include <c10/core/DeviceGuard.h>

#include "bias_act.h"

namespace {

bool supported_dtype(c10::ScalarType t) {
    return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// The kernel indexes every tensor with the same linear storage index, so each optional tensor
// must have x's dtype, device, shape and element order (strides of size-1 dims do not matter).
void check_like(const torch::Tensor& t, const torch::Tensor& x, const char* name) {
    TORCH_CHECK(t.device() == x.device(), name, " must be on x's device");
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), name, " must have x's dtype");
    TORCH_CHECK(t.sizes() == x.sizes(), name, " must have x's shape");
    for (int64_t d = 0; d < x.dim(); ++d)
        TORCH_CHECK(x.size(d) == 1 || t.stride(d) == x.stride(d), name,
                    " must have x's memory layout");
}

const void* ptr_or_null(const torch::Tensor& t) { return t.numel() > 0 ? t.data_ptr() : nullptr; }

}  // namespace

// Absent optional tensors are passed as empty tensors; see BiasActParams for what each pass does.
torch::Tensor bias_act(const torch::Tensor& x, const torch::Tensor& b, const torch::Tensor& xref,
                       const torch::Tensor& yref, const torch::Tensor& dy, int64_t order,
                       int64_t dim, int64_t act, double alpha, double gain, double clamp) {
    TORCH_CHECK(x.is_cuda() || x.is_cpu(), "x must be a CUDA or CPU tensor");
    TORCH_CHECK(supported_dtype(x.scalar_type()), "x must be float16, bfloat16, float32 or float64");
    TORCH_CHECK(x.numel() > 0, "x must not be empty");
    TORCH_CHECK(x.is_non_overlapping_and_dense(), "x must be non-overlapping and dense");
    TORCH_CHECK(act >= 1 && act <= 9, "act must be an activation index in 1..9");
    TORCH_CHECK(order >= 0 && order <= 2, "order must be 0, 1 or 2");

    int64_t bias_stride = 1, bias_size = 1;
    if (b.numel() > 0) {
        TORCH_CHECK(b.device() == x.device() && b.scalar_type() == x.scalar_type(),
                    "b must have x's device and dtype");
        TORCH_CHECK(b.dim() == 1 && b.is_contiguous(), "b must be a contiguous 1-D tensor");
        TORCH_CHECK(dim >= 0 && dim < x.dim(), "dim is out of range");
        TORCH_CHECK(b.size(0) == x.size(dim), "b must have x.shape[dim] elements");
        bias_stride = std::max<int64_t>(x.stride(dim), 1);
        bias_size = x.size(dim);
    }
    if (xref.numel() > 0) check_like(xref, x, "xref");
    if (yref.numel() > 0) check_like(yref, x, "yref");
    if (dy.numel() > 0) check_like(dy, x, "dy");
    if (order >= 1) {
        const int ref = bias_act_ref(int(act));
        TORCH_CHECK(ref != 1 || xref.numel() > 0, "this activation's gradient needs xref");
        TORCH_CHECK(ref != 2 || yref.numel() > 0, "this activation's gradient needs yref");
        TORCH_CHECK(clamp < 0 || yref.numel() > 0, "the gradient of a clamped op needs yref");
        TORCH_CHECK(order != 2 || dy.numel() > 0, "the second-order pass needs dy");
    }

    const c10::DeviceGuard guard(x.device());
    torch::Tensor y = torch::empty_like(x);  // keeps x's (dense) strides
    BiasActParams p;
    p.x = x.data_ptr();
    p.b = ptr_or_null(b);
    p.xref = ptr_or_null(xref);
    p.yref = ptr_or_null(yref);
    p.dy = ptr_or_null(dy);
    p.y = y.data_ptr();
    p.n = x.numel();
    p.bias_stride = bias_stride;
    p.bias_size = bias_size;
    p.act = int(act);
    p.order = int(order);
    p.alpha = alpha;
    p.gain = gain;
    p.clamp = clamp;

    if (x.is_cuda()) {
        const cudaError_t err =
            bias_act_cuda(p, x.scalar_type(), c10::cuda::getCurrentCUDAStream());
        TORCH_CHECK(err == cudaSuccess, "bias_act kernel launch failed: ", cudaGetErrorString(err));
    } else {
        bias_act_host(p, x.scalar_type());
    }
    return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("bias_act", &bias_act,
          "Fused bias, activation, gain and clamp, or its first or second derivative");
}
