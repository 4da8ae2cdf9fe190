/*
 * kinds.c - what a named object of each kind owns besides its own block.
 * mseg_destroy calls kind_release inside its operation, so an object and
 * everything it owns go away together or not at all.
 */
#include "internal.h"

int kind_release(mseg *s, uint8_t kind, uint64_t data)
{
    (void)s;
    (void)data;
    switch (kind) {
    case MSEG_KIND_RAW:
        return 0;
    case MSEG_KIND_VEC:
        return vec_release(s, data);
    case MSEG_KIND_MAP:
        return map_release(s, data);
    default:
        return fail(EUCLEAN, "segment %s: named object of unknown kind %u", s->name, kind);
    }
}

/* What the bytes at off look like to a caller who passed the wrong handle:
   "a vector", "a map", or "no container" (for an error message). */
const char *container_at(mseg *s, uint64_t off)
{
    switch (op_peek32(s, off)) {
    case MSEG_VEC_MAGIC:
        return "a vector";
    case MSEG_MAP_MAGIC:
        return "a map";
    default:
        return "no container (bad magic)";
    }
}
