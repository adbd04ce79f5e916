# Cross-build for 64-bit Windows with mingw-w64 (Debian: gcc-mingw-w64-x86-64),
# running the programs it makes under Wine (Debian: wine64), so that ctest
# works in the build directory:
#
#   cmake -S . -B build-windows -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64-x86_64.cmake
#
# The -posix variant of the compiler is the one whose runtime has
# winpthreads, which evn's loops and resolver threads run on.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(EVN_MINGW_PREFIX x86_64-w64-mingw32)
find_program(CMAKE_C_COMPILER NAMES ${EVN_MINGW_PREFIX}-gcc-posix ${EVN_MINGW_PREFIX}-gcc REQUIRED)
find_program(CMAKE_RC_COMPILER NAMES ${EVN_MINGW_PREFIX}-windres)
set(CMAKE_FIND_ROOT_PATH /usr/${EVN_MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ctest runs each .exe through Wine. WINEPREFIX and WINEDEBUG come from the
# environment (make test-windows sets them).
find_program(EVN_WINE NAMES wine64 wine PATHS /usr/lib/wine NO_DEFAULT_PATH)
find_program(EVN_WINE NAMES wine64 wine)
if(EVN_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${EVN_WINE})
endif()
