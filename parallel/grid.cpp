#include "parallel/grid.h"

#include "core/check.h"

namespace rt {

Grid Grid::create(std::unique_ptr<Communicator> world, int sp) {
  Grid g;
  g.world_rank = world->rank();
  g.world_size = world->size();
  if (sp < 1 || g.world_size % sp != 0)
    throw UserError(cat("parallel.sp: ", sp, " does not divide the world size ", g.world_size,
                        "; expected a divisor of the number of ranks (dp = world / sp)"));
  g.sp = sp;
  g.dp = g.world_size / sp;
  g.dp_rank = g.world_rank / sp;
  g.sp_rank = g.world_rank % sp;
  g.sp_group = world->split(g.dp_rank, g.sp_rank);
  g.dp_group = world->split(g.sp_rank, g.dp_rank);
  g.world = std::move(world);
  return g;
}

}  // namespace rt
