#include "mtrank/blocks/snr.hpp"

namespace mtrank::blocks {
template class HardConcreteGate<float>;
template class HardConcreteGate<double>;
template class SnrBackbone<nn::Mlp<float>, SnrKind::trans>;
template class SnrBackbone<nn::Mlp<double>, SnrKind::trans>;
template class SnrBackbone<nn::Mlp<float>, SnrKind::aver>;
template class SnrBackbone<nn::Mlp<double>, SnrKind::aver>;

static_assert(MultiTaskBackbone<SnrTransBackbone<nn::Mlp<float>>>);
static_assert(MultiTaskBackbone<SnrAverBackbone<nn::Mlp<double>>>);
}  // namespace mtrank::blocks
