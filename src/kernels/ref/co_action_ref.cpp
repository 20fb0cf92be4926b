#include "mtrank/kernels/co_action.hpp"

namespace mtrank::kernels {

extern const CoActionKernels kCoActionRef;
const CoActionKernels kCoActionRef = {Isa::ref, co_action_forward_ref<float>, co_action_backward_ref<float>};

}  // namespace mtrank::kernels
