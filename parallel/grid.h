// The rank grid: world = dp x sp, fixed here and nowhere else.
// World rank w sits at dp_rank = w / sp, sp_rank = w % sp: the sp ranks of a group are
// neighbours (same node when ranks are packed per node), since the ring talks most.
#pragma once

#include <memory>

#include "parallel/comm.h"

namespace rt {

struct Grid {
  int world_rank = 0, world_size = 1;
  int dp = 1, sp = 1;
  int dp_rank = 0, sp_rank = 0;
  std::unique_ptr<Communicator> world;
  std::unique_ptr<Communicator> sp_group;  // the sp ranks that share sequences
  std::unique_ptr<Communicator> dp_group;  // ranks with the same sp_rank across dp groups

  // Throws UserError when sp does not divide the world size.
  static Grid create(std::unique_ptr<Communicator> world, int sp);
};

}  // namespace rt
