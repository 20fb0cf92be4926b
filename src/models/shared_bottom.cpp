#include "mtrank/models/shared_bottom.hpp"

namespace mtrank::models {
template class SharedBottom<float>;
template class SharedBottom<double>;
}  // namespace mtrank::models
