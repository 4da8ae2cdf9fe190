/*
 * kinds.c - what a named object of each kind owns besides its own block.
 * mseg_destroy calls kind_release inside its operation, so an object and
 * everything it owns go away together or not at all.
 */
#include <stdio.h>

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

/* The named object whose record is the live block at off, as the
   directory finds it; NULL (errno kept) for any other block. */
static const char *named_record_block(mseg *s, uint64_t off, char *what, size_t whatlen)
{
    char name[MSEG_NAME_MAX + 1];
    int e = errno;
    if (!heap_block_is_live(s, off) || dir_record_name(s, off, name) || dir_record_lookup(s, name) != off) {
        errno = e;
        return NULL;
    }
    snprintf(what, whatlen, "the block of named object %s (mseg_destroy frees it)", name);
    return what;
}

const char *structure_block(mseg *s, uint64_t off, char *what, size_t whatlen)
{
    if (off % MSEG_GRANULE || !seg_range_ok(s, off, 8))
        return NULL;
    int kind;
    switch (op_peek32(s, off)) {
    case MSEG_VEC_MAGIC:
    case MSEG_MAP_MAGIC:
        /* a raw block whose bytes start like a root ("SMAP..." text, say)
           is the program's to free: only a root whose fields are sound is
           refused */
        kind = container_root_kind(s, off);
        if (kind == MSEG_KIND_VEC && vec_root_sound(s, off))
            return "an anonymous vector's root (mseg_vec_delete frees it)";
        if (kind == MSEG_KIND_MAP && map_root_sound(s, off))
            return "an anonymous map's root (mseg_map_delete frees it)";
        return NULL;
    case MSEG_RECORD_MAGIC:
        return named_record_block(s, off, what, whatlen);
    default:
        /* any other block, in one load. A map's node is not told apart:
           its mark alone ("NODE") would refuse raw blocks whose data starts
           so, and nothing links a node back to its map (mseg.h: not to be
           passed, as a vector's buffer) */
        return NULL;
    }
}
