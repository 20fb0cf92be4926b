#include "mtrank/blocks/mmoe.hpp"
#include "mtrank/blocks/ple.hpp"

namespace mtrank::blocks {
template class MmoeBackbone<nn::Mlp<float>>;
template class MmoeBackbone<nn::Mlp<double>>;
template class CgcLevel<nn::Mlp<float>>;
template class CgcLevel<nn::Mlp<double>>;
template class PleBackbone<nn::Mlp<float>>;
template class PleBackbone<nn::Mlp<double>>;

static_assert(MultiTaskBackbone<MmoeBackbone<nn::Mlp<float>>>);
static_assert(MultiTaskBackbone<PleBackbone<nn::Mlp<float>>>);
static_assert(Expert<nn::Mlp<float>>);
}  // namespace mtrank::blocks
