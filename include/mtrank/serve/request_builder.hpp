// Building a serve::Request by field name, for C++ services that hold their features by name
// rather than in the layout's order:
//
//   serve::RequestBuilder rb(*predictor);
//   rb.set_user("user_id", 42).set_user("user_activity", 0.3).set_scene(1)
//     .set_sequence("click_seq", {5, 9, 12}, {30.5f, 2.25f, 0.1f});
//   rb.add_candidate({{"item_id", 7}, {"category", 2}, {"log_item_pop", 0.1}});
//   serve::Scores s = predictor->score(rb.request());
//
// Values follow the same rules as the JSON request (docs/serving.md): ids by the schema's id
// rule (an integer is itself; text is id_from_text(text), so 804 and "804" are one id; a
// vocabulary field takes integers or their decimal text, in [0, vocab) unless it has an
// oov_row), dense values finite, scenes in [0, num_scenes), times finite and >= 0. "User" means
// every field given once per request (user- and context-side); candidate fields are the
// item-side ones. Every mistake throws mtrank::Error naming the field and the expectation, at
// the call that makes it; request() throws naming the fields still missing.
#pragma once
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mtrank/serve/predictor.hpp"

namespace mtrank::serve {

/// One field value: an integer (sparse id, or a dense value), a floating-point number (dense) or
/// text (a sparse id by the id rule).
class FieldValue {
 public:
  enum class Kind { integer, real, text };
  template <std::integral I>
    requires(!std::same_as<I, bool>)
  FieldValue(I v) : kind_(Kind::integer) {  // NOLINT: implicit by design ({"item_id", 7})
    if constexpr (std::is_unsigned_v<I> && sizeof(I) >= sizeof(std::int64_t))
      out_of_range_ = v > static_cast<I>(std::numeric_limits<std::int64_t>::max());
    integer_ = static_cast<std::int64_t>(v);
  }
  FieldValue(double v) : kind_(Kind::real), real_(v) {}               // NOLINT
  FieldValue(float v) : kind_(Kind::real), real_(v) {}                // NOLINT
  FieldValue(std::string_view v) : kind_(Kind::text), text_(v) {}     // NOLINT
  FieldValue(const char* v) : kind_(Kind::text), text_(v) {}          // NOLINT
  FieldValue(const std::string& v) : kind_(Kind::text), text_(v) {}   // NOLINT

  Kind kind() const { return kind_; }
  std::int64_t integer() const { return integer_; }
  double real() const { return real_; }
  const std::string& text() const { return text_; }
  bool out_of_range() const { return out_of_range_; }

 private:
  Kind kind_;
  std::int64_t integer_ = 0;
  double real_ = 0;
  std::string text_;
  bool out_of_range_ = false;
};

class RequestBuilder {
 public:
  /// The predictor must outlive the builder. Throws when its model has no request layout.
  explicit RequestBuilder(const Predictor& predictor);
  RequestBuilder(const data::FeatureSchema& schema, const ServingConfig& serving);

  /// A user- or context-side sparse or dense field.
  RequestBuilder& set_user(std::string_view field, const FieldValue& value);
  /// The request's scene (default 0).
  RequestBuilder& set_scene(std::int32_t scene);
  /// A behaviour sequence: ids oldest first, and optionally one time gap (>= 0) per id.
  RequestBuilder& set_sequence(std::string_view field, std::span<const FieldValue> ids, std::span<const float> times = {});
  RequestBuilder& set_sequence(std::string_view field, std::initializer_list<FieldValue> ids,
                               std::initializer_list<float> times = {});
  /// One candidate: every item-side field by name; `scene` overrides the request's scene for it.
  RequestBuilder& add_candidate(std::initializer_list<std::pair<std::string_view, FieldValue>> fields,
                                std::optional<std::int32_t> scene = std::nullopt);
  RequestBuilder& add_candidate(std::span<const std::pair<std::string, FieldValue>> fields,
                                std::optional<std::int32_t> scene = std::nullopt);

  /// The request built so far; throws naming the user fields never set (sequences default to empty).
  const Request& request();
  /// Forgets everything (keeps capacity) for the next request.
  void clear();

 private:
  template <class Pairs>
  void candidate(const Pairs& fields, std::optional<std::int32_t> scene);
  std::int64_t id_of(const FieldValue& v, std::size_t sparse_field, const std::string& where) const;
  std::int64_t sequence_id_of(const FieldValue& v, std::size_t sequence, const std::string& where) const;
  float dense_of(const FieldValue& v, const std::string& where) const;

  const data::FeatureSchema* schema_;
  const ServingConfig* serving_;
  Request r_;
  std::vector<char> user_set_;  // [user_sparse + user_dense]
  std::vector<char> cand_set_;  // scratch: [cand_sparse + cand_dense]
  std::vector<std::int32_t> cand_scene_;  // per candidate, -1 = the request's scene
  bool any_cand_scene_ = false;
};

}  // namespace mtrank::serve
