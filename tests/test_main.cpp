// One Catch2 main for every test binary. Idle OpenMP threads wait passively, as in the tools
// (core/threading.hpp): the tests share loaded machines, where spinning threads are slow.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "mtrank/core/threading.hpp"

int main(int argc, char** argv) {
  mtrank::use_passive_openmp_wait(argc, argv);
  return Catch::Session().run(argc, argv);
}
