// What bias_act computes for one element, shared by the CUDA kernel and the host path.
#pragma once

#include "bias_act.h"
#include "common.h"

namespace gda {

enum BiasActKind { kLinear = 1, kRelu, kLrelu, kTanh, kSigmoid, kElu, kSelu, kSoftplus, kSwish };

constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSoftplusThreshold = 20.0;  // above it softplus(s) = s, as in torch's softplus

template <typename A> GDA_HD A sigmoid_(A s) { return A(1) / (A(1) + exp_(-s)); }

// act(s). Comparisons are written so that NaN propagates, as it does through torch's ops.
template <typename A> GDA_HD A act_value(int act, A s, A alpha) {
    switch (act) {
        case kRelu: return s < A(0) ? A(0) : s;
        case kLrelu: return s < A(0) ? s * alpha : s;
        case kTanh: return tanh_(s);
        case kSigmoid: return sigmoid_(s);
        case kElu: return s > A(0) ? s : expm1_(s);
        case kSelu: return s > A(0) ? A(kSeluScale) * s : A(kSeluScale * kSeluAlpha) * expm1_(s);
        case kSoftplus: return s > A(kSoftplusThreshold) ? s : log1p_(exp_(s));
        case kSwish: return s * sigmoid_(s);
        default: return s;
    }
}

// First (order 1) or second (order 2) derivative of act at s. Swish needs s itself; every other
// activation's derivatives are functions of its value v = act(s), which is what gets saved.
template <typename A> GDA_HD A act_derivative(int act, int order, A s, A v, A alpha) {
    const bool first = order == 1;
    switch (act) {
        case kRelu: return first ? (v > A(0) ? A(1) : A(0)) : A(0);
        case kLrelu: return first ? (v > A(0) ? A(1) : alpha) : A(0);
        case kTanh: return first ? A(1) - v * v : A(-2) * v * (A(1) - v * v);
        case kSigmoid: return first ? v * (A(1) - v) : v * (A(1) - v) * (A(1) - A(2) * v);
        case kElu: return v > A(0) ? (first ? A(1) : A(0)) : v + A(1);
        case kSelu:
            return v > A(0) ? (first ? A(kSeluScale) : A(0)) : v + A(kSeluScale * kSeluAlpha);
        case kSoftplus: {
            // softplus' = sigmoid(s) = 1 - exp(-v); -expm1 keeps it exact where it is tiny.
            const A d1 = -expm1_(-v);
            return first ? d1 : d1 * exp_(-v);
        }
        case kSwish: {
            const A sg = sigmoid_(s);
            return first ? sg * (A(1) + s * (A(1) - sg))
                         : sg * (A(1) - sg) * (A(2) + s * (A(1) - A(2) * sg));
        }
        default: return first ? A(1) : A(0);
    }
}

// Computes element i of p.y. I is the type of the bias index arithmetic (int32 when it fits:
// 64-bit division is several times slower on a GPU).
template <typename T, typename I> GDA_HD void bias_act_element(const BiasActParams& p, int64_t i) {
    using A = typename Acc<T>::type;
    const A alpha = static_cast<A>(p.alpha);
    const A gain = static_cast<A>(p.gain);
    const A clamp = static_cast<A>(p.clamp);
    const A in = static_cast<A>(static_cast<const T*>(p.x)[i]);
    A bias = A(0);
    if (p.b != nullptr) {
        const I at =
            (static_cast<I>(i) / static_cast<I>(p.bias_stride)) % static_cast<I>(p.bias_size);
        bias = static_cast<A>(static_cast<const T*>(p.b)[at]);
    }

    A out;
    if (p.order == 0) {
        out = act_value(p.act, in + bias, alpha) * gain;
        if (clamp >= A(0)) out = out > clamp ? clamp : (out < -clamp ? -clamp : out);
    } else {
        const A yref = p.yref != nullptr ? static_cast<A>(static_cast<const T*>(p.yref)[i]) : A(0);
        const A ymag = yref < A(0) ? -yref : yref;
        // Clamped outputs were stored as T(clamp), which may lie below clamp (0.3 in half is
        // 0.29985), so the test must use that stored value.
        const A stored_clamp = static_cast<A>(static_cast<T>(clamp));
        if (clamp >= A(0) && !(ymag < stored_clamp)) {
            out = A(0);  // clamped in the forward pass: no gradient
        } else {
            const A s =
                p.xref != nullptr ? static_cast<A>(static_cast<const T*>(p.xref)[i]) + bias : A(0);
            const A v = gain != A(0) ? yref / gain : A(0);
            out = in * gain * act_derivative(p.act, p.order, s, v, alpha);
            if (p.order == 2) out *= static_cast<A>(static_cast<const T*>(p.dy)[i]);
        }
    }
    static_cast<T*>(p.y)[i] = static_cast<T>(out);
}

}  // namespace gda
