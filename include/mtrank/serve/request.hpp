// The ranking server's request format and parser (a library function so it can be unit-tested
// and fuzzed), and the response writer.
//
// Request (JSON object): every user-side field once at the top level, the candidates in an array:
//   {"request_id": "abc",                          optional, string or integer, echoed back
//    "user_id": 17, "scene": 0, "user_activity": 0.3, ...,   user-side sparse + dense fields
//    "click_seq": [5, 9, 12],                      sequence fields (ids, oldest first)
//    "candidates": [{"item_id": 4, "category": 2, "log_item_pop": 0.1, ...}, ...]}
// Sparse ids are integers (range-checked against the vocab unless the field is hashed); a hashed
// field also accepts a string, hashed with data::hash_string as the CSV reader does. Dense values
// are finite numbers. Every field of the layout must be present; unknown fields, fields on the
// wrong side, wrong types (e.g. an array where a number is expected), ids out of range,
// non-finite values, too many candidates or sequence ids, nesting deeper than a few levels and
// bodies over max_bytes throw RequestError naming the JSON path.
//
// Response:
//   {"request_id": "abc", "tasks": ["click", ...],
//    "scores": [{"click": 0.12, "interaction": 0.01, ..., "fused": 0.13}, ...]}   one per candidate
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

#include "mtrank/core/error.hpp"
#include "mtrank/serve/predictor.hpp"

namespace mtrank::serve {

/// A client error (HTTP 4xx): the message names the JSON path and the expectation.
class RequestError : public Error {
 public:
  using Error::Error;
};

struct RequestParseOptions {
  std::size_t max_bytes = 1 << 20;  // larger bodies: RequestError (HTTP 413 in the server)
  int max_depth = 4;                // object/array nesting
};

/// Parses `body` into `out` (reusing its capacity); `request_id` receives the echoed id ("" when absent).
void parse_request(std::string_view body, const data::FeatureSchema& schema, const ServingConfig& serving, Request& out,
                   std::string& request_id, const RequestParseOptions& options = {});

/// Appends the response JSON for `scores` (N candidates) to `out`.
void write_response(const Scores& scores, const data::FeatureSchema& schema, std::string_view request_id, std::string& out);

}  // namespace mtrank::serve
