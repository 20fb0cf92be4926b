#include <atomic>
#include <chrono>
#include <thread>

#include "serve_fixtures.hpp"
#include "testing.hpp"

using namespace mtrank;

TEST_CASE("serve: hot swap under load never fails a request nor mixes versions", "[serve][swap]") {
  auto a = mtrank::testing::feed_predictor("mmoe", 1), b = mtrank::testing::feed_predictor("mmoe", 2);
  constexpr int kRequests = 4;
  std::vector<serve::Request> reqs;
  std::vector<Tensor> expect_a, expect_b;
  for (int i = 0; i < kRequests; ++i) {
    reqs.push_back(mtrank::testing::feed_request(*a, mtrank::testing::row_with_history(300 + 500 * i), 5 + 7 * i));
    serve::Predictor::Session s;
    for (auto [p, out] : {std::pair{a.get(), &expect_a}, std::pair{b.get(), &expect_b}}) {
      ConstMat m = p->score(reqs.back(), s).probs;
      Tensor t(Shape{m.rows, m.cols});
      copy(m, t.matrix());
      out->push_back(std::move(t));
    }
  }
  auto same = [](ConstMat m, const Tensor& t) { return std::memcmp(m.data, t.data(), sizeof(float) * t.numel()) == 0; };
  for (int i = 0; i < kRequests; ++i) REQUIRE(!same(expect_a[i].matrix(), expect_b[i]));  // versions differ

  serve::ModelHandle handle(a);
  std::atomic<bool> stop{false};
  std::atomic<long> ok_a{0}, ok_b{0}, bad{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      serve::Predictor::Session s;
      for (long n = 0; !stop.load(std::memory_order_relaxed); ++n) {
        const int i = int((n + t) % kRequests);
        try {
          std::shared_ptr<const serve::Predictor> p = handle.load();
          ConstMat m = p->score(reqs[i], s).probs;
          if (same(m, expect_a[i])) ok_a.fetch_add(1);
          else if (same(m, expect_b[i])) ok_b.fetch_add(1);
          else bad.fetch_add(1);
        } catch (...) {
          failed.fetch_add(1);
        }
      }
    });
  for (int swap = 0; swap < 100; ++swap) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    handle.store(swap % 2 ? a : b);
  }
  stop = true;
  for (auto& th : threads) th.join();
  INFO("version a: " << ok_a << ", version b: " << ok_b);
  CHECK(failed == 0);
  CHECK(bad == 0);
  CHECK(ok_a > 0);
  CHECK(ok_b > 0);
  // The handle holds the last version stored; the other is released once no reader holds it.
  CHECK(handle.load() == a);
}
