#include "mtrank/nn/linear.hpp"

namespace mtrank::nn {
template class Linear<float>;
template class Linear<double>;
}  // namespace mtrank::nn
