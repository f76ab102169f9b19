# One helper so every library of the project gets the same flags and include root.
function(ringtrain_library name)
  add_library(${name} STATIC ${ARGN})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${RINGTRAIN_CPU_FLAGS}>)
endfunction()
