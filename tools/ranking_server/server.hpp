// The ranking server (docs/serving.md, "The ranking server"): cpp-httplib around serve::Predictor,
// as a class so that tests start it in-process on a free port.
//
//   server::ServerOptions o{.checkpoint = "model.safetensors", .port = 0};
//   server::RankingServer s(o);     // loads and validates the model (throws mtrank::Error)
//   int port = s.start();            // binds and serves on a pool of o.threads threads
//   ...                              // POST /score, GET /health, /metadata, /metrics, POST /reload
//   s.stop();                        // stops accepting, finishes the requests in flight (bounded)
//
// Endpoints:
//   POST /score     request JSON (serve/request.hpp) -> per-task and fused scores per candidate
//   GET  /health    {"status": "ok", "model": ..., "version": n, "tasks": [...]}
//   GET  /metadata  Predictor::metadata() + version, model files, load time
//   GET  /metrics   Prometheus text format (metrics.hpp)
//   POST /reload    (allow_reload) loads the model files again and swaps them in; requests in
//                   flight finish on the version they started with; a model that fails to load
//                   or to validate (e.g. its request layout cannot be derived) leaves the
//                   previous version serving.
// Client errors are 400 (413: body over max_body, counted after decompression; 408: not received in
// full within request_timeout; 411/415/501: body framing or encoding refused before it is read)
// with {"error": "<message naming the JSON path or the limit>"}; 503 with Retry-After when
// max_queue connections already wait for a worker or the server is stopping;
// a problem of the model or the server is 500 {"error": "internal error ..."} (the exception
// text goes to the log only, never to a header or the body).
//
// Logs (spdlog, kept out of this header and out of the library): one structured line per event,
// key=value ("logfmt"): startup, reload and shutdown at info, failed requests at warn (4xx) and
// error (5xx), and the access log: one line per request (method, path, status, latency,
// candidates, request_id) at info (warn for 4xx, error for 5xx).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "mtrank/core/context.hpp"

namespace mtrank::server {

struct ServerOptions {
  /// The model: a checkpoint, or a config JSON with a safetensors weights file. /reload reads
  /// the same paths again.
  std::string checkpoint;
  std::string config, weights;
  /// Overrides the serving section's "weights" (the packed-weight format) when set.
  std::optional<ServingWeights> weight_format;

  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (start() returns it)
  int threads = 4;  // HTTP worker threads; each request is scored on its worker
  std::size_t max_body = 1 << 20;  // bytes, after de-chunking and decompression; larger bodies are 413
  bool allow_reload = false;

  // Limits (docs/serving.md, "Limits and overload"). Times in seconds.
  /// A request (request line, headers, body) must arrive in full within this from its start (the
  /// connection queued for a worker with data to read),
  /// and its response be written within it: 408 and the connection closed otherwise.
  double request_timeout = 10;
  /// How long an idle connection is kept open for its next (or first) request.
  double keep_alive_timeout = 5;
  /// listen(2) backlog: connections the kernel queues before they are accepted (capped by
  /// net.core.somaxconn).
  int backlog = 1024;
  /// Accepted connections waiting for a worker; one more is answered 503 (Retry-After: 1) at once.
  std::size_t max_queue = 1024;
  /// stop() lets requests in flight finish for this long, then cuts their reads off (503).
  double shutdown_timeout = 10;

  std::string log_level = "info";  // off | error | warn | info | debug (both logs)
  /// "on": access lines on stderr with the server log; "off"; anything else: a file, appended to.
  std::string access_log = "on";
};

class RankingServer {
 public:
  /// Checks the options, opens the logs and loads the model; throws mtrank::Error naming the
  /// problem (a file that cannot be read, a model that fails validation, a model whose request
  /// layout cannot be derived).
  explicit RankingServer(ServerOptions options);
  ~RankingServer();  // stop()
  RankingServer(const RankingServer&) = delete;
  RankingServer& operator=(const RankingServer&) = delete;

  /// Binds host:port and serves on background threads. Returns the bound port (the chosen one
  /// when options.port is 0). Throws mtrank::Error when the address cannot be bound.
  int start();
  /// Stops accepting connections, lets the requests in flight finish within
  /// options.shutdown_timeout (then cuts their reads off: 503), closes idle connections at once
  /// and joins the threads. Idempotent; also called by the destructor.
  void stop();
  /// True between start() and stop() while the listener is alive (false if it failed).
  bool running() const;
  /// The bound port (after start()).
  int port() const;

  /// The version being served: 1 after the first load, +1 per successful reload.
  std::uint64_t version() const;
  /// What POST /reload does: loads the model files again and installs them. Returns the new
  /// version; throws mtrank::Error (the previous version keeps serving) when loading fails.
  std::uint64_t reload();
  /// The GET /metrics text.
  std::string metrics_text() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mtrank::server
