// The ranking server's request format and parser (a library function so it can be unit-tested
// and fuzzed), and the response writer.
//
// Request (JSON object): every user- and context-side field once at the top level, the
// candidates in an array, each with its item-side fields:
//   {"request_id": "abc",                           optional, string or integer, echoed as given
//    "scene_id": 1,                                 optional, the request's scene (default 0)
//    "user_id": 17, "hour_sin": 0.3, ...,           user- and context-side sparse + dense fields
//    "click_seq": [5, 9, 12],                       sequence fields: ids, oldest first, or
//    "click_seq": {"ids": [5, 9, 12], "times": [30.5, 2.25, 0.1]},   with behaviour times
//    "candidates": [{"candidate_id": "v-4",          optional, echoed in the response
//                    "scene_id": 0,                  optional, this candidate's scene
//                    "item_id": 4, "log_item_pop": 0.1, ...}, ...]}
// Ids follow the schema's id rule (data/schema.hpp): an integer is itself, a string is
// id_from_text(string), so 804 and "804" are one id; a vocabulary field (hash: false) takes only
// integers or their decimal text, in [0, vocab) unless the field has an oov_row. Times are gaps
// from the behaviour to the request (finite, >= 0), one per id. Dense values are finite numbers.
// Every field of the layout must be present; unknown fields, fields on the wrong side, wrong
// types, ids out of range, unknown scenes, non-finite values, too many candidates or sequence ids,
// nesting deeper than a few levels and bodies over max_bytes throw RequestError naming the JSON
// path and the expectation. "request_id", "scene_id", "candidates" and "candidate_id" are
// reserved: a schema field with one of these names makes the model unservable by request.
//
// Response:
//   {"request_id": "abc", "tasks": ["click", ...],
//    "scores": [{"candidate_id": "v-4", "click": 0.12, ..., "fused": 0.13}, ...]}   one per candidate
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

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

/// What a response echoes, as JSON text exactly as the client sent it (an integer stays an integer).
struct RequestEcho {
  std::string request_id;                  // "" when absent
  std::vector<std::string> candidate_ids;  // [N] ("" for a candidate without one), or empty when none had one
  void clear() {
    request_id.clear();
    candidate_ids.clear();
  }
};

/// Parses `body` into `out` and `echo` (reusing their capacity).
void parse_request(std::string_view body, const data::FeatureSchema& schema, const ServingConfig& serving, Request& out,
                   RequestEcho& echo, const RequestParseOptions& options = {});

/// Appends the response JSON for `scores` (N candidates) to `out`.
void write_response(const Scores& scores, const data::FeatureSchema& schema, const RequestEcho& echo, std::string& out);

/// The request keys with a meaning of their own (never schema fields).
inline constexpr const char* kReservedRequestKeys[] = {"request_id", "scene_id", "candidates", "candidate_id"};

}  // namespace mtrank::serve
