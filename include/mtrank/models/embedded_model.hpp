// EmbeddedModel<Net>: FeatureEmbedder -> a multi-task net -> optional output transform, behind
// the run-time Model interface. The net is built in the constructor against the model's arena.
//
// Output transform "esmm" (Ma et al. SIGIR 2018): with tasks (ctr, ctcvr) and net outputs
// (a, b) = (CTR logit, CVR logit), the second output becomes the logit of pCTCVR = σ(a)σ(b),
//   z = log(σ(a)σ(b)) − log(1 − σ(a)σ(b)),  ∂z/∂a = (1 − σ(a))/(1 − p),  ∂z/∂b = (1 − σ(b))/(1 − p),
// so a BCE-with-logits loss on z is the CTCVR loss over the whole impression space, and pCVR
// is learnt only through that product.
#pragma once
#include <cmath>
#include <functional>
#include <memory>

#include "mtrank/blocks/backbone.hpp"
#include "mtrank/models/feature_embedder.hpp"
#include "mtrank/models/model.hpp"

namespace mtrank::models {

enum class OutputTransform { none, esmm };

template <class Net>
class EmbeddedModel final : public Model {
 public:
  struct Work final : Model::Workspace {
    typename FeatureEmbedder<float>::Workspace emb;
    typename Net::Workspace net;
    Tensor out, d_net;
  };

  /// make_net(arena, input_width) builds the net once the embedder's width is known.
  EmbeddedModel(nlohmann::json config, data::FeatureSchema schema, std::uint64_t seed, FeatureEmbedderOptions emb,
                const std::function<Net(ParameterArena&, Index)>& make_net, OutputTransform transform)
      : Model(std::move(config), std::move(schema), seed),
        embedder_(arena_, "", schema_, emb),
        net_(make_net(arena_, embedder_.out_features())),
        transform_(transform) {
    require(net_.num_tasks() == schema_.num_tasks(), "model: the network has ", net_.num_tasks(),
            " task outputs but the schema lists ", schema_.num_tasks(), " tasks");
    if (transform_ == OutputTransform::esmm)
      require(schema_.num_tasks() == 2, "model.output: \"esmm\" needs exactly 2 tasks (ctr, ctcvr), the schema has ",
              schema_.num_tasks());
    // The dense block's columns need no gradient: the layers reading x skip computing it.
    const Index grad_cols = embedder_.input_grad_columns();
    if (grad_cols > 0 && grad_cols < embedder_.out_features()) blocks::limit_input_grad_if_supported(net_, grad_cols);
  }

  std::unique_ptr<Model::Workspace> make_workspace() const override { return std::make_unique<Work>(); }

  ConstMat forward(const data::Batch& batch, Model::Workspace& base, const Context& ctx) const override {
    auto& ws = static_cast<Work&>(base);
    return head(embedder_.forward(batch, ws.emb, ctx), ws, ctx);
  }

  // Co-action columns need a whole row: the predictor then scores the expanded batch instead.
  const FeatureEmbedder<float>* feature_embedder() const override {
    return embedder_.has_co_action() ? nullptr : &embedder_;
  }
  ConstMat serve_embedded(ConstMat x, Model::Workspace& base) const override {
    return head(x, static_cast<Work&>(base), serving_context());
  }

  /// The net and the output transform on an embedded input x [B, embedder width].
  ConstMat head(ConstMat x, Work& ws, const Context& ctx) const {
    ConstMat y = net_.forward(x, ws.net, ctx);
    if (transform_ == OutputTransform::none) return y;
    Mat out = ensure(ws.out, y.rows, y.cols);
    for (Index b = 0; b < y.rows; ++b) {
      const double a = y(b, 0), c = y(b, 1);
      out(b, 0) = float(a);
      // log σ(a) + log σ(c) − log(1 − σ(a)σ(c)), each term computed stably.
      const double log_p = -std::log1p(std::exp(-std::abs(a))) + std::min(a, 0.0) - std::log1p(std::exp(-std::abs(c))) +
                           std::min(c, 0.0);
      out(b, 1) = float(log_p - std::log1p(-std::exp(log_p)));
    }
    return out;
  }

  void backward(ConstMat d_out, Model::Workspace& base) const override {
    auto& ws = static_cast<Work&>(base);
    ConstMat d = d_out;
    if (transform_ == OutputTransform::esmm) {
      const ConstMat y = ws.net.out.matrix();
      Mat dn = ensure(ws.d_net, d_out.rows, d_out.cols);
      for (Index b = 0; b < d_out.rows; ++b) {
        const double sa = 1.0 / (1.0 + std::exp(-double(y(b, 0)))), sc = 1.0 / (1.0 + std::exp(-double(y(b, 1))));
        const double one_minus_p = std::max(1.0 - sa * sc, 1e-12);
        dn(b, 0) = float(d_out(b, 0) + d_out(b, 1) * (1.0 - sa) / one_minus_p);
        dn(b, 1) = float(d_out(b, 1) * (1.0 - sc) / one_minus_p);
      }
      d = dn;
    }
    if (embedder_.input_grad_columns() == 0) {
      net_.backward(d, ws.net, false);  // dense inputs only: no input gradient to compute
      return;
    }
    ConstMat dx = net_.backward(d, ws.net, true);
    embedder_.backward(dx, ws.emb);
  }

  double penalty(double weight) const override { return net_.penalty(weight); }
  const Net& net() const { return net_; }
  const FeatureEmbedder<float>& embedder() const { return embedder_; }

 private:
  FeatureEmbedder<float> embedder_;
  Net net_;
  OutputTransform transform_;
};

}  // namespace mtrank::models
