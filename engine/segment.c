/*
 * segment.c - opening, creating, mapping, closing and removing segments.
 *
 * Attach protocol (open file description locks on the segment's descriptor;
 * they belong to the open, not the process, so two handles in one process
 * count as two openers):
 *
 *   byte 0  "door": held exclusively while a process creates, validates,
 *           attaches or detaches, so these never interleave (read-only
 *           openers, whose descriptor cannot hold a write lock, hold it
 *           shared: they only ever read).
 *   byte 1  "writers": every read-write handle holds a read lock on it. A
 *           read-write opener that can take it exclusively is the first
 *           writer: it re-initializes the mutex and runs recovery.
 *   byte 2  "readers": every read-only handle holds a read lock on it.
 *
 * A child of fork() shares its parent's descriptors, and so their locks;
 * fork.c gives each of its handles a description and a registration of its
 * own before fork() returns there.
 *
 * Creation protocol, so that a creator killed, or the power lost, at any
 * point leaves something no opener mistakes for a segment:
 *   1. the file is emptied and gets "MSEGINIT" as header A's magic, fsynced;
 *   2. it gets its size; its blocks are reserved (posix_fallocate: ENOSPC
 *      now, not SIGBUS later);
 *   3. runtime, control, log and heap are written; the file is fsynced;
 *   4. header B, then header A (replacing "MSEGINIT") are written and synced;
 *      for a new file, its directory is fsynced.
 * A file of size 0, one that is all zeros, or one whose header A says
 * "MSEGINIT" is a leftover of an interrupted creation: MSEG_CREATE
 * initializes it, open-only refuses it with ENOENT. Any other file that is
 * not a valid segment is refused, and left as it is, even by MSEG_CREATE.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "internal.h"

#define DOOR_BYTE    0
#define WRITERS_BYTE 1
#define READERS_BYTE 2

/* ---- open file description locks ---- */

static int ofd_lock(int fd, short type, off_t byte, bool wait)
{
    struct flock l = { .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };
    int r;
    do
        r = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &l);
    while (r < 0 && errno == EINTR);
    return r;
}

/* True when some other open holds a lock on byte that conflicts with type. */
static bool ofd_conflict(int fd, short type, off_t byte)
{
    struct flock l = { .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };
    if (fcntl(fd, F_OFD_GETLK, &l) < 0)
        return true;
    return l.l_type != F_UNLCK;
}

static const struct backend *backend_of(unsigned flags)
{
    return (flags & MSEG_SHM) ? &backend_shm : &backend_file;
}

/* ---- arguments ---- */

struct params {
    uint64_t size, max_size;
    mode_t mode;
};

static int check_args(const char *name, unsigned flags, const struct mseg_config *cfg, struct params *p)
{
    if (!name || !*name)
        return fail(EINVAL, "segment name is empty");
    if (flags & ~MSEG_OPEN_FLAGS)
        return fail(EINVAL, "segment %s: unknown flags %#x", name, flags & ~MSEG_OPEN_FLAGS);
    if ((flags & MSEG_EXCL) && !(flags & MSEG_CREATE))
        return fail(EINVAL, "segment %s: MSEG_EXCL needs MSEG_CREATE", name);
    if ((flags & MSEG_RDONLY) && (flags & MSEG_COW))
        return fail(EINVAL, "segment %s: MSEG_RDONLY and MSEG_COW exclude each other", name);
    if ((flags & MSEG_CREATE) && (flags & (MSEG_RDONLY | MSEG_COW)))
        return fail(EINVAL, "segment %s: MSEG_CREATE needs a read-write open", name);
    /* a private view's writes never reach the file: "on disk when it
       returns" would be false for every operation */
    if ((flags & MSEG_COW) && (flags & MSEG_DURABLE))
        return fail(EINVAL, "segment %s: MSEG_COW and MSEG_DURABLE exclude each other (a copy-on-write "
                    "view's changes never reach the file)", name);
    if (backend_of(flags)->check_name(name))
        return -1;
    if (!(flags & MSEG_CREATE))
        cfg = NULL;   /* only used when the segment is created (mseg.h): not judged either */
    p->size = cfg && cfg->size ? cfg->size : MSEG_DEFAULT_SIZE;
    p->max_size = cfg ? cfg->max_size : 0;
    /* before rounding up to a page: near SIZE_MAX that wraps to 0, and the
       message said "size 0" (or "max_size 0 is below size") */
    if (p->size > MSEG_MAX_SIZE || p->max_size > MSEG_MAX_SIZE)
        return fail(EINVAL, "segment %s: %s %llu is above the largest segment, %llu bytes", name,
                    p->size > MSEG_MAX_SIZE ? "size" : "max_size",
                    (unsigned long long)(p->size > MSEG_MAX_SIZE ? p->size : p->max_size),
                    (unsigned long long)MSEG_MAX_SIZE);
    /* the messages name the sizes asked for, not their rounding up to a
       page (a size of 1000 was reported as "segment size 4096") */
    uint64_t asked = p->size, asked_max = p->max_size;
    p->size = (p->size + MSEG_PAGE - 1) & ~(uint64_t)(MSEG_PAGE - 1);
    p->mode = cfg && cfg->mode ? (mode_t)(cfg->mode & 07777) : 0600;
    if (p->size < MSEG_MIN_SIZE || p->size > MSEG_MAX_SIZE)
        return fail(EINVAL, "segment %s: size %llu is outside [%u, %llu]", name,
                    (unsigned long long)asked, MSEG_MIN_SIZE, (unsigned long long)MSEG_MAX_SIZE);
    if (p->max_size) {
        p->max_size = (p->max_size + MSEG_PAGE - 1) & ~(uint64_t)(MSEG_PAGE - 1);
        if (p->max_size < p->size || p->max_size > MSEG_MAX_SIZE)
            return fail(EINVAL, "segment %s: max_size %llu is below size %llu or above %llu", name,
                        (unsigned long long)asked_max, (unsigned long long)asked,
                        (unsigned long long)MSEG_MAX_SIZE);
    }
    return 0;
}

/* ---- opening the descriptor ---- */

static int open_fd(mseg *s, const struct params *p, bool *created)
{
    const struct backend *be = backend_of(s->flags);
    int acc = s->mode == MODE_RW ? O_RDWR : O_RDONLY;
    *created = false;
    if ((s->flags & MSEG_CREATE) && (s->flags & MSEG_EXCL)) {
        int fd = be->open(s->name, O_RDWR | O_CREAT | O_EXCL, p->mode);
        *created = fd >= 0;
        return fd;
    }
    for (int tries = 0; tries < 100; tries++) {
        int fd = be->open(s->name, acc, 0);
        if (fd >= 0 || errno != ENOENT || !(s->flags & MSEG_CREATE))
            return fd;
        fd = be->open(s->name, O_RDWR | O_CREAT | O_EXCL, p->mode);
        if (fd >= 0) {
            *created = true;
            return fd;
        }
        /* taken, though the open found nothing: a file made meanwhile, or
           a symbolic link to a missing file, which O_EXCL does not follow
           (a segment is never made through a link), and no retry changes */
        if (errno != EEXIST || backend_dangling_link(s->flags, s->name))
            return -1;
    }
    errno = EAGAIN;
    return -1;
}

/* ---- recognizing leftovers of an interrupted creation ---- */

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* True when the file holds only zero bytes. Reads only its data: holes
   (SEEK_DATA) cost nothing, and the scan stops at the first nonzero byte,
   which a file that is not a leftover has near its start. */
static bool file_all_zero(int fd, uint64_t size)
{
    uint8_t buf[16384];
    uint64_t at = 0;
    while (at < size) {
        off_t data = lseek(fd, (off_t)at, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            return true;            /* a hole to the end */
        if (data < 0)
            data = (off_t)at;       /* no SEEK_DATA here: read everything */
        uint64_t want = size - (uint64_t)data < sizeof buf ? size - (uint64_t)data : sizeof buf;
        ssize_t got = pread(fd, buf, want, data);
        if (got <= 0)
            return got == 0;        /* a read error: do not take it for zeros */
        if (!all_zero(buf, (size_t)got))
            return false;
        at = (uint64_t)data + (uint64_t)got;
    }
    return true;
}

/* Whether an open-only opener that found a leftover should wait and look
   again: only while the file is empty or marked. A creator leaves nothing
   else between its open(O_CREAT) and taking the door, and formats under
   the door. A file of zeros is no creation in progress (a dead creator's,
   or not ours), and each look at it reads all of it again: 21 looks at a
   1 GiB file of zeros took 24 s. */
static bool creation_may_be_running(const uint8_t *first, size_t got, uint64_t file_size)
{
    return file_size == 0 || (got >= 8 && memcmp(first, MSEG_MAGIC_INIT, 8) == 0);
}

/* A leftover of an interrupted creation, which MSEG_CREATE may format:
   an empty file, one whose header A says "MSEGINIT", or one that holds
   nothing but zeros. Creation makes "MSEGINIT" durable before the file
   has any other byte or its size (format_segment), so no creation, cut
   short by a kill or a power loss, leaves anything else; and a file with
   any nonzero byte that is not ours is never formatted, whatever its
   header areas hold (an ISO image starts with 32 KiB of zeros). */
static bool half_made(int fd, const uint8_t *first, size_t got, uint64_t file_size)
{
    return creation_may_be_running(first, got, file_size) ||
           (all_zero(first, got) && file_all_zero(fd, file_size));
}

/* ---- mapping ---- */

/* Maps the header, runtime, control and log pages before their first
   touches, rather than a page fault for each: a fault is the dearest part
   of an open (20 to 120 us each on a virtual machine, measured). A
   read-write handle maps them for reading and only the runtime page, which
   every attach writes, for writing: a write fault marks a page of a shared
   file mapping dirty, so writing all five (as until 2026-11-29) made every
   open, even one that only reads, write the header copies, the control page
   and the log head back to the disk. The benchmark's reopen of a 1M-entry
   map, 12 alternating runs each (2026-11-29): 110 us median with all five
   for writing, 105 us with this. Advice only: a kernel without
   MADV_POPULATE_* (before 5.14) faults as before. */
static void populate_metadata(mseg *s)
{
#ifdef MADV_POPULATE_WRITE
    uint64_t len = MSEG_LOG_OFF + MSEG_PAGE;   /* up to the log head */
    if (s->mode == MODE_COW)
        return;
    (void)madvise(s->base, len, MADV_POPULATE_READ);
    if (s->mode == MODE_RW)
        (void)madvise(s->base + MSEG_RUNTIME_OFF, MSEG_PAGE, MADV_POPULATE_WRITE);
#else
    (void)s;
#endif
}

/* Maps the file's size bytes, at the start of an address range of the
   larger of size and max_size, reserved for the segment's growth. With no
   growth to come (max_size 0, or no larger than size) the file is mapped
   in one call, without the reservation. */
static int map_segment(mseg *s, uint64_t size, uint64_t max_size)
{
    uint64_t reserve = max_size > size ? max_size : size;
    void *area = NULL;
    if (reserve > size) {
        area = mmap(NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (area == MAP_FAILED)
            return fail(errno, "segment %s: cannot reserve %llu bytes of address space for its max_size "
                        "(every handle reserves it, so that growth moves nothing): %s",
                        s->name, (unsigned long long)reserve, strerror(errno));
    }
    int prot = s->mode == MODE_RDONLY ? PROT_READ : PROT_READ | PROT_WRITE;
    int kind = s->mode == MODE_COW ? MAP_PRIVATE : MAP_SHARED;
    void *m = mmap(area, size, prot, kind | (area ? MAP_FIXED : 0), s->fd, 0);
    if (m == MAP_FAILED) {
        int e = errno;
        if (area)
            munmap(area, reserve);
        return fail(e, "segment %s: mmap failed: %s", s->name, strerror(e));
    }
    s->base = m;
    s->size = size;
    s->reserved = reserve;
    s->max_size = max_size;
    populate_metadata(s);
    return 0;
}

/* Maps [s->size, new_size) of the file into the reserved range; the
   caller holds s->remap. */
static int extend_mapping_locked(mseg *s, uint64_t new_size)
{
    uint64_t old = __atomic_load_n(&s->size, __ATOMIC_ACQUIRE);
    if (new_size <= old)
        return 0;
    int prot = s->mode == MODE_RDONLY ? PROT_READ : PROT_READ | PROT_WRITE;
    int kind = s->mode == MODE_COW ? MAP_PRIVATE : MAP_SHARED;
    if (mmap(s->base + old, new_size - old, prot, kind | MAP_FIXED, s->fd, (off_t)old) == MAP_FAILED)
        return fail(errno, "segment %s: cannot map its growth to %llu bytes: %s", s->name,
                    (unsigned long long)new_size, strerror(errno));
    __atomic_store_n(&s->size, new_size, __ATOMIC_RELEASE);
    return 0;
}

static int extend_mapping(mseg *s, uint64_t new_size)
{
    pthread_mutex_lock(&s->remap);
    int rc = extend_mapping_locked(s, new_size);
    pthread_mutex_unlock(&s->remap);
    return rc;
}

/*
 * Maps what the runtime page says the segment grew to. Lock-free readers
 * call this without the segment lock, so another thread of this handle may
 * be in mseg_shrink meanwhile: it lowers runtime.size and s->size, then cuts
 * the file, all under s->remap. So the size is read again and judged under
 * s->remap: a size read before a shrink and mapped after it would map file
 * pages past the new end (SIGBUS) and put the handle's size back above the
 * file's, after which a growth took the cut space as already there and
 * committed records past the end of the file, which no open could replay.
 */
int seg_follow_growth(mseg *s)
{
    /* the epoch first: a first writer resets the size and then moves the
       epoch (attach_writer), so a stale size is never paired with the new
       epoch, which would hide a real growth to that size for the epoch */
    uint64_t epoch = __atomic_load_n(seg_epoch_word(s), __ATOMIC_ACQUIRE);
    uint64_t cur = __atomic_load_n(seg_size_word(s), __ATOMIC_ACQUIRE);
    if (cur <= __atomic_load_n(&s->size, __ATOMIC_ACQUIRE))
        return 0;
    if (cur == __atomic_load_n(&s->size_ignored, __ATOMIC_RELAXED) &&
        epoch == __atomic_load_n(&s->size_ignored_epoch, __ATOMIC_RELAXED))
        return 0;
    pthread_mutex_lock(&s->remap);
    epoch = __atomic_load_n(seg_epoch_word(s), __ATOMIC_ACQUIRE);
    cur = __atomic_load_n(seg_size_word(s), __ATOMIC_ACQUIRE);
    int rc = 0;
    struct stat st;
    if (cur <= __atomic_load_n(&s->size, __ATOMIC_ACQUIRE)) {
        /* a shrink (or another thread's follow) came first */
    } else if (cur > s->reserved || cur % MSEG_PAGE || fstat(s->fd, &st) || (uint64_t)st.st_size < cur) {
        /* A handle that never writes may be reading the runtime page as a
           crash or a reboot left it, before any writer has reset it (it is
           never trusted from disk: layout.h); a shrink, say, then a power
           loss. Its mapping already covers the heap the header records, so
           it keeps that. A writer resets the page when it attaches, so for
           a read-write handle this is damage. */
        if (s->mode != MODE_RW) {
            __atomic_store_n(&s->size_ignored_epoch, epoch, __ATOMIC_RELAXED);
            __atomic_store_n(&s->size_ignored, cur, __ATOMIC_RELAXED);
        } else {
            rc = fail(EUCLEAN, "segment %s: runtime page says the segment grew to %llu bytes, "
                      "beyond its max_size or its file", s->name, (unsigned long long)cur);
        }
    } else {
        rc = extend_mapping_locked(s, cur);
    }
    pthread_mutex_unlock(&s->remap);
    return rc;
}

static uint64_t round_page(uint64_t n)
{
    return (n + MSEG_PAGE - 1) & ~(uint64_t)(MSEG_PAGE - 1);
}

/*
 * Growth, inside an operation, under the lock. Crash-atomic by its order:
 *   1. the file grows and its blocks are reserved (ENOSPC here, not SIGBUS
 *      later), and (files) fsync makes the new size durable;
 *   2. this process maps the new range;
 *   3. a new header generation records the size, flushed;
 *   4. runtime.size tells other processes to map it at their next operation;
 *   5. the heap's new free space is logged in the current operation.
 * A crash before 3 leaves a longer file and the old size; between 3 and the
 * commit, a segment whose heap ends before its size (the next growth uses
 * the gap first). Either opens consistent.
 *
 * What keeps every process able to reach the heap: heap_end <= runtime.size
 * <= the header's size <= the file's size, and each process maps
 * runtime.size before it reads the heap (lock_acquire, seg_read_begin). So
 * whoever moves heap_end past runtime.size, including a growth into a gap
 * a dead grower left, publishes runtime.size first.
 */
static int refresh_size(mseg *s, struct mseg_header *h, int *bad_copy);

/* Cuts a growth that failed off the file again (nobody maps past old). */
static void cut_back(mseg *s, uint64_t old)
{
    if (ftruncate(s->fd, (off_t)old)) {
        /* the longer file is harmless: the header still says old */
    }
}

/* Step 1: reserves the file's blocks for [old, *new_size). The doubling
   step only makes growths rarer: when the file system refuses it (a full
   disk, a quota, the file size limit), the least growth the allocation
   needs is tried before failing, and *new_size becomes that. (Without it,
   a segment of 2 MiB under a 3 MiB RLIMIT_FSIZE failed every allocation
   that had to grow with EFBIG, "cannot grow to 4194304 bytes".) */
static int reserve_growth(mseg *s, uint64_t old, uint64_t *new_size, uint64_t least)
{
    int r = posix_fallocate(s->fd, (off_t)old, (off_t)(*new_size - old));
    if (r && room_ran_out(r) && least < *new_size) {
        cut_back(s, old);
        *new_size = least;
        r = posix_fallocate(s->fd, (off_t)old, (off_t)(least - old));
    }
    if (r == 0)
        return 0;
    cut_back(s, old);
    return fail(r, "segment %s: cannot grow to %llu bytes: %s", s->name,
                (unsigned long long)*new_size, strerror(r));
}

int seg_grow(mseg *s, uint64_t need)
{
    /* the header may already record more than runtime.size (a grower that
       died between steps 3 and 4): start from there, never below it, or
       this growth would write a smaller size over it */
    struct mseg_header h;
    int bad_copy;
    if (s->mode == MODE_RW && refresh_size(s, &h, &bad_copy))
        return -1;
    /* through the log: inside a transaction an earlier growth of the same
       transaction has moved the heap's end only in its records */
    uint64_t old = s->size,
             heap_end = op_get64(s, MSEG_CONTROL_OFF + offsetof(struct mseg_control, heap_end));
    if (s->mode == MODE_RW && heap_end + MSEG_BLOCK_MIN <= old &&
        old - heap_end + heap_tail_free(s) >= need + 2 * MSEG_GRANULE) {
        /* an earlier growth was interrupted after the file and header grew:
           the heap only has to take the space that is already there. This
           handle mapped it from the header at open, but processes attached
           before then still map the old size: tell them (step 4), or every
           block past their mapping is out of their reach */
        if (__atomic_load_n(&seg_runtime(s)->size, __ATOMIC_ACQUIRE) < old)
            __atomic_store_n(&seg_runtime(s)->size, old, __ATOMIC_RELEASE);
        heap_grow(s, old);
        return 0;
    }
    /* the ENOMEM messages say why it cannot grow, after heap_alloc's "no
       free block for N bytes, and " (no_room), which names the segment */
    if (s->mode != MODE_RW || !s->max_size || old >= s->max_size)
        return fail(ENOMEM, "it is full (%llu bytes) and %s", (unsigned long long)old,
                    !s->max_size ? "has no max_size to grow to"
                    : s->mode != MODE_RW ? "is a private view, which cannot grow" : "has reached its max_size");
    /* the new space merges with a free block that ends the heap */
    uint64_t tail = heap_tail_free(s);
    uint64_t want = need + 2 * MSEG_GRANULE;
    want = want > tail ? want - tail : MSEG_BLOCK_MIN;
    /* double (by at most 1 GiB a step) until it fits, or up to max_size */
    uint64_t new_size = old;
    while (new_size < s->max_size && (new_size < heap_end || new_size - heap_end < want)) {
        uint64_t step = new_size < (1ull << 30) ? new_size : (1ull << 30);
        new_size = round_page(new_size + step);
        if (new_size > s->max_size)
            new_size = s->max_size;
    }
    if (new_size < heap_end || new_size - heap_end < want)
        return fail(ENOMEM, "growing to its max_size of %llu bytes would not make room for it",
                    (unsigned long long)s->max_size);
    if (reserve_growth(s, old, &new_size, round_page(heap_end + want)))
        return -1;
    if (!(s->flags & MSEG_SHM) && fsync(s->fd)) {
        sync_flush_failed(s);
        return fail(EIO, "segment %s: fsync after growing failed: %s", s->name, strerror(errno));
    }
    if (extend_mapping(s, new_size) || header_write_size(s, new_size))
        return -1;
    __atomic_store_n(&seg_runtime(s)->size, new_size, __ATOMIC_RELEASE);
    heap_grow(s, new_size);
    return 0;
}

uint64_t seg_header_limit(mseg *s)
{
    struct stat st;
    return fstat(s->fd, &st) == 0 && (uint64_t)st.st_size > s->size ? (uint64_t)st.st_size : s->size;
}

int seg_register_fd(mseg *s, int fd)
{
    return ofd_lock(fd, F_RDLCK, s->mode == MODE_RW ? WRITERS_BYTE : READERS_BYTE, false);
}

int seg_remap_after_fork(mseg *s)
{
    int prot = s->mode == MODE_RDONLY ? PROT_READ : PROT_READ | PROT_WRITE;
    /* a copy-on-write handle's view is private: remapping would drop its
       own pages, so it keeps the parent's description alive (only a read
       lock on the readers' byte: a shrink elsewhere waits for this child) */
    if (s->mode != MODE_COW && s->base && s->size &&
        mmap(s->base, s->size, prot, MAP_SHARED | MAP_FIXED, s->fd, 0) == MAP_FAILED)
        return -1;
    if (s->seq_page &&
        mmap(s->seq_page, MSEG_PAGE, PROT_READ, MAP_SHARED | MAP_FIXED, s->fd, MSEG_RUNTIME_OFF) == MAP_FAILED)
        return -1;
    return 0;
}

bool seg_writers_attached(mseg *s)
{
    return ofd_conflict(s->fd, F_WRLCK, WRITERS_BYTE);
}

/* Other handles attached to the file or shm object, writers or readers. */
static bool others_attached(mseg *s)
{
    return ofd_conflict(s->fd, F_WRLCK, WRITERS_BYTE) || ofd_conflict(s->fd, F_WRLCK, READERS_BYTE);
}

int mseg_shrink(mseg *s)
{
    /* a private view cannot cut the file (its descriptor is read-only: the
       door's write lock failed, and the EBUSY said "other handles are
       attached" with none attached) */
    if (s && s->mode == MODE_COW)
        return fail(EROFS, "segment %s is open copy-on-write: its view is private and cannot "
                    "shrink the segment", s->name);
    if (seg_write_begin(s))
        return -1;
    if (tx_owns(s)) {
        seg_write_end(s, false);
        return fail(EBUSY, "segment %s: mseg_shrink inside a transaction", s->name);
    }
    if (s->fork_shared) {
        seg_write_end(s, false);
        return fail(EBUSY, "segment %s: this handle was inherited through fork() and could not "
                    "register apart from its parent, so it cannot tell who else is attached", s->name);
    }
    /* the door keeps openers out until the file has its new size */
    if (ofd_lock(s->fd, F_WRLCK, DOOR_BYTE, true) || others_attached(s)) {
        ofd_lock(s->fd, F_UNLCK, DOOR_BYTE, false);
        seg_write_end(s, false);
        return fail(EBUSY, "segment %s: other handles are attached", s->name);
    }
    uint64_t old = s->size, heap_end = heap_trim(s, MSEG_MIN_SIZE);
    uint64_t new_size = round_page(heap_end);
    if (new_size < MSEG_MIN_SIZE)
        new_size = MSEG_MIN_SIZE;
    if (new_size >= old) {
        /* nothing to trim, but the file may be longer than the segment: a
           shrink killed after its headers, before its cut (or a grower
           killed before its header). Nobody else maps it: cut it here, or
           no later shrink ever did. Both header copies get the size first,
           as below: the older one may still hold the longer size */
        struct stat st;
        int rc = 0;
        if (fstat(s->fd, &st) == 0 && (uint64_t)st.st_size > old) {
            rc = header_write_size(s, old) || header_write_size(s, old) ? -1 : 0;
            if (rc == 0 && ftruncate(s->fd, (off_t)old))
                rc = fail(errno, "segment %s: ftruncate: %s", s->name, strerror(errno));
        }
        ofd_lock(s->fd, F_UNLCK, DOOR_BYTE, false);
        seg_write_end(s, false);
        return rc;
    }
    /* the heap runs to the new end: the part of the last page past the
       trimmed heap stays the heap's free space, counted by
       mseg_free_memory (left as a gap, an allocation still took it through
       seg_grow while mseg_free_memory said nothing was free) */
    heap_grow(s, new_size);
    int rc = op_commit(s);
    /* everything so far onto the disk first, as mseg_sync: the new size in
       the headers must never reach the disk before the heap's trim does
       (without MSEG_DURABLE that trim is only in the page cache, and a
       power loss would leave a heap running past the file's end). This
       also empties a durable handle's committed slots, whose records for
       the tail about to go would write past the file if replayed */
    if (rc == 0)
        rc = sync_locked(s);
    /* both copies, before the file shrinks: a copy still holding the old
       size would no longer fit the file */
    if (rc == 0)
        rc = header_write_size(s, new_size) || header_write_size(s, new_size) ? -1 : 0;
    if (rc == 0) {
        /* under s->remap: a lock-free reader of this handle that read the
           old runtime.size maps nothing of the cut tail (seg_follow_growth) */
        pthread_mutex_lock(&s->remap);
        __atomic_store_n(&seg_runtime(s)->size, new_size, __ATOMIC_RELEASE);
        __atomic_store_n(&s->size, new_size, __ATOMIC_RELEASE);
        /* the cut tail reads as zeros, not a fault: another thread of this
           handle may be in a lock-free read that checked an address against
           the old size; it reads zeros, its sequence check fails (this
           shrink committed), and it retries against the new size */
        mmap(s->base + new_size, old - new_size, PROT_READ,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
        if (ftruncate(s->fd, (off_t)new_size))
            rc = fail(errno, "segment %s: ftruncate: %s", s->name, strerror(errno));
        pthread_mutex_unlock(&s->remap);
    }
    ofd_lock(s->fd, F_UNLCK, DOOR_BYTE, false);
    lock_release(s);
    return rc;
}

/* ---- creation ---- */

static int write_headers(mseg *s, uint64_t size, uint64_t max_size)
{
    struct mseg_header h;
    header_build(&h, size, max_size, 1);
    header_seal(&h);
    memcpy(&s->id, h.uuid, sizeof s->id);
    memcpy(seg_header(s, 1), &h, sizeof h);
    if (msync(s->base, 2 * MSEG_PAGE, MS_SYNC))
        return -1;
    memcpy(seg_header(s, 0), &h, sizeof h);
    return msync(s->base, MSEG_PAGE, MS_SYNC);
}

static int format_segment(mseg *s, const struct params *p)
{
    const struct backend *be = backend_of(s->flags);
    /* "MSEGINIT" reaches the disk before any other byte and before the
       size: a power loss at any later point leaves a file that half_made
       recognizes. With the size first, the disk could keep the size and
       pages written back from the mapping without the marker. */
    if (ftruncate(s->fd, 0) || pwrite(s->fd, MSEG_MAGIC_INIT, 8, 0) != 8 || fsync(s->fd) ||
        ftruncate(s->fd, (off_t)p->size))
        return fail(errno, "segment %s: cannot size the new segment: %s", s->name, strerror(errno));
    int r = posix_fallocate(s->fd, 0, (off_t)p->size);
    if (r)
        return fail(r, "segment %s: cannot reserve %llu bytes: %s", s->name,
                    (unsigned long long)p->size, strerror(r));
    if (map_segment(s, p->size, p->max_size))
        return -1;
    memset(s->base + MSEG_RUNTIME_OFF, 0, MSEG_HEAP_OFF - MSEG_RUNTIME_OFF);
    if (lock_init(s))
        return -1;
    op_begin(s);
    heap_format(s, MSEG_HEAP_OFF, p->size);
    op_discard(s);
    if (fsync(s->fd) || write_headers(s, p->size, p->max_size) || fsync(s->fd))
        return fail(errno, "segment %s: cannot write the new segment: %s", s->name, strerror(errno));
    /* also when this open did not make the file: a leftover's creator may
       have died before it fsynced the directory, and the entry with it */
    crash_point("create.formatted");
    if (be->sync_name(s->name))
        return fail(errno, "segment %s: cannot sync its directory: %s", s->name, strerror(errno));
    seg_runtime(s)->name_synced = 1;
    return 0;
}

/* A first writer of a segment whose creator died between writing the
   headers and fsyncing the directory: the segment is whole and opens, but
   its directory entry may never reach the disk, and a power loss would
   take it, with every durable commit made in it, away by its name. Done
   once (name_synced); a failure (the directory cannot be opened, say) is
   not the open's: the next first writer tries again. */
static void sync_name_once(mseg *s)
{
    struct mseg_runtime *rt = seg_runtime(s);
    if (rt->name_synced)
        return;
    int e = errno;
    if (backend_of(s->flags)->sync_name(s->name) == 0)
        rt->name_synced = 1;
    errno = e;
}

/* ---- validation of an existing segment ---- */

/* Bytes from the file's start through the end of header copy B. */
#define HEADERS_END ((uint64_t)MSEG_HEADER_B_OFF + sizeof(struct mseg_header))

/* Picks the valid header copy with the newer generation into *out, from
   the file's first `got` bytes at `first` (a read, or the mapping); the
   file has file_size bytes. *bad_copy: the damaged copy, or -1. */
static int pick_header(mseg *s, const uint8_t *first, uint64_t got, uint64_t file_size,
                       struct mseg_header *out, int *bad_copy)
{
    struct mseg_header h[2];
    char why[2][200];
    int err[2] = {0, 0};
    bool ok[2];
    for (int c = 0; c < 2; c++) {
        uint64_t at = c ? MSEG_HEADER_B_OFF : MSEG_HEADER_A_OFF;
        if (got < at + sizeof h[c]) {
            snprintf(why[c], sizeof why[c], "truncated: the file has %llu bytes, too few for "
                     "header copy %c", (unsigned long long)file_size, 'A' + c);
            err[c] = EUCLEAN;
            ok[c] = false;
            continue;
        }
        memcpy(&h[c], first + at, sizeof h[c]);
        ok[c] = header_validate(&h[c], file_size, why[c], sizeof why[c], &err[c]) == 0;
    }
    if (!ok[0] && !ok[1]) {
        int e = (err[0] == EPROTO || err[1] == EPROTO) ? EPROTO : EUCLEAN;
        if (strcmp(why[0], why[1]) == 0)
            return fail(e, "segment %s: %s (both header copies)", s->name, why[0]);
        return fail(e, "segment %s: header A: %s; header B: %s", s->name, why[0], why[1]);
    }
    /* A whole copy of a format or feature this library does not know
       (EPROTO) is no torn write: another version of mseg wrote it, maybe
       after the other copy (an update rewrites one copy). Unless the other
       copy is of a later generation, which only a copy of this format
       version tells, the segment is refused: taking the other would open
       an unknown format, and a first writer would write it over the newer */
    for (int c = 0; c < 2; c++)
        if (!ok[c] && err[c] == EPROTO &&
            !(h[c].format_version == MSEG_FORMAT_VERSION && h[!c].generation > h[c].generation))
            return fail(EPROTO, "segment %s: header %c: %s", s->name, 'A' + c, why[c]);
    int use = (!ok[0] || (ok[1] && h[1].generation > h[0].generation)) ? 1 : 0;
    *out = h[use];
    *bad_copy = !ok[0] ? 0 : !ok[1] ? 1 : -1;
    return 0;
}

/* Rewrites a damaged header copy from the good one (first writer only),
   flushed through flush_now, as every flush: its failure is fatal for the
   handle, and the tests' hooks see it. */
static int repair_header(mseg *s, int bad_copy, const struct mseg_header *good)
{
    memcpy(seg_header(s, bad_copy), good, sizeof *good);
    return flush_now(s, bad_copy ? MSEG_HEADER_B_OFF : MSEG_HEADER_A_OFF, MSEG_PAGE);
}

/* ---- attaching ---- */

/* What the first process to attach runs: the log's recovery, or after a
   system crash with unsynced changes, a rebuild and a full verification.
   1 if something was repaired, 0 if nothing was needed, -1 on error. */
static int recover(mseg *s)
{
    if (sync_system_crashed(s))
        return sync_verify_after_crash(s) ? -1 : 1;
    int rec = log_recover(s, sync_after_reboot(s));
    if (rec >= 0 && heap_control_sane(s))
        return -1;
    if (rec >= 0 && sync_rebooted_while_open(s)) {
        /* a power loss may have put an uncommitted operation's fresh
           blocks on disk before its log head: rebuild what they covered.
           Flushed at once, with what the log's recovery stored: a handle
           without MSEG_DURABLE flushes nothing else before its clean
           close, and a "clean" the kernel writes back ahead of the
           repaired heap would skip this repair after the next power loss */
        if (heap_rebuild(s) || flush_now(s, MSEG_CONTROL_OFF, s->size - MSEG_CONTROL_OFF))
            return -1;
        rec = 1;
    }
    return rec;
}

/* Read-only handles cannot write, so they cannot recover. When recovery is
   due and no writer is attached to do it, the open fails with EAGAIN. (A
   private view repaired by the reader was tried: its repaired pages stay
   private while the others follow the file, so once a writer attached, the
   reader mixed two states and missed the writer's sequence counter.) */
static int attach_readonly(mseg *s)
{
    bool writers = ofd_conflict(s->fd, F_WRLCK, WRITERS_BYTE);
    if (ofd_lock(s->fd, F_RDLCK, READERS_BYTE, true))
        return fail(errno, "segment %s: cannot register as a reader: %s", s->name, strerror(errno));
    if (writers || (!log_needs_recovery(s, sync_after_reboot(s)) && !sync_system_crashed(s)))
        return 0;
    return fail(EAGAIN, "segment %s needs recovery (a process died in the middle of an operation, "
                "or the machine stopped with unsynced changes) and no read-write handle is attached "
                "to do it: open it read-write once, or run `mseg recover`, then retry", s->name);
}

/* Marks a copy-on-write handle's private epoch (attach_private). */
#define PRIVATE_EPOCH (UINT64_C(1) << 63)

static int attach_private(mseg *s)
{
    /* registered as a reader: its private view still follows the file's
       unwritten pages, so mseg_shrink must not cut the file under it */
    if (ofd_lock(s->fd, F_RDLCK, READERS_BYTE, true))
        return fail(errno, "segment %s: cannot register as a reader: %s", s->name, strerror(errno));
    /* lock-free reads follow the writers' op_seq, which the private runtime
       page below stops showing once this handle writes it */
    void *page = mmap(NULL, MSEG_PAGE, PROT_READ, MAP_SHARED, s->fd, MSEG_RUNTIME_OFF);
    if (page == MAP_FAILED)
        return fail(errno, "segment %s: cannot map its runtime page: %s", s->name, strerror(errno));
    s->seq_page = page;
    s->seq_word = (const uint64_t *)((const uint8_t *)page + offsetof(struct mseg_runtime, op_seq));
    s->open_epoch = __atomic_load_n(seg_epoch_word(s), __ATOMIC_ACQUIRE);
    uint64_t seq = __atomic_load_n(s->seq_word, __ATOMIC_ACQUIRE);
    s->seq_stale = (seq & 1) && !seg_writers_attached(s) ? seq : 0;
    seg_runtime(s)->size = s->size;   /* private; growth is followed through seq_page */
    /* mutexes in the private view start afresh: an epoch no writer's can
       be (theirs count attaches from 1). open_epoch + 1 was the next
       first writer's, and the mutexes it stamped in pages this view had
       not written passed for private ones: a lock here waited forever on
       the private copy of a page where that writer held it */
    seg_runtime(s)->epoch = s->open_epoch | PRIVATE_EPOCH;
    if (lock_init(s))
        return -1;
    /* Recover privately only what no live writer will: with writers
       attached, an unfinished operation in the log is most likely theirs,
       in progress, and replaying or undoing it into private pages would
       freeze them while the rest of the view follows the file. Reads wait
       for op_seq instead (read_optimistic). */
    int rec = seg_writers_attached(s) ? 0 : recover(s);
    if (rec < 0)
        return -1;
    s->recovered = rec > 0;
    /* from here the private op_seq counts only this handle's private
       writes (lock.c): start it even, whatever the file's was at open */
    seg_runtime(s)->op_seq &= ~(uint64_t)1;
    return 0;
}

/* Maps the size of the newest valid header copy, if it is larger than
   what was mapped: growers write headers without the door lock, so an
   opener can read a copy in the middle of its rewrite (and take the other).
   The copies are read through the mapping, which holds their pages from
   the open on (populate_metadata): no system call but the fstat, where a
   read of each copy cost two more on every open and growth. The newest
   copy and the damaged one (or -1) go to *h and *bad_copy. */
static int refresh_size(mseg *s, struct mseg_header *h, int *bad_copy)
{
    struct stat st;
    if (fstat(s->fd, &st))
        return -1;
    uint64_t file_size = (uint64_t)st.st_size;
    if (pick_header(s, s->base, file_size < HEADERS_END ? file_size : HEADERS_END, file_size,
                    h, bad_copy))
        return -1;
    if (h->size <= s->size)
        return 0;
    if (h->size > s->reserved)
        return fail(EUCLEAN, "segment %s: the header grew to %llu bytes, past its max_size",
                    s->name, (unsigned long long)h->size);
    return extend_mapping(s, h->size);
}

/* A heap that ends short of a segment that never grows: a shrink killed
   after its trim committed, before the headers got the new size. An
   allocation would take that room (seg_grow), so the heap takes it now, as
   its free space, which mseg_free_memory then counts (it said 2,588 bytes
   free of a reopened 1 MiB segment that then handed out 895,232). Only the
   first writer: no other process maps less. A segment with a max_size
   keeps such a gap (a grower's, too) for its next growth, as room to grow,
   which mseg_free_memory never counts. */
static int take_heap_gap(mseg *s)
{
    if (s->max_size || seg_control(s)->heap_end + MSEG_BLOCK_MIN > s->size)
        return 0;
    if (seg_write_begin(s))
        return -1;
    heap_grow(s, s->size);
    return seg_write_end(s, true);
}

static int attach_writer(mseg *s)
{
    struct mseg_runtime *rt = seg_runtime(s);
    if (ofd_lock(s->fd, F_WRLCK, WRITERS_BYTE, false) == 0) {
        /* first writer: whatever the lock and log hold is from the past;
           and the header read before may have been one a grower (now
           dead) was rewriting at that moment, so read it again */
        struct mseg_header h;
        int bad_copy;
        if (refresh_size(s, &h, &bad_copy) || lock_init(s))
            return -1;
        /* a new attach: the epoch moves before recovery stores anything, so
           a copy-on-write view opened earlier, whose readers check the
           epoch after their reads (inspect_view_moved), cannot have read
           a half-recovered file unnoticed. The size first: a reader that
           sees the new epoch sees this size or a later one
           (seg_follow_growth reads them in the other order) */
        rt->size = s->size;
        __atomic_add_fetch(&rt->epoch, 1, __ATOMIC_RELEASE);
        int rec = recover(s);
        if (rec < 0 || (s->mode == MODE_RW && heap_drain_garbage_durably(s)))
            return -1;
        s->recovered = rec > 0;
        /* a damaged copy is repaired from the good one as read above, once
           this handle was the first writer: the copies read before then
           may be stale. (Repairing from those once wrote a growth's new
           header, torn when read, valid by then, back over with the old
           one: the kill -9 torture found a heap larger than both copies
           said.) No other writer is attached, and recovery writes no
           header, so they have not changed since. */
        if (bad_copy >= 0) {
            if (repair_header(s, bad_copy, &h))
                return -1;
            s->header_repaired = bad_copy;
        }
        /* a crash can leave op_seq odd with nothing for recovery to
           replay, and lock-free readers (read-only and copy-on-write
           handles) wait for it to be even: the state is whole now */
        if (rt->op_seq & 1)
            __atomic_store_n(&rt->op_seq, rt->op_seq + 1, __ATOMIC_RELEASE);
        /* "open" must be on disk before the first durable commit can be:
           a power loss that finds "clean" there is taken for a process
           crash, which replays no commit slot that the log head does not
           show in flight (sync.c). A durable handle flushes it now (one
           msync); a non-durable one need not, as its first change flushes
           this page to mark the segment unsynced, and a durable handle
           that attaches later flushes it itself (below). Flushing it on
           every reopen cost a synchronous disk write: the benchmark's
           reopen went from 430 us to 1,250 us */
        sync_name_once(s);
        bool was_clean = rt->state != MSEG_STATE_OPEN && (s->flags & MSEG_DURABLE);
        rt->state = MSEG_STATE_OPEN;
        if (sync_record_boot(s, was_clean) || take_heap_gap(s))
            return -1;
    } else if ((s->flags & MSEG_DURABLE) && sync_flush_state(s)) {
        return -1;   /* the first writer was not durable: "open" may not be on disk yet */
    }
    if (ofd_lock(s->fd, F_RDLCK, WRITERS_BYTE, true))
        return fail(errno, "segment %s: cannot register as a writer: %s", s->name, strerror(errno));
    __atomic_add_fetch(&rt->attach_count, 1, __ATOMIC_RELAXED);
    return 0;
}

/* ---- open ---- */

static void release(mseg *s)
{
    if (s->base)
        munmap(s->base, s->reserved);
    if (s->seq_page)
        munmap(s->seq_page, MSEG_PAGE);
    if (s->fd >= 0) {
        /* Unlocked explicitly: closing the descriptor would not drop the
           locks while a forked child's copies of the mappings still refer
           to this description (fork.c). A description shared with a parent
           or child (fork_shared) keeps them: they are the other's too. */
        if (!s->fork_shared)
            for (off_t byte = DOOR_BYTE; byte <= READERS_BYTE; byte++)
                ofd_lock(s->fd, F_UNLCK, byte, false);
        close(s->fd);
    }
    deferred_release_memory(s);
    op_index_release(s);
    pthread_mutex_destroy(&s->remap);
    held_release(s);
    free(s->name);
    free(s);
}

#define OPEN_AGAIN 1   /* open_locked: the name no longer leads to this file */

/* Whether the file s->fd has open still has a name. Segment files are
   not renamed or hard-linked by mseg, so a file with a link is the one
   its name leads to, and one without was removed (mseg_remove, or a
   failed creator), whatever the name leads to now. */
static bool still_named(mseg *s)
{
    struct stat st;
    return fstat(s->fd, &st) == 0 && st.st_nlink > 0;
}

/* Everything after the descriptor is open and the door is locked. 0, -1
   with errno, or OPEN_AGAIN. */
static int open_locked(mseg *s, const struct params *p, bool created)
{
    struct stat st;
    uint8_t first[HEADERS_END];
    ssize_t got;
    for (int tries = 0;; tries++) {
        /* the header copies before the size: a grower makes the file
           larger before it writes a copy, so every copy read here fits the
           size read after it. In the other order, two growths between the
           two calls left both copies larger than the size and the open
           failed as if the file were truncated */
        got = pread(s->fd, first, sizeof first, 0);
        if (got < 0)
            return fail(errno, "segment %s: read: %s", s->name, strerror(errno));
        if (fstat(s->fd, &st))
            return fail(errno, "segment %s: fstat: %s", s->name, strerror(errno));
        if (!half_made(s->fd, first, (size_t)got, (uint64_t)st.st_size))
            break;
        if (s->flags & MSEG_CREATE) {
            /* The name was removed while this open waited at the door: a
               creator whose formatting failed unlinks what it made, and
               mseg_remove may run at any time. Formatting this file would
               hand back a segment that no name leads to, whose data is gone
               at the last close; open the name afresh instead. */
            if (!still_named(s))
                return OPEN_AGAIN;
            if (format_segment(s, p) == 0)
                return attach_writer(s);
            int e = errno;
            /* nobody can be attached to what never got a header; but the
               name may lead elsewhere by now (mseg_remove, then another
               MSEG_CREATE that made a segment there): remove only this file */
            if (created && still_named(s))
                backend_of(s->flags)->unlink(s->name);
            errno = e;
            return -1;
        }
        if (tries == 20 || !creation_may_be_running(first, (size_t)got, (uint64_t)st.st_size))
            return fail(ENOENT, "segment %s: no valid header: its creation was interrupted "
                        "or is still running; open with MSEG_CREATE to initialize it", s->name);
        /* a creator may be between open(O_CREAT) and taking the door */
        ofd_lock(s->fd, F_UNLCK, DOOR_BYTE, false);
        nanosleep(&(struct timespec){ .tv_nsec = 2000000 }, NULL);
        ofd_lock(s->fd, s->mode == MODE_RW ? F_WRLCK : F_RDLCK, DOOR_BYTE, true);
    }
    /* the header comes from the read that found the segment made: the
       door keeps creators and shrinkers out. A grower (it does not take
       the door) may be rewriting one copy during the read: that copy fails
       its checksum and the other is taken, and the handle follows the
       growth later */
    struct mseg_header h;
    int bad_copy = -1;
    if (pick_header(s, first, (uint64_t)got, (uint64_t)st.st_size, &h, &bad_copy))
        return -1;
    memcpy(&s->id, h.uuid, sizeof s->id);
    /* A file with holes (copied or restored sparse: cp --sparse=always,
       tar -S, rsync -S) lost the space its creation reserved: the first
       store into a hole on a full file system would be a SIGBUS, in the
       middle of an operation. Reserve it again now, as creation does:
       ENOSPC here, not SIGBUS later. Only when the file has fewer blocks
       than bytes, so the usual open pays nothing. fallocate(2), not
       posix_fallocate: where the file system cannot, glibc's emulation
       writes zero bytes into blocks it reads as zero, which would race
       with the processes attached; there the file stays as it is. */
    if (s->mode == MODE_RW && (uint64_t)st.st_blocks * 512 < h.size &&
        fallocate(s->fd, 0, 0, (off_t)h.size) != 0 && errno != EOPNOTSUPP && errno != ENOSYS)
        return fail(errno, "segment %s has holes (%llu of %llu bytes allocated) and they cannot be "
                    "filled: %s", s->name, (unsigned long long)st.st_blocks * 512,
                    (unsigned long long)h.size, strerror(errno));
    if (map_segment(s, h.size, h.max_size))
        return -1;
    if (s->mode == MODE_RDONLY)
        return attach_readonly(s);
    if (s->mode == MODE_COW)
        return attach_private(s);
    return attach_writer(s);
}

/* Opens (or creates) the name, takes the door and does the rest of the
   open under it (open_locked). On OPEN_AGAIN the descriptor is closed,
   for the caller to try again. */
static int open_at_the_door(mseg *s, const struct params *p)
{
    bool created;
    s->fd = open_fd(s, p, &created);
    if (s->fd < 0) {
        int e = errno;
        return fail(e, "segment %s: cannot open: %s", s->name, backend_open_error(s->flags, s->name, e));
    }
    if (created && fchmod(s->fd, p->mode)) {
        /* shm objects and files get exactly the mode asked for, whatever the umask */
    }
    if (ofd_lock(s->fd, s->mode == MODE_RW ? F_WRLCK : F_RDLCK, DOOR_BYTE, true))
        return fail(errno, "segment %s: cannot lock: %s", s->name, strerror(errno));
    int r = open_locked(s, p, created);
    if (r == OPEN_AGAIN) {
        ofd_lock(s->fd, F_UNLCK, DOOR_BYTE, false);
        close(s->fd);
        s->fd = -1;
    }
    return r;
}

mseg *mseg_open(const char *name, unsigned flags, const struct mseg_config *cfg)
{
    struct params p;
    if (check_args(name, flags, cfg, &p))
        return NULL;
    mseg *s = calloc(1, sizeof *s);
    if (!s || !(s->name = strdup(name))) {
        free(s);
        return fail_null(ENOMEM, "out of process memory");
    }
    pthread_mutex_init(&s->remap, NULL);
    held_init(s);
    s->fork_fd = -1;
    s->header_repaired = -1;
    s->flags = flags;
    s->mode = (flags & MSEG_RDONLY) ? MODE_RDONLY : (flags & MSEG_COW) ? MODE_COW : MODE_RW;
    /* sequence numbers identify log contents: random, so no stale record
       on disk from another process or another boot can pass for ours */
    if (getrandom(&s->op.seq, sizeof s->op.seq, 0) != (ssize_t)sizeof s->op.seq)
        s->op.seq = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL);
    s->fd = -1;
    for (int tries = 0;; tries++) {
        int r = open_at_the_door(s, &p);
        if (r == 0)
            break;
        if (r < 0)
            goto fail;
        if (tries == 100) {
            fail(EAGAIN, "segment %s: removed again and again while being created", name);
            goto fail;
        }
    }
    ofd_lock(s->fd, F_UNLCK, DOOR_BYTE, false);
    registry_add(s);
    return s;
fail:;
    int e = errno;
    release(s);
    errno = e;
    return NULL;
}

int mseg_close(mseg *s)
{
    if (!s)
        return 0;
    uint32_t held;
    uint64_t at = held_mutex_in_use(s, &held);
    if (at)
        return fail(EBUSY, "segment %s: %u of its mutexes (the first at offset %#llx) %s locked by threads "
                    "of this process: unlock them before mseg_close, which left the handle open (the C "
                    "library's list of a thread's robust mutexes runs through their bytes, and would "
                    "point into the unmapped segment)", s->name, held, (unsigned long long)at,
                    held == 1 ? "is" : "are");
    tx_end_on_close(s);
    registry_remove(s);
    /* a durable handle's last commit owes its pages to the next commit,
       which may never come from this handle: flush them now */
    if (s->mode == MODE_RW && (s->flags & MSEG_DURABLE) && !s->failed && lock_acquire(s) == 0) {
        log_settle(s);
        lock_release(s);
    }
    /* a handle sharing its parent's registration (fork.c) must not take
       the writers' byte: the lock it would convert is the parent's. A
       handle whose flush failed writes nothing more: the kernel marked the
       pages it could not write clean, so a settle's msync would "succeed"
       without them and retire the commit slots (and say "clean") over a
       disk that still needs them replayed after a power loss */
    if (s->mode == MODE_RW && !s->failed && !s->fork_shared && ofd_lock(s->fd, F_WRLCK, DOOR_BYTE, true) == 0 &&
        ofd_lock(s->fd, F_WRLCK, WRITERS_BYTE, false) == 0 && !log_needs_recovery(s, false) &&
        log_settle(s) == 0) {
        /* the last writer leaves. A durable segment's free lists are stored
           in place without flushes (they are rebuilt after a crash): flush
           them before saying "clean", which skips that rebuild */
        if (!(s->flags & MSEG_DURABLE) || flush_now(s, 0, s->size) == 0) {
            seg_runtime(s)->state = MSEG_STATE_CLEAN;
            if (s->flags & MSEG_DURABLE)
                flush_now(s, MSEG_RUNTIME_OFF, MSEG_PAGE);
        }
    }
    release(s);   /* closing the descriptor drops its locks */
    return 0;
}

int mseg_remove(const char *name, unsigned flags)
{
    if (!name || !*name)
        return fail(EINVAL, "segment name is empty");
    if (flags & ~MSEG_OPEN_FLAGS)
        return fail(EINVAL, "segment %s: mseg_remove: unknown flags %#x", name, flags & ~MSEG_OPEN_FLAGS);
    const struct backend *be = backend_of(flags);
    if (be->check_name(name))
        return -1;
    if (be->unlink(name))
        return fail(errno, "segment %s: cannot remove: %s", name, strerror(errno));
    return 0;
}

size_t mseg_size(mseg *s)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle"), 0;
    seg_follow_growth(s);
    return (size_t)__atomic_load_n(&s->size, __ATOMIC_ACQUIRE);
}

size_t mseg_free_memory(mseg *s)
{
    /* free_bytes is stored in place during an operation (heap.c): read it
       under the lock, which also settles an operation a dead writer left */
    uint64_t n = MSEG_CONTROL_OFF + offsetof(struct mseg_control, free_bytes);
    if (s && s->mode != MODE_RDONLY && !tx_owns(s)) {
        if (lock_acquire(s))
            return 0;
        n = op_get64(s, n);
        lock_release(s);
        return (size_t)n;
    }
    uint64_t seq, v;
    do {
        if (seg_read_begin(s, &seq))
            return 0;
        v = op_get64(s, n);
    } while (!seg_read_end(s, seq));
    return (size_t)v;
}

/* ---- raw memory ---- */

mseg_off mseg_off_of(mseg *s, const void *p)
{
    const uint8_t *b = p;
    if (!s || !p || b < s->base || b >= s->base + s->size) {
        fail(EINVAL, "address %p is not inside segment %s", p, s ? s->name : "(null)");
        return 0;
    }
    return (mseg_off)(b - s->base);
}

void *mseg_at(mseg *s, mseg_off off)
{
    /* an object may start inside this process's mapping and end in what
       another process grew since: map that first */
    if (s && __atomic_load_n(seg_size_word(s), __ATOMIC_RELAXED) > __atomic_load_n(&s->size, __ATOMIC_RELAXED))
        seg_follow_growth(s);
    if (!s || off == 0 || off >= __atomic_load_n(&s->size, __ATOMIC_ACQUIRE))
        return fail_null(EINVAL, "offset %#llx is not inside segment %s",
                         (unsigned long long)off, s ? s->name : "(null)");
    return s->base + off;
}

/* mseg_alloc and mseg_free store in place (log.c: direct operations)
   unless they belong to a transaction, which may roll them back, or the
   segment is durable, whose commits flush the log's record of the pages
   they change; and not while freed blocks are still owed. */
static bool direct_ok(mseg *s)
{
    return !(s->flags & MSEG_DURABLE) && !tx_owns(s) && !heap_has_garbage(s);
}

void *mseg_alloc_aligned(mseg *s, size_t n, size_t align)
{
    if (!s)
        return fail_null(EINVAL, "NULL segment handle");
    if (align < MSEG_GRANULE)
        align = align && !(align & (align - 1)) ? MSEG_GRANULE : align;
    if (align == 0 || (align & (align - 1)) || align > MSEG_PAGE)
        return fail_null(EINVAL, "segment %s: alignment %zu is not a power of two up to %u", s->name, align,
                         MSEG_PAGE);
    if (s->base && align == MSEG_GRANULE)
        heap_alloc_prefetch(s, n);
    if (seg_write_begin(s))
        return NULL;
    if (direct_ok(s) && align == MSEG_GRANULE)
        op_direct(s);
    uint64_t p = heap_alloc(s, n, align);
    if (!p) {
        seg_write_end(s, false);   /* keeps errno: ENOMEM, or EUCLEAN if damaged */
        return NULL;
    }
    if (seg_write_end(s, true))
        return NULL;
    return s->base + p;
}

void *mseg_alloc(mseg *s, size_t n)
{
    return mseg_alloc_aligned(s, n, MSEG_GRANULE);
}

/* Ends a failed mseg_free: its errno, unless the end's own flush failed (EIO). */
static int free_failed(mseg *s)
{
    /* it refused before storing anything: ended as a direct operation, the
       discard would rebuild the free lists from a walk of the whole heap,
       in another order */
    if (s->op.direct)
        op_direct_off(s);
    int e = errno;
    if (seg_write_end(s, false) == 0)
        errno = e;
    return -1;
}

int mseg_free(mseg *s, void *p)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle");
    const uint8_t *b = p;
    if (!p || b < s->base || b >= s->base + s->size)
        return fail(EINVAL, "segment %s: %p is not a block of this segment", s->name, p);
    /* p's header is most likely not in the cache, and the lock's atomic
       instruction keeps later loads from starting early: start it now, so
       the miss overlaps with taking the lock (a prefetch never faults).
       The free then reads the next block's header, whose address it learns
       only from p's: a second miss, after the first. For the small blocks
       most programs free (up to 256 bytes) that header is in one of the
       next four lines, so they are asked for now too, in parallel; for a
       larger block they are its own bytes, a wasted load or four. */
    __builtin_prefetch(b - 4, 0);
    if (b + 252 < s->base + s->size)
        for (int line = 1; line <= 4; line++)
            __builtin_prefetch(b - 4 + 64 * line, 0);
    if (seg_write_begin(s))
        return -1;
    if (direct_ok(s))
        op_direct(s);
    uint64_t off = (uint64_t)(b - s->base);
    char what[MSEG_NAME_MAX + 64];
    const char *structure = structure_block(s, off, what, sizeof what);
    if (structure) {
        /* a live block, but a structure's: freed here, it left what it
           leads to behind, and whatever names it (the directory, a map, an
           owning map's entry) naming a free block */
        fail(EINVAL, "segment %s: %#llx is %s, not a block of mseg_alloc", s->name, (unsigned long long)off,
             structure);
        return free_failed(s);
    }
    if (heap_free(s, off))
        return free_failed(s);
    return seg_write_end(s, true);
}
