#include "mtrank/train/uwl.hpp"

namespace mtrank::train {
template class UncertaintyWeighting<float>;
template class UncertaintyWeighting<double>;
}  // namespace mtrank::train
