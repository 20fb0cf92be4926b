#include "server.hpp"

#include <httplib.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string_view>
#include <strings.h>
#include <thread>

#include "http_transport.hpp"
#include "metrics.hpp"
#include "mtrank/core/error.hpp"
#include "mtrank/serve/predictor.hpp"
#include "mtrank/serve/request.hpp"

namespace mtrank::server {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// JSON text of a string (quoted, escaped; invalid UTF-8 replaced): safe in a log line and a body.
std::string json_quoted(const std::string& s) { return json(s).dump(-1, ' ', false, json::error_handler_t::replace); }

std::string error_json(const std::string& msg) {
  return json{{"error", msg}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

/// A logfmt value: bare when it has only safe characters, otherwise quoted.
std::string logfmt_value(const std::string& s) {
  if (s.empty()) return "\"\"";
  const bool bare = std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '/' || c == '_' || c == '-' || c == '.' || c == '~' || c == '%' || c == ':' || c == '+';
  });
  return bare ? s : json_quoted(s);
}

/// Offset of the first byte that is not well-formed UTF-8 (RFC 3629: no overlong forms, no
/// surrogates, nothing above U+10FFFF), or npos.
std::size_t invalid_utf8_at(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {  // ASCII eight bytes at a time (request bodies are mostly ASCII)
      std::uint64_t w;
      std::memcpy(&w, p + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c == 0xED) len = 3, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    else return i;
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return i;
    i += len;
  }
  return std::string_view::npos;
}

std::string seconds_text(double s) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, s);
  return std::string(buf, r.ptr);
}

std::chrono::milliseconds to_ms(double seconds) { return std::chrono::milliseconds(std::llround(seconds * 1000.0)); }

/// Checks the options that need no file (throws mtrank::Error naming the field and the expectation).
ServerOptions checked(ServerOptions o) {
  const bool files = !o.config.empty() || !o.weights.empty();
  if (o.checkpoint.empty() ? (o.config.empty() || o.weights.empty()) : files)
    fail("give a checkpoint, or a config and a weights file (not both)");
  if (o.port < 0 || o.port > 65535) fail("port: expected 0..65535, got ", o.port);
  if (o.threads < 1) fail("threads: expected at least 1, got ", o.threads);
  if (o.max_body < 1) fail("max_body: expected a positive number of bytes");
  auto seconds = [](const char* name, double v, double lo) {
    if (!(v >= lo && v <= 3600)) fail(name, ": expected seconds in ", seconds_text(lo), "..3600, got ", seconds_text(v));
  };
  seconds("request_timeout", o.request_timeout, 0.001);
  seconds("keep_alive_timeout", o.keep_alive_timeout, 0);
  seconds("shutdown_timeout", o.shutdown_timeout, 0);
  if (o.backlog < 1 || o.backlog > 65535) fail("backlog: expected 1..65535, got ", o.backlog);
  if (o.max_queue > 1000000) fail("max_queue: expected 0..1000000, got ", o.max_queue);
  return o;
}

TransportLimits transport_limits(const ServerOptions& o) {
  return {.threads = o.threads,
          .max_queue = o.max_queue,
          .backlog = o.backlog,
          .request_timeout = to_ms(o.request_timeout),
          .keep_alive_timeout = to_ms(o.keep_alive_timeout)};
}

/// A refusal before the body is read: status and message.
struct Refusal {
  int status;
  std::string message;
};

spdlog::level::level_enum log_level(const std::string& s) {
  if (s == "off") return spdlog::level::off;
  if (s == "error") return spdlog::level::err;
  if (s == "warn") return spdlog::level::warn;
  if (s == "info") return spdlog::level::info;
  if (s == "debug") return spdlog::level::debug;
  fail("log level: expected off, error, warn, info or debug, got \"", s, "\"");
}

// ---- metrics ----

enum Endpoint { kScore, kHealth, kMetadata, kMetrics, kReload, kOther, kNumEndpoints };
constexpr const char* kEndpointNames[kNumEndpoints] = {"/score", "/health", "/metadata", "/metrics", "/reload", "other"};

Endpoint endpoint_of(const std::string& path) {
  for (int e = 0; e < kOther; ++e)
    if (path == kEndpointNames[e]) return static_cast<Endpoint>(e);
  return kOther;
}

enum ErrorClass { kBadRequest, kTooLarge, kInternal, kTimeout, kOverloaded, kNumErrorClasses };
constexpr const char* kErrorClassNames[kNumErrorClasses] = {"bad_request", "too_large", "internal", "timeout", "overloaded"};

/// The error class of a status, or kNumErrorClasses (404, 405, 403, ... count only by endpoint).
ErrorClass error_class(int status) {
  if (status == 400) return kBadRequest;
  if (status == 413) return kTooLarge;
  if (status == 408) return kTimeout;
  if (status == 503) return kOverloaded;
  if (status >= 500) return kInternal;
  return kNumErrorClasses;
}

struct Metrics {
  Counter requests[kNumEndpoints][5];  // by endpoint and status class 1xx .. 5xx
  Counter errors[kNumErrorClasses];
  // Seconds from the request's headers being read (its body is read after) to its response being
  // ready to write.
  Histogram latency{{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}};
  Histogram candidates{{1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}};
  std::atomic<std::int64_t> in_flight{0};
  Counter reloads_ok, reloads_failed;
  Gauge last_reload_time, last_reload_success;
  double start_time = unix_now();
  // Queue-full rejections not yet reported by an event=overload log line (at most one a second).
  std::atomic<std::uint64_t> unlogged_rejections{0};
  std::atomic<std::int64_t> last_overload_log_ns{0};
};

/// Counts a request in flight for the scope of a handler.
struct InFlight {
  explicit InFlight(std::atomic<std::int64_t>& n) : n_(n) { n_.fetch_add(1, std::memory_order_relaxed); }
  ~InFlight() { n_.fetch_sub(1, std::memory_order_relaxed); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;
  std::atomic<std::int64_t>& n_;
};

// ---- per-request state ----
//
// cpp-httplib runs a request from its headers to its post-routing handler on one pool thread, so what
// the handlers know (candidates, request_id, the error) reaches the access log through
// thread-local state, set up by the pre-routing handler.
struct RequestContext {
  Clock::time_point start;
  bool started = false;
  long candidates = -1;    // scored candidates (successful /score only)
  long bytes_in = -1;      // the body received (after decompression), when it was read
  std::string request_id;  // JSON text as sent, "" when none
  std::string error;       // the message of a failed request
  void reset() {
    started = false;
    candidates = -1;
    bytes_in = -1;
    request_id.clear();
    error.clear();
  }
};
thread_local RequestContext tl_request;

/// Per pool thread scoring state, reused from request to request (no allocation in the steady
/// state beyond the request body and the response string).
struct ScoreState {
  serve::Request request;
  serve::RequestEcho echo;
  serve::Predictor::Session session;
  std::string request_body;  // decompressed, de-chunked, at most max_body
  std::string body;          // the response
};
thread_local ScoreState tl_score;

/// One loaded model version and where it came from.
struct ModelVersion {
  std::shared_ptr<const serve::Predictor> predictor;
  std::uint64_t version = 0;
  double loaded_at = 0;     // unix seconds
  double load_seconds = 0;  // how long loading and validating took
};

}  // namespace

struct RankingServer::Impl {
  ServerOptions o;
  std::shared_ptr<spdlog::logger> log, access;
  Metrics m;

  mutable std::mutex model_mu;  // guards `model` (the pointer, not the version it points to)
  std::shared_ptr<const ModelVersion> model;
  std::mutex reload_mu;  // one reload at a time

  GuardedHttpServer http;
  std::mutex life_mu;  // start / stop
  std::thread listener;
  std::atomic<bool> listening{false};
  int port = -1;

  explicit Impl(ServerOptions options);
  std::shared_ptr<const ModelVersion> current() const {
    std::lock_guard<std::mutex> l(model_mu);
    return model;
  }
  std::string source() const;
  std::shared_ptr<const ModelVersion> load(std::uint64_t version) const;
  std::shared_ptr<const ModelVersion> reload_model();
  void install_routes();
  void on_response(const httplib::Request& req, httplib::Response& res);
  void on_transport_response(const TransportResponse& r);
  std::optional<Refusal> check_score_body(const httplib::Request& req) const;
  void score(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& read_body);
  void handle_reload(httplib::Response& res);
  std::string metrics_text() const;
};

RankingServer::Impl::Impl(ServerOptions options) : o(checked(std::move(options))), http(transport_limits(o)) {
  const auto level = log_level(o.log_level);

  auto err_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  log = std::make_shared<spdlog::logger>("ranking_server", err_sink);
  log->set_pattern("ts=%Y-%m-%dT%H:%M:%S.%e%z level=%l %v");
  log->set_level(level);
  if (o.access_log == "on") {
    access = std::make_shared<spdlog::logger>("access", err_sink);
  } else if (o.access_log != "off") {
    try {
      access = std::make_shared<spdlog::logger>("access", std::make_shared<spdlog::sinks::basic_file_sink_mt>(o.access_log, false));
    } catch (const std::exception& e) {
      fail("access log: cannot open '", o.access_log, "': ", e.what());
    }
    access->flush_on(spdlog::level::trace);  // every line reaches the file at once (tail -f, log shippers)
  }
  if (access) {
    access->set_pattern("ts=%Y-%m-%dT%H:%M:%S.%e%z level=%l %v");
    access->set_level(level);
  }

  model = load(1);
  const auto& p = *model->predictor;
  log->info("event=load version=1 model={} name={} weights={} source={} load_ms={:.1f}", logfmt_value(p.metadata().value("model", "")),
            logfmt_value(p.model().config().value("name", "")), serving_weights_name(p.serving().weights), logfmt_value(source()),
            model->load_seconds * 1e3);
  m.last_reload_time.set(model->loaded_at);
  m.last_reload_success.set(1);
  install_routes();
}

std::string RankingServer::Impl::source() const {
  return o.checkpoint.empty() ? o.config + " + " + o.weights : o.checkpoint;
}

std::shared_ptr<const ModelVersion> RankingServer::Impl::load(std::uint64_t version) const {
  const auto t0 = Clock::now();
  const serve::PredictorOptions po{.weights = o.weight_format};
  auto v = std::make_shared<ModelVersion>();
  v->predictor = o.checkpoint.empty() ? serve::Predictor::from_files(o.config, o.weights, po)
                                      : serve::Predictor::from_checkpoint(o.checkpoint, po);
  // Batch scoring works without a request layout; this server scores only requests.
  if (const std::string& e = v->predictor->serving().layout_error; !e.empty()) fail(source(), ": cannot serve requests: ", e);
  v->version = version;
  v->loaded_at = unix_now();
  v->load_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return v;
}

std::shared_ptr<const ModelVersion> RankingServer::Impl::reload_model() {
  std::lock_guard<std::mutex> serial(reload_mu);
  const std::uint64_t old = current()->version;
  std::shared_ptr<const ModelVersion> next;
  try {
    next = load(old + 1);  // validated before it is installed
  } catch (const std::exception& e) {
    m.reloads_failed.inc();
    m.last_reload_time.set(unix_now());
    m.last_reload_success.set(0);
    log->error("event=reload_failed serving_version={} source={} error={}", old, logfmt_value(source()), json_quoted(e.what()));
    throw Error(std::string("reload failed, still serving version ") + std::to_string(old) + ": " + e.what());
  }
  {
    std::lock_guard<std::mutex> l(model_mu);
    model = next;
  }
  m.reloads_ok.inc();
  m.last_reload_time.set(next->loaded_at);
  m.last_reload_success.set(1);
  log->info("event=reload version={} previous_version={} source={} load_ms={:.1f}", next->version, old, logfmt_value(source()),
            next->load_seconds * 1e3);
  return next;
}

std::optional<Refusal> RankingServer::Impl::check_score_body(const httplib::Request& req) const {
  // The body must have a length or chunks (httplib would otherwise read until the connection
  // closes), one framing only (both is how requests are smuggled past proxies), and an encoding
  // httplib decodes (it passes any other through as if it were identity).
  const std::size_t te_count = req.get_header_value_count("Transfer-Encoding");
  const std::size_t cl_count = req.get_header_value_count("Content-Length");
  if (te_count > 0) {
    const std::string te = req.get_header_value("Transfer-Encoding");
    if (cl_count > 0) return Refusal{400, "request: both Transfer-Encoding and Content-Length given (send one)"};
    if (te_count > 1 || ::strcasecmp(te.c_str(), "chunked") != 0)
      return Refusal{501, "request: Transfer-Encoding '" + te + "' is not supported (only chunked)"};
  } else if (cl_count == 0) {
    return Refusal{411, "request: POST /score needs a Content-Length or a chunked body"};
  } else {
    const std::string cl = req.get_header_value("Content-Length");
    std::uint64_t n = 0;
    const auto r = std::from_chars(cl.data(), cl.data() + cl.size(), n);
    if (cl_count > 1 || cl.empty() || r.ec != std::errc() || r.ptr != cl.data() + cl.size())
      return Refusal{400, "request: invalid Content-Length '" + cl + "' (expected one decimal number of bytes)"};
    if (n > o.max_body)
      return Refusal{413, "request: body of " + cl + " bytes is over the limit of " + std::to_string(o.max_body) + " bytes (--max-body)"};
  }
  const std::string enc = req.get_header_value("Content-Encoding");
  if (req.get_header_value_count("Content-Encoding") > 1 ||
      !(enc.empty() || enc == "identity" || enc == "gzip" || enc == "deflate" || enc == "br"))
    return Refusal{415, "request: Content-Encoding '" + enc + "' is not supported (identity, gzip, deflate or br)"};
  return std::nullopt;
}

void RankingServer::Impl::score(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& read_body) {
  InFlight in_flight(m.in_flight);
  ScoreState& t = tl_score;
  RequestContext& c = tl_request;
  // The body as httplib hands it over, de-chunked and decompressed, counted as it arrives:
  // neither a chunked nor a compressed body is bounded by its Content-Length.
  t.request_body.clear();
  bool over_limit = false;
  const bool complete = read_body([&](const char* data, std::size_t n) {
    if (n > o.max_body - t.request_body.size()) {
      over_limit = true;
      return false;
    }
    t.request_body.append(data, n);
    return true;
  });
  c.bytes_in = static_cast<long>(t.request_body.size());
  auto refuse = [&](int status, const std::string& msg) {
    res.status = status;
    c.error = msg;
    res.set_content(error_json(msg), "application/json");
    log->debug("event=bad_request status={} error={}", status, json_quoted(msg));
  };
  if (!complete) {
    GuardedHttpServer::close_after_response();  // the rest of the body is unread
    if (over_limit) {
      refuse(413, "request: body over the limit of " + std::to_string(o.max_body) +
                      " bytes (--max-body; counted after decompression and de-chunking)");
    } else if (const int status = http.failure_status()) {
      refuse(status, http.failure_message());
    } else {
      const std::string enc = req.get_header_value("Content-Encoding");
      std::string msg = req.has_header("Transfer-Encoding") ? "request: chunked body incomplete or malformed"
                                                            : "request: body shorter than its Content-Length";
      if (!enc.empty() && enc != "identity") msg += ", or not valid " + enc + " data";
      refuse(400, msg);
    }
    return;
  }
  const std::string& body = t.request_body;
  if (const std::size_t at = invalid_utf8_at(body); at != std::string_view::npos) {
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02x", static_cast<unsigned char>(body[at]));
    refuse(400, "request: body is not valid UTF-8 at byte " + std::to_string(at) + " (" + byte + "); send JSON in UTF-8");
    return;
  }

  const std::shared_ptr<const ModelVersion> v = current();  // one version for the whole request
  const serve::Predictor& p = *v->predictor;
  try {
    const auto t0 = Clock::now();
    serve::parse_request(body, p.schema(), p.serving(), t.request, t.echo, serve::RequestParseOptions{.max_bytes = o.max_body});
    c.request_id = t.echo.request_id;
    const auto t1 = Clock::now();
    serve::Scores s = p.score(t.request, t.session);
    const auto t2 = Clock::now();
    t.body.clear();
    serve::write_response(s, p.schema(), t.echo, t.body);
    res.set_content(t.body, "application/json");
    c.candidates = static_cast<long>(t.request.num_candidates);
    if (log->should_log(spdlog::level::debug)) {
      using ms = std::chrono::duration<double, std::milli>;
      log->debug("event=score request_id={} version={} candidates={} parse_ms={:.3f} score_ms={:.3f} write_ms={:.3f}",
                 t.echo.request_id.empty() ? "-" : t.echo.request_id, v->version, c.candidates, ms(t1 - t0).count(),
                 ms(t2 - t1).count(), ms(Clock::now() - t2).count());
    }
  } catch (const serve::RequestError& e) {
    // The client's request: the message names the JSON path.
    c.request_id = t.echo.request_id;  // when the parser got that far
    res.status = 400;
    c.error = e.what();
    res.set_content(error_json(e.what()), "application/json");
    log->debug("event=bad_request status={} request_id={} error={}", res.status, c.request_id.empty() ? "-" : c.request_id, json_quoted(e.what()));
  } catch (const std::exception& e) {
    // The parser accepted the request, so this is the model or the server: 500, details in the log.
    c.request_id = t.echo.request_id;
    res.status = 500;
    c.error = e.what();
    res.set_content(error_json("internal error while scoring (the server log has the details)"), "application/json");
    log->error("event=internal_error path=/score request_id={} version={} error={}", c.request_id.empty() ? "-" : c.request_id,
               v->version, json_quoted(e.what()));
  }
}

void RankingServer::Impl::handle_reload(httplib::Response& res) {
  InFlight in_flight(m.in_flight);
  if (!o.allow_reload) {
    res.status = 403;
    tl_request.error = "reload is disabled";
    res.set_content(error_json("reload is disabled (start the server with --allow-reload)"), "application/json");
    return;
  }
  try {
    const auto v = reload_model();
    res.set_content(json{{"status", "reloaded"}, {"version", v->version}, {"load_seconds", v->load_seconds}}.dump(), "application/json");
  } catch (const std::exception& e) {
    // The operator asked for this reload: the body says why it failed (the model files, not the client).
    res.status = 500;
    tl_request.error = e.what();
    res.set_content(json{{"error", e.what()}, {"version", current()->version}}.dump(-1, ' ', false, json::error_handler_t::replace),
                    "application/json");
  }
}

namespace {

/// Methods for which httplib reads a body before routing (detail::expect_content).
bool body_method(const std::string& m) { return m == "POST" || m == "PUT" || m == "PATCH" || m == "DELETE" || m == "PRI"; }

bool has_body(const httplib::Request& req) {
  return req.has_header("Transfer-Encoding") || (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
}

/// The method to use on a known path, or nullptr.
const char* allowed_method(const std::string& path) {
  if (path == "/score" || path == "/reload") return "POST";
  if (path == "/health" || path == "/metadata" || path == "/metrics") return "GET";
  return nullptr;
}

/// The right path with the wrong method: 405 naming the method to use.
void wrong_method(const httplib::Request& req, httplib::Response& res, const char* allow) {
  res.status = 405;
  res.set_header("Allow", allow);
  tl_request.error = std::string("use ") + allow;
  res.set_content(error_json(req.method + " " + req.path + ": use " + allow), "application/json");
}

}  // namespace

void RankingServer::Impl::install_routes() {
  http.set_payload_max_length(o.max_body);  // Content-Length; the /score reader counts what is decoded
  http.set_tcp_nodelay(true);  // small responses: no Nagle/delayed-ACK stalls (~40 ms each)
  // cpp-httplib 0.11 sets SO_REUSEPORT on the listening socket, so a second server on a port in
  // use would bind too and the kernel would split connections between the two (say, an old and a
  // new model version). SO_REUSEADDR only: a restart can rebind past TIME_WAIT, a busy port is an error.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  http.on_transport_response = [this](const TransportResponse& r) { on_transport_response(r); };

  // A body /score refuses is refused before the client sends it (curl waits for "100 Continue"
  // before a body over 1 MiB).
  http.set_expect_100_continue_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.method != "POST" || req.path != "/score") return 100;
    const auto refusal = check_score_body(req);
    if (!refusal) return 100;
    res.status = refusal->status;
    tl_request.error = refusal->message;
    res.set_content(error_json(refusal->message), "application/json");
    GuardedHttpServer::close_after_response();
    return refusal->status;
  });

  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    tl_request.reset();
    tl_request.start = Clock::now();
    tl_request.started = true;
    if (req.method == "POST" && req.path == "/score") {
      if (const auto refusal = check_score_body(req)) {
        res.status = refusal->status;
        tl_request.error = refusal->message;
        res.set_content(error_json(refusal->message), "application/json");
        GuardedHttpServer::close_after_response();
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;  // score() reads the body, bounded
    }
    // No other request reads its body, and httplib would read it whole into memory first (its
    // payload limit bounds only Content-Length, not chunked or compressed bodies): every other
    // request is answered here or routed without reading its body, and a connection whose body
    // was left unread is closed after the answer (those bytes must not become the next request).
    if (has_body(req)) GuardedHttpServer::close_after_response();
    if (!body_method(req.method)) return httplib::Server::HandlerResponse::Unhandled;  // GET, HEAD, OPTIONS
    // `curl -X POST .../reload` sends no body: answered at once, not after a body read timeout.
    if (req.method == "POST" && req.path == "/reload") handle_reload(res);
    else if (const char* allow = allowed_method(req.path)) wrong_method(req, res, allow);
    else res.status = 404;  // the error handler writes the message
    return httplib::Server::HandlerResponse::Handled;
  });
  // Called with the final status just before the response is written: the counters and the
  // access line are done before the client can see the response (a scrape that follows a
  // response always counts it).
  http.set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) { on_response(req, res); });

  http.Post("/score", [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& read_body) {
    score(req, res, read_body);
  });

  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    InFlight in_flight(m.in_flight);
    const auto v = current();
    json tasks = json::array();
    for (const auto& t : v->predictor->schema().tasks) tasks.push_back(t.name);
    res.set_content(json{{"status", "ok"},
                         {"model", v->predictor->model().config().value("name", "")},
                         {"version", v->version},
                         {"tasks", tasks}}
                        .dump(),
                    "application/json");
  });

  http.Get("/metadata", [this](const httplib::Request&, httplib::Response& res) {
    InFlight in_flight(m.in_flight);
    const auto v = current();
    json j = v->predictor->metadata();
    j["version"] = v->version;
    if (!o.checkpoint.empty()) {
      j["checkpoint"] = std::filesystem::absolute(o.checkpoint).string();
    } else {
      j["config_file"] = std::filesystem::absolute(o.config).string();
      j["weights_file"] = std::filesystem::absolute(o.weights).string();
    }
    j["loaded_at"] = v->loaded_at;
    j["load_seconds"] = v->load_seconds;
    res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  });

  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    InFlight in_flight(m.in_flight);
    res.set_content(metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
  });

  // POST routes are answered by the pre-routing handler; GET on a POST path here.
  http.Get("/score", [](const httplib::Request& req, httplib::Response& res) { wrong_method(req, res, "POST"); });
  http.Get("/reload", [](const httplib::Request& req, httplib::Response& res) { wrong_method(req, res, "POST"); });

  http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    // A read cut off in the headers (deadline, stop, a line or head too long): httplib says 400.
    if (const int status = http.failure_status()) {
      res.status = status;
      tl_request.error = http.failure_message();
      res.set_content(error_json(tl_request.error), "application/json");
      return;
    }
    std::string msg;
    if (res.status == 413) {
      msg = "request: body over the limit of " + std::to_string(o.max_body) + " bytes (--max-body)";
    } else if (res.status == 404) {
      msg = "no endpoint " + req.method + " " + req.path +
            " (POST /score, GET /health, GET /metadata, GET /metrics, POST /reload)";
    } else if (res.status == 414) {
      msg = "request: request line over 8192 bytes";
    } else if (res.status >= 500) {
      msg = "internal error";
    } else {
      msg = "bad request";
    }
    // httplib's own 400s (a malformed request line or header): where this request ends is unclear.
    if (res.status == 400) GuardedHttpServer::close_after_response();
    tl_request.error = msg;
    res.set_content(error_json(msg), "application/json");
  });
  // An exception out of a handler: 500 with a fixed message; the text goes to the log only
  // (cpp-httplib would otherwise put it in an EXCEPTION_WHAT response header).
  http.set_exception_handler([this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    res.status = 500;
    tl_request.error = what;
    res.set_content(error_json("internal error (the server log has the details)"), "application/json");
    log->error("event=internal_error method={} path={} error={}", req.method, logfmt_value(req.path), json_quoted(what));
  });
}

void RankingServer::Impl::on_transport_response(const TransportResponse& r) {
  // A response written before any request was parsed: counted under endpoint "other".
  m.requests[kOther][std::clamp(r.status / 100, 1, 5) - 1].inc();
  if (const ErrorClass e = error_class(r.status); e != kNumErrorClasses) m.errors[e].inc();
  if (std::strcmp(r.reason, "queue_full") == 0) {
    // Possibly thousands a second, on the accepting thread: one log line a second at most.
    m.unlogged_rejections.fetch_add(1, std::memory_order_relaxed);
    const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
    std::int64_t last = m.last_overload_log_ns.load(std::memory_order_relaxed);
    if (now - last >= std::int64_t(1000000000) && m.last_overload_log_ns.compare_exchange_strong(last, now, std::memory_order_relaxed))
      log->warn("event=overload rejected={} max_queue={} threads={}", m.unlogged_rejections.exchange(0, std::memory_order_relaxed),
                o.max_queue, o.threads);
    return;
  }
  if (access) {
    const auto level = r.status >= 500 ? spdlog::level::err : spdlog::level::warn;
    if (access->should_log(level))
      access->log(level, "event=request method=- path=- status={} latency_ms=- candidates=- request_id=- remote={} bytes_in=- bytes_out=- error={}",
                  r.status, logfmt_value(r.remote.empty() ? "-" : r.remote), json_quoted(r.message));
  }
}

void RankingServer::Impl::on_response(const httplib::Request& req, httplib::Response& res) {
  http.set_connection_header(res);
  RequestContext& c = tl_request;
  const double seconds = c.started ? std::chrono::duration<double>(Clock::now() - c.start).count() : -1.0;
  const Endpoint e = endpoint_of(req.path);
  const int cls = std::clamp(res.status / 100, 1, 5);
  m.requests[e][cls - 1].inc();
  if (const ErrorClass k = error_class(res.status); k != kNumErrorClasses) m.errors[k].inc();
  if (e == kScore && req.method == "POST" && seconds >= 0) m.latency.observe(seconds);
  if (e == kScore && c.candidates >= 0) m.candidates.observe(static_cast<double>(c.candidates));

  if (access) {
    const auto level = res.status >= 500 ? spdlog::level::err : res.status >= 400 ? spdlog::level::warn : spdlog::level::info;
    if (access->should_log(level)) {
      std::string line = fmt::format("event=request method={} path={} status={} latency_ms=", logfmt_value(req.method),
                                     logfmt_value(req.path), res.status);
      line += seconds >= 0 ? fmt::format("{:.3f}", seconds * 1e3) : std::string("-");
      line += " candidates=";
      line += c.candidates >= 0 ? std::to_string(c.candidates) : std::string("-");
      line += " request_id=";
      line += c.request_id.empty() ? std::string("-") : c.request_id;  // JSON text: 17 or "abc"
      line += fmt::format(" remote={} bytes_in={} bytes_out={}", logfmt_value(req.remote_addr),
                          c.bytes_in >= 0 ? static_cast<std::size_t>(c.bytes_in) : req.body.size(), res.body.size());
      if (!c.error.empty()) line += " error=" + json_quoted(c.error);
      access->log(level, "{}", line);
    }
  }
  c.reset();
}

std::string RankingServer::Impl::metrics_text() const {
  std::string out;
  out.reserve(8192);
  write_header(out, "mtrank_http_requests_total", "HTTP requests answered, by endpoint and status class.", "counter");
  for (int e = 0; e < kNumEndpoints; ++e)
    for (int cls = 1; cls <= 5; ++cls) {
      const std::uint64_t n = m.requests[e][cls - 1].value();
      if (n == 0 && (cls == 1 || cls == 3)) continue;  // 1xx and 3xx only when they happened
      write_sample(out, "mtrank_http_requests_total",
                   std::string("endpoint=\"") + kEndpointNames[e] + "\",code=\"" + std::to_string(cls) + "xx\"", static_cast<double>(n));
    }
  write_header(out, "mtrank_http_errors_total",
               "Failed requests by class: bad_request (400), too_large (413), timeout (408), overloaded (503), internal (other 5xx).",
               "counter");
  for (int k = 0; k < kNumErrorClasses; ++k)
    write_sample(out, "mtrank_http_errors_total", std::string("class=\"") + kErrorClassNames[k] + "\"",
                 static_cast<double>(m.errors[k].value()));
  write_header(out, "mtrank_http_requests_in_flight", "Requests being handled now.", "gauge");
  write_sample(out, "mtrank_http_requests_in_flight", "", static_cast<double>(m.in_flight.load(std::memory_order_relaxed)));
  write_header(out, "mtrank_http_connection_queue_depth", "Connections waiting for a worker (new, or idle ones with a request).", "gauge");
  write_sample(out, "mtrank_http_connection_queue_depth", "", static_cast<double>(http.queue_depth()));
  write_header(out, "mtrank_http_idle_connections", "Idle keep-alive connections held without a worker.", "gauge");
  write_sample(out, "mtrank_http_idle_connections", "", static_cast<double>(http.idle_connections()));
  write_histogram(out, "mtrank_score_latency_seconds",
                  "POST /score latency in seconds, from the request headers read to the response ready (errors included).",
                  m.latency);
  write_histogram(out, "mtrank_score_candidates", "Candidates per scored POST /score request.", m.candidates);

  const auto v = current();
  write_header(out, "mtrank_model_version", "The model version being served (1 at start, +1 per successful reload).", "gauge");
  write_sample(out, "mtrank_model_version", "", static_cast<double>(v->version));
  write_header(out, "mtrank_model_loaded_timestamp_seconds", "When the served version was loaded (unix seconds).", "gauge");
  write_sample(out, "mtrank_model_loaded_timestamp_seconds", "", v->loaded_at);
  write_header(out, "mtrank_model_last_reload_timestamp_seconds",
               "When the last load or reload attempt finished (unix seconds; the start-up load counts).", "gauge");
  write_sample(out, "mtrank_model_last_reload_timestamp_seconds", "", m.last_reload_time.value());
  write_header(out, "mtrank_model_last_reload_success", "1 when the last load or reload attempt succeeded, 0 when it failed.", "gauge");
  write_sample(out, "mtrank_model_last_reload_success", "", m.last_reload_success.value());
  write_header(out, "mtrank_model_reloads_total", "POST /reload attempts by result.", "counter");
  write_sample(out, "mtrank_model_reloads_total", "result=\"success\"", static_cast<double>(m.reloads_ok.value()));
  write_sample(out, "mtrank_model_reloads_total", "result=\"failure\"", static_cast<double>(m.reloads_failed.value()));
  write_header(out, "mtrank_server_start_time_seconds", "When the server started (unix seconds).", "gauge");
  write_sample(out, "mtrank_server_start_time_seconds", "", m.start_time);
  return out;
}

// ---- RankingServer ----

RankingServer::RankingServer(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

RankingServer::~RankingServer() { stop(); }

int RankingServer::start() {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> l(s.life_mu);
  if (s.listener.joinable()) fail("ranking server: already started");
  int port = s.o.port;
  if (port == 0) {
    port = s.http.bind_to_any_port(s.o.host);
    if (port < 0) fail("cannot bind ", s.o.host, " (any port)");
  } else if (!s.http.bind_to_port(s.o.host, port)) {
    fail("cannot bind ", s.o.host, ":", port, " (in use, or not an address of this machine)");
  }
  if (!s.http.apply_backlog()) fail("cannot listen on ", s.o.host, ":", port, " with a backlog of ", s.o.backlog);
  s.http.reset_stop();
  s.port = port;
  s.listening = true;
  s.listener = std::thread([&s] {
    s.http.listen_after_bind();
    s.listening = false;
  });
  // httplib's stop() is a no-op until the listener is running: wait for it (bounded).
  for (int i = 0; i < 5000 && !s.http.is_running() && s.listening; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!s.http.is_running()) {
    s.http.stop_within(std::chrono::milliseconds(0));
    s.listener.join();
    fail("cannot listen on ", s.o.host, ":", port);
  }
  s.log->info(
      "event=start address=http://{}:{} threads={} max_body={} request_timeout={} keep_alive_timeout={} backlog={} max_queue={} "
      "shutdown_timeout={} allow_reload={} access_log={} version={}",
      s.o.host, port, s.o.threads, s.o.max_body, seconds_text(s.o.request_timeout), seconds_text(s.o.keep_alive_timeout), s.o.backlog,
      s.o.max_queue, seconds_text(s.o.shutdown_timeout), s.o.allow_reload, logfmt_value(s.o.access_log), s.current()->version);
  return port;
}

void RankingServer::stop() {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> l(s.life_mu);
  if (!s.listener.joinable()) return;
  s.log->info("event=stopping port={} shutdown_timeout={}", s.port, seconds_text(s.o.shutdown_timeout));
  s.http.stop_within(to_ms(s.o.shutdown_timeout));  // stops accepting; requests in flight finish until the deadline
  s.listener.join();
  s.log->info("event=stop port={}", s.port);
  s.log->flush();
  if (s.access) s.access->flush();
}

bool RankingServer::running() const { return impl_->listening && impl_->http.is_running(); }
int RankingServer::port() const { return impl_->port; }
std::uint64_t RankingServer::version() const { return impl_->current()->version; }
std::uint64_t RankingServer::reload() { return impl_->reload_model()->version; }
std::string RankingServer::metrics_text() const { return impl_->metrics_text(); }

}  // namespace mtrank::server
