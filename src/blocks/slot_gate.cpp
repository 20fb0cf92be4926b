#include "mtrank/blocks/co_action.hpp"
#include "mtrank/blocks/embedding_transform.hpp"
#include "mtrank/blocks/slot_gate.hpp"

namespace mtrank::blocks {
template class GateNU<float>;
template class GateNU<double>;
template class EpNet<float>;
template class EpNet<double>;
template class PpNet<float>;
template class PpNet<double>;
template class EmbeddingTransform<float>;
template class EmbeddingTransform<double>;
template class CoActionUnit<float>;
template class CoActionUnit<double>;
}  // namespace mtrank::blocks
