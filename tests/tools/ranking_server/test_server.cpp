// The ranking server in-process on 127.0.0.1 (port 0), driven by cpp-httplib's client: scores
// equal Predictor::score of the same request, echoes, errors, metadata, metrics, access log,
// reload; limits (compressed, chunked and slow bodies, the queue, the backlog, the stop deadline,
// invalid UTF-8); and the ranking_server program's command line (spawned).
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <zlib.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>
#ifdef MTRANK_TEST_BROTLI
#include <brotli/encode.h>
#endif

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "mtrank/io/checkpoint.hpp"
#include "mtrank/serve/request.hpp"
#include "serve/serve_fixtures.hpp"
#include "server.hpp"
#include "testing.hpp"

extern char** environ;

using namespace mtrank;
using Catch::Matchers::Contains;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

/// A multi-domain model (reads the scene) or a DMT with time-gap positions (reads behaviour times)
/// on the feed schema, with the fixtures' serving section.
json model_config(const std::string& type, std::uint64_t seed) {
  json m;
  if (type == "multi_domain") {
    m = json::parse(R"({"type": "multi_domain", "scene_dim": 4,
        "stages": [{"num_subnets": 3, "subnet": {"layers": [16]}}, {"num_subnets": 3, "subnet": {"layers": [8]}}],
        "tower": {"hidden": [8]}, "embedding_init_std": 0.3})");
  } else if (type == "dmt") {
    m = json::parse(R"({"type": "dmt", "num_experts": 2, "expert": {"layers": [8]}, "tower": {"hidden": [8]},
        "embedding_init_std": 0.3,
        "sequences": [{"name": "click", "fields": ["click_seq", "click_cat_seq"], "heads": 2, "ff": 8,
                       "position": "time_gap", "time_buckets": 8}]})");
  } else {
    return mtrank::testing::feed_config(type, seed);
  }
  return {{"schema", mtrank::testing::feed().schema}, {"seed", seed}, {"model", m},
          {"serving", mtrank::testing::serving_section()}};
}

void write_checkpoint(const fs::path& path, const json& config) {
  auto model = models::build_model(config);
  io::CheckpointData data;
  data.config = model->config();
  io::save_checkpoint(path, model->arena(), data);
}

/// A config whose request layout cannot be derived: no field declares a side, no candidate_fields.
json unservable_config() {
  json c = mtrank::testing::feed_config("mmoe", 4);
  c.erase("serving");
  data::FeatureSchema s = mtrank::testing::feed().schema;
  for (auto& f : s.sparse) f.side = data::FieldSide::unspecified;
  for (auto& f : s.dense) f.side = data::FieldSide::unspecified;
  c["schema"] = s;
  return c;
}

/// The request for the user of row `row` with n candidates: request scene 1, candidate 1 (if any)
/// in scene 0, times on click_seq (not on click_cat_seq), request_id 17, candidate ids "c0", 1001, "c2", ...
/// Returns the C++ request and its JSON.
std::pair<serve::Request, json> make_request(const serve::Predictor& p, Index row, Index n) {
  const auto& schema = p.schema();
  const auto& l = p.serving().layout;
  serve::Request r = mtrank::testing::feed_request(p, row, n);
  r.scene = 1;
  r.cand_scene.assign(static_cast<std::size_t>(n), 1);
  if (n > 1) r.cand_scene[1] = 0;
  r.sequence_times.assign(r.sequences.size(), {});
  for (std::size_t k = 0; k < r.sequences[0].size(); ++k)
    r.sequence_times[0].push_back(0.25f * static_cast<float>(r.sequences[0].size() - k));  // oldest first: largest gap

  json j = {{"request_id", 17}, {"scene_id", 1}};
  for (std::size_t i = 0; i < l.user_sparse.size(); ++i) j[schema.sparse[l.user_sparse[i]].name] = r.user_sparse[i];
  for (std::size_t i = 0; i < l.user_dense.size(); ++i) j[schema.dense[l.user_dense[i]].name] = r.user_dense[i];
  j[schema.sequences[0].name] = {{"ids", r.sequences[0]}, {"times", r.sequence_times[0]}};
  j[schema.sequences[1].name] = r.sequences[1];
  j["candidates"] = json::array();
  const std::size_t ncs = l.cand_sparse.size(), ncd = l.cand_dense.size();
  for (Index c = 0; c < n; ++c) {
    json cj;
    if (c % 2) cj["candidate_id"] = 1000 + c;
    else cj["candidate_id"] = std::string("c").append(std::to_string(c));  // not "c" + ...: a GCC 12 -Wrestrict false positive
    if (c == 1) cj["scene_id"] = 0;
    for (std::size_t i = 0; i < ncs; ++i) cj[schema.sparse[l.cand_sparse[i]].name] = r.cand_sparse[c * ncs + i];
    for (std::size_t i = 0; i < ncd; ++i) cj[schema.dense[l.cand_dense[i]].name] = r.cand_dense[c * ncd + i];
    j["candidates"].push_back(cj);
  }
  return {r, j};
}

/// Every score of a /score response equals the predictor's (the response prints %.9g, which
/// round-trips a float).
void require_scores_equal(const json& resp, const serve::Predictor& p, const serve::Request& r) {
  serve::Predictor::Session session;
  const serve::Scores s = p.score(r, session);
  REQUIRE(resp["scores"].size() == static_cast<std::size_t>(r.num_candidates));
  for (Index c = 0; c < r.num_candidates; ++c) {
    const json& row = resp["scores"][static_cast<std::size_t>(c)];
    for (Index k = 0; k < p.num_tasks(); ++k) {
      const float got = static_cast<float>(row[p.schema().tasks[static_cast<std::size_t>(k)].name].get<double>());
      REQUIRE(got == s.probs(c, k));
    }
    REQUIRE(static_cast<float>(row["fused"].get<double>()) == s.fused[static_cast<std::size_t>(c)]);
  }
}

/// "name{labels}" -> value, from the Prometheus text format.
std::map<std::string, double> parse_metrics(const std::string& text) {
  std::map<std::string, double> m;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto sp = line.rfind(' ');
    REQUIRE(sp != std::string::npos);
    const std::string v = line.substr(sp + 1);
    m[line.substr(0, sp)] = v == "+Inf" ? INFINITY : std::stod(v);
  }
  return m;
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream f(p);
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);) lines.push_back(l);
  return lines;
}

httplib::Client client(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(5);
  c.set_read_timeout(10);
  c.set_write_timeout(10);
  return c;
}

server::ServerOptions options(const fs::path& checkpoint) {
  return {.checkpoint = checkpoint.string(), .port = 0, .threads = 2, .log_level = "off", .access_log = "off"};
}

}  // namespace

TEST_CASE("server: POST /score equals Predictor::score of the same request, with scenes, times and ids", "[server]") {
  const std::string type = GENERATE(as<std::string>{}, "multi_domain", "dmt");
  CAPTURE(type);
  const auto dir = mtrank::testing::temp_dir("server_score_" + type);
  write_checkpoint(dir / "model.safetensors", model_config(type, 7));
  auto o = options(dir / "model.safetensors");
  o.access_log = (dir / "access.log").string();
  o.log_level = "info";  // access lines are info (the server's own lines go to stderr)
  server::RankingServer srv(o);
  const int port = srv.start();
  REQUIRE(port > 0);
  auto cli = client(port);

  const auto ref = serve::Predictor::from_checkpoint(dir / "model.safetensors");
  const Index row = mtrank::testing::row_with_history(700);
  const auto rq = make_request(*ref, row, 6);
  const serve::Request& request = rq.first;
  const json& body = rq.second;
  auto res = cli.Post("/score", body.dump(), "application/json");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  CHECK(res->get_header_value("Content-Type") == "application/json");
  const json resp = json::parse(res->body);
  CHECK(resp["request_id"].is_number_integer());
  CHECK(resp["request_id"] == 17);
  CHECK(resp["tasks"] == json({"click", "interaction", "long_dwell"}));
  CHECK(resp["scores"][0]["candidate_id"] == "c0");
  CHECK(resp["scores"][1]["candidate_id"] == 1001);
  CHECK(resp["scores"][1]["candidate_id"].is_number_integer());
  require_scores_equal(resp, *ref, request);

  // The server read the scene and the times: changing them changes that model's scores.
  json other = body;
  if (type == "multi_domain") other["scene_id"] = 0;
  else other["click_seq"] = other["click_seq"]["ids"];
  auto res2 = cli.Post("/score", other.dump(), "application/json");
  REQUIRE(res2);
  REQUIRE(res2->status == 200);
  CHECK(json::parse(res2->body)["scores"] != resp["scores"]);

  srv.stop();
  const auto lines = read_lines(dir / "access.log");
  REQUIRE(lines.size() == 2);
  CHECK_THAT(lines[0], Contains("level=info event=request method=POST path=/score status=200 latency_ms=") &&
                           Contains(" candidates=6 request_id=17 remote=127.0.0.1"));
}

TEST_CASE("server: client errors are 400/413 naming the JSON path, no exception text in headers", "[server]") {
  const auto dir = mtrank::testing::temp_dir("server_errors");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  auto o = options(dir / "model.safetensors");
  o.max_body = 8192;
  server::RankingServer srv(o);
  auto cli = client(srv.start());
  const auto ref = serve::Predictor::from_checkpoint(dir / "model.safetensors");
  const json body = make_request(*ref, mtrank::testing::row_with_history(900), 3).second;

  auto post = [&](const std::string& b) {
    auto r = cli.Post("/score", b, "application/json");
    REQUIRE(r);
    CHECK(r->get_header_value("Content-Type") == "application/json");
    CHECK_FALSE(r->has_header("EXCEPTION_WHAT"));
    return std::make_pair(r->status, json::parse(r->body));
  };
  json bad = body;
  bad["candidates"][2]["item_id"] = 100000;
  auto r = post(bad.dump());
  CHECK(r.first == 400);
  CHECK_THAT(r.second["error"].get<std::string>(), Contains("request.candidates[2].item_id: id 100000 out of range"));
  bad = body;
  bad["hour_sin"] = "x";
  r = post(bad.dump());
  CHECK(r.first == 400);
  CHECK_THAT(r.second["error"].get<std::string>(), Contains("request.hour_sin: expected a number"));
  r = post("{\"candidates\": [");
  CHECK(r.first == 400);
  CHECK_THAT(r.second["error"].get<std::string>(), Contains("request: invalid JSON"));

  // Over --max-body: 413 from the HTTP layer, with the limit in the message.
  bad = body;
  bad["padding"] = std::string(9000, 'x');
  r = post(bad.dump());
  CHECK(r.first == 413);
  CHECK_THAT(r.second["error"].get<std::string>(), Contains("over the limit of 8192 bytes"));

  auto get = cli.Get("/nowhere");
  REQUIRE(get);
  CHECK(get->status == 404);
  CHECK_THAT(json::parse(get->body)["error"].get<std::string>(), Contains("no endpoint GET /nowhere"));
  get = cli.Get("/score");
  REQUIRE(get);
  CHECK(get->status == 405);
  CHECK(get->get_header_value("Allow") == "POST");
  auto reload = cli.Post("/reload", "", "application/json");
  REQUIRE(reload);
  CHECK(reload->status == 403);  // not started with allow_reload

  // Still serving after all of it.
  auto ok = cli.Post("/score", body.dump(), "application/json");
  REQUIRE(ok);
  CHECK(ok->status == 200);
  const auto m = parse_metrics(srv.metrics_text());
  CHECK(m.at("mtrank_http_errors_total{class=\"bad_request\"}") == 3);
  CHECK(m.at("mtrank_http_errors_total{class=\"too_large\"}") == 1);
  CHECK(m.at("mtrank_http_errors_total{class=\"internal\"}") == 0);
  CHECK(m.at("mtrank_http_requests_total{endpoint=\"/score\",code=\"4xx\"}") == 5);  // 3 x 400, 413, 405
  CHECK(m.at("mtrank_http_requests_total{endpoint=\"/score\",code=\"2xx\"}") == 1);
  CHECK(m.at("mtrank_http_requests_total{endpoint=\"other\",code=\"4xx\"}") == 1);
  CHECK(m.at("mtrank_http_requests_total{endpoint=\"/reload\",code=\"4xx\"}") == 1);
}

TEST_CASE("server: GET /health, /metadata and /metrics, counters move and histograms are cumulative", "[server]") {
  const auto dir = mtrank::testing::temp_dir("server_metrics");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  server::RankingServer srv(options(dir / "model.safetensors"));
  auto cli = client(srv.start());

  auto health = cli.Get("/health");
  REQUIRE(health);
  REQUIRE(health->status == 200);
  const json h = json::parse(health->body);
  CHECK(h["status"] == "ok");
  CHECK(h["version"] == 1);

  auto meta = cli.Get("/metadata");
  REQUIRE(meta);
  REQUIRE(meta->status == 200);
  const json md = json::parse(meta->body);
  CHECK(md["model"] == "mmoe");
  CHECK(md["version"] == 1);
  CHECK(md["checkpoint"] == fs::absolute(dir / "model.safetensors").string());
  CHECK(md["loaded_at"].get<double>() > 1.6e9);
  CHECK(md["load_seconds"].get<double>() >= 0);
  CHECK(md["candidate_fields"].size() == 5);
  CHECK(md["weights"] == "f32");

  auto scrape = [&] {
    auto r = cli.Get("/metrics");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    CHECK_THAT(r->get_header_value("Content-Type"), Contains("text/plain; version=0.0.4"));
    return parse_metrics(r->body);
  };
  const auto before = scrape();
  CHECK(before.at("mtrank_model_version") == 1);
  CHECK(before.at("mtrank_model_last_reload_success") == 1);
  CHECK(before.at("mtrank_model_last_reload_timestamp_seconds") > 1.6e9);
  CHECK(before.at("mtrank_http_requests_in_flight") == 1);  // the scrape itself
  CHECK(before.at("mtrank_score_latency_seconds_count") == 0);

  const auto ref = serve::Predictor::from_checkpoint(dir / "model.safetensors");
  const Index sizes[] = {1, 3, 7, 30};
  for (Index n : sizes) {
    auto r = cli.Post("/score", make_request(*ref, mtrank::testing::row_with_history(500), n).second.dump(), "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
  }
  const auto after = scrape();
  CHECK(after.at("mtrank_http_requests_total{endpoint=\"/score\",code=\"2xx\"}") == 4);
  CHECK(after.at("mtrank_http_requests_total{endpoint=\"/metrics\",code=\"2xx\"}") == 1);  // the first scrape
  CHECK(after.at("mtrank_http_requests_total{endpoint=\"/health\",code=\"2xx\"}") == 1);
  CHECK(after.at("mtrank_score_candidates_sum") == 41);
  CHECK(after.at("mtrank_score_candidates_count") == 4);
  CHECK(after.at("mtrank_score_candidates_bucket{le=\"1\"}") == 1);
  CHECK(after.at("mtrank_score_candidates_bucket{le=\"5\"}") == 2);
  CHECK(after.at("mtrank_score_candidates_bucket{le=\"10\"}") == 3);
  CHECK(after.at("mtrank_score_candidates_bucket{le=\"25\"}") == 3);
  CHECK(after.at("mtrank_score_candidates_bucket{le=\"50\"}") == 4);
  CHECK(after.at("mtrank_score_latency_seconds_count") == 4);
  CHECK(after.at("mtrank_score_latency_seconds_sum") > 0);
  // Buckets are cumulative: non-decreasing in le, and +Inf equals _count.
  for (const char* h : {"mtrank_score_latency_seconds", "mtrank_score_candidates"}) {
    CAPTURE(h);
    std::vector<std::pair<double, double>> buckets;
    const std::string prefix = std::string(h) + "_bucket{le=\"";
    for (const auto& [k, v] : after)
      if (k.rfind(prefix, 0) == 0) {
        const std::string le = k.substr(prefix.size(), k.size() - prefix.size() - 2);
        buckets.emplace_back(le == "+Inf" ? INFINITY : std::stod(le), v);
      }
    std::sort(buckets.begin(), buckets.end());
    REQUIRE(buckets.size() > 5);
    for (std::size_t i = 1; i < buckets.size(); ++i) CHECK(buckets[i].second >= buckets[i - 1].second);
    CHECK(std::isinf(buckets.back().first));
    CHECK(buckets.back().second == after.at(std::string(h) + "_count"));
  }
}

TEST_CASE("server: /reload swaps versions, an unservable model is refused and the old version keeps serving", "[server]") {
  const auto dir = mtrank::testing::temp_dir("server_reload");
  const fs::path path = dir / "model.safetensors";
  write_checkpoint(path, model_config("mmoe", 3));
  const auto v1 = serve::Predictor::from_checkpoint(path);
  auto o = options(path);
  o.allow_reload = true;
  server::RankingServer srv(o);
  auto cli = client(srv.start());
  const auto rq = make_request(*v1, mtrank::testing::row_with_history(300), 4);
  const serve::Request& request = rq.first;
  const json& body = rq.second;
  auto score = [&] {
    auto r = cli.Post("/score", body.dump(), "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return json::parse(r->body);
  };
  require_scores_equal(score(), *v1, request);

  // A new model in the same file: POST /reload installs it as version 2.
  write_checkpoint(path, model_config("shared_bottom", 5));
  const auto v2 = serve::Predictor::from_checkpoint(path);
  auto r = cli.Post("/reload", "", "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK(json::parse(r->body)["version"] == 2);
  CHECK(srv.version() == 2);
  require_scores_equal(score(), *v2, request);
  CHECK(json::parse(cli.Get("/metadata")->body)["version"] == 2);

  // A model whose request layout cannot be derived: refused with the reason, version 2 serves on.
  write_checkpoint(path, unservable_config());
  r = cli.Post("/reload", "", "application/json");
  REQUIRE(r);
  CHECK(r->status == 500);
  CHECK_FALSE(r->has_header("EXCEPTION_WHAT"));
  const json err = json::parse(r->body);
  CHECK_THAT(err["error"].get<std::string>(),
             Contains("reload failed, still serving version 2") && Contains("request layout cannot be derived") &&
                 Contains("declare no side"));
  CHECK(err["version"] == 2);
  require_scores_equal(score(), *v2, request);
  CHECK(json::parse(cli.Get("/health")->body)["version"] == 2);
  auto m = parse_metrics(cli.Get("/metrics")->body);
  CHECK(m.at("mtrank_model_version") == 2);
  CHECK(m.at("mtrank_model_last_reload_success") == 0);
  CHECK(m.at("mtrank_model_reloads_total{result=\"success\"}") == 1);
  CHECK(m.at("mtrank_model_reloads_total{result=\"failure\"}") == 1);
  CHECK(m.at("mtrank_http_errors_total{class=\"internal\"}") == 1);

  // The same model is refused at start.
  CHECK_THROWS_WITH(server::RankingServer(options(path)), Contains("cannot serve requests") && Contains("request layout cannot be derived"));

  // Reloads while two clients score: every response is one version's, bit for bit.
  write_checkpoint(path, model_config("mmoe", 3));
  const std::string b = body.dump();
  std::atomic<bool> done{false};
  std::atomic<int> failures{0}, answered{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 2; ++t)
    clients.emplace_back([&, port = srv.port()] {
      auto c = client(port);
      serve::Predictor::Session s1, s2;
      const serve::Scores e1 = v1->score(request, s1), e2 = v2->score(request, s2);
      while (!done) {
        auto res = c.Post("/score", b, "application/json");
        if (!res || res->status != 200) {
          ++failures;
          continue;
        }
        const json j = json::parse(res->body);
        const float got = static_cast<float>(j["scores"][0]["fused"].get<double>());
        if (got != e1.fused[0] && got != e2.fused[0]) ++failures;
        ++answered;
      }
    });
  for (int i = 0; i < 4; ++i) {
    write_checkpoint(path, model_config(i % 2 ? "mmoe" : "shared_bottom", i % 2 ? 3 : 5));
    auto rr = cli.Post("/reload", "", "application/json");
    REQUIRE(rr);
    CHECK(rr->status == 200);
  }
  done = true;
  for (auto& t : clients) t.join();
  CHECK(failures == 0);
  CHECK(answered > 0);
  CHECK(srv.version() == 6);
}

TEST_CASE("server: bad options, an unwritable access log and a busy port are refused with the reason", "[server]") {
  const auto dir = mtrank::testing::temp_dir("server_options");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  const auto base = options(dir / "model.safetensors");
  auto refused = [&](auto edit) {
    auto o = base;
    edit(o);
    try {
      server::RankingServer s(o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(refused([](auto& o) { o.log_level = "loud"; }), Contains("expected off, error, warn, info or debug, got \"loud\""));
  CHECK_THAT(refused([](auto& o) { o.threads = 0; }), Contains("threads: expected at least 1"));
  CHECK_THAT(refused([](auto& o) { o.port = 70000; }), Contains("port: expected 0..65535"));
  CHECK_THAT(refused([](auto& o) { o.request_timeout = 0; }), Contains("request_timeout: expected seconds in 0.001..3600, got 0"));
  CHECK_THAT(refused([](auto& o) { o.keep_alive_timeout = -1; }), Contains("keep_alive_timeout: expected seconds in 0..3600, got -1"));
  CHECK_THAT(refused([](auto& o) { o.shutdown_timeout = NAN; }), Contains("shutdown_timeout: expected seconds in 0..3600, got nan"));
  CHECK_THAT(refused([](auto& o) { o.backlog = 0; }), Contains("backlog: expected 1..65535, got 0"));
  CHECK_THAT(refused([](auto& o) { o.max_queue = 2000000; }), Contains("max_queue: expected 0..1000000, got 2000000"));
  CHECK_THAT(refused([](auto& o) { o.config = "x.json"; }), Contains("give a checkpoint, or a config and a weights file"));
  CHECK_THAT(refused([&](auto& o) { o.access_log = dir.string(); }), Contains("access log: cannot open"));  // a directory
  CHECK_THAT(refused([&](auto& o) { o.checkpoint = (dir / "missing.safetensors").string(); }), Contains("missing.safetensors"));

  server::RankingServer a(base);
  const int port = a.start();
  auto o = base;
  o.port = port;
  server::RankingServer b(o);  // not SO_REUSEPORT: the second server does not share the port
  CHECK_THROWS_WITH(b.start(), Contains("cannot bind 127.0.0.1:" + std::to_string(port)));
  CHECK(a.running());
  a.stop();
  CHECK_FALSE(a.running());
  a.stop();  // idempotent

  // The weight format goes to the predictor with the model (PredictorOptions::weights).
  o = base;
  o.weight_format = ServingWeights::int8;
  server::RankingServer c(o);
  auto meta = client(c.start()).Get("/metadata");
  REQUIRE(meta);
  CHECK(json::parse(meta->body)["weights"] == "int8");
}

namespace {

/// One raw HTTP exchange on a fresh connection (for requests httplib's client would not send).
std::string raw_http(int port, const std::string& text) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::send(fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size()));
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
    out.append(buf, static_cast<std::size_t>(n));
    if (out.find("\r\n\r\n") != std::string::npos && out.find('}') != std::string::npos) break;
  }
  ::close(fd);
  return out;
}

}  // namespace

TEST_CASE("server: POST /reload without a body answers at once (curl -X POST sends no Content-Length)", "[server]") {
  const auto dir = mtrank::testing::temp_dir("server_reload_raw");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  auto o = options(dir / "model.safetensors");
  o.allow_reload = true;
  server::RankingServer srv(o);
  const int port = srv.start();
  const auto t0 = std::chrono::steady_clock::now();
  const std::string out = raw_http(port, "POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3));
  CHECK_THAT(out, Contains("HTTP/1.1 200") && Contains("\"version\":2"));
}

namespace {

// ---- limits: raw connections, memory, compression ----

using Ms = std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

/// A response read from a raw connection.
struct RawResponse {
  int status = 0;
  std::string head, body;  // head: status line and headers
  bool complete = false;   // head and Content-Length bytes of body arrived
  std::string header(const std::string& name) const {
    std::istringstream in(head);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const auto colon = line.find(':');
      if (colon == std::string::npos || line.size() < name.size()) continue;
      std::string key = line.substr(0, colon);
      if (key.size() == name.size() && std::equal(key.begin(), key.end(), name.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
          }))
        return line.substr(line.find_first_not_of(' ', colon + 1));
    }
    return "";
  }
  std::string error() const { return complete ? json::parse(body).at("error").get<std::string>() : std::string("(no response)"); }
};

/// A client connection on a plain socket, for traffic httplib's client does not produce (slow,
/// partial, chunked, compressed, malformed). Every wait is bounded. No Catch assertions inside
/// (they are not thread-safe and some tests drive connections from threads): a connection that
/// failed shows as send_all() returning false.
class RawConn {
 public:
  explicit RawConn(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (fd_ >= 0) ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~RawConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  /// Sends all of `s`; false when the peer closed or `timeout` passed.
  bool send_all(std::string_view s, Ms timeout = Ms(5000)) {
    if (fd_ < 0) return false;
    const auto until = SteadyClock::now() + timeout;
    while (!s.empty()) {
      pollfd p{fd_, POLLOUT, 0};
      const auto left = std::chrono::duration_cast<Ms>(until - SteadyClock::now()).count();
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
      const ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return false;
      }
      s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  /// Data (or EOF) to read within `timeout`.
  bool readable(Ms timeout) {
    if (!in_.empty()) return true;
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
  }
  /// Reads one response (head and Content-Length body), or what arrived within `timeout`.
  RawResponse read_response(Ms timeout = Ms(5000)) {
    const auto until = SteadyClock::now() + timeout;
    RawResponse r;
    for (;;) {
      const auto end = in_.find("\r\n\r\n");
      if (end != std::string::npos) {
        r.head = in_.substr(0, end);
        r.status = std::atoi(r.head.c_str() + std::min<std::size_t>(9, r.head.size()));
        const std::size_t len = static_cast<std::size_t>(std::atoll(r.header("Content-Length").c_str()));
        if (in_.size() >= end + 4 + len) {
          r.body = in_.substr(end + 4, len);
          in_.erase(0, end + 4 + len);
          r.complete = true;
          return r;
        }
      }
      if (!fill(until)) return r;
    }
  }
  /// True when the server closes the connection within `timeout` (what arrives is discarded).
  bool wait_closed(Ms timeout = Ms(3000)) {
    const auto until = SteadyClock::now() + timeout;
    for (;;) {
      in_.clear();
      pollfd p{fd_, POLLIN, 0};
      const auto left = std::chrono::duration_cast<Ms>(until - SteadyClock::now()).count();
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
      char buf[65536];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
    }
  }

 private:
  bool fill(SteadyClock::time_point until) {
    pollfd p{fd_, POLLIN, 0};
    const auto left = std::chrono::duration_cast<Ms>(until - SteadyClock::now()).count();
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n <= 0) return false;
    in_.append(buf, static_cast<std::size_t>(n));
    return true;
  }
  int fd_ = -1;
  std::string in_;
};

std::string post_head(const std::string& path, const std::string& extra_headers) {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + extra_headers + "\r\n";
}

/// A value of /proc/self/status in KiB ("VmRSS:", "VmHWM:").
long proc_status_kib(const std::string& key) {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + key.size());
  FAIL("no " << key << " in /proc/self/status");
  return 0;
}

/// Resets VmHWM (the peak resident size) to the current size.
void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  REQUIRE(f.good());
}

/// Polls `cond` until it holds or `timeout` passes.
template <class F>
bool wait_until(F cond, Ms timeout = Ms(5000)) {
  const auto until = SteadyClock::now() + timeout;
  while (!cond()) {
    if (SteadyClock::now() >= until) return false;
    std::this_thread::sleep_for(Ms(5));
  }
  return true;
}

/// A sample of the server's /metrics text, -1 when absent.
double metric(const server::RankingServer& srv, const std::string& name) {
  const auto m = parse_metrics(srv.metrics_text());
  const auto it = m.find(name);
  return it == m.end() ? -1.0 : it->second;
}

/// `prefix` then `fill_bytes` copies of `fill`, compressed with zlib in pieces (the input is never
/// held whole): window_bits 31 for gzip, 15 for the zlib format ("deflate" in HTTP).
std::string zlib_compress(const std::string& prefix, std::size_t fill_bytes, char fill, int window_bits) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, window_bits, 9, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out;
  char buf[65536];
  auto feed = [&](const char* data, std::size_t n, int flush) {
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
    z.avail_in = static_cast<uInt>(n);
    int rc = Z_OK;
    do {
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof buf;
      rc = deflate(&z, flush);
      REQUIRE(rc != Z_STREAM_ERROR);
      out.append(buf, sizeof buf - z.avail_out);
    } while (z.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
  };
  feed(prefix.data(), prefix.size(), Z_NO_FLUSH);
  const std::string chunk(1 << 16, fill);
  for (std::size_t left = fill_bytes; left > 0;) {
    const std::size_t n = std::min(left, chunk.size());
    feed(chunk.data(), n, Z_NO_FLUSH);
    left -= n;
  }
  feed(nullptr, 0, Z_FINISH);
  deflateEnd(&z);
  return out;
}

#ifdef MTRANK_TEST_BROTLI
std::string brotli_compress(const std::string& prefix, std::size_t fill_bytes, char fill) {
  BrotliEncoderState* s = BrotliEncoderCreateInstance(nullptr, nullptr, nullptr);
  REQUIRE(s);
  BrotliEncoderSetParameter(s, BROTLI_PARAM_QUALITY, 5);
  BrotliEncoderSetParameter(s, BROTLI_PARAM_LGWIN, 24);
  std::string out;
  auto feed = [&](const char* data, std::size_t n, BrotliEncoderOperation op) {
    const auto* next_in = reinterpret_cast<const std::uint8_t*>(data);
    std::size_t avail_in = n;
    do {
      std::uint8_t buf[65536];
      std::uint8_t* next_out = buf;
      std::size_t avail_out = sizeof buf;
      REQUIRE(BrotliEncoderCompressStream(s, op, &avail_in, &next_in, &avail_out, &next_out, nullptr));
      out.append(reinterpret_cast<char*>(buf), sizeof buf - avail_out);
    } while (avail_in > 0 || BrotliEncoderHasMoreOutput(s) || (op == BROTLI_OPERATION_FINISH && !BrotliEncoderIsFinished(s)));
  };
  feed(prefix.data(), prefix.size(), BROTLI_OPERATION_PROCESS);
  const std::string chunk(1 << 16, fill);
  for (std::size_t left = fill_bytes; left > 0;) {
    const std::size_t n = std::min(left, chunk.size());
    feed(chunk.data(), n, BROTLI_OPERATION_PROCESS);
    left -= n;
  }
  feed(nullptr, 0, BROTLI_OPERATION_FINISH);
  BrotliEncoderDestroyInstance(s);
  return out;
}
#endif

/// Compressed with a Content-Encoding's coding (gzip, deflate, br).
std::string compress(const std::string& encoding, const std::string& prefix, std::size_t fill_bytes = 0, char fill = ' ') {
  if (encoding == "gzip") return zlib_compress(prefix, fill_bytes, fill, 31);
  if (encoding == "deflate") return zlib_compress(prefix, fill_bytes, fill, 15);
#ifdef MTRANK_TEST_BROTLI
  if (encoding == "br") return brotli_compress(prefix, fill_bytes, fill);
#endif
  FAIL("no compressor for " << encoding);
  return {};
}

std::vector<std::string> test_encodings() {
#ifdef MTRANK_TEST_BROTLI
  return {"gzip", "deflate", "br"};
#else
  WARN("brotli encoder headers (libbrotli-dev) not found: the brotli cases are skipped");
  return {"gzip", "deflate"};
#endif
}

}  // namespace

TEST_CASE("server: compressed bodies are limited after decompression (gzip and brotli bombs: 413, memory bounded)", "[server][limits]") {
  const auto dir = mtrank::testing::temp_dir("server_bombs");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  auto o = options(dir / "model.safetensors");
  o.max_body = 1 << 20;
  server::RankingServer srv(o);
  const int port = srv.start();
  const auto ref = serve::Predictor::from_checkpoint(dir / "model.safetensors");
  const std::string body = make_request(*ref, mtrank::testing::row_with_history(900), 5).second.dump();
  auto plain = client(port).Post("/score", body, "application/json");
  REQUIRE(plain);
  REQUIRE(plain->status == 200);

  for (const std::string& enc : test_encodings()) {
    CAPTURE(enc);
    // A compressed request is decompressed and scored like the plain one.
    {
      const std::string z = compress(enc, body);
      RawConn c(port);
      REQUIRE(c.send_all(post_head("/score", "Content-Encoding: " + enc + "\r\nContent-Length: " + std::to_string(z.size()) + "\r\n") + z));
      const RawResponse r = c.read_response();
      CHECK(r.status == 200);
      CHECK(r.body == plain->body);
    }
    // Data that does not decompress: a 400 naming the encoding.
    {
      const std::string junk = "this is not compressed";
      RawConn c(port);
      REQUIRE(c.send_all(post_head("/score", "Content-Encoding: " + enc + "\r\nContent-Length: " + std::to_string(junk.size()) + "\r\n") + junk));
      const RawResponse r = c.read_response();
      CHECK(r.status == 400);
      CHECK_THAT(r.error(), Contains("not valid " + enc + " data"));
    }
    // 64 MiB of JSON whitespace in a few KiB: refused once 1 MiB is decompressed.
    const std::string bomb = compress(enc, "{", std::size_t(64) << 20);
    CAPTURE(bomb.size());
    CHECK(bomb.size() < (std::size_t(128) << 10));
    reset_peak_rss();
    const long rss_before = proc_status_kib("VmRSS:");
    RawConn c(port);
    REQUIRE(c.send_all(post_head("/score", "Content-Encoding: " + enc + "\r\nContent-Length: " + std::to_string(bomb.size()) + "\r\n") + bomb));
    const RawResponse r = c.read_response();
    const long peak_growth_kib = proc_status_kib("VmHWM:") - rss_before;
    CHECK(r.status == 413);
    CHECK_THAT(r.error(), Contains("over the limit of 1048576 bytes") && Contains("after decompression"));
    CHECK(r.header("Connection") == "close");
    CAPTURE(peak_growth_kib);
    CHECK(peak_growth_kib < 24 * 1024);  // the limit (1 MiB) and buffers, not 64 MiB
  }
  auto again = client(port).Post("/score", body, "application/json");
  REQUIRE(again);
  CHECK(again->status == 200);
  CHECK(metric(srv, "mtrank_http_errors_total{class=\"too_large\"}") == static_cast<double>(test_encodings().size()));
}

TEST_CASE("server: a chunked body over --max-body is refused after about max_body bytes", "[server][limits]") {
  const auto dir = mtrank::testing::temp_dir("server_chunked");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  auto o = options(dir / "model.safetensors");
  o.max_body = 64 << 10;
  server::RankingServer srv(o);
  const int port = srv.start();
  const auto ref = serve::Predictor::from_checkpoint(dir / "model.safetensors");

  // A chunked request within the limit is scored.
  {
    const std::string body = make_request(*ref, mtrank::testing::row_with_history(900), 3).second.dump();
    std::string chunked;
    for (std::size_t i = 0; i < body.size(); i += 100) {
      const std::string part = body.substr(i, 100);
      char len[16];
      std::snprintf(len, sizeof len, "%zx\r\n", part.size());
      chunked += len + part + "\r\n";
    }
    chunked += "0\r\n\r\n";
    RawConn c(port);
    REQUIRE(c.send_all(post_head("/score", "Transfer-Encoding: chunked\r\n") + chunked));
    CHECK(c.read_response().status == 200);
  }

  // Chunks of 16 KiB until the server answers (at most 128 MiB).
  reset_peak_rss();
  const long rss_before = proc_status_kib("VmRSS:");
  RawConn c(port);
  REQUIRE(c.send_all(post_head("/score", "Transfer-Encoding: chunked\r\n") + "1\r\n{\r\n"));
  const std::string chunk = "4000\r\n" + std::string(16384, ' ') + "\r\n";
  std::size_t sent = 0;
  while (sent < (std::size_t(128) << 20) && !c.readable(Ms(0))) {
    if (!c.send_all(chunk, Ms(2000))) break;  // the server stopped reading
    sent += chunk.size();
  }
  const RawResponse r = c.read_response();
  const long peak_growth_kib = proc_status_kib("VmHWM:") - rss_before;
  CAPTURE(sent, peak_growth_kib);
  CHECK(r.status == 413);
  CHECK_THAT(r.error(), Contains("over the limit of 65536 bytes"));
  CHECK(r.header("Connection") == "close");
  CHECK(sent < (std::size_t(16) << 20));  // 64 KiB read, the rest sat in socket buffers
  CHECK(peak_growth_kib < 24 * 1024);
  CHECK(c.wait_closed());
}

TEST_CASE("server: slow clients get 408 at --request-timeout and free their workers", "[server][limits]") {
  const auto dir = mtrank::testing::temp_dir("server_slowloris");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  auto o = options(dir / "model.safetensors");
  o.threads = 2;
  o.request_timeout = 1;
  server::RankingServer srv(o);
  const int port = srv.start();

  // Two clients (= threads) sending one header byte every 300 ms, for at most 4 s.
  RawResponse answers[2];
  bool closed[2] = {false, false};
  std::atomic<int> started{0};
  std::vector<std::thread> slow;
  for (int i = 0; i < 2; ++i)
    slow.emplace_back([&, i] {
      RawConn c(port);
      const std::string text = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + std::string(100, 'a') + "\r\n\r\n";
      const auto until = SteadyClock::now() + Ms(4000);
      for (std::size_t k = 0; k < text.size() && SteadyClock::now() < until; ++k) {
        if (!c.send_all(text.substr(k, 1), Ms(1000))) break;
        if (k == 0) ++started;
        if (c.readable(Ms(300))) break;
      }
      answers[i] = c.read_response(Ms(3000));
      closed[i] = c.wait_closed(Ms(2000));
    });
  REQUIRE(wait_until([&] { return started == 2; }));
  std::this_thread::sleep_for(Ms(100));  // both are with a worker

  const auto t0 = SteadyClock::now();
  auto h = client(port).Get("/health");
  const auto waited = SteadyClock::now() - t0;
  for (auto& t : slow) t.join();
  REQUIRE(h);
  CHECK(h->status == 200);
  CHECK(waited < std::chrono::seconds(3));
  for (int i = 0; i < 2; ++i) {
    CAPTURE(i, answers[i].head);
    CHECK(answers[i].status == 408);
    CHECK_THAT(answers[i].error(), Contains("not received in full within 1 s"));
    CHECK(answers[i].header("Connection") == "close");
    CHECK(closed[i]);
  }
  CHECK(metric(srv, "mtrank_http_errors_total{class=\"timeout\"}") == 2);

  // A request cut off in its request line is answered 408 too.
  RawConn c(port);
  REQUIRE(c.send_all("GET /hea"));
  const RawResponse r = c.read_response(Ms(3000));
  CHECK(r.status == 408);
  CHECK(c.wait_closed());
}

TEST_CASE("server: past --max-queue waiting connections a client gets 503 at once, and idle connections keep no worker", "[server][limits]") {
  const auto dir = mtrank::testing::temp_dir("server_queue");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  auto o = options(dir / "model.safetensors");
  o.threads = 1;
  o.max_queue = 1;
  o.request_timeout = 5;
  server::RankingServer srv(o);
  const int port = srv.start();
  const auto ref = serve::Predictor::from_checkpoint(dir / "model.safetensors");
  const std::string body = make_request(*ref, mtrank::testing::row_with_history(900), 3).second.dump();
  const std::string health = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

  // A holds the only worker (half its body sent), B waits in the queue, C finds the queue full.
  RawConn a(port);
  REQUIRE(a.send_all(post_head("/score", "Content-Length: " + std::to_string(body.size()) + "\r\n") + body.substr(0, body.size() / 2)));
  REQUIRE(wait_until([&] { return metric(srv, "mtrank_http_requests_in_flight") == 1; }));
  RawConn b(port);
  REQUIRE(b.send_all(health));
  REQUIRE(wait_until([&] { return metric(srv, "mtrank_http_connection_queue_depth") == 1; }));
  RawConn c(port);
  REQUIRE(c.send_all(health));
  const auto t0 = SteadyClock::now();
  const RawResponse rc = c.read_response(Ms(2000));
  CHECK(SteadyClock::now() - t0 < Ms(1000));
  CHECK(rc.status == 503);
  CHECK(rc.header("Retry-After") == "1");
  CHECK(rc.header("Connection") == "close");
  CHECK(rc.header("Content-Type") == "application/json");
  CHECK_THAT(rc.error(), Contains("server busy: 1 connections already waiting for a worker (--max-queue)"));
  CHECK(c.wait_closed());

  // A finishes: answered and kept open, but parked without a worker since B waits; B is served.
  REQUIRE(a.send_all(body.substr(body.size() / 2)));
  const RawResponse ra = a.read_response();
  CHECK(ra.status == 200);
  CHECK(ra.header("Connection") != "close");
  CHECK(b.read_response().status == 200);
  CHECK(wait_until([&] { return metric(srv, "mtrank_http_idle_connections") == 1; }));  // A
  // B stays open and idle with the worker; it gives the worker up to the next client at once.
  const auto t1 = SteadyClock::now();
  auto h = client(port).Get("/health");
  REQUIRE(h);
  CHECK(h->status == 200);
  CHECK(SteadyClock::now() - t1 < Ms(1000));
  REQUIRE(wait_until([&] { return metric(srv, "mtrank_http_idle_connections") == 2; }));  // A and B
  // A's next request: the idle poller hands A back to a worker.
  REQUIRE(a.send_all(health));
  CHECK(a.read_response().status == 200);
  CHECK(metric(srv, "mtrank_http_errors_total{class=\"overloaded\"}") == 1);
  CHECK(metric(srv, "mtrank_http_connection_queue_depth") == 0);
}

TEST_CASE("server: idle keep-alive connections are closed at --keep-alive-timeout, and at once by stop()", "[server][limits]") {
  const auto dir = mtrank::testing::temp_dir("server_keep_alive");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  auto o = options(dir / "model.safetensors");
  o.threads = 1;
  o.keep_alive_timeout = 0.5;
  server::RankingServer srv(o);
  const int port = srv.start();
  const std::string health = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

  // X keeps the only worker while idle, until Y's request arrives: X is parked, Y served at once.
  RawConn x(port), y(port);
  REQUIRE(x.send_all(health));
  CHECK(x.read_response().status == 200);
  REQUIRE(y.send_all(health));
  CHECK(y.read_response(Ms(1000)).status == 200);
  CHECK(wait_until([&] { return metric(srv, "mtrank_http_idle_connections") == 1; }));
  // Both closed at the keep-alive timeout: X by the idle poller, Y by its worker.
  const auto t0 = SteadyClock::now();
  CHECK(x.wait_closed());
  CHECK(y.wait_closed());
  CHECK(SteadyClock::now() - t0 < Ms(1500));
  CHECK(metric(srv, "mtrank_http_idle_connections") == 0);

  // Idle connections, parked or with the worker, do not delay a stop (shutdown_timeout is 10 s).
  RawConn p1(port), p2(port);
  REQUIRE(p1.send_all(health));
  CHECK(p1.read_response().status == 200);
  REQUIRE(p2.send_all(health));
  CHECK(p2.read_response().status == 200);
  CHECK(wait_until([&] { return metric(srv, "mtrank_http_idle_connections") == 1; }));
  const auto t1 = SteadyClock::now();
  srv.stop();
  CHECK(SteadyClock::now() - t1 < Ms(1000));
  CHECK(p1.wait_closed(Ms(100)));
  CHECK(p2.wait_closed(Ms(100)));
}

TEST_CASE("server: stop() lets requests in flight finish until --shutdown-timeout, then cuts them off", "[server][limits]") {
  const auto dir = mtrank::testing::temp_dir("server_shutdown");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  auto o = options(dir / "model.safetensors");
  o.threads = 3;
  o.request_timeout = 30;
  o.shutdown_timeout = 1;
  server::RankingServer srv(o);
  const int port = srv.start();
  const auto ref = serve::Predictor::from_checkpoint(dir / "model.safetensors");
  const std::string body = make_request(*ref, mtrank::testing::row_with_history(900), 3).second.dump();
  const std::string head = post_head("/score", "Content-Length: " + std::to_string(body.size()) + "\r\n");

  auto idle = client(port);  // a keep-alive connection left idle: closed at once by the stop
  idle.set_keep_alive(true);
  auto h = idle.Get("/health");
  REQUIRE(h);
  REQUIRE(h->status == 200);
  RawConn finishing(port), stalled(port);  // both send half their body
  REQUIRE(finishing.send_all(head + body.substr(0, body.size() / 2)));
  REQUIRE(stalled.send_all(head + body.substr(0, body.size() / 2)));
  REQUIRE(wait_until([&] { return metric(srv, "mtrank_http_requests_in_flight") == 2; }));

  std::atomic<bool> stopping{false};
  SteadyClock::duration stop_took{};
  std::thread stopper([&] {
    stopping = true;
    const auto t0 = SteadyClock::now();
    srv.stop();
    stop_took = SteadyClock::now() - t0;
  });
  REQUIRE(wait_until([&] { return stopping.load(); }));
  std::this_thread::sleep_for(Ms(200));
  REQUIRE(finishing.send_all(body.substr(body.size() / 2)));  // in flight, finished before the deadline
  const RawResponse rf = finishing.read_response();
  const RawResponse rs = stalled.read_response(Ms(4000));
  stopper.join();
  CHECK(rf.status == 200);
  CHECK(rf.header("Connection") == "close");
  CHECK(rs.status == 503);
  CHECK_THAT(rs.error(), Contains("shutting down"));
  CHECK(stop_took >= Ms(900));  // waited for the stalled request
  CHECK(stop_took < Ms(2500));  // the deadline (1 s) and a margin
  CHECK_FALSE(srv.running());
}

TEST_CASE("server: invalid UTF-8 is a 400 naming the problem, without internal exception text", "[server]") {
  const auto dir = mtrank::testing::temp_dir("server_utf8");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  server::RankingServer srv(options(dir / "model.safetensors"));
  const int port = srv.start();
  auto cli = client(port);
  const auto ref = serve::Predictor::from_checkpoint(dir / "model.safetensors");
  json j = make_request(*ref, mtrank::testing::row_with_history(900), 2).second;

  // Valid non-ASCII text is fine and echoed.
  j["request_id"] = "r-\xc3\xa9\xe2\x9c\x93";
  auto ok = cli.Post("/score", j.dump(), "application/json");
  REQUIRE(ok);
  REQUIRE(ok->status == 200);
  CHECK(json::parse(ok->body)["request_id"] == "r-\xc3\xa9\xe2\x9c\x93");

  j["request_id"] = "MARK";
  const std::string text = j.dump();
  const std::string bad_bytes[] = {"\xff", "\xc0\xaf" /* overlong */, "\xed\xa0\x80" /* surrogate */,
                                   "\xf4\x90\x80\x80" /* over U+10FFFF */, "\xe2\x82" /* truncated */};
  for (const std::string& b : bad_bytes) {
    std::string body = text;
    body.replace(body.find("MARK"), 4, b);
    const std::size_t at = text.find("MARK");
    auto r = cli.Post("/score", body, "application/json");
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(r->get_header_value("Content-Type") == "application/json");
    CHECK_FALSE(r->has_header("EXCEPTION_WHAT"));
    json e;
    REQUIRE_NOTHROW(e = json::parse(r->body));  // the response itself is valid UTF-8 JSON
    const std::string msg = e["error"].get<std::string>();
    CAPTURE(msg);
    CHECK_THAT(msg, Contains("not valid UTF-8") && Contains("byte " + std::to_string(at)));
    CHECK_THAT(msg, !Contains("json.exception") && !Contains("parse_error"));
  }

  // In the path: a 404 whose JSON body is still valid.
  RawConn c(port);
  REQUIRE(c.send_all("GET /\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  const RawResponse r = c.read_response();
  CHECK(r.status == 404);
  CHECK_NOTHROW(json::parse(r.body));
  CHECK(metric(srv, "mtrank_http_errors_total{class=\"internal\"}") == 0);
}

TEST_CASE("server: bodies the server cannot bound are refused before they are read, and so are oversized heads", "[server][limits]") {
  const auto dir = mtrank::testing::temp_dir("server_framing");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  auto o = options(dir / "model.safetensors");
  o.max_body = 8192;
  server::RankingServer srv(o);
  const int port = srv.start();

  struct Case {
    std::string text;  // sent, nothing more: a server that waited for a body would time out
    int status;
    std::string message;
  };
  const Case cases[] = {
      {post_head("/score", "Content-Encoding: zstd\r\nContent-Length: 100\r\n"), 415,
       "Content-Encoding 'zstd' is not supported (identity, gzip, deflate or br)"},
      {post_head("/score", "Transfer-Encoding: gzip, chunked\r\n"), 501, "Transfer-Encoding 'gzip, chunked' is not supported"},
      {post_head("/score", "Transfer-Encoding: chunked\r\nContent-Length: 10\r\n"), 400, "both Transfer-Encoding and Content-Length"},
      {post_head("/score", ""), 411, "needs a Content-Length or a chunked body"},
      {post_head("/score", "Content-Length: 1000000000\r\n"), 413, "body of 1000000000 bytes is over the limit of 8192 bytes"},
      {post_head("/score", "Content-Length: 12x\r\n"), 400, "invalid Content-Length"},
      {post_head("/reload", "Transfer-Encoding: chunked\r\n"), 403, "reload is disabled"},
      {post_head("/nowhere", "Content-Length: 1000000\r\n"), 404, "no endpoint POST /nowhere"},
      {post_head("/health", "Transfer-Encoding: chunked\r\n"), 405, "POST /health: use GET"},
      {"GET /" + std::string(20000, 'a') + " HTTP/1.1\r\n\r\n", 414, "request line over 16384 bytes"},
      {"GET /health HTTP/1.1\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n", 431, "header line over 16384 bytes"},
  };
  for (const Case& k : cases) {
    CAPTURE(k.text.substr(0, 120));
    RawConn c(port);
    REQUIRE(c.send_all(k.text));
    const RawResponse r = c.read_response(Ms(2000));
    CHECK(r.status == k.status);
    CHECK_THAT(r.error(), Contains(k.message));
    CHECK(r.header("Connection") == "close");
  }
  // Many header lines: the head is capped too.
  std::string many = "GET /health HTTP/1.1\r\n";
  for (int i = 0; i < 40; ++i) many += "X-H" + std::to_string(i) + ": " + std::string(2000, 'b') + "\r\n";
  {
    RawConn c(port);
    REQUIRE(c.send_all(many + "\r\n"));
    const RawResponse r = c.read_response(Ms(2000));
    CHECK(r.status == 431);
    CHECK_THAT(r.error(), Contains("request line and headers over 65536 bytes"));
  }
  // A body left unread is never parsed as the next request: the connection closes after the answer.
  {
    const std::string smuggled = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    RawConn c(port);
    REQUIRE(c.send_all("GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(smuggled.size()) + "\r\n\r\n" + smuggled));
    const RawResponse r = c.read_response();
    CHECK(r.status == 200);
    CHECK(r.header("Connection") == "close");
    CHECK(c.wait_closed());
  }
  // Pipelined requests on one connection are all answered, in order.
  {
    RawConn c(port);
    REQUIRE(c.send_all("GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"));
    CHECK(c.read_response().status == 200);
    CHECK(c.read_response().status == 404);
  }
  auto h = client(port).Get("/health");
  REQUIRE(h);
  CHECK(h->status == 200);
}

TEST_CASE("server: the listening socket gets --backlog", "[server][limits]") {
  const auto dir = mtrank::testing::temp_dir("server_backlog");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  auto o = options(dir / "model.safetensors");
  o.backlog = 777;  // under net.core.somaxconn (4096 by default)
  server::RankingServer srv(o);
  const int port = srv.start();
  // The server is in this process: find its listening socket among our descriptors. For a
  // listening socket, TCP_INFO's tcpi_sacked is the backlog (tcp_get_info).
  int found = 0;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    const int fd = std::atoi(e.path().filename().c_str());
    sockaddr_in a{};
    socklen_t len = sizeof a;
    int listening = 0;
    socklen_t ilen = sizeof listening;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0 || a.sin_family != AF_INET || ntohs(a.sin_port) != port) continue;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ilen) != 0 || !listening) continue;
    tcp_info info{};
    socklen_t tlen = sizeof info;
    REQUIRE(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &tlen) == 0);
    CHECK(info.tcpi_sacked == 777u);
    ++found;
  }
  CHECK(found == 1);
}

#ifdef RANKING_SERVER_BINARY
namespace {

struct Exit {
  int rc = -1;
  std::string output;  // stdout + stderr
};

/// Runs the ranking_server program to completion (it must exit by itself).
Exit run_server_binary(const std::string& args) {
  const std::string cmd = std::string(RANKING_SERVER_BINARY) + " " + args + " 2>&1 </dev/null";
  FILE* f = ::popen(cmd.c_str(), "r");
  REQUIRE(f);
  Exit e;
  char buf[1024];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) e.output.append(buf, n);
  const int st = ::pclose(f);
  e.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return e;
}

}  // namespace

TEST_CASE("server: the ranking_server program refuses bad arguments with a clear message", "[server][cli]") {
  const auto dir = mtrank::testing::temp_dir("server_cli");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  write_checkpoint(dir / "unservable.safetensors", unservable_config());
  const std::string model = "--checkpoint " + (dir / "model.safetensors").string();
  const std::pair<std::string, std::string> cases[] = {
      {"--port abc", "--port: expected an integer in 0..65535, got 'abc'"},
      {"--port 65536", "--port: expected an integer in 0..65535, got '65536'"},
      {"--max-body -1", "--max-body: expected a positive number of bytes, got '-1'"},
      {"--max-body 0", "--max-body: expected a positive number of bytes, got '0'"},
      {"--threads 0", "--threads: expected an integer in 1..4096, got '0'"},
      {"--weight-format fp16", "--weight-format: fp16 not in {f32,bf16,int8}"},
      {"--log-level loud", "--log-level: loud not in {off,error,warn,info,debug}"},
      {"--request-timeout 0", "--request-timeout: expected seconds in 0.001..3600, got '0'"},
      {"--request-timeout 1e9", "--request-timeout: expected seconds in 0.001..3600, got '1e9'"},
      {"--keep-alive-timeout -1", "--keep-alive-timeout: expected seconds in 0..3600, got '-1'"},
      {"--shutdown-timeout soon", "--shutdown-timeout: expected seconds in 0..3600, got 'soon'"},
      {"--backlog 0", "--backlog: expected an integer in 1..65535, got '0'"},
      {"--max-queue -5", "--max-queue: expected an integer in 0..1000000, got '-5'"},
      {"--bogus", "The following argument was not expected: --bogus"},
  };
  for (const auto& [args, message] : cases) {
    CAPTURE(args);
    const Exit e = run_server_binary(model + " " + args);
    CHECK(e.rc == 2);
    CHECK_THAT(e.output, Contains("ranking_server: error: " + message));
  }
  Exit e = run_server_binary("--port 0");
  CHECK(e.rc == 2);
  CHECK_THAT(e.output, Contains("give --checkpoint FILE, or --config FILE with --weights FILE"));
  e = run_server_binary(model + " --config " + (dir / "model.safetensors").string());
  CHECK(e.rc == 2);
  CHECK_THAT(e.output, Contains("--checkpoint excludes --config"));
  // A model that cannot serve requests: exit 1 with the reason.
  e = run_server_binary("--checkpoint " + (dir / "unservable.safetensors").string() + " --port 0");
  CHECK(e.rc == 1);
  CHECK_THAT(e.output, Contains("ranking_server: error:") && Contains("request layout cannot be derived"));
  e = run_server_binary("--help");
  CHECK(e.rc == 0);
  CHECK_THAT(e.output, Contains("--access-log") && Contains("--request-timeout") && Contains("--keep-alive-timeout") &&
                          Contains("--backlog") && Contains("--max-queue") && Contains("--shutdown-timeout"));
}

TEST_CASE("server: the ranking_server program prints its address, serves, and exits 0 on SIGTERM", "[server][cli]") {
  const auto dir = mtrank::testing::temp_dir("server_run");
  write_checkpoint(dir / "model.safetensors", model_config("mmoe", 3));
  int out[2];
  REQUIRE(::pipe(out) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  posix_spawn_file_actions_addopen(&fa, 2, (dir / "stderr.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const std::string ckpt = (dir / "model.safetensors").string();
  std::vector<std::string> args = {RANKING_SERVER_BINARY, "--checkpoint", ckpt, "--port", "0", "--threads", "2"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  REQUIRE(::posix_spawn(&pid, RANKING_SERVER_BINARY, &fa, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);

  std::string line;
  pollfd p{out[0], POLLIN, 0};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    if (::poll(&p, 1, 100) > 0) {
      char buf[256];
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(out[0]);
  INFO("stdout: " << line);
  REQUIRE(line.rfind("http://127.0.0.1:", 0) == 0);
  const int port = std::stoi(line.substr(std::string("http://127.0.0.1:").size()));
  auto cli = client(port);
  auto h = cli.Get("/health");
  REQUIRE(h);
  CHECK(h->status == 200);

  REQUIRE(::kill(pid, SIGTERM) == 0);
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 200 && done == 0; ++i) {
    done = ::waitpid(pid, &status, WNOHANG);
    if (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  REQUIRE(done == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  const auto log = read_lines(dir / "stderr.log");
  std::string all;
  for (const auto& l : log) all += l + "\n";
  CHECK_THAT(all, Contains("level=info event=start address=http://127.0.0.1:" + std::to_string(port)) &&
                      Contains("event=request method=GET path=/health status=200") && Contains("level=info event=stop"));
}
#endif
