// The ranking server's HTTP transport: cpp-httplib's Server with the limits its 0.11 keep-alive
// loop lacks (docs/serving.md, "Limits and overload").
//
// cpp-httplib 0.11 reads a request with a timeout per read call (a client sending one byte every
// few seconds holds a worker for ever), listens with a backlog of 5, queues accepted connections
// without bound, keeps a worker blocked on every idle keep-alive connection, and its stop() waits
// for every connection without a deadline. GuardedHttpServer replaces the per-connection part
// (httplib::Server::process_and_close_socket, a private virtual) and the task queue; request
// parsing, routing and response writing stay httplib's (Server::process_request):
//
//   - every request must arrive in full (request line, headers, body) within request_timeout from
//     its start (when the connection was queued with data to read, so queueing counts), and its response must be written within request_timeout too; a request cut
//     off is answered 408 and its connection closed;
//   - the request line and each header line are capped at 16 KiB and the head at 64 KiB (httplib
//     grows a line without bound until it sees '\n'): 414 / 431 and the connection closed;
//   - the listening socket gets `backlog` (listen(2) again after bind: Linux updates it), and
//     accepted connections wait for a worker in a queue of at most `max_queue`; past that the
//     accepting thread answers 503 with Retry-After and closes the connection at once;
//   - while connections wait for a worker, a worker does not stay with one keep-alive connection:
//     after a response the connection goes to the back of the queue, and one that has been idle
//     for 20 ms (or has no request when its turn comes) is parked with an epoll thread (no worker)
//     until its next request arrives, then queued again; idle connections are closed at
//     keep_alive_timeout;
//   - stop_within(t) stops accepting, lets requests in flight finish for t, then cuts their reads
//     off (503); idle keep-alive connections are closed at once.
//
// Handlers (on the worker thread that serves the request) call failure_status() / failure_message()
// to learn why a read failed and close_after_response() when they leave a body unread; the
// post-routing handler calls set_connection_header(res).
#pragma once
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace mtrank::server {

struct HttpConnection;  // http_transport.cpp

struct TransportLimits {
  int threads = 4;                // workers: each serves one connection at a time
  std::size_t max_queue = 1024;   // accepted connections waiting for a worker; more get 503
  int backlog = 1024;             // listen(2) backlog (the kernel caps it at net.core.somaxconn)
  std::chrono::milliseconds request_timeout{10000};    // whole request from its first byte; and its response
  std::chrono::milliseconds keep_alive_timeout{5000};  // idle wait for a connection's next (or first) request
};

/// Why reading the current request failed.
enum class ReadFailure {
  none,
  deadline,        // not received in full within request_timeout (408)
  stopping,        // the server's stop deadline passed (503)
  line_too_long,   // a request, header or chunk-size line over 16 KiB (414 / 431)
  head_too_large,  // request line and headers over 64 KiB (431)
};

/// A response the transport wrote itself, before any request was parsed (no route, no handler).
struct TransportResponse {
  int status;           // 408, 414, 431 or 503
  const char* reason;   // "deadline", "line_too_long", "head_too_large", "stopping", "queue_full"
  std::string message;  // the body's "error"
  std::string remote;   // peer address ("" when unknown)
};

class GuardedHttpServer : public httplib::Server {
 public:
  explicit GuardedHttpServer(TransportLimits limits);
  ~GuardedHttpServer() override;
  GuardedHttpServer(const GuardedHttpServer&) = delete;
  GuardedHttpServer& operator=(const GuardedHttpServer&) = delete;

  const TransportLimits& limits() const { return limits_; }

  /// After bind_to_port / bind_to_any_port: sets the listen backlog to limits().backlog.
  /// Returns false when listen(2) fails.
  bool apply_backlog();
  /// Clears a previous stop (before listen_after_bind).
  void reset_stop();
  /// Stops accepting; requests in flight may finish within `timeout` from now, then their reads
  /// fail; idle connections close at once; connections still queued are served one request
  /// each until the deadline (503 after it). The listener thread returns once the workers end.
  void stop_within(std::chrono::milliseconds timeout);
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

  /// Accepted connections waiting for a worker now (new ones and idle ones with a request).
  std::int64_t queue_depth() const { return queue_depth_.load(std::memory_order_relaxed); }
  /// Idle keep-alive connections parked without a worker now.
  std::int64_t idle_connections() const { return idle_connections_.load(std::memory_order_relaxed); }

  // ---- for handlers, on the worker thread serving the request ----

  /// The connection closes after this response (a body left unread must never be parsed as the
  /// next request).
  static void close_after_response();
  /// "Connection: close" (instead of httplib's Keep-Alive header) when the connection will close
  /// after this response: asked for, stopping, or other connections waiting for a worker.
  void set_connection_header(httplib::Response& res) const;
  /// The status and message for this request's read failure (0 and "" when none): 408, 503
  /// (stopping), 414 (request line), 431 (header line, head), 400 (chunk-size line).
  int failure_status() const;
  std::string failure_message() const;

  /// Called for every response the transport writes itself (from the accepting thread for
  /// queue_full, from a worker otherwise); set before listening, not changed after.
  std::function<void(const TransportResponse&)> on_transport_response;

 private:
  bool process_and_close_socket(socket_t sock) override;
  /// Serves requests on `c` until it closes, or parks it while other connections wait.
  void serve(const std::shared_ptr<HttpConnection>& c);
  void reject(socket_t sock, bool stopping);

  struct Stop {
    std::atomic<std::int64_t> deadline_ns{0};  // steady_clock, valid once `stopping_`
    int event_fd = -1;                         // readable once stopping: wakes waiting workers
  };
  friend class GuardedStream;

  TransportLimits limits_;
  std::atomic<bool> stopping_{false};
  Stop stop_;
  std::atomic<std::int64_t> queue_depth_{0};
  std::atomic<std::int64_t> idle_connections_{0};
  std::atomic<httplib::TaskQueue*> queue_{nullptr};  // the listener's (a BoundedTaskQueue), for parking
};

}  // namespace mtrank::server
