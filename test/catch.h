// Catch2 2.x (development machines) and 3.x (GPU machine) behind one include. Test binaries
// supply their own main() through test/test_main.cpp.
#pragma once
#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#define ND_CATCH3 1
#else
#include <catch2/catch.hpp>
#endif
