#include "mtrank/kernels/activation.hpp"

namespace mtrank::kernels {

extern const ActivationKernels kActivationRef;
const ActivationKernels kActivationRef = {
    Isa::ref,
    relu_fwd_ref<float>,
    relu_bwd_ref<float>,
    sigmoid_fwd_ref<float>,
    sigmoid_bwd_ref<float>,
    tanh_fwd_ref<float>,
    tanh_bwd_ref<float>,
    gelu_fwd_ref<float>,
    gelu_bwd_ref<float>,
    prelu_fwd_ref<float>,
    prelu_bwd_ref<float>,
    dice_fwd_ref<float>,
};

}  // namespace mtrank::kernels
