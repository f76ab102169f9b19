// main() of the MPI test programs: MPI comes up before the tests (mpi_world()), each rank runs
// every test, and a failure on any rank fails the process (mpirun then exits non-zero).
// Only rank 0 prints GoogleTest's progress; other ranks print failures.
#include <gtest/gtest.h>

#include "parallel/comm.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto world = rt::mpi_world();
  if (world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  // Every rank must agree: one rank's failure fails the whole run.
  double any = failed ? 1.0 : 0.0;
  world->allreduce_max(&any, 1, "test result");
  return any > 0 ? 1 : 0;
}
