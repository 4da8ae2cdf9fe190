/*
 * mseg.h - managed segments: a persistent, shareable heap in a memory-mapped
 * file or in POSIX shared memory.
 *
 * This is the only header a program includes. It is also the manual: every
 * function says what it does, what its arguments mean and which errno values
 * it can leave behind.
 *
 * Conventions (POSIX style):
 *   - functions returning int return 0 on success, -1 on failure with errno;
 *   - functions returning a pointer return NULL on failure with errno;
 *   - mseg_errmsg() describes the last failure of the calling thread, with
 *     context (segment, object, what was expected and what was found);
 *   - errno values: ENOENT missing, EEXIST exists, ENOMEM segment full,
 *     EINVAL bad argument or wrong type/size on find, EUCLEAN corrupt
 *     segment, EPROTO unsupported format version, EROFS write through a
 *     read-only handle, EIO a failed flush made the handle unusable,
 *     EAGAIN a read-only handle cannot proceed until a writer recovers,
 *     or (read-only and copy-on-write handles) writers raced every attempt
 *     of a read for 5 s,
 *     ESTALE a map cursor used after the map changed,
 *     EACCES/EPERM/ENOSPC/EDQUOT/EFBIG from the operating system;
 *   - every function taking an mseg * may be called from several threads and
 *     several processes at once on the same segment, unless it says otherwise.
 */
#ifndef MSEG_H
#define MSEG_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Library version (the on-disk format has its own version, see README). */
#define MSEG_VERSION_MAJOR 0
#define MSEG_VERSION_MINOR 1
#define MSEG_VERSION_PATCH 0
const char *mseg_version(void);         /* "0.1.0" */
unsigned    mseg_format_version(void);  /* format version this library writes */

/* ------------------------------------------------------------------ */
/* Segments                                                            */
/* ------------------------------------------------------------------ */

typedef struct mseg mseg;        /* one process's handle on an open segment */
typedef uint64_t mseg_off;       /* offset from the segment base; 0 is null */

#define MSEG_CREATE  0x01u /* create if missing                 (open_or_create)     */
#define MSEG_EXCL    0x02u /* with MSEG_CREATE: fail if present (create_only)        */
#define MSEG_RDONLY  0x04u /* map read-only; never writes       (open_read_only)     */
#define MSEG_COW     0x08u /* private copy-on-write mapping     (open_copy_on_write) */
#define MSEG_SHM     0x10u /* name is a POSIX shm name "/x", not a file path         */
#define MSEG_DURABLE 0x20u /* every operation is on disk when it returns            */

struct mseg_config {             /* NULL, or zero fields, mean defaults */
    size_t   size;               /* size at creation (default 64 MiB), rounded up to 4 KiB */
    size_t   max_size;           /* grow automatically up to this, rounded up to 4 KiB; 0 = never grow */
    unsigned mode;               /* permission bits (07777; others ignored) of a new file (default 0600) */
};

/*
 * Opens (and with MSEG_CREATE creates) a segment.
 *   name   a file path, or with MSEG_SHM a POSIX shm name ("/name").
 *   flags  MSEG_CREATE [| MSEG_EXCL], MSEG_RDONLY, MSEG_COW, MSEG_SHM,
 *          MSEG_DURABLE (not with MSEG_COW, whose changes never reach the
 *          file). No MSEG_CREATE means open_only.
 *   cfg    NULL for defaults; only used when the segment is created.
 * Opening runs recovery when the segment was not closed cleanly and no other
 * process has it open. A new segment's space is reserved on creation, so a
 * full disk fails here with ENOSPC, never later with SIGBUS.
 * Errors: ENOENT (no such segment, or open_only of a segment whose creation
 * was interrupted), EEXIST (MSEG_EXCL and present; MSEG_CREATE of a symbolic
 * link to a missing file), EINVAL (bad flags, size or name), EUCLEAN (not a
 * segment, corrupt, truncated), EPROTO (format version or feature this
 * library does not know), ENOMEM (no address space for max_size: every
 * handle reserves that much, see README, Limits), ENOSPC, EDQUOT, EFBIG (a
 * size past RLIMIT_FSIZE, with SIGXFSZ ignored), EACCES, ...
 */
mseg  *mseg_open(const char *name, unsigned flags, const struct mseg_config *cfg);

/* Closes the handle; pointers into the segment become invalid. NULL is a no-op.
   Inside the calling thread's transaction on s, the transaction is aborted
   (nothing of it stays) and the thread is out of it. EBUSY, with nothing
   done and the handle still open, while a thread of this process holds a
   mutex of the segment taken through s (see mseg_mutex below). The one
   call not safe beside others on the same handle: as with free(3), no other
   thread may be inside a call on s, or use a pointer into it, once
   mseg_close begins (the mapping goes away under it). */
int    mseg_close(mseg *s);

/* Removes a segment's file or shm object (flags: 0 or MSEG_SHM; the other
   open flags are accepted and ignored, unknown bits fail with EINVAL).
   Processes that have it open keep their mapping. ENOENT if absent. */
int    mseg_remove(const char *name, unsigned flags);

/* Makes every operation so far durable (flushes the mapping and the file).
   EROFS on a read-only or copy-on-write handle; EIO if a flush failed, after
   which the handle refuses further writes. */
int    mseg_sync(mseg *s);

size_t mseg_size(mseg *s);          /* bytes in the segment (as grown so far) */

/* Gives back the free space at the end of the segment (file or shm object
   shrinks). Only with no other handle attached: EBUSY otherwise, and
   inside the calling thread's transaction on s; EROFS on a read-only or
   copy-on-write handle. It makes
   every operation before it durable first, as mseg_sync (EIO if that flush
   fails), so a power loss never finds the new size without the heap that
   fits it. A segment
   with cfg.max_size grows by itself when an allocation does not fit: by its
   size (at most 1 GiB) at a time, up to max_size, reserving the space on
   disk first; when the file system refuses that much (a full disk, a
   quota, the file size limit), by only what the allocation needs. ENOSPC,
   EDQUOT or EFBIG (RLIMIT_FSIZE, with SIGXFSZ ignored) when even that is
   refused, ENOMEM past max_size, changing nothing; objects never move, and
   other processes map the growth at their next call. */
int    mseg_shrink(mseg *s);
/* Bytes the allocator can still hand out (payload), without growing. With
   cfg.max_size, room the segment could grow into is not counted, not even
   the part already in the file (left there by an aborted transaction's or
   a killed process's growth, which the next growth takes first). */
size_t mseg_free_memory(mseg *s);
const char *mseg_errmsg(void);      /* last failure of this thread, never NULL */

/* ------------------------------------------------------------------ */
/* Raw memory and handles                                              */
/* ------------------------------------------------------------------ */

/* Allocates n bytes, 16-byte aligned (n == 0 gives a minimal block).
   ENOMEM when the segment is full; EROFS on a read-only handle. */
void    *mseg_alloc(mseg *s, size_t n);

/* As mseg_alloc with the given alignment, a power of two up to 4096
   (EINVAL otherwise). The result is freed with mseg_free. */
void    *mseg_alloc_aligned(mseg *s, size_t n, size_t align);

/* Frees a block returned by mseg_alloc(_aligned). EINVAL, and nothing
   changes, when p is not the start of a live block (double free, interior
   pointer, pointer outside the heap, named object), or is the block of a
   named object or an anonymous vector's or map's root (mseg_destroy,
   mseg_vec_delete, mseg_map_delete free those). Other blocks the library
   allocates for its structures (a vector's buffer, mseg_vec_data; a map's
   nodes and out-of-line keys and values) carry no mark that tells them
   from mseg_alloc's, whatever bytes the program stores: never pass them. */
int      mseg_free(mseg *s, void *p);

/* Handle (offset) of an address inside the segment; 0 (and EINVAL) when p
   is NULL or outside. Handles are valid in every process. */
mseg_off mseg_off_of(mseg *s, const void *p);

/* Address of a handle in this process; NULL for 0 or (EINVAL) out of range. */
void    *mseg_at(mseg *s, mseg_off off);

/* ------------------------------------------------------------------ */
/* Named objects                                                       */
/* ------------------------------------------------------------------ */

/* Names: 1..MSEG_NAME_MAX bytes, no NUL. Type names: 1..MSEG_TYPE_MAX. */
#define MSEG_NAME_MAX 1024
#define MSEG_TYPE_MAX 255

/* Creates an array of count elements of elem_size bytes named name, typed
   type. init: NULL for zeroed memory, or count elements to copy. The object
   appears whole or not at all. EEXIST if the name is taken, ENOMEM if full,
   EINVAL for a bad name, type (also "mseg_vec" and "mseg_map", the
   containers' own), zero elem_size or an overflowing size. */
void *mseg_construct(mseg *s, const char *name, const char *type,
                     size_t elem_size, size_t count, const void *init);

/* Finds a named object: its address, and its element count in *count (count
   may be NULL). ENOENT if absent; EINVAL if it exists with another type
   name or element size. */
void *mseg_find(mseg *s, const char *name, const char *type,
                size_t elem_size, size_t *count);

/* Finds name, or constructs it when absent (atomically: two processes racing
   get the same object). EINVAL as mseg_find when it exists with another type;
   an existing object is returned whatever its count. On a read-only handle
   it finds what exists, and fails with EROFS only when it would construct
   (so do mseg_vec_open and mseg_map_open with MSEG_CREATE). */
void *mseg_find_or_construct(mseg *s, const char *name, const char *type,
                             size_t elem_size, size_t count, const void *init);

/* Destroys a named object and frees its memory. ENOENT if absent. ENOMEM,
   changing nothing, when a large container's blocks, scattered in a
   segment too full to list them, are too many to free in one operation
   (README, Limits): free other memory first. The same holds for every call
   that frees containers (mseg_vec_delete, mseg_map_delete, replacing or
   deleting an owning map's entry) and for mseg_tx_commit, which then
   aborts the transaction. */
int   mseg_destroy(mseg *s, const char *name);

struct mseg_named {
    const char *name, *type;
    size_t elem_size, count;
    mseg_off off;               /* handle of the first element */
};

/* Number of named objects. On error (a NULL handle, a damaged directory)
   0 with errno set: to tell that from an empty segment, set errno to 0
   first (a success leaves it alone), as for mseg_vec_len and mseg_map_len. */
size_t mseg_named_count(mseg *s);

/* Calls fn for every named object (in no particular order) on a snapshot
   taken under the lock, so fn may call mseg functions, even destroy. Stops
   at the first non-zero return of fn and returns it; 0 after all; -1 on
   error. A read-only or copy-on-write handle copies the directory without
   the lock, and fails with EAGAIN when writers changed the segment during
   every copy for 5 s (as any of its reads does). The strings are valid only during the call. A named vector or
   map shows as type "mseg_vec" or "mseg_map", with its root as the one
   element (elem_size 64, count 1, off its handle): open it with
   mseg_vec_open or mseg_map_open. */
int    mseg_named_foreach(mseg *s, int (*fn)(const struct mseg_named *, void *), void *arg);

#define MSEG_NEW(s, name, T, count)            ((T *)mseg_construct((s), (name), #T, sizeof(T), (count), NULL))
#define MSEG_NEW_FROM(s, name, T, count, init) ((T *)mseg_construct((s), (name), #T, sizeof(T), (count), (init)))
#define MSEG_FIND(s, name, T, countp)          ((T *)mseg_find((s), (name), #T, sizeof(T), (countp)))
#define MSEG_FIND_OR_NEW(s, name, T, count)    ((T *)mseg_find_or_construct((s), (name), #T, sizeof(T), (count), NULL))

/* ------------------------------------------------------------------ */
/* Offset pointers                                                     */
/* ------------------------------------------------------------------ */

/* A self-relative pointer for structures inside a segment: valid in every
   process whatever the mapping's base address. Zero-filled is null; a
   pointer may point at its own address (stored as a tagged offset). */
typedef struct { int64_t rel; } mseg_relptr;
void *mseg_rel_get(const mseg_relptr *p);               /* NULL when null */
void  mseg_rel_set(mseg_relptr *p, const void *target); /* NULL sets null */

/* ------------------------------------------------------------------ */
/* Vectors                                                             */
/* ------------------------------------------------------------------ */

/* A growable array in the segment. The handle (mseg_vec *) points into the
   segment and is valid in this process until the vector is deleted; its
   mseg_off_of() handle is valid in every process. Element addresses are
   valid until the next push, reserve or resize (which may move the buffer).
   Every operation is atomic; growth never leaves a half-moved buffer. */
typedef struct mseg_vec mseg_vec;

mseg_vec *mseg_vec_new(mseg *s, size_t elem_size);                  /* anonymous */
/* Named: finds "name" (EINVAL if it is not a vector of elem_size-byte
   elements), or creates it with flags MSEG_CREATE (ENOENT otherwise). */
mseg_vec *mseg_vec_open(mseg *s, const char *name, size_t elem_size, unsigned flags);
int    mseg_vec_delete(mseg *s, mseg_vec *v);            /* anonymous ones; named: mseg_destroy */
int    mseg_vec_push(mseg *s, mseg_vec *v, const void *elem);
int    mseg_vec_pop(mseg *s, mseg_vec *v, void *out);    /* out may be NULL; ERANGE when empty */
void  *mseg_vec_at(mseg *s, mseg_vec *v, size_t i);      /* NULL + ERANGE past the end */
size_t mseg_vec_len(mseg *s, mseg_vec *v);              /* 0 + errno on error (see mseg_named_count) */
int    mseg_vec_reserve(mseg *s, mseg_vec *v, size_t cap);
int    mseg_vec_resize(mseg *s, mseg_vec *v, size_t len);  /* new elements zeroed */
/* The first element; NULL with errno 0 for a vector that has no buffer
   yet (never grown), NULL with errno set on error. */
void  *mseg_vec_data(mseg *s, mseg_vec *v);

/* ------------------------------------------------------------------ */
/* Ordered maps                                                        */
/* ------------------------------------------------------------------ */

enum mseg_key { MSEG_KEY_U64, MSEG_KEY_I64, MSEG_KEY_BYTES };  /* BYTES: memcmp order, then length */
typedef struct mseg_map mseg_map;                        /* lives in the segment */

mseg_map *mseg_map_new(mseg *s, enum mseg_key kind, size_t val_size);   /* val_size 0: variable-length values */
mseg_map *mseg_map_open(mseg *s, const char *name, enum mseg_key kind, size_t val_size, unsigned flags);
int    mseg_map_delete(mseg *s, mseg_map *m);
int    mseg_map_put(mseg *s, mseg_map *m, const void *key, size_t klen, const void *val, size_t vlen); /* insert or replace */
void  *mseg_map_get(mseg *s, mseg_map *m, const void *key, size_t klen, size_t *vlen);            /* NULL + ENOENT */
int    mseg_map_del(mseg *s, mseg_map *m, const void *key, size_t klen);
size_t mseg_map_len(mseg *s, mseg_map *m);              /* 0 + errno on error (see mseg_named_count) */

/* A cursor is valid until the map is next modified, here or in another
   process: then mseg_map_next fails with ESTALE, and a seek positions it
   again. The pointers mseg_map_get and cursors return point into the map's
   nodes: they stay valid until the map is next modified. With writers in
   other processes, the bytes may change even while you copy them: read
   inside a transaction (it holds the segment lock) or under a mutex of
   yours that the writers take too; or, with a cursor, copy the entry out
   and trust the copy once the next step succeeds (or ends with ENOENT):
   ESTALE means it may be torn, so seek to it again. A cursor belongs to
   the segment it was positioned in (any handle on it may step it):
   mseg_map_next fails with EINVAL for one not set by mseg_map_first or
   mseg_map_seek, or stepped with another segment's handle. */
struct mseg_cursor {
    const void *key, *val;
    size_t klen, vlen;
    uint64_t priv[4];           /* private state */
};
int mseg_map_first(mseg *s, mseg_map *m, struct mseg_cursor *c);                            /* -1 + ENOENT when empty */
int mseg_map_seek(mseg *s, mseg_map *m, struct mseg_cursor *c, const void *key, size_t klen); /* first key >= key */
int mseg_map_next(mseg *s, struct mseg_cursor *c);                                           /* -1 + ENOENT at the end */

/* For MSEG_KEY_U64 and MSEG_KEY_I64 the key is a pointer to the 8-byte
   integer and klen is 8. A value may be the mseg_off of another container. */

/* Containers of containers. A map created with MSEG_OWNED (a flag of
   mseg_map_open, or mseg_map_new_owned for an anonymous map) owns its
   values: each is an mseg_off (val_size == sizeof(mseg_off)) of an
   anonymous vector or map (from mseg_vec_new / mseg_map_new), or 0.
   Replacing or deleting an entry, mseg_map_delete and mseg_destroy free the
   containers it held, with everything they own, in the same atomic
   operation. Each container has at most one owner, which its root records
   (in the put's atomic operation). put fails with:
     EINVAL  a value that is not such a handle (a named container belongs
             to the directory: mseg_destroy it);
     EBUSY   a container an entry already owns, in this map or another
             (putting it again under its own key changes nothing);
     ELOOP   the map itself or a map that owns it, directly or through
             others (a cycle); or nesting deeper than 16 levels of owned
             containers below the outermost map.
   A put of a container that itself owns maps reads all their entries, to
   measure how deep they nest. mseg_vec_delete and mseg_map_delete of an
   owned container fail with EBUSY: delete or replace its entry instead.
   Without MSEG_OWNED a map or vector never frees what its values point at,
   and a container in one is owned by no map. */
#define MSEG_OWNED 0x100u
mseg_map *mseg_map_new_owned(mseg *s, enum mseg_key kind);

/* ------------------------------------------------------------------ */
/* Transactions                                                        */
/* ------------------------------------------------------------------ */

/* Between begin and commit, every change the thread makes through mseg
   (alloc, free, construct, destroy, container operations, and user bytes
   declared with mseg_tx_add before changing them) becomes visible to
   recovery all together at commit, or not at all on abort or crash. The
   transaction holds the segment lock: other threads and processes that
   change the segment wait; calls that only read it (finds, lengths, map
   lookups, cursors) go on, and see the committed state, except for user
   bytes already changed in place after mseg_tx_add. Nested begin/commit
   pairs fold into the outermost; an inner mseg_tx_abort aborts it all.
   A call that fails inside a transaction either changed nothing, and the
   transaction goes on, or had changed something it cannot take back on
   its own: then the whole transaction is rolled back, the call's message
   (mseg_errmsg) says so, and every later call of the thread that would
   change s fails with ECANCELED (mseg_tx_begin, mseg_tx_add, mseg_tx_commit
   and mseg_shrink included), until a commit or abort has ended each begin
   (as after an inner mseg_tx_abort). The lock is released at the rollback:
   calls that only read s (finds, lengths, map lookups, cursors,
   mseg_verify), mseg_sync and the mutex calls work meanwhile, on the
   committed state. mseg_tx_begin: EBUSY when the thread is already in a
   transaction on another segment, EROFS on a read-only handle. A call on
   another segment inside a transaction takes that segment's lock too (any
   change, and mseg_free_memory): two threads whose transactions call into
   each other's segments wait for each other for ever, as with any two
   locks taken in opposite orders; keep one order. */
int mseg_tx_begin(mseg *s);
/* Declares n bytes at p (inside the heap) before the thread changes them in
   place: their old bytes are kept for an abort or a crash. EINVAL outside a
   transaction, for n == 0, or for a range not inside the heap; ENOMEM when
   the 64 KiB log has no room left for them (each call is one record of
   about n + 24 bytes; a range declared twice is kept twice), and the
   transaction is then aborted. */
int mseg_tx_add(mseg *s, void *p, size_t n);
int mseg_tx_commit(mseg *s);
int mseg_tx_abort(mseg *s);

/* ------------------------------------------------------------------ */
/* Mutexes and condition variables in the segment                      */
/* ------------------------------------------------------------------ */

/* Process-shared and robust, placed anywhere in the segment (inside your
   structs or as named objects: MSEG_NEW(s, "lock", mseg_mutex, 1)). Zeroed
   memory is a valid unlocked mutex / condition variable of no epoch: it is
   initialized on first use, as are the ones left by processes of an earlier
   attach (after every process closed the segment, or a reboot), so a stale
   lock never blocks anyone. A mutex's bytes belong to the C library:
   processes sharing them must use the same one. A condition variable is
   mseg's own (a futex word): a waiter killed in a wait blocks no later
   signal or broadcast, and waits may wake spuriously (test your condition
   in a loop). Through a copy-on-write handle they are private to it, like
   the rest of its view: they start unlocked, whatever writers hold.
   Unlock them before mseg_close, which fails with EBUSY while a thread
   of this process holds one: the C library links the robust mutexes a
   thread holds into a list through their own bytes, so after the unmap
   that thread's next lock or unlock of any robust mutex (every mseg call
   takes one) would write into whatever is mapped there since. */
typedef struct { uint64_t epoch; uint64_t opaque[7]; } mseg_mutex;   /* 64 bytes */
typedef struct { uint64_t epoch; uint64_t opaque[7]; } mseg_cond;    /* 64 bytes */

int mseg_mutex_init(mseg *s, mseg_mutex *m);       /* optional: zeroed is initialized */
/* -1 with errno EOWNERDEAD: you hold the lock, but its owner died holding
   it; repair what it protects, then mseg_mutex_consistent (an unlock
   without it makes the mutex unusable: ENOTRECOVERABLE). */
int mseg_mutex_lock(mseg *s, mseg_mutex *m);       /* not recursive: a second lock by its holder never returns */
int mseg_mutex_trylock(mseg *s, mseg_mutex *m);    /* EBUSY when held */
/* abstime on CLOCK_MONOTONIC; ETIMEDOUT when it passes */
int mseg_mutex_timedlock(mseg *s, mseg_mutex *m, const struct timespec *abstime);
int mseg_mutex_unlock(mseg *s, mseg_mutex *m);
int mseg_mutex_consistent(mseg *s, mseg_mutex *m);

int mseg_cond_init(mseg *s, mseg_cond *c);         /* optional: zeroed is initialized */
int mseg_cond_wait(mseg *s, mseg_cond *c, mseg_mutex *m);
int mseg_cond_timedwait(mseg *s, mseg_cond *c, mseg_mutex *m, const struct timespec *abstime);
int mseg_cond_signal(mseg *s, mseg_cond *c);
int mseg_cond_broadcast(mseg *s, mseg_cond *c);

/* ------------------------------------------------------------------ */
/* Checking                                                            */
/* ------------------------------------------------------------------ */

struct mseg_report {
    uint32_t format_version;
    int      header_a_ok, header_b_ok;  /* each header copy valid on its own */
    int      recovered;                 /* recovery was needed and applied */
    uint64_t generation;                /* of the header copy in use */
    uint64_t size;                      /* segment bytes */
    uint64_t heap_bytes;                /* bytes managed by the allocator */
    uint64_t blocks_used, blocks_free;
    uint64_t bytes_used, bytes_free;    /* block bytes, headers included */
    uint64_t largest_free;              /* largest allocation that would succeed */
    uint64_t named;                     /* named objects */
    uint64_t problems;                  /* violations found; 0 = sound */
    char     first_problem[256];        /* "" when sound */
};

/* Reopens the segment privately (copy-on-write: it never writes the
   segment), applies recovery to the private view when no writer is
   attached, and verifies every structure: both header copies, the whole
   heap (boundary tags, sizes, overlaps, free lists against the heap walk,
   free-memory accounting) and the directory. 0 when sound; -1 with EUCLEAN
   and the first problem in mseg_errmsg() (and r->first_problem) when not;
   -1 with EAGAIN when writers left no moment without an operation in
   progress for 5 seconds (it reads without the lock); -1 with another
   errno when the segment could not be opened at all. flags: MSEG_SHM for
   an shm name; the other open flags are ignored, unknown bits are EINVAL.
   When the check could not run (any errno but EUCLEAN), r says so too:
   problems 1 and the reason in first_problem. r may be NULL. */
int mseg_check(const char *name, unsigned flags, struct mseg_report *r);

/* The same verification on an open handle: under the segment lock on a
   read-write handle, as mseg_check reads otherwise. EBUSY inside the
   calling thread's transaction on s (verify after its commit). r is filled
   as by mseg_check, also when the check could not run. */
int mseg_verify(mseg *s, struct mseg_report *r);

#ifdef __cplusplus
}
#endif
#endif /* MSEG_H */
