// A ranking server on cpp-httplib around serve::Predictor (docs/serving.md).
//
//   ranking_server --checkpoint model.safetensors [--host 127.0.0.1] [--port 8080] [--threads 4]
//                  [--max-body 1048576] [--allow-reload]
//
//   POST /score   request JSON (serve/request.hpp) -> per-task scores + fused score per candidate
//   GET  /health  {"status": "ok", "model": ..., "version": N, "tasks": [...]}
//   POST /reload  (with --allow-reload) reloads the checkpoint file and swaps it in atomically;
//                 requests in flight finish on the version they started with.
// Client errors are 4xx with {"error": "<message naming the JSON path>"}; the server keeps serving.
#include <httplib.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "mtrank/core/threading.hpp"
#include "mtrank/kernels/packed_linear.hpp"
#include "mtrank/serve/predictor.hpp"
#include "mtrank/serve/request.hpp"

using namespace mtrank;
using nlohmann::json;

namespace {

int usage(int rc) {
  std::fprintf(rc ? stderr : stdout,
               "usage: ranking_server --checkpoint FILE | --config FILE --weights FILE\n"
               "                      [--host 127.0.0.1] [--port 8080] [--threads 4] [--max-body BYTES] [--allow-reload]\n"
               "                      [--weight-format f32|bf16|int8]  (serving weights: packed f32, bf16 for small\n"
               "                      batches, or int8 weight-only quantisation)\n");
  return rc;
}

std::string error_json(const std::string& msg) { return json{{"error", msg}}.dump(); }

}  // namespace

int main(int argc, char** argv) {
  mtrank::use_passive_openmp_wait(argc, argv);  // idle OpenMP threads sleep (core/threading.hpp)
  std::string checkpoint, config, weights, weight_format = "f32", host = "127.0.0.1";
  int port = 8080, threads = 4;
  std::size_t max_body = 1 << 20;
  bool allow_reload = false;
  try {
    for (int i = 1; i < argc; ++i) {
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(std::string(argv[i]) + " needs a value");
        return argv[++i];
      };
      const std::string a = argv[i];
      if (a == "--checkpoint") checkpoint = next();
      else if (a == "--config") config = next();
      else if (a == "--weights") weights = next();
      else if (a == "--weight-format") weight_format = next();
      else if (a == "--host") host = next();
      else if (a == "--port") port = std::stoi(next());
      else if (a == "--threads") threads = std::stoi(next());
      else if (a == "--max-body") max_body = std::stoull(next());
      else if (a == "--allow-reload") allow_reload = true;
      else if (a == "--help" || a == "-h") return usage(0);
      else throw std::invalid_argument("unknown option " + a);
    }
    if (checkpoint.empty() == (config.empty() || weights.empty())) throw std::invalid_argument("give --checkpoint or --config + --weights");
    if (threads < 1 || port < 0 || port > 65535) throw std::invalid_argument("bad --threads or --port");
    parse_serving_weights(weight_format);  // packed f32 / bf16 / int8 serving weights: the model's plan, see load()
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ranking_server: %s\n", e.what());
    return usage(2);
  }

  auto load = [&] {
    const serve::PredictorOptions options{.weights = parse_serving_weights(weight_format)};  // overrides the config's
    return checkpoint.empty() ? serve::Predictor::from_files(config, weights, options)
                              : serve::Predictor::from_checkpoint(checkpoint, options);
  };
  serve::ModelHandle handle;
  std::atomic<long> version{1};
  try {
    handle.store(load());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ranking_server: error: %s\n", e.what());
    return 1;
  }
  set_num_threads(1);  // one intra-op thread per request; requests run in parallel on the pool

  // SIGINT/SIGTERM stop the server cleanly: blocked here, waited for by one thread.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  httplib::Server svr;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
  svr.set_payload_max_length(max_body);
  svr.set_tcp_nodelay(true);  // small responses: no Nagle/delayed-ACK stalls (~40 ms each)
  const serve::RequestParseOptions parse_options{.max_bytes = max_body};

  svr.Post("/score", [&](const httplib::Request& req, httplib::Response& res) {
    thread_local serve::Request request;
    thread_local serve::Predictor::Session session;
    thread_local serve::RequestEcho echo;
    thread_local std::string body;
    std::shared_ptr<const serve::Predictor> p = handle.load();  // one version for the whole request
    try {
      serve::parse_request(req.body, p->schema(), p->serving(), request, echo, parse_options);
      serve::Scores s = p->score(request, session);
      body.clear();
      serve::write_response(s, p->schema(), echo, body);
      res.set_content(body, "application/json");
    } catch (const serve::RequestError& e) {
      res.status = req.body.size() > max_body ? 413 : 400;
      res.set_content(error_json(e.what()), "application/json");
    } catch (const Error& e) {  // input rejected by the model (e.g. a value the parser let through)
      res.status = 400;
      res.set_content(error_json(e.what()), "application/json");
    } catch (const std::exception& e) {
      res.status = 500;
      res.set_content(error_json(std::string("internal error: ") + e.what()), "application/json");
    }
  });
  svr.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    auto p = handle.load();
    json tasks = json::array();
    for (auto& t : p->schema().tasks) tasks.push_back(t.name);
    res.set_content(json{{"status", "ok"}, {"model", p->model().config().value("name", "")}, {"version", version.load()}, {"tasks", tasks}}.dump(),
                    "application/json");
  });
  svr.Post("/reload", [&](const httplib::Request&, httplib::Response& res) {
    if (!allow_reload) {
      res.status = 403;
      res.set_content(error_json("reload is disabled (start the server with --allow-reload)"), "application/json");
      return;
    }
    try {
      handle.store(load());  // validated before it is installed; a bad file leaves the old version serving
      res.set_content(json{{"status", "reloaded"}, {"version", ++version}}.dump(), "application/json");
    } catch (const std::exception& e) {
      res.status = 500;
      res.set_content(error_json(std::string("reload failed, still serving the previous version: ") + e.what()), "application/json");
    }
  });
  svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) {
      const char* msg = res.status == 413 ? "request body too large" : res.status == 404 ? "not found" : "bad request";
      res.set_content(error_json(msg), "application/json");
    }
  });

  std::thread stopper([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    svr.stop();
  });
  if (port == 0) {
    port = svr.bind_to_any_port(host);
    if (port < 0) {
      std::fprintf(stderr, "ranking_server: error: cannot bind %s\n", host.c_str());
      return 1;
    }
  } else if (!svr.bind_to_port(host, port)) {
    std::fprintf(stderr, "ranking_server: error: cannot bind %s:%d\n", host.c_str(), port);
    return 1;
  }
  std::fprintf(stderr, "ranking_server: listening on http://%s:%d (%d threads)\n", host.c_str(), port, threads);
  std::fflush(stderr);
  svr.listen_after_bind();
  pthread_kill(stopper.native_handle(), SIGTERM);  // stopped another way: release the waiter
  stopper.join();
  std::fprintf(stderr, "ranking_server: stopped\n");
  return 0;
}
