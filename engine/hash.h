/* hash.h - XXH3-64, inlined: checksums of headers and log records, and the
   directory's name hash. */
#ifndef MSEG_HASH_H
#define MSEG_HASH_H

#define XXH_INLINE_ALL
#include <xxhash.h>

static inline uint64_t mseg_hash(const void *p, size_t n)
{
    return (uint64_t)XXH3_64bits(p, n);
}

#endif
