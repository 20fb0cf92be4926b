#include "mtrank/nn/embedding.hpp"

#include "mtrank/nn/embedding_bag.hpp"

namespace mtrank::nn {
template class Embedding<float>;
template class Embedding<double>;
template class EmbeddingBag<float>;
template class EmbeddingBag<double>;
}  // namespace mtrank::nn
