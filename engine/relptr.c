/*
 * relptr.c - self-relative pointers: the stored value is the distance from
 * the pointer's own address to its target, so it means the same thing in
 * every process, wherever the segment is mapped.
 *
 *   rel == 0          null (so zero-filled memory holds null pointers)
 *   rel == INT64_MIN  the pointer's own address (a distance of 0 would read
 *                     as null; no real distance is 2^63 bytes)
 *   otherwise         target = (char *)p + rel
 */
#include "mseg.h"

#define SELF INT64_MIN

void *mseg_rel_get(const mseg_relptr *p)
{
    if (!p || p->rel == 0)
        return NULL;
    if (p->rel == SELF)
        return (void *)p;
    return (char *)p + p->rel;
}

void mseg_rel_set(mseg_relptr *p, const void *target)
{
    if (!p)
        return;
    if (!target)
        p->rel = 0;
    else if (target == (const void *)p)
        p->rel = SELF;
    else
        p->rel = (int64_t)((const char *)target - (const char *)p);
}
