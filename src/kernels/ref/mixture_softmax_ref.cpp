#include "mtrank/kernels/mixture.hpp"
#include "mtrank/kernels/softmax.hpp"

namespace mtrank::kernels {

extern const MixtureKernels kMixtureRef;
const MixtureKernels kMixtureRef = {Isa::ref, mixture_ref<float>, mixture_backward_ref<float>};
extern const SoftmaxKernels kSoftmaxRef;
const SoftmaxKernels kSoftmaxRef = {Isa::ref, softmax_ref<float>, softmax_backward_ref<float>};

}  // namespace mtrank::kernels
