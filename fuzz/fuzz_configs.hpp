// Model configs shared by a fuzz target and fuzz/make_seeds.cpp (seeds must match the target).
#pragma once

namespace mtrank::fuzz {

/// The model `fuzz_convert_map` converts into (its parameter names and shapes are what the seeds hold).
inline constexpr const char* kConvertMapConfig = R"({
    "seed": 1,
    "schema": {"sparse": [{"name": "user_id", "vocab": 6, "dim": 2}, {"name": "item_id", "vocab": 5, "dim": 2}],
               "dense": [{"name": "pop"}], "tasks": [{"name": "click"}, {"name": "like"}]},
    "model": {"type": "mmoe", "num_experts": 2, "expert": {"layers": [3]}, "tower": {"hidden": [2]}}})";

}  // namespace mtrank::fuzz
