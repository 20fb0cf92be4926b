#include "mtrank/blocks/gate.hpp"

namespace mtrank::blocks {
template class SoftmaxGate<float>;
template class SoftmaxGate<double>;
}  // namespace mtrank::blocks
