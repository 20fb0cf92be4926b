#include "mtrank/kernels/embedding_bag.hpp"

namespace mtrank::kernels {

extern const EmbeddingBagKernels kEmbeddingBagRef;
const EmbeddingBagKernels kEmbeddingBagRef = {
    Isa::ref,
    embedding_bag_ref<float>,
    embedding_bag_backward_ref<float>,
    embedding_bag_weight_grad_ref<float>,
};

}  // namespace mtrank::kernels
