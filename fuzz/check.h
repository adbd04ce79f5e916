/*
 * The fuzz targets' checks: like assert, but kept in every build type, so
 * that the corpus replays ctest runs in a Release build (NDEBUG) check what
 * the fuzzer checks.
 */
#ifndef EVN_FUZZ_CHECK_H
#define EVN_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(c)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
