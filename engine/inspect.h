/*
 * inspect.h - read-only views of a segment for the mseg tool, beyond what the
 * public API gives: the raw fields of both header copies, a block walk with
 * a block-size histogram and a progress callback, fragmentation, a check
 * with progress, and a consistent copy taken under the segment lock.
 *
 * Internal: not installed, not exported by the shared library (the tool
 * links libmseg.a). Everything read from the segment is bounds-checked the
 * way check.c does it; every traversal is bounded.
 */
#ifndef MSEG_INSPECT_H
#define MSEG_INSPECT_H

#include <stdbool.h>
#include <stdint.h>

#include "mseg.h"
#include "layout.h"

/* One header copy as found in the segment, and whether it validates. */
struct inspect_header {
    struct mseg_header raw;     /* the 256 bytes, as stored */
    bool  present;              /* the file was long enough to hold it */
    bool  valid;                /* header_validate() accepted it */
    int   err;                  /* its errno when not valid */
    char  why[200];             /* and why */
};

/* Reads both header copies straight from the file (or shm object), without
   opening the segment: works on segments mseg_open refuses. 0, or -1 with
   errno when the file cannot be read at all. */
int inspect_headers(const char *name, unsigned flags, struct inspect_header hdr[2]);

/* inspect_headers under the lock of s, a read-write handle on that
   segment: no header write (a growth's) is half done meanwhile. Taking
   the lock recovers the operation of a writer that died holding it
   (inspect_recovered then says so). */
int inspect_headers_locked(mseg *s, const char *name, unsigned flags, struct inspect_header hdr[2]);

/* Power-of-two buckets: bucket k holds blocks of [2^k, 2^(k+1)) bytes. */
#define INSPECT_BUCKETS 64

struct inspect_stats {
    uint64_t heap_start, heap_end;
    uint64_t blocks_used, blocks_free;
    uint64_t bytes_used, bytes_free;       /* block bytes, headers included */
    uint64_t largest_free;                 /* payload of the largest free block */
    uint64_t used_hist[INSPECT_BUCKETS];   /* block counts per bucket */
    uint64_t free_hist[INSPECT_BUCKETS];
    uint64_t state;                        /* runtime.state (MSEG_STATE_*) */
};

/* Called every so often during a walk: heap bytes walked of total. */
typedef void (*inspect_progress_fn)(uint64_t done, uint64_t total, void *arg);

/* Called for every block (payload offset, block size, used) in heap order;
   a non-zero return stops the walk and is returned. */
typedef int (*inspect_block_fn)(uint64_t off, uint64_t size, bool used, void *arg);

/* Walks the heap of an open handle. The caller holds a read section
   (seg_read_begin) or owns the handle privately. Stops with -1 and EUCLEAN
   at the first block that does not fit (the walk never leaves the heap). */
int inspect_walk(mseg *s, inspect_block_fn fn, void *arg,
                 inspect_progress_fn progress, void *parg);

/* The walk's totals and histograms, read consistently (retried if a writer
   raced a read-only handle). 0 or -1 with errno (EUCLEAN, EAGAIN). */
int inspect_heap_stats(mseg *s, struct inspect_stats *st,
                       inspect_progress_fn progress, void *parg);

/* 1 - largest_free / free payload bytes; 0 when nothing is free. */
double inspect_fragmentation(const struct inspect_stats *st);

/* As mseg_check (private copy-on-write reopen, recovery in the private view,
   full verification), with progress reported while the heap is walked. */
int inspect_check(const char *name, unsigned flags, struct mseg_report *r,
                  inspect_progress_fn progress, void *parg);

/* True when opening s ran recovery (the first opener found an interrupted
   operation and completed or rolled it back). */
bool inspect_recovered(const mseg *s);
/* True when s is a copy-on-write handle and a first writer attached after
   it was opened (the writers' epoch moved): the pages its private recovery
   wrote no longer follow the file while the rest does, so what it read may
   mix two states (README Limits; check_named looks again then). Call it
   after the reads it is to vouch for. False for other handles. */
bool inspect_view_moved(mseg *s);
/* Copies element i of vector v, of n bytes (its element size), into out,
   within one read that a writer's change makes retry (vector.c): through
   mseg_vec_at's pointer, a copy made after that read could catch another
   process popping the element and pushing a new one in its place, half
   old, half new. 0, or -1 with errno: ERANGE past the end, EINVAL when the
   elements are not n bytes, EUCLEAN, EAGAIN as mseg_vec_at. */
int inspect_vec_copy(mseg *s, mseg_vec *v, size_t i, void *out, size_t n);
/* The header copy (0: A, 1: B) that opening s rewrote from the other, -1 if none. */
int inspect_header_repaired(const mseg *s);

/* Copies segment src (flags: 0 or MSEG_SHM) to the file dst, consistently:
   src is opened read-write and its bytes are copied under the segment lock
   (reflink, else copy_file_range, else plain writes), into a temporary file
   beside dst that is fsynced and renamed over dst. *how says which way
   ("reflink", "copy_file_range", "write"). A dst that is src's own file,
   or exists and is not a regular file, is refused: EINVAL (EISDIR for a
   directory). 0 or -1 with errno. */
int mseg_copy_locked(const char *src, unsigned flags, const char *dst, const char **how);

#endif
