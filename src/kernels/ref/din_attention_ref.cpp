#include "mtrank/kernels/din_attention.hpp"

namespace mtrank::kernels {

extern const DinAttentionKernels kDinAttentionRef;
const DinAttentionKernels kDinAttentionRef = {Isa::ref, din_attention_forward_ref<float>,
                                              din_attention_backward_ref<float>};

}  // namespace mtrank::kernels
