// `ringtrain op NAME --in in.h5 --out out.h5` (see op_command.cpp and README.md).
#pragma once

#include <string>

namespace rt {

// NAME: glr, attention, mlp, gla, mamba2. Bad input is a UserError.
int run_op(const std::string& name, const std::string& in_path, const std::string& out_path);

}  // namespace rt
