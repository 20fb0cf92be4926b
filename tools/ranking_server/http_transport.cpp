#include "http_transport.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace mtrank::server {

namespace {

using Clock = std::chrono::steady_clock;

// httplib reads the request line, header lines and chunk-size lines one byte at a time into a
// buffer that grows until '\n' (its own limits apply only to complete lines).
constexpr std::size_t kMaxLine = 16 * 1024;
constexpr std::size_t kMaxHead = 64 * 1024;
// After a response that left input unread (a refused body), the input is drained for this long
// before closing: closing with unread input sends a reset, which can destroy the response before
// the client reads it.
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr std::size_t kLingerBytes = 4 << 20;
// How often a worker waiting on an idle keep-alive connection checks for queued connections.
constexpr auto kIdleCheck = std::chrono::milliseconds(20);

/// Set while a thread runs a job itself because the queue is full (the accepting thread for a new
/// connection, the idle poller for a returning one): the job then answers 503 without blocking.
thread_local bool tl_rejected = false;

/// Milliseconds for poll(2), rounded up (a deadline 0.3 ms away must not spin).
int poll_ms(Clock::duration d) {
  if (d <= Clock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

Clock::time_point from_ns(std::int64_t ns) { return Clock::time_point(std::chrono::nanoseconds(ns)); }

std::string seconds_text(std::chrono::milliseconds d) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, static_cast<double>(d.count()) / 1000.0);
  return std::string(buf, r.ptr) + " s";
}

const char* reason_phrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

/// A complete response with a JSON error body, for the transport's own answers.
std::string fixed_response(int status, const std::string& message) {
  std::string body = "{\"error\":\"";
  for (char c : message) {
    if (c == '"' || c == '\\') body += '\\';
    body += c;
  }
  body += "\"}";
  std::string r = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
  r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n";
  if (status == 503) r += "Retry-After: 1\r\n";
  r += "\r\n";
  return r + body;
}

void socket_address(socket_t sock, bool local, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  const int rc = local ? ::getsockname(sock, reinterpret_cast<sockaddr*>(&a), &len)
                       : ::getpeername(sock, reinterpret_cast<sockaddr*>(&a), &len);
  if (rc != 0) return;
  char host[NI_MAXHOST];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&a), len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) == 0) ip = host;
  if (a.ss_family == AF_INET) port = ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
  else if (a.ss_family == AF_INET6) port = ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
}

std::string remote_of(socket_t sock) {
  std::string ip;
  int port = -1;
  socket_address(sock, false, ip, port);
  return ip;
}

}  // namespace

// ---- one connection's stream ----

/// httplib::Stream over a socket for one connection (all its requests): reads are buffered and
/// every wait is bounded by the request deadline and the stop deadline; lines and the head are
/// capped. httplib's SocketStream is made per request, which also drops pipelined bytes it buffered.
class GuardedStream final : public httplib::Stream {
 public:
  enum class Phase { request_line, headers, body };
  enum class Next { request, closed, idle_timeout, yield, stopping };

  GuardedStream(socket_t sock, const GuardedHttpServer& server) : sock_(sock), server_(server) {}

  bool is_readable() const override {
    pollfd p{sock_, POLLIN, 0};
    return pos_ < end_ || ::poll(&p, 1, 0) > 0;
  }
  bool is_writable() const override {
    pollfd p{sock_, POLLOUT, 0};
    return ::poll(&p, 1, 0) > 0;
  }
  ssize_t read(char* ptr, std::size_t size) override;
  ssize_t write(const char* ptr, std::size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    if (remote_port_ < 0) socket_address(sock_, false, remote_ip_, remote_port_);
    ip = remote_ip_;
    port = remote_port_;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override { socket_address(sock_, true, ip, port); }
  socket_t socket() const override { return sock_; }

  /// Waits for the first byte of the next request until `until` (idle_timeout), the server's stop
  /// (stopping), or other connections waiting for a worker (yield: the connection is parked).
  Next wait_for_request(Clock::time_point until);
  /// The next request started at `start`: its deadline is start + request_timeout.
  void begin_request(Clock::time_point start);
  ReadFailure failure() const { return failure_; }
  Phase failure_phase() const { return failure_phase_; }
  bool wrote() const { return wrote_; }

 private:
  bool wait_readable();
  void fail(ReadFailure f) {
    failure_ = f;
    failure_phase_ = phase_;
  }
  bool account_line_byte(char c);
  Clock::time_point stop_deadline() const { return from_ns(server_.stop_.deadline_ns.load(std::memory_order_relaxed)); }

  const socket_t sock_;
  const GuardedHttpServer& server_;
  char buf_[4096];
  std::size_t pos_ = 0, end_ = 0;

  Clock::time_point deadline_{}, write_deadline_{};
  bool write_started_ = false, wrote_ = false;
  ReadFailure failure_ = ReadFailure::none;
  Phase phase_ = Phase::request_line, failure_phase_ = Phase::request_line;
  std::size_t line_len_ = 0, head_bytes_ = 0;

  mutable std::string remote_ip_;
  mutable int remote_port_ = -1;
};

GuardedStream::Next GuardedStream::wait_for_request(Clock::time_point until) {
  if (pos_ < end_) return Next::request;  // pipelined
  for (;;) {
    pollfd p[2] = {{sock_, POLLIN, 0}, {server_.stop_.event_fd, POLLIN, 0}};
    if (server_.stopping()) return ::poll(p, 1, 0) > 0 ? Next::request : Next::stopping;  // a request already sent is served
    const auto now = Clock::now();
    if (now >= until) return Next::idle_timeout;
    // An idle connection keeps no worker while other connections wait for one: the queue is looked
    // at every kIdleCheck, and the connection is parked when it is not empty.
    const bool others_wait = server_.queue_depth() > 0;
    const int r = ::poll(p, 2, others_wait ? 0 : poll_ms(std::min<Clock::duration>(until - now, kIdleCheck)));
    if (r < 0 && errno != EINTR) return Next::closed;
    if (r > 0 && p[0].revents) return Next::request;  // data, or EOF / error (the read reports it)
    if (r == 0 && (others_wait || server_.queue_depth() > 0)) return Next::yield;
  }
}

void GuardedStream::begin_request(Clock::time_point start) {
  deadline_ = start + server_.limits().request_timeout;
  write_started_ = wrote_ = false;
  failure_ = ReadFailure::none;
  phase_ = Phase::request_line;
  line_len_ = head_bytes_ = 0;
}

bool GuardedStream::wait_readable() {
  for (;;) {
    const bool stopping = server_.stopping();
    auto until = deadline_;
    ReadFailure why = ReadFailure::deadline;
    if (stopping && stop_deadline() < until) {
      until = stop_deadline();
      why = ReadFailure::stopping;
    }
    const auto now = Clock::now();
    if (now >= until) {
      // Bytes that have arrived are still taken (a request that waited in the queue past its
      // deadline is served when it is complete); only waiting for more ends here.
      pollfd p{sock_, POLLIN, 0};
      if (::poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) return true;
      fail(why);
      return false;
    }
    // Before the stop, the stop signal also wakes the wait (its deadline then applies).
    pollfd p[2] = {{sock_, POLLIN, 0}, {server_.stop_.event_fd, POLLIN, 0}};
    const int r = ::poll(p, stopping ? 1 : 2, poll_ms(until - now));
    if (r < 0 && errno != EINTR) return false;
    if (r > 0 && p[0].revents) return true;
  }
}

/// Counts a byte read by httplib's line reader (reads of one byte); false past the line or head caps.
bool GuardedStream::account_line_byte(char c) {
  if (phase_ != Phase::body && ++head_bytes_ > kMaxHead) {
    fail(ReadFailure::head_too_large);
    return false;
  }
  if (c != '\n') {
    if (++line_len_ > kMaxLine) {
      fail(ReadFailure::line_too_long);
      return false;
    }
    return true;
  }
  if (phase_ == Phase::request_line) phase_ = Phase::headers;
  else if (phase_ == Phase::headers && line_len_ <= 1) phase_ = Phase::body;  // the blank line ("\r\n")
  line_len_ = 0;
  return true;
}

ssize_t GuardedStream::read(char* ptr, std::size_t size) {
  if (failure_ != ReadFailure::none) return -1;
  if (size == 0) return 0;
  if (pos_ == end_) {
    for (;;) {
      if (!wait_readable()) return -1;
      const ssize_t n = ::recv(sock_, buf_, sizeof buf_, MSG_DONTWAIT);
      if (n > 0) {
        pos_ = 0;
        end_ = static_cast<std::size_t>(n);
        break;
      }
      if (n == 0) return 0;  // the client closed
      if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    }
  }
  const std::size_t n = std::min(size, end_ - pos_);
  std::memcpy(ptr, buf_ + pos_, n);
  pos_ += n;
  if (size == 1) {
    if (!account_line_byte(*ptr)) return -1;
  } else {
    line_len_ = 0;  // a body read: not in a line
  }
  return static_cast<ssize_t>(n);
}

ssize_t GuardedStream::write(const char* ptr, std::size_t size) {
  const auto start = Clock::now();
  if (!write_started_) {
    write_started_ = true;
    write_deadline_ = start + server_.limits().request_timeout;  // a client that does not read its response
  }
  wrote_ = true;
  for (;;) {
    const auto now = Clock::now();
    auto until = write_deadline_;
    // Past the stop deadline a response is still written if the socket takes it at once.
    if (server_.stopping()) until = std::min(until, std::max(stop_deadline(), now));
    const int ms = poll_ms(until - now);
    pollfd p{sock_, POLLOUT, 0};
    const int r = ::poll(&p, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    const ssize_t n = ::send(sock_, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return n;
    if ((errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) || ms == 0) return -1;
  }
}

// ---- a connection, idle connections, the queue ----

/// One accepted connection, its stream and keep-alive state. Shared between the worker serving it
/// and the idle poller holding it between requests; closed when the last owner lets go.
struct HttpConnection {
  HttpConnection(socket_t s, const GuardedHttpServer& server, std::size_t max_requests)
      : sock(s), stream(s, server), requests_left(max_requests), idle_since(Clock::now()) {}
  ~HttpConnection() {
    if (sock != INVALID_SOCKET) {
      ::shutdown(sock, SHUT_RDWR);
      ::close(sock);
    }
  }
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  socket_t sock;  // INVALID_SOCKET once closed
  GuardedStream stream;
  std::size_t requests_left;
  Clock::time_point idle_since;  // accepted, or its last response written
  bool served = false;           // at least one request
  bool close = false;            // close after this response
  bool linger = false;           // input was left unread: drain it before closing
  // Owned by the idle poller, under its mutex.
  bool parked = false;
  std::list<std::pair<std::shared_ptr<HttpConnection>, Clock::time_point>>::iterator parked_at;
};

namespace {

thread_local HttpConnection* tl_connection = nullptr;
/// When the job being run was queued with data to read (a new connection, or an idle one whose
/// next request the poller saw); unset for a connection requeued after a response.
thread_local Clock::time_point tl_ready_since{};

/// Holds idle keep-alive connections without a thread: one epoll thread waits for their next
/// request, then hands them back to the queue (behind the connections already waiting), or closes
/// them at their keep-alive timeout. cpp-httplib keeps a worker blocked on every idle connection.
class IdlePoller {
 public:
  using Resume = std::function<void(std::shared_ptr<HttpConnection>)>;
  IdlePoller(Resume resume, std::atomic<std::int64_t>& count) : resume_(std::move(resume)), count_(count) {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (epoll_fd_ < 0 || wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "idle poller");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the wake-up
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    thread_ = std::thread([this] { run(); });
  }
  ~IdlePoller() {
    stop();
    ::close(epoll_fd_);
    ::close(wake_fd_);
  }
  IdlePoller(const IdlePoller&) = delete;
  IdlePoller& operator=(const IdlePoller&) = delete;

  /// Holds `c` until its next request arrives or `expiry`. False once stopped (the caller closes it).
  bool park(const std::shared_ptr<HttpConnection>& c, Clock::time_point expiry) {
    std::lock_guard<std::mutex> l(mu_);
    if (stopped_) return false;
    const bool was_empty = parked_.empty();
    parked_.emplace_back(c, expiry);
    c->parked_at = std::prev(parked_.end());
    c->parked = true;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    ev.data.ptr = c.get();
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c->sock, &ev) != 0) {
      take(c.get());
      return false;
    }
    count_.store(static_cast<std::int64_t>(parked_.size()), std::memory_order_relaxed);
    if (was_empty) wake();  // the poller may sleep without a timeout
    return true;
  }

  /// Closes the idle connections; one whose next request has already arrived is handed back to be
  /// served (the queue serves it once, with Connection: close). Idempotent.
  void stop() {
    std::vector<std::shared_ptr<HttpConnection>> left;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopped_) return;
      stopped_ = true;
      while (!parked_.empty()) left.push_back(take(parked_.front().first.get()));
    }
    wake();
    thread_.join();
    for (auto& c : left) {
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->sock, nullptr);
      pollfd p{c->sock, POLLIN, 0};
      if (::poll(&p, 1, 0) > 0) resume_(std::move(c));
    }
  }

 private:
  // Keep-alive expiries are in park order (one timeout for all), so the front expires first.
  void run() {
    epoll_event events[64];
    for (;;) {
      int timeout = -1;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (stopped_) return;
        if (!parked_.empty()) timeout = poll_ms(parked_.front().second - Clock::now());
      }
      const int n = ::epoll_wait(epoll_fd_, events, 64, timeout);
      std::vector<std::shared_ptr<HttpConnection>> ready, expired;
      {
        std::lock_guard<std::mutex> l(mu_);
        if (stopped_) return;  // stop() took every connection; `events` may name them
        for (int i = 0; i < n; ++i) {
          auto* c = static_cast<HttpConnection*>(events[i].data.ptr);
          if (!c) {
            std::uint64_t v;
            while (::read(wake_fd_, &v, sizeof v) > 0) {
            }
          } else if (c->parked) {
            ready.push_back(take(c));
          }
        }
        const auto now = Clock::now();
        while (!parked_.empty() && parked_.front().second <= now) expired.push_back(take(parked_.front().first.get()));
      }
      for (auto& c : ready) {
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->sock, nullptr);
        resume_(std::move(c));
      }
      for (auto& c : expired) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->sock, nullptr);  // closed as `expired` goes
    }
  }
  std::shared_ptr<HttpConnection> take(HttpConnection* c) {  // under mu_
    std::shared_ptr<HttpConnection> owned = std::move(c->parked_at->first);
    parked_.erase(c->parked_at);
    c->parked = false;
    count_.store(static_cast<std::int64_t>(parked_.size()), std::memory_order_relaxed);
    return owned;
  }
  void wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }

  Resume resume_;
  std::atomic<std::int64_t>& count_;
  int epoll_fd_ = -1, wake_fd_ = -1;
  std::mutex mu_;
  std::list<std::pair<std::shared_ptr<HttpConnection>, Clock::time_point>> parked_;
  bool stopped_ = false;
  std::thread thread_;
};

/// httplib::ThreadPool with a bound on the jobs waiting for a worker, and the idle poller.
class BoundedTaskQueue final : public httplib::TaskQueue {
 public:
  using Serve = std::function<void(const std::shared_ptr<HttpConnection>&)>;
  BoundedTaskQueue(int threads, std::size_t max_queue, std::atomic<std::int64_t>& depth, std::atomic<std::int64_t>& idle_count,
                   Serve serve)
      : max_queue_(max_queue),
        depth_(depth),
        serve_(std::move(serve)),
        poller_([this](std::shared_ptr<HttpConnection> c) { enqueue([this, c] { serve_(c); }); }, idle_count) {
    for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~BoundedTaskQueue() override = default;

  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      // Jobs beyond the idle workers wait; at most max_queue_ of them. The request deadline counts
      // from now: time spent waiting for a worker is not extra time for a slow client.
      if (jobs_.size() < idle_ + max_queue_) {
        jobs_.push_back([fn = std::move(fn), ready = Clock::now()] {
          tl_ready_since = ready;
          fn();
          tl_ready_since = {};
        });
        publish();
        cv_.notify_one();
        return;
      }
    }
    tl_rejected = true;
    fn();
    tl_rejected = false;
  }

  bool park(const std::shared_ptr<HttpConnection>& c, Clock::time_point expiry) { return poller_.park(c, expiry); }
  /// Queues a connection that was served already, behind the others; false when the queue is full
  /// (it is not refused: the caller parks it).
  bool requeue(const std::shared_ptr<HttpConnection>& c) {
    std::lock_guard<std::mutex> l(mu_);
    if (jobs_.size() >= idle_ + max_queue_) return false;
    jobs_.push_back([this, c] { serve_(c); });
    publish();
    cv_.notify_one();
    return true;
  }

  /// After the accept loop ended: idle connections first (those with a request are queued), then
  /// the jobs left, then the workers.
  void shutdown() override {
    poller_.stop();
    {
      std::lock_guard<std::mutex> l(mu_);
      shutdown_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> l(mu_);
        ++idle_;
        cv_.wait(l, [&] { return !jobs_.empty() || shutdown_; });
        --idle_;
        if (jobs_.empty()) return;  // shut down with nothing left
        fn = std::move(jobs_.front());
        jobs_.pop_front();
        publish();
      }
      fn();
    }
  }
  void publish() {  // under mu_
    depth_.store(jobs_.size() > idle_ ? static_cast<std::int64_t>(jobs_.size() - idle_) : 0, std::memory_order_relaxed);
  }

  const std::size_t max_queue_;
  std::atomic<std::int64_t>& depth_;
  Serve serve_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::size_t idle_ = 0;
  bool shutdown_ = false;
  std::vector<std::thread> workers_;
  IdlePoller poller_;  // last: stopped and joined before the members it uses go
};

}  // namespace

// ---- GuardedHttpServer ----

GuardedHttpServer::GuardedHttpServer(TransportLimits limits) : limits_(limits) {
  stop_.event_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_.event_fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  // The Keep-Alive header's timeout (whole seconds; the client must not reuse the connection later).
  keep_alive_timeout_sec_ = static_cast<time_t>(limits_.keep_alive_timeout.count() / 1000);
  // httplib closes a connection after 5 requests; with idle connections parked and the queue
  // fair, reconnecting that often only costs handshakes.
  keep_alive_max_count_ = 100;
  new_task_queue = [this] {
    auto* q = new BoundedTaskQueue(limits_.threads, limits_.max_queue, queue_depth_, idle_connections_,
                                   [this](const std::shared_ptr<HttpConnection>& c) { serve(c); });
    queue_ = q;
    return q;
  };
}

GuardedHttpServer::~GuardedHttpServer() { ::close(stop_.event_fd); }

bool GuardedHttpServer::apply_backlog() { return svr_sock_ != INVALID_SOCKET && ::listen(svr_sock_, limits_.backlog) == 0; }

void GuardedHttpServer::reset_stop() {
  std::uint64_t v = 0;
  while (::read(stop_.event_fd, &v, sizeof v) > 0) {
  }
  stopping_.store(false, std::memory_order_release);
}

void GuardedHttpServer::stop_within(std::chrono::milliseconds timeout) {
  stop_.deadline_ns.store(std::chrono::duration_cast<std::chrono::nanoseconds>((Clock::now() + timeout).time_since_epoch()).count(),
                          std::memory_order_relaxed);
  stopping_.store(true, std::memory_order_release);
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(stop_.event_fd, &one, sizeof one);
  httplib::Server::stop();  // closes the listening socket: the accept loop ends, then the queue shuts down
}

void GuardedHttpServer::close_after_response() {
  if (tl_connection) tl_connection->close = tl_connection->linger = true;
}

void GuardedHttpServer::set_connection_header(httplib::Response& res) const {
  HttpConnection* c = tl_connection;
  const bool close = (c && (c->close || c->stream.failure() != ReadFailure::none)) || stopping() ||
                     res.get_header_value("Connection") == "close";
  if (!close) return;
  if (c) c->close = true;
  res.headers.erase("Keep-Alive");
  res.headers.erase("Connection");
  res.set_header("Connection", "close");
}

int GuardedHttpServer::failure_status() const {
  const HttpConnection* c = tl_connection;
  if (!c) return 0;
  switch (c->stream.failure()) {
    case ReadFailure::none: return 0;
    case ReadFailure::deadline: return 408;
    case ReadFailure::stopping: return 503;
    case ReadFailure::head_too_large: return 431;
    case ReadFailure::line_too_long:
      switch (c->stream.failure_phase()) {
        case GuardedStream::Phase::request_line: return 414;
        case GuardedStream::Phase::headers: return 431;
        case GuardedStream::Phase::body: return 400;
      }
  }
  return 400;
}

std::string GuardedHttpServer::failure_message() const {
  const HttpConnection* c = tl_connection;
  if (!c) return {};
  const std::string line = std::to_string(kMaxLine);
  switch (c->stream.failure()) {
    case ReadFailure::none: return {};
    case ReadFailure::deadline:
      return "request: not received in full within " + seconds_text(limits_.request_timeout) + " (--request-timeout)";
    case ReadFailure::stopping: return "server shutting down: the request was not received in full before the stop deadline";
    case ReadFailure::head_too_large: return "request: request line and headers over " + std::to_string(kMaxHead) + " bytes";
    case ReadFailure::line_too_long:
      switch (c->stream.failure_phase()) {
        case GuardedStream::Phase::request_line: return "request: request line over " + line + " bytes";
        case GuardedStream::Phase::headers: return "request: header line over " + line + " bytes";
        case GuardedStream::Phase::body: return "request: chunk-size line over " + line + " bytes";
      }
  }
  return {};
}

void GuardedHttpServer::reject(socket_t sock, bool stopping) {
  // Never blocks (this may be the accepting thread): read what already arrived, so that the close
  // does not reset the connection before the client reads the answer, write the answer, close.
  char buf[4096];
  for (int i = 0; i < 16 && ::recv(sock, buf, sizeof buf, MSG_DONTWAIT) > 0; ++i) {
  }
  TransportResponse r{503, stopping ? "stopping" : "queue_full",
                      stopping ? "server shutting down; retry on another instance"
                               : "server busy: " + std::to_string(limits_.max_queue) +
                                     " connections already waiting for a worker (--max-queue); retry later",
                      remote_of(sock)};
  const std::string text = fixed_response(r.status, r.message);
  [[maybe_unused]] const ssize_t n = ::send(sock, text.data(), text.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(sock, SHUT_WR);
  ::close(sock);
  if (on_transport_response) on_transport_response(r);
}

bool GuardedHttpServer::process_and_close_socket(socket_t sock) {
  serve(std::make_shared<HttpConnection>(sock, *this, keep_alive_max_count_));
  return true;
}

void GuardedHttpServer::serve(const std::shared_ptr<HttpConnection>& c) {
  if (tl_rejected) {
    reject(c->sock, stopping());
    c->sock = INVALID_SOCKET;
    return;
  }
  tl_connection = c.get();
  Clock::time_point ready = tl_ready_since;  // the first request's bytes were there when it was queued
  enum class Then { close, requeue, park } then = Then::close;
  while (c->requests_left > 0) {
    const GuardedStream::Next next = c->stream.wait_for_request(c->idle_since + limits_.keep_alive_timeout);
    if (next == GuardedStream::Next::yield) {
      then = Then::park;
      break;
    }
    if (next != GuardedStream::Next::request) {
      if (next == GuardedStream::Next::stopping && !c->served) {  // taken from the queue after the stop, nothing sent yet
        tl_connection = nullptr;
        reject(c->sock, true);
        c->sock = INVALID_SOCKET;
        return;
      }
      break;
    }
    c->stream.begin_request(ready != Clock::time_point{} ? ready : Clock::now());
    ready = {};
    c->close = c->linger = false;
    const bool last = c->requests_left == 1 || stopping() || svr_sock_ == INVALID_SOCKET;
    bool closed_by_client = false;
    const bool ok = process_request(c->stream, last, closed_by_client, nullptr);
    c->served = true;
    --c->requests_left;
    c->idle_since = Clock::now();
    const ReadFailure f = c->stream.failure();
    if (f != ReadFailure::none && !c->stream.wrote()) {
      // Cut off in the request line, where httplib answers nothing.
      TransportResponse r{failure_status(),
                          f == ReadFailure::deadline        ? "deadline"
                          : f == ReadFailure::stopping      ? "stopping"
                          : f == ReadFailure::line_too_long ? "line_too_long"
                                                            : "head_too_large",
                          failure_message(), ""};
      int port = -1;
      c->stream.get_remote_ip_and_port(r.remote, port);
      const std::string text = fixed_response(r.status, r.message);
      httplib::Stream& s = c->stream;
      for (std::size_t off = 0; off < text.size();) {
        const ssize_t n = s.write(text.data() + off, text.size() - off);
        if (n <= 0) break;
        off += static_cast<std::size_t>(n);
      }
      if (on_transport_response) on_transport_response(r);
    }
    // A cap hit means the client is still sending its line: drain it so that it reads the answer.
    // A client past its deadline (or a stop) is not waited for any longer.
    if (f == ReadFailure::line_too_long || f == ReadFailure::head_too_large) c->linger = true;
    if (f == ReadFailure::deadline || f == ReadFailure::stopping) c->linger = false;
    if (!ok || closed_by_client || last || c->close || f != ReadFailure::none) break;
    if (queue_depth() > 0) {  // others wait: this connection's next request waits behind them
      then = Then::requeue;
      break;
    }
  }
  tl_connection = nullptr;
  // Back in the queue, the next request has usually arrived by its turn (no hand-off through the
  // poller); a connection still idle then is parked (wait_for_request yields).
  auto* queue = static_cast<BoundedTaskQueue*>(queue_.load(std::memory_order_acquire));
  if (then == Then::requeue && queue->requeue(c)) return;
  if (then != Then::close && queue->park(c, c->idle_since + limits_.keep_alive_timeout)) return;

  if (c->linger) {
    ::shutdown(c->sock, SHUT_WR);
    auto until = Clock::now() + kLingerTime;
    if (stopping()) until = std::min(until, from_ns(stop_.deadline_ns.load(std::memory_order_relaxed)));
    char buf[16384];
    for (std::size_t drained = 0; drained < kLingerBytes;) {
      pollfd p{c->sock, POLLIN, 0};
      if (::poll(&p, 1, poll_ms(until - Clock::now())) <= 0) break;
      const ssize_t n = ::recv(c->sock, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) break;
      if (n > 0) drained += static_cast<std::size_t>(n);
    }
  }
  // The last owner closes it (usually here, as `c` goes).
}

}  // namespace mtrank::server
