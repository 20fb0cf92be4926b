// ranking_server: the HTTP ranking server around serve::Predictor (docs/serving.md).
//
//   ranking_server --checkpoint model.safetensors [--host 127.0.0.1] [--port 8080] [--threads 4]
//                  [--max-body 1048576] [--allow-reload] [--weight-format f32|bf16|int8]
//                  [--log-level info] [--access-log on|off|FILE]
//                  [--request-timeout 10] [--keep-alive-timeout 5] [--backlog 1024]
//                  [--max-queue 1024] [--shutdown-timeout 10]
//
// Prints the address it listens on (http://host:port) as one line on stdout once it accepts
// connections; logs go to stderr. SIGINT/SIGTERM stop it: it stops accepting, lets the requests
// in flight finish within --shutdown-timeout (then cuts them off) and exits 0. Exit codes: 0
// stopped by a signal (or --help), 1 runtime error (the model cannot be loaded or served, the
// address cannot be bound), 2 usage error.
#include <CLI/CLI.hpp>

#include <charconv>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <string>

#include "mtrank/core/threading.hpp"
#include "server.hpp"

using namespace mtrank;

namespace {

/// An integer option checked on its text: a clear message instead of CLI11's conversion error
/// ("--port: expected an integer in 0..65535, got 'abc'").
CLI::Validator integer_in(long long lo, long long hi, const std::string& what) {
  return CLI::Validator(
      [lo, hi, what](std::string& s) -> std::string {
        long long v = 0;
        const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
        if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v < lo || v > hi) return "expected " + what + ", got '" + s + "'";
        return {};
      },
      "");
}

/// Seconds, checked on the text ("--request-timeout: expected seconds in 0.001..3600, got '0'").
CLI::Validator seconds_in(double lo, double hi) {
  auto text = [](double v) {
    char buf[32];
    return std::string(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  };
  return CLI::Validator(
      [lo, hi, range = text(lo) + ".." + text(hi)](std::string& s) -> std::string {
        double v = 0;
        const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
        if (r.ec != std::errc() || r.ptr != s.data() + s.size() || !(v >= lo && v <= hi)) return "expected seconds in " + range + ", got '" + s + "'";
        return {};
      },
      "");
}

}  // namespace

int main(int argc, char** argv) {
  mtrank::use_passive_openmp_wait(argc, argv);  // idle OpenMP threads sleep (core/threading.hpp)
  server::ServerOptions o;
  std::string weight_format;

  CLI::App app{"ranking_server: scores ranking requests over HTTP with an mtrank model (docs/serving.md)"};
  app.set_version_flag("--version", "ranking_server (mtrank 0.1.0)");
  app.get_formatter()->column_width(30);
  auto* checkpoint = app.add_option("-m,--checkpoint", o.checkpoint, "model checkpoint (safetensors with its config)")
                         ->check(CLI::ExistingFile);
  auto* config = app.add_option("--config", o.config, "model config JSON (with --weights)")->check(CLI::ExistingFile);
  auto* weights = app.add_option("--weights", o.weights, "safetensors weights (with --config)")->check(CLI::ExistingFile);
  checkpoint->excludes(config)->excludes(weights);
  config->needs(weights);
  weights->needs(config);
  app.add_option("--host", o.host, "address to listen on (0.0.0.0: every interface)")->capture_default_str();
  app.add_option("--port", o.port, "TCP port, 0..65535 (0: any free port)")
      ->check(integer_in(0, 65535, "an integer in 0..65535"))
      ->capture_default_str();
  app.add_option("--threads", o.threads, "HTTP worker threads; each request is scored on one")
      ->check(integer_in(1, 4096, "an integer in 1..4096"))
      ->capture_default_str();
  app.add_option("--max-body", o.max_body, "largest request body in bytes; larger ones get 413")
      ->check(integer_in(1, 1LL << 40, "a positive number of bytes"))
      ->capture_default_str();
  app.add_flag("--allow-reload", o.allow_reload, "enable POST /reload (reads the model files again and swaps them in)");
  app.add_option("--weight-format", weight_format, "serving weights f32 | bf16 | int8 (default: the model's serving.weights)")
      ->check(CLI::IsMember({"f32", "bf16", "int8"}));
  app.add_option("--log-level", o.log_level, "off | error | warn | info | debug")
      ->check(CLI::IsMember({"off", "error", "warn", "info", "debug"}))
      ->capture_default_str();
  app.add_option("--access-log", o.access_log, "one line per request: on (stderr) | off | FILE (appended)")->capture_default_str();
  app.add_option("--request-timeout", o.request_timeout,
                 "seconds for a whole request (line, headers, body) from its start (queueing counts), and for its response; 408 after")
      ->check(seconds_in(0.001, 3600))
      ->capture_default_str();
  app.add_option("--keep-alive-timeout", o.keep_alive_timeout, "seconds an idle connection is kept for its next request")
      ->check(seconds_in(0, 3600))
      ->capture_default_str();
  app.add_option("--backlog", o.backlog, "listen backlog: connections the kernel holds before accept (capped by net.core.somaxconn)")
      ->check(integer_in(1, 65535, "an integer in 1..65535"))
      ->capture_default_str();
  app.add_option("--max-queue", o.max_queue, "accepted connections waiting for a worker; one more gets 503 with Retry-After")
      ->check(integer_in(0, 1000000, "an integer in 0..1000000"))
      ->capture_default_str();
  app.add_option("--shutdown-timeout", o.shutdown_timeout, "seconds SIGINT/SIGTERM lets requests in flight finish before cutting them off")
      ->check(seconds_in(0, 3600))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
    if (o.checkpoint.empty() && o.config.empty())
      throw CLI::ValidationError("give --checkpoint FILE, or --config FILE with --weights FILE");
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::cerr << "ranking_server: error: " << e.what() << "\nRun 'ranking_server --help' for the options.\n";
    return 2;
  }

  // SIGINT/SIGTERM are blocked in every thread (the mask is inherited) and taken by sigtimedwait below.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not end the process

  set_num_threads(1);  // one intra-op thread per request; requests run in parallel on the pool
  try {
    if (!weight_format.empty()) o.weight_format = parse_serving_weights(weight_format);
    server::RankingServer s(o);
    const int port = s.start();
    std::printf("http://%s:%d\n", o.host.c_str(), port);
    std::fflush(stdout);
    int rc = 0;
    for (;;) {
      const timespec tick{0, 200 * 1000 * 1000};
      if (sigtimedwait(&sigs, nullptr, &tick) > 0) break;
      if (!s.running()) {  // the listener ended without being asked to
        std::fprintf(stderr, "ranking_server: error: the listener on port %d stopped\n", port);
        rc = 1;
        break;
      }
    }
    s.stop();
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ranking_server: error: %s\n", e.what());
    return 1;
  }
}
