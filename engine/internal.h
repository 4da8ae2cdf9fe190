/*
 * internal.h - the process-local handle and the helpers every engine file
 * shares. Nothing here is persistent (that is layout.h) or public (mseg.h).
 *
 * Lock order: the OFD "attach" lock on the file (segment.c, only while
 * opening and closing) is taken before the segment mutex (lock.c). No engine
 * function takes the segment mutex twice.
 */
#ifndef MSEG_INTERNAL_H
#define MSEG_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"
#include "mseg.h"

/* Every flag mseg_open knows. mseg_remove and mseg_check take these too
   (and use only MSEG_SHM), so a caller can pass its open flags; any other
   bit is refused with EINVAL. */
#define MSEG_OPEN_FLAGS (MSEG_CREATE | MSEG_EXCL | MSEG_RDONLY | MSEG_COW | MSEG_SHM | MSEG_DURABLE)

/* The work in progress of one engine operation: the redo records it has
   written to the log so far and the bytes it wrote in place into memory that
   no committed state can reach yet (fresh blocks), which a durable commit
   must flush along with the log. */
#define MSEG_FRESH_RANGES 4
#define MSEG_FRESH_LOGGED 2048   /* fresh bytes a durable commit logs instead of flushing */
struct fresh_range { uint64_t lo, hi; };

struct op {
    bool     active;
    bool     overflow;          /* ran out of log space: commit refuses */
    bool     direct;            /* stores go in place, unlogged (op_direct) */
    bool     direct_inline;     /* ...and need no crash point: op_set* inline */
    uint32_t base;              /* index of the operation's first record in the log */
    unsigned slot;              /* commit slot it will commit into (log.c) */
    uint32_t count;             /* records in the log area, from base */
    uint32_t save;              /* inside a transaction: count when the current call began */
    uint32_t allocated;         /* blocks allocated so far (fresh writes may follow) */
    uint32_t save_allocated;    /* allocated when the current call began */
    uint64_t *deferred;         /* blocks freed by this operation, released at commit */
    uint32_t ndeferred, cap_deferred, save_deferred;
    struct deferred_index *deferred_index;   /* deferred.c: finds a block among them */
    bool     draining;          /* op_commit is freeing owed blocks (no recursion) */
    bool     durable_drain;     /* heap_drain_garbage_durably: commits as MSEG_DURABLE's */
    uint64_t bloom[4];          /* words with a record (a 256-bit bloom filter) */
    struct record_index *record_index;   /* log.c: a large operation's records by word */
    uint64_t fresh_lo, fresh_hi;/* range of fresh in-place writes (0,0 = none) */
    struct fresh_range fresh[MSEG_FRESH_RANGES];   /* ...in detail, when few */
    unsigned nfresh;
    uint64_t fresh_bytes;       /* UINT64_MAX: too many ranges to list */
    uint64_t seq;               /* sequence number of the last commit */
    /* what this thread was running when the operation began: a transaction
       on another segment, one of whose calls runs this operation. The
       thread goes back to it when the operation ends (log.c) */
    struct mseg *outer;
    bool     outer_bad_access;
};

enum mseg_mode { MODE_RW, MODE_RDONLY, MODE_COW };

struct mseg {
    char          *name;
    unsigned       flags;
    enum mseg_mode mode;
    int            fd;
    uint8_t       *base;        /* mapping of [0, size) */
    uint64_t       size;        /* bytes mapped (the header's size) */
    uint64_t       reserved;    /* bytes of address space reserved at base */
    bool           failed;      /* a flush failed: no more writes (EIO) */
    bool           recovered;   /* this open (or a lock takeover) ran recovery */
    int            header_repaired;   /* the header copy (0 A, 1 B) this open rewrote from the other; -1 none */
    unsigned long  flushes;     /* msync calls (tests count them per operation) */
    uint64_t       max_size;    /* growth limit from the header; 0 = never grows */
    uint64_t       id;          /* the header's uuid (its first 8 bytes): map cursors carry it */
    pthread_mutex_t remap;      /* serializes extending this process's mapping */
    /* op_seq as other processes write it (seg_seq_word): a copy-on-write
       handle's own runtime page is private, so it reads the word through
       seq_page, a shared read-only mapping of that page; with seq_stale, an
       odd value that a dead writer left at open, recovered privately */
    void          *seq_page;
    const uint64_t *seq_word;
    uint64_t       seq_stale;
    /* a copy-on-write handle: the writers' runtime epoch when it attached,
       read before it chose to recover privately; a first writer that
       attaches later moves it (check_named) */
    uint64_t       open_epoch;
    /* a runtime.size a read-only or copy-on-write handle found beyond the
       file and so left alone (seg_follow_growth), and the runtime page's
       epoch then (a writer's attach resets the page and moves the epoch);
       atomic, any thread */
    uint64_t       size_ignored, size_ignored_epoch;
    struct op      op;
    /* the process's list of open handles (fork.c); the descriptor made for
       a child while a fork() is under way; and whether this handle shares
       its registration with a parent or child it was forked from or to */
    struct mseg   *reg_next, *reg_prev;
    int            fork_fd;
    bool           fork_shared;
    /* a transaction on this handle holds its lock (tx.c), and, in a child
       of fork(), a copy-on-write handle whose private lock a transaction
       of the parent held at the fork: held there for ever (EDEADLK) */
    bool           tx_holds_lock;
    bool           fork_lost_lock;
    /* the program's mutexes in this mapping that threads of this process
       took (mutex.c), so that mseg_close can refuse to unmap one still
       held; under held_guard, any thread */
    pthread_mutex_t    held_guard;
    struct held_mutex *held;
    uint32_t           nheld, held_pending, held_cap;
};

/* Thread-local state of the engine. Initial-exec: a plain %fs-relative
   access instead of a __tls_get_addr call per access, which the shared
   library's default model costs on every metadata read (the few bytes come
   from the static TLS space glibc keeps for libraries loaded later; the
   error message buffer, not hot and larger, keeps the default model). */
#define MSEG_TLS __thread __attribute__((tls_model("initial-exec")))

/* ---- errors (error.c) ---- */
/* Sets errno and this thread's message; returns -1 for `return fail(...)`. */
int   fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *fail_null(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* fail() with the message "segment <name>: <what><off in hex><after>",
   put together without printf: for errors that programs meet in their
   normal flow (a map lookup's miss), where vsnprintf was half the cost of
   the call. */
int   fail_in_at(int err, const char *name, const char *what, uint64_t off, const char *after);
/* Appends note to this thread's message; errno unchanged. */
void  fail_note(const char *note);
/* After a failed heap_alloc: when errno is ENOMEM, puts this message in
   place of the allocator's; any other errno (a growth's ENOSPC, damage)
   keeps its own. Returns -1. */
int   fail_no_room(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whether errno e of a failed allocation means the segment is full: no
   free block (ENOMEM), or a growth the file system, a quota or the file
   size limit refused (seg_grow fails then with nothing changed) */
static inline bool room_ran_out(int e)
{
    return e == ENOMEM || e == ENOSPC || e == EDQUOT || e == EFBIG;
}

/* ---- typed access to the mapping ---- */
static inline struct mseg_header  *seg_header(mseg *s, int copy)
{ return (struct mseg_header *)(s->base + (copy ? MSEG_HEADER_B_OFF : MSEG_HEADER_A_OFF)); }
static inline struct mseg_runtime *seg_runtime(mseg *s)
{ return (struct mseg_runtime *)(s->base + MSEG_RUNTIME_OFF); }
static inline const uint64_t *seg_seq_word(mseg *s)
{ return s->seq_word ? s->seq_word : &seg_runtime(s)->op_seq; }
/* runtime.size as growers publish it: through seq_page for a copy-on-write
   handle, whose view follows the file's unwritten pages, heap_end among
   them, and so must map what the file grows to. */
static inline const uint64_t *seg_size_word(mseg *s)
{ return s->seq_page ? &((const struct mseg_runtime *)s->seq_page)->size : &seg_runtime(s)->size; }
static inline const uint64_t *seg_epoch_word(mseg *s)
{ return s->seq_page ? &((const struct mseg_runtime *)s->seq_page)->epoch : &seg_runtime(s)->epoch; }
static inline struct mseg_control *seg_control(mseg *s)
{ return (struct mseg_control *)(s->base + MSEG_CONTROL_OFF); }

/* True when [off, off+len) lies inside the mapping (overflow-safe). */
static inline bool seg_range_ok(const mseg *s, uint64_t off, uint64_t len)
{ return off <= s->size && len <= s->size - off; }

/* ---- segment.c ---- */
/* Grows the segment (file, mapping, header) and the heap, inside the
   current operation, so that a block of `need` bytes fits; -1 with ENOMEM
   (max_size reached, or no max_size: the message says why, for heap_alloc
   to put after its own) or the file system's ENOSPC, EDQUOT or EFBIG (even
   the least growth the allocation needs was refused). */
int  seg_grow(mseg *s, uint64_t need);
/* Maps what another process grew; 0 or -1 with errno. */
int  seg_follow_growth(mseg *s);
/* Some other handle has the segment open read-write. */
bool seg_writers_attached(mseg *s);
/* What header copies are judged against: the file's size, or the mapping's
   if larger. A copy may record more than this process maps (a grower that
   died before it told the others). */
uint64_t seg_header_limit(mseg *s);
/* Registers fd as an attached opener of s's kind (a read lock on its
   byte of the attach protocol) without waiting (s's own read lock on that
   byte keeps any other description from holding it exclusively): 0 or -1
   with errno. */
int  seg_register_fd(mseg *s, int fd);
/* In a child of fork(), after s->fd was replaced: maps s's shared
   mappings again from it, so that none refers to the parent's description
   (whose locks would otherwise live as long as the child's mappings).
   0, or -1 if a mapping could not be made again. */
int  seg_remap_after_fork(mseg *s);

/* ---- fork.c ---- */
/* Lists an open handle, so that a child of fork() gets a registration of
   its own for it; unlists it. */
void registry_add(mseg *s);
void registry_remove(mseg *s);
/* In a child of fork(): a transaction or operation the forking thread had
   open belongs to the parent; the child's thread lets go of it without
   touching the segment (tx.c, log.c). */
void tx_forget_after_fork(void);
void op_forget_after_fork(void);

/* ---- lock.c ---- */
int  lock_init(mseg *s);             /* (re)initialize the runtime page's mutexes */
int  robust_mutex_init(void *m);     /* a pthread_mutex_t, robust and process-shared: 0 or an errno */
int  mutex_lock_patient(pthread_mutex_t *m);   /* pthread_mutex_lock that survives lost wakeups */
int  robust_trylock(pthread_mutex_t *m);       /* pthread_mutex_trylock that never keeps an unrecoverable mutex */
int  mutex_lock_until(pthread_mutex_t *m, const struct timespec *abstime);   /* clocklock in 50 ms periods */
/* ---- program mutexes (mutex.c) ---- */
void     held_init(mseg *s);
void     held_release(mseg *s);
uint64_t held_mutex_in_use(mseg *s, uint32_t *count);   /* offset of one still held, or 0 */
uint64_t mono_now_ns(void);          /* CLOCK_MONOTONIC in nanoseconds */
int  lock_acquire(mseg *s);          /* runs recovery when the owner died */
void lock_release(mseg *s);
/* lock_acquire for a writer that stores in place: first settles what
   durable commits owe (non-durable handles) and marks the segment
   unsynced. 0, or -1 with errno and the lock not held. */
int  lock_for_write(mseg *s);
/* Begins a writing engine operation: checks the handle may write, takes
   the lock, starts the op. 0 or -1 with errno (EROFS, EIO, EUCLEAN). */
int  seg_write_begin(mseg *s);
/* Ends it: commits (commit) or discards, then unlocks. Returns 0 or -1. */
int  seg_write_end(mseg *s, bool commit);
/* A call that finds or creates, on a read-only handle: finding is no
   write, so what the find gave (the object, or NULL with its errno), and
   EROFS only when there was nothing to find ("cannot <what> <name>"). */
void *seg_found_read_only(mseg *s, void *found, const char *what, const char *name);
/* Read-side entry and exit: the lock for read-write and copy-on-write
   handles; a sequence lock for read-only ones. seg_read_end returns false
   when the read raced with a writer and must be retried:
       uint64_t seq;
       do { if (seg_read_begin(s, &seq)) return err; ...read... }
       while (!seg_read_end(s, seq));                                    */
int  seg_read_begin(mseg *s, uint64_t *seq);
bool seg_read_end(mseg *s, uint64_t seq);
/* After a read raced (seg_read_end false): true to retry it; false, with
   EAGAIN, once writers have raced its attempts for 5 s (*since: 0 before
   the first race). A read-write handle reads under the lock after two
   races; a read-only or copy-on-write one cannot, and a read that lasts
   longer than the writers' pauses would otherwise retry for ever. */
bool seg_read_retry(mseg *s, uint64_t *since);
/* That loop as a statement: evaluates `open` (0 or -1), then, when it
   returned 0, the statements that follow, retrying the whole read when it
   raced with a writer (seg_read_retry); rc gets open's result (-1 if the
   read could not start or gave up), and errno is the last attempt's. */
#define SEG_READ(s, rc, open, ...)                                          \
    do {                                                                    \
        uint64_t seq_, since_ = 0;                                          \
        int e_;                                                             \
        for (;;) {                                                          \
            if (seg_read_begin((s), &seq_)) { rc = -1; e_ = errno; break; } \
            rc = (open);                                                    \
            if (!rc) { __VA_ARGS__ }                                        \
            e_ = errno;                                                     \
            if (seg_read_end((s), seq_))                                    \
                break;                                                      \
            if (!seg_read_retry((s), &since_)) { rc = -1; e_ = errno; break; } \
        }                                                                   \
        errno = e_;                                                         \
    } while (0)

/* ---- log.c: the intent log ---- */
void     op_begin(mseg *s);
bool     log_op_in_progress(mseg *s);   /* an operation (of any process) has begun and not ended */
uint64_t op_get_slow(mseg *s, uint64_t off, unsigned width);
void     op_set_slow(mseg *s, uint64_t off, unsigned width, uint64_t v);

/* Hostile input: every metadata address an operation follows comes from
   the segment, so it is checked here, once, for all of them: it must lie in
   the control page or the heap, aligned. Anything else is never
   dereferenced: op_get/op_set drop the access and set the thread's
   bad_access flag, and the operation fails with EUCLEAN (log.c). */
static inline __attribute__((always_inline)) bool op_meta_ok(const mseg *s, uint64_t off, unsigned width)
{
    if (off % width)
        return false;
    if (off >= MSEG_CONTROL_OFF && off <= MSEG_CONTROL_OFF + MSEG_PAGE - width)   /* no off + width: it may wrap */
        return true;
    return off >= MSEG_HEAP_OFF && off <= s->size - width;
}

/* A metadata word as the current operation sees it. The inline half: an
   operation with no records yet (a direct one, or any read path) reads
   memory; otherwise the log's records may hold a newer value (log.c). */
static inline __attribute__((always_inline)) uint64_t op_get(mseg *s, uint64_t off, unsigned width)
{
    if (__builtin_expect(s->op.count == 0 && op_meta_ok(s, off, width), 1))
        return width == 8 ? *(const uint64_t *)(s->base + off) : *(const uint32_t *)(s->base + off);
    return op_get_slow(s, off, width);
}

/* A store in place that the compiler keeps in program order (a direct
   operation's; see op_direct in log.c). */
static inline __attribute__((always_inline)) void op_store_ordered(mseg *s, uint64_t off, unsigned width, uint64_t v)
{
    __asm__ __volatile__("" ::: "memory");
    if (width == 8)
        *(uint64_t *)(s->base + off) = v;
    else
        *(uint32_t *)(s->base + off) = (uint32_t)v;
    __asm__ __volatile__("" ::: "memory");
}

/* Sets a metadata word: a redo record, or for a direct operation a store
   in place. */
static inline __attribute__((always_inline)) void op_set(mseg *s, uint64_t off, unsigned width, uint64_t v)
{
    if (s->op.direct_inline && op_meta_ok(s, off, width))
        op_store_ordered(s, off, width, v);
    else
        op_set_slow(s, off, width, v);
}

static inline uint64_t op_get64(mseg *s, uint64_t off) { return op_get(s, off, 8); }
static inline uint32_t op_get32(mseg *s, uint64_t off) { return (uint32_t)op_get(s, off, 4); }
static inline void op_set64(mseg *s, uint64_t off, uint64_t v) { op_set(s, off, 8, v); }
static inline void op_set32(mseg *s, uint64_t off, uint32_t v) { op_set(s, off, 4, v); }

void     op_fresh(mseg *s, uint64_t off, uint64_t len);
/* Redo records the current operation can still append: the log, minus a
   committed slot's records it starts after, minus the undo records of
   mseg_tx_add, which share the log area. */
uint64_t op_records_left(mseg *s);
void     op_claim(mseg *s, uint64_t off, uint64_t len);
/* This thread runs an operation on s. */
bool     op_owned(const mseg *s);
/* Logs len bytes from src to be stored at off (any alignment, as 4- and
   8-byte records; edge bytes keep their current values). */
void     op_write_bytes(mseg *s, uint64_t off, const void *src, uint64_t len);
int      op_commit(mseg *s);
/* The current operation (just begun, nothing logged) stores in place: only
   for the allocator's own single-block calls; see log.c. */
void     op_direct(mseg *s);
void     op_direct_off(mseg *s);
void     op_discard(mseg *s);
/* The calling thread followed a metadata offset outside the segment since
   its operation began (or since the last clear): the segment is damaged. */
bool     op_bad_access(void);
void     op_clear_bad_access(void);
void     op_apply_unlogged(mseg *s);   /* creation only: no log, no crash points */
/* Saves the old bytes of [off, off+len) as an undo record, durable before
   it returns in durable mode (mseg_tx_add). ENOMEM when the log is full. */
int      op_undo(mseg *s, uint64_t off, uint64_t len);
/* op_undo for mseg_tx_add: redo records of the transaction in the range
   give way to the program's stores in place (log.c). */
int      op_undo_in_place(mseg *s, uint64_t off, uint64_t len);
/* Bytes of the committed state inside a transaction, through its undo
   records (len <= 8). */
void     op_committed_bytes(mseg *s, uint64_t off, void *dst, unsigned len);
/* Abandons the current operation or transaction: user bytes restored from
   undo records, free lists rebuilt if blocks were carved. */
int      op_rollback(mseg *s);
/* Replays a committed log, discards a torn or uncommitted one. Returns 1 if
   something was replayed, 0 if nothing was needed, -1 on error. */
int      log_recover(mseg *s, bool after_reboot);
/* Durable commits leave their log slot committed until the next commit
   flushes the pages they changed (log.c). This flushes those pages now and
   empties the slots: before a non-durable operation, mseg_sync, close.
   0, or -1 with EIO. */
int      log_settle(mseg *s);
/* 1 when recovery has something to do (after_reboot: as after a power
   loss, when committed slots are replayed too). */
int      log_needs_recovery(mseg *s, bool after_reboot);
/* msync now (read-write handles), whatever the durability mode. */
int      flush_now(mseg *s, uint64_t off, uint64_t len);
int      flush_pages(mseg *s, uint64_t start, uint64_t end);   /* page-aligned; no checks */
/* Every persist point goes through here: crash hook, then (durable) msync. */
int      persist(mseg *s, const char *point, uint64_t off, uint64_t len);
void     crash_point(const char *point);

/* ---- tx.c ---- */
bool     tx_owns(const mseg *s);   /* this thread runs a transaction on s */
bool     tx_cancelled(const mseg *s);  /* ...which was aborted and not yet ended */
uint64_t tx_serial(const mseg *s);      /* 1, 2, ... for this thread's transaction on s, 0 outside one */
void     tx_fail(mseg *s);         /* a call failed after changing state: abort the transaction */
void     tx_end_on_close(mseg *s);  /* mseg_close: this thread's transaction on s is aborted and ended */

/* The inline fast paths' read (mseg_find, mseg_map_get, a cursor step):
   one optimistic attempt between two loads of the sequence word, where
   seg_read_begin/_end retry, wait or lock. It does not apply inside this
   thread's transaction (reads must see its records) nor through a
   copy-on-write handle (its reads also check its private writes: lock.c).
   False from either: take the general path. */
static inline bool seg_fast_read_begin(mseg *s, uint64_t *seq)
{
    /* tx_owns is a call (tx.c, thread-local state) that every lookup, find
       and cursor step paid; a transaction of this thread on s has set
       tx_holds_lock first (mseg_tx_begin), so a handle without one skips
       it: 14 of the 142 instructions of a cursor step (callgrind) */
    if (s->mode == MODE_COW || (__atomic_load_n(&s->tx_holds_lock, __ATOMIC_RELAXED) && tx_owns(s)))
        return false;
    *seq = __atomic_load_n(seg_seq_word(s), __ATOMIC_ACQUIRE);
    return !(*seq & 1);
}
static inline bool seg_fast_read_end(mseg *s, uint64_t seq)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(seg_seq_word(s), __ATOMIC_RELAXED) == seq;
}

/* ---- heap.c ---- */
void     heap_format(mseg *s, uint64_t heap_start, uint64_t heap_end);
void     heap_grow(mseg *s, uint64_t new_end);                /* inside an operation */
uint64_t heap_trim(mseg *s, uint64_t min);                    /* new heap end */
uint64_t heap_tail_free(mseg *s);                             /* free bytes ending the heap */
int      heap_rebuild(mseg *s);   /* free lists from the headers; see heap.c */
unsigned heap_bin_of(uint64_t granules);   /* the free list of a block of that size */
int      heap_control_sane(mseg *s);   /* 0, or -1 with EUCLEAN */
void     heap_alloc_prefetch(mseg *s, uint64_t n);               /* before the lock: a hint */
uint64_t heap_alloc(mseg *s, uint64_t n, uint64_t align);  /* payload off; 0 + errno ENOMEM/EUCLEAN */
int      heap_free(mseg *s, uint64_t p);                    /* at commit; -1 + EINVAL if not live */
bool     heap_expand(mseg *s, uint64_t p, uint64_t n);      /* grow block p in place to n bytes, if the next block is free */
int      heap_free_deferred(mseg *s);                       /* op_commit: release them (or owe them) */
/* deferred.c: the list of blocks the operation freed */
bool     deferred_has(mseg *s, uint64_t p);                 /* p is on the list */
bool     deleted_in_this_tx(mseg *s, uint64_t root, uint32_t magic);   /* a container this thread's transaction deleted */
int      deferred_add(mseg *s, uint64_t p);                 /* appends p; -1 + ENOMEM */
void     deferred_release_memory(mseg *s);                  /* at close */
void     op_index_release(mseg *s);                         /* log.c: at close */
bool     heap_has_garbage(mseg *s);                         /* blocks owed by a big free */
int      heap_drain_garbage(mseg *s);                       /* frees them, batch by batch (under the lock) */
int      heap_drain_garbage_durably(mseg *s);               /* ...another process left: as durable operations */
bool     heap_block_is_live(mseg *s, uint64_t p);           /* in the op's view */
uint64_t heap_block_room(mseg *s, uint64_t p);             /* cheaper: payload bytes if used and inside the heap, else 0 */
/* While mseg_check runs on this thread: the used blocks its heap walk found,
   one bit per granule from heap_start (NULL otherwise). heap_block_is_live
   and heap_block_room then also require p to be one of them, so that a
   container pointing at a header the walk never reached (inside a free
   block, after a power loss kept some pages and not others) is damage. */
void     heap_set_walk_marks(const uint64_t *marks, uint64_t heap_start, uint64_t heap_end);
uint64_t heap_block_size(mseg *s, uint64_t p);              /* in the op's view */

/* ---- directory.c ---- */
/* Copies the name of the sound record at rec; -1 with EUCLEAN if damaged. */
int      dir_record_name(mseg *s, uint64_t rec, char name[MSEG_NAME_MAX + 1]);
/* The record a lookup of name finds: 0 absent, UINT64_MAX damaged. */
uint64_t dir_record_lookup(mseg *s, const char *name);

/* Named containers (vector.c, map.c), inside the current operation: the
   data offset of object `name`, which must be of `kind` and `type` (EINVAL
   otherwise). When absent: ENOENT, or with create a new object whose data is
   root_size zero bytes (*created is set). 0 on failure. */
uint64_t dir_open_kind(mseg *s, const char *name, uint8_t kind, const char *type,
                       size_t root_size, bool create, bool *created);

/* ---- kinds.c: what each kind of named object owns ---- */
/* Frees, inside the current operation, everything the object whose data is
   at `data` owns (not the object's own block). 0 or -1 with errno. */
int      kind_release(mseg *s, uint8_t kind, uint64_t data);
bool     dir_record_kind_lost(mseg *s, uint64_t rec, const struct mseg_dir_record *r);   /* directory.c */
const char *container_at(mseg *s, uint64_t off);   /* "a vector", "a map", ... (messages) */
/* What the live block at off is, when it is one of the library's own
   structures that its first word marks: an anonymous container's root, the
   block of a named object (its record), a map's node; NULL for any other
   (a vector's buffer, a map's cells and the directory's table carry no
   mark). mseg_free refuses those. what: room for the description. */
const char *structure_block(mseg *s, uint64_t off, char *what, size_t whatlen);

/* ---- header.c ---- */
/* Writes a new header generation with the given size into the older copy
   and flushes it; 0 or -1 with errno. */
int  header_write_size(mseg *s, uint64_t size);
void header_build(struct mseg_header *h, uint64_t size, uint64_t max_size, uint64_t generation);
void header_seal(struct mseg_header *h);
/* Validates one copy against the file size; 0 or -1 with errno + message. */
int  header_validate(const struct mseg_header *h, uint64_t file_size, char *why, size_t whylen, int *err);

/* ---- vector.c, map.c: containers ---- */
/* A metadata word as the current operation sees it; a plain load when the
   operation has logged nothing yet (the common case on read paths). */
static inline uint64_t op_peek64(mseg *s, uint64_t off)
{ return s->op.count ? op_get64(s, off) : *(const uint64_t *)(s->base + off); }
static inline uint32_t op_peek32(mseg *s, uint64_t off)
{ return s->op.count ? op_get32(s, off) : *(const uint32_t *)(s->base + off); }

/* kind_release of a vector or map root at `root`: frees what it owns. */
int  vec_release(mseg *s, uint64_t root);
int  map_release(mseg *s, uint64_t root);
/* Frees the anonymous vector or map whose root is at off (0: nothing),
   with everything it owns; depth bounds nested ownership. Inside the op. */
int  container_free_anon(mseg *s, uint64_t off, unsigned depth);
/* mseg_vec_delete, mseg_map_delete: container_free_anon, unless an owning
   map's entry owns the container (EBUSY). Inside the op. */
int  container_delete_anon(mseg *s, uint64_t off);
/* MSEG_KIND_VEC or MSEG_KIND_MAP when off is the block of a live anonymous
   vector's or map's root, else -1 (errno unchanged). */
int  container_root_kind(mseg *s, uint64_t off);
/* Whether the root at off holds sound fields (sizes, buffer or root node
   a live block of the right kind): what tells a container's root from a
   raw block whose bytes happen to start like one. errno unchanged. */
bool vec_root_sound(mseg *s, uint64_t off);
bool map_root_sound(mseg *s, uint64_t off);
/* 0 if off is 0 or the root of a live anonymous vector or map; else -1 + EINVAL. */
int  container_check_anon(mseg *s, uint64_t off);
/* Verifies a vector or map root and everything it reaches (bounded). 0 when
   sound; -1 with the first problem in why (and errno EUCLEAN). */
int  vec_check(mseg *s, uint64_t root, char *why, size_t whylen);
int  map_check(mseg *s, uint64_t root, char *why, size_t whylen);
/* The same, also adding every block the container owns (and, for a map,
   every container its entries own, and theirs) to `owned`, the whole
   check's set: a block another structure owns too is reported. map_check
   checks with a set of its own; vec_check with none. */
struct blockset;
int  vec_check_in(mseg *s, uint64_t root, struct blockset *owned, char *why, size_t whylen);
int  map_check_in(mseg *s, uint64_t root, struct blockset *owned, char *why, size_t whylen);

/* ---- blockset.c: which structure owns each heap block (the check) ---- */
/* An owner is the offset of the structure (16-aligned) ORed with its kind. */
#define BLOCK_OWNER_KIND   0xfull
#define BLOCK_BY_VECTOR    1ull     /* the vector root at the offset */
#define BLOCK_BY_MAP       2ull     /* the map root at the offset */
#define BLOCK_BY_DIRECTORY 3ull     /* the directory slot at the offset; 0: the directory itself */
#define BLOCK_BY_GARBAGE   4ull     /* the garbage array at the offset; 0: the control page */
struct blockset {
    uint64_t *v;                    /* cap pairs (block, owner); block 0: empty slot */
    size_t n, cap;                  /* cap: 0 or a power of two */
    bool off;                       /* no memory: blocks are not recorded (not an error) */
    uint64_t *bits;                 /* dense form: one bit per granule of [lo, hi), or NULL */
    uint64_t lo, hi;
    uint64_t dups;                  /* second owners the dense form found (first owner unknown) */
};
/* An empty table with room for `expect` blocks (0: grows as needed). */
void blockset_init(struct blockset *t, uint64_t expect);
/* An empty dense set for blocks in [lo, hi); false if there is no memory. */
bool blockset_init_dense(struct blockset *t, uint64_t lo, uint64_t hi);
/* 0 if added, 1 if block was there (*first: its owner, 0 if the dense form
   does not know it), -1 if there is no memory. */
int  blockset_add(struct blockset *t, uint64_t block, uint64_t owner, uint64_t *first);
/* blockset_add; on a second owner, -1 with errno EUCLEAN and both owners in
   why. t NULL or out of memory: 0 (the cross-check is skipped, not failed). */
int  blockset_own(struct blockset *t, uint64_t block, uint64_t owner, char *why, size_t whylen);
void blockset_describe(char *why, size_t whylen, uint64_t block, uint64_t first, uint64_t second);
void blockset_free(struct blockset *t);

/* ---- sync.c ---- */
int  sync_mark_unsynced(mseg *s);       /* before a non-durable operation's first change */
bool sync_system_crashed(mseg *s);      /* unsynced changes and another boot id */
bool sync_disk_trusted(mseg *s);        /* no unsynced change: a power loss leaves a trusted disk */
int  sync_verify_after_crash(mseg *s);  /* first attach after that: rebuild, verify */
bool sync_rebooted_while_open(mseg *s); /* the machine restarted since an unclean close */
/* Recovery must assume a power loss: the machine restarted while the
   segment was open, or the boot id cannot be read (log.c replays every
   committed slot then, not only the operation in flight). */
bool sync_after_reboot(mseg *s);
int  sync_before_durable(mseg *s);      /* durable handle: sync other handles' unsynced changes first */
int  sync_record_boot(mseg *s, bool state_changed);   /* first writer: flush the boot id and "open" */
int  sync_flush_state(mseg *s);         /* durable later writer: flush "open" */
int  sync_locked(mseg *s);              /* mseg_sync's work, the write lock held */
/* A flush (msync, fsync) of this handle failed: the handle refuses further
   writes (s->failed), and the runtime page notes it for the others. */
void sync_flush_failed(mseg *s);
int  sync_heal_failed_flush_noted(mseg *s);   /* sync_heal_failed_flush once a failure is noted */
/* Before a flush or a change: pages another handle's failure left clean
   are written (sync.c). Inline: every operation pays one load for it. */
static inline int sync_heal_failed_flush(mseg *s)
{
    if (!__atomic_load_n(&seg_runtime(s)->flush_failures, __ATOMIC_RELAXED))
        return 0;
    return sync_heal_failed_flush_noted(s);
}

/* ---- check.c ---- */
int  check_segment(mseg *s, struct mseg_report *r);
int  check_prune_garbage(mseg *s);   /* after a system crash: owed entries that are no blocks, cleared */
/* mseg_check, running before(s, arg) on the private view first (the tool
   shows progress with it). */
int  check_named(const char *name, unsigned flags, struct mseg_report *r,
                 void (*before)(mseg *, void *), void *arg);

#endif
