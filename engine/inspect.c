/*
 * inspect.c - read-only views for the mseg tool (see inspect.h).
 *
 * Like check.c, nothing here trusts the segment: the heap bounds are checked
 * against the mapping before the walk starts, every block's size is checked
 * against what is left of the heap before the walk steps over it, and each
 * step moves forward by at least the smallest block, so the walk ends.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "inspect.h"
#include "internal.h"

/* How long a heap walk may keep racing writers before it gives up with
   EAGAIN: as long as mseg_check waits for a quiet moment (check.c). A count
   of 64 walks ran out within a millisecond of a writer's busy stretch:
   mseg stats and info failed in about half their runs beside a busy
   writer, where check did not. */
#define WALK_WAIT_NS (5000 * 1000 * 1000ull)

/* ---- headers ---- */

/* Reads one header copy; judge_copy then validates it. */
static void read_copy(int fd, off_t at, struct inspect_header *h)
{
    memset(h, 0, sizeof *h);
    h->present = pread(fd, &h->raw, sizeof h->raw, at) == (ssize_t)sizeof h->raw;
}

static void judge_copy(uint64_t file_size, struct inspect_header *h)
{
    if (!h->present) {
        h->err = EUCLEAN;
        snprintf(h->why, sizeof h->why, "truncated: the file has %llu bytes",
                 (unsigned long long)file_size);
        return;
    }
    h->valid = header_validate(&h->raw, file_size, h->why, sizeof h->why, &h->err) == 0;
}

int inspect_headers(const char *name, unsigned flags, struct inspect_header hdr[2])
{
    const struct backend *be = (flags & MSEG_SHM) ? &backend_shm : &backend_file;
    if (!name || !*name || be->check_name(name))
        return name && *name ? -1 : fail(EINVAL, "segment name is empty");
    int fd = be->open(name, O_RDONLY, 0);
    if (fd < 0)
        return fail(errno, "segment %s: cannot open: %s", name, backend_open_error(flags, name, errno));
    /* the copies before the size, as an open reads them (open_locked): a
       grower makes the file larger before it writes a copy, so a copy read
       first fits the size read after it; in the other order, a growth in
       between showed a sound copy as truncated */
    read_copy(fd, MSEG_HEADER_A_OFF, &hdr[0]);
    read_copy(fd, MSEG_HEADER_B_OFF, &hdr[1]);
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return fail(e, "segment %s: fstat: %s", name, strerror(e));
    }
    judge_copy((uint64_t)st.st_size, &hdr[0]);
    judge_copy((uint64_t)st.st_size, &hdr[1]);
    close(fd);
    return 0;
}

/* ---- the walk ---- */

static unsigned bucket_of(uint64_t size)
{
    return size ? 63u - (unsigned)__builtin_clzll(size) : 0;
}

/* The heap bounds from the control page, if they fit the mapping. */
static int heap_bounds(mseg *s, uint64_t *start, uint64_t *end)
{
    const struct mseg_control *ctl = seg_control(s);
    *start = ctl->heap_start;
    *end = ctl->heap_end;
    if (*start != MSEG_HEAP_OFF || *end % MSEG_GRANULE || *end > s->size ||
        *end < *start + 2 * MSEG_BLOCK_MIN)
        return fail(EUCLEAN, "segment %s: control: heap [%#llx, %#llx) does not fit %llu bytes",
                    s->name, (unsigned long long)*start, (unsigned long long)*end,
                    (unsigned long long)s->size);
    return 0;
}

int inspect_walk(mseg *s, inspect_block_fn fn, void *arg,
                 inspect_progress_fn progress, void *parg)
{
    uint64_t start, end;
    if (heap_bounds(s, &start, &end))
        return -1;
    uint64_t total = end - start, step = total / 100 + 1, next_report = 0;
    uint64_t p = start + MSEG_GRANULE;
    while (p < end) {
        uint32_t h = *(const uint32_t *)(s->base + p - 4);
        uint64_t size = (uint64_t)(h >> 2) * MSEG_GRANULE;
        if (size < MSEG_BLOCK_MIN || size > end - p)
            return fail(EUCLEAN, "segment %s: heap: block at %#llx has impossible size %llu",
                        s->name, (unsigned long long)p, (unsigned long long)size);
        if (fn) {
            int rc = fn(p, size, h & MSEG_BLOCK_USED, arg);
            if (rc)
                return rc;
        }
        p += size;
        if (progress && p - start >= next_report) {
            progress(p - start, total, parg);
            next_report = p - start + step;
        }
    }
    if (progress)
        progress(total, total, parg);
    return 0;
}

static int count_block(uint64_t off, uint64_t size, bool used, void *arg)
{
    struct inspect_stats *st = arg;
    (void)off;
    unsigned b = bucket_of(size);
    if (used) {
        st->blocks_used++;
        st->bytes_used += size;
        st->used_hist[b]++;
    } else {
        st->blocks_free++;
        st->bytes_free += size;
        st->free_hist[b]++;
        if (size - 4 > st->largest_free)
            st->largest_free = size - 4;
    }
    return 0;
}

int inspect_heap_stats(mseg *s, struct inspect_stats *st,
                       inspect_progress_fn progress, void *parg)
{
    uint64_t start = mono_now_ns();
    for (unsigned walks = 1;; walks++) {
        uint64_t seq;
        if (seg_read_begin(s, &seq))
            return -1;
        memset(st, 0, sizeof *st);
        st->heap_start = seg_control(s)->heap_start;
        st->heap_end = seg_control(s)->heap_end;
        st->state = seg_runtime(s)->state;
        int rc = inspect_walk(s, count_block, st, progress, parg);
        int e = errno;
        if (seg_read_end(s, seq)) {
            errno = e;
            return rc;
        }
        if (mono_now_ns() - start > WALK_WAIT_NS)
            return fail(EAGAIN, "segment %s: writers kept changing the heap for %llu ms (%u walks); "
                        "retry when they are less busy", s->name,
                        (unsigned long long)(WALK_WAIT_NS / 1000000), walks);
        sched_yield();
    }
}

double inspect_fragmentation(const struct inspect_stats *st)
{
    /* free payload: each free block loses its 4-byte header */
    uint64_t payload = st->bytes_free - 4 * st->blocks_free;
    if (st->blocks_free == 0 || payload == 0)
        return 0.0;
    return 1.0 - (double)st->largest_free / (double)payload;
}

bool inspect_recovered(const mseg *s)
{
    return s && s->recovered;
}

int inspect_headers_locked(mseg *s, const char *name, unsigned flags, struct inspect_header hdr[2])
{
    if (lock_acquire(s))
        return -1;
    int rc = inspect_headers(name, flags, hdr), e = errno;
    lock_release(s);
    errno = e;
    return rc;
}

bool inspect_view_moved(mseg *s)
{
    if (!s || s->mode != MODE_COW)
        return false;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);   /* after the reads it vouches for */
    return __atomic_load_n(seg_epoch_word(s), __ATOMIC_RELAXED) != s->open_epoch;
}

int inspect_header_repaired(const mseg *s)
{
    return s ? s->header_repaired : -1;
}

/* ---- check with progress ---- */

struct progress_arg {
    inspect_progress_fn fn;
    void *arg;
};

/* A first pass only to show progress; check_segment reports any damage. */
static void walk_for_progress(mseg *s, void *arg)
{
    const struct progress_arg *p = arg;
    inspect_walk(s, NULL, NULL, p->fn, p->arg);
}

int inspect_check(const char *name, unsigned flags, struct mseg_report *r,
                  inspect_progress_fn progress, void *parg)
{
    struct progress_arg p = { progress, parg };
    return check_named(name, flags, r, progress ? walk_for_progress : NULL, &p);
}

/* ---- consistent copy ---- */

/* Copies len bytes from in to out, the cheapest way the file systems allow. */
static int copy_bytes(int in, int out, uint64_t len, const char **how)
{
    if (ioctl(out, FICLONE, in) == 0) {
        *how = "reflink";
        return 0;
    }
    uint64_t done = 0;
    loff_t ioff = 0, ooff = 0;
    while (done < len) {
        ssize_t n = copy_file_range(in, &ioff, out, &ooff, len - done, 0);
        if (n <= 0)
            break;
        done += (uint64_t)n;
    }
    if (done == len) {
        *how = "copy_file_range";
        return 0;
    }
    *how = "write";
    static char buf[1 << 16];
    for (; done < len;) {
        size_t want = len - done < sizeof buf ? (size_t)(len - done) : sizeof buf;
        ssize_t n = pread(in, buf, want, (off_t)done);
        if (n <= 0)
            return n < 0 ? -1 : (errno = EIO, -1);
        /* a short write (a file size limit reached mid-buffer) sets no
           errno: count what was written and let the next pwrite say why */
        ssize_t w = pwrite(out, buf, (size_t)n, (off_t)done);
        if (w <= 0)
            return w < 0 ? -1 : (errno = EIO, -1);
        done += (uint64_t)w;
    }
    return 0;
}

/* DST's directory, for an unnamed file beside it and for the final sync. */
static void dir_of(const char *path, char dir[PATH_MAX])
{
    snprintf(dir, PATH_MAX, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, PATH_MAX, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
}

/* fsync of the directory holding path. */
static int sync_parent(const char *path)
{
    char dir[PATH_MAX];
    dir_of(path, dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* The copy itself, under the lock: the bytes are a committed state because
   every engine operation completes (and retires its log) before unlocking. */
static int copy_under_lock(mseg *s, int out, const char **how)
{
    if (lock_acquire(s))
        return -1;
    /* a reflink takes the blocks on disk, which lack what another
       handle's failed flush left clean in the page cache (sync.c) */
    if (sync_heal_failed_flush(s)) {
        lock_release(s);
        return -1;
    }
    struct stat st;
    int rc = fstat(s->fd, &st);
    if (rc == 0)
        rc = copy_bytes(s->fd, out, (uint64_t)st.st_size, how);
    int e = errno;
    lock_release(s);
    if (rc == 0 && fchmod(out, st.st_mode & 0777))
        rc = -1, e = errno;
    errno = e;
    return rc;
}

/* The temporary's name, DST.XXXXXX: with DST's last component cut short
   where it is longer than NAME_MAX - 7 bytes, or the temporary's name
   would be too long (ENAMETOOLONG) for a DST whose own name is not. */
static void temp_name(const char *dst, char tmp[PATH_MAX])
{
    const char *slash = strrchr(dst, '/');
    size_t keep = strlen(dst), base = strlen(slash ? slash + 1 : dst);
    if (base > NAME_MAX - 7)
        keep -= base - (NAME_MAX - 7);
    snprintf(tmp, PATH_MAX, "%.*s.XXXXXX", (int)keep, dst);
}

/* The copy is a segment that no process has open, synced whole before it
   is named (mseg_copy_locked): its runtime page says so, as a clean close
   leaves it. As copied, it said what the source's did while this process
   held it open: "open", and "unsynced" while another process had changes
   not yet synced; after a reboot the copy then passed for a segment the
   machine stopped under (read-only opens failed with EAGAIN, check said
   "sound after recovery", a first writer rebuilt and verified it all).
   The bytes were copied under the lock, so no operation is in flight in
   them. */
static int mark_copy_clean(int out)
{
    struct mseg_runtime rt;
    ssize_t n = pread(out, &rt, sizeof rt, MSEG_RUNTIME_OFF);
    if (n != (ssize_t)sizeof rt)
        return n < 0 ? -1 : (errno = EIO, -1);
    rt.state = MSEG_STATE_CLEAN;
    rt.unsynced = 0;
    n = pwrite(out, &rt, sizeof rt, MSEG_RUNTIME_OFF);
    return n == (ssize_t)sizeof rt ? 0 : n < 0 ? -1 : (errno = EIO, -1);
}

/*
 * The file the copy is written into, beside DST. Preferably unnamed
 * (O_TMPFILE): it gets a name only once it is complete and synced
 * (name_unnamed), so a copy stopped any earlier (Ctrl-C, a kill, a crash)
 * leaves nothing behind. Without O_TMPFILE (or without /proc) it is a
 * named temporary, *named set, removed again on failure. tmp: the name it
 * has or will have.
 */
static int open_copy_target(const char *dst, char tmp[PATH_MAX], bool *named)
{
    char dir[PATH_MAX];
    dir_of(dst, dir);
    temp_name(dst, tmp);
    /* naming it later goes through /proc (linkat of /proc/self/fd/N) */
    int out = access("/proc/self/fd", X_OK) == 0 ? open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600) : -1;
    *named = out < 0;
    return out >= 0 ? out : mkostemp(tmp, O_CLOEXEC);
}

/* Links the unnamed file out at a fresh name tmp (from its XXXXXX). */
static int name_unnamed(int out, char tmp[PATH_MAX])
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", out);
    size_t len = strlen(tmp);
    for (unsigned tries = 0; tries < 100; tries++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t r = ((uint64_t)getpid() << 32 ^ (uint64_t)ts.tv_nsec ^ tries) * 0x9e3779b97f4a7c15ull;
        for (size_t i = len - 6; i < len; i++, r >>= 5)
            tmp[i] = "abcdefghijklmnopqrstuvwxyz012345"[r & 31];
        if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) == 0)
            return 0;
        if (errno != EEXIST)
            return -1;
    }
    return -1;
}

int mseg_copy_locked(const char *src, unsigned flags, const char *dst, const char **how)
{
    const char *unused;
    if (!how)
        how = &unused;
    *how = "none";
    if (!dst || !*dst || strlen(dst) + 8 >= PATH_MAX)
        return fail(EINVAL, "bad destination path");
    mseg *s = mseg_open(src, flags & MSEG_SHM, NULL);
    if (!s)
        return -1;
    /* DST naming the source's own file (the same path, another spelling of
       it, a hard link, or /dev/shm/NAME for --shm /NAME) would have the
       copy renamed over the segment: processes that have it open would go
       on writing to the unlinked old file and every change they make from
       then on would be lost. */
    struct stat sst, dstst;
    bool exists = stat(dst, &dstst) == 0;
    if (exists && fstat(s->fd, &sst) == 0 && sst.st_dev == dstst.st_dev && sst.st_ino == dstst.st_ino) {
        mseg_close(s);
        return fail(EINVAL, "%s: the destination is the source segment itself", dst);
    }
    /* The rename would replace a device, FIFO or socket with the copy (as
       root, /dev/null became a regular file) */
    if (exists && !S_ISREG(dstst.st_mode)) {
        mseg_close(s);
        return fail(S_ISDIR(dstst.st_mode) ? EISDIR : EINVAL, "%s: not a regular file; the copy "
                    "would replace it", dst);
    }
    char tmp[PATH_MAX];
    bool named;
    int out = open_copy_target(dst, tmp, &named);
    if (out < 0) {
        int e = errno;
        mseg_close(s);
        return fail(e, "%s: cannot create a temporary file: %s", tmp, strerror(e));
    }
    int rc = copy_under_lock(s, out, how);
    int e = errno;
    mseg_close(s);
    if (rc == 0 && mark_copy_clean(out))
        rc = -1, e = errno;
    if (rc == 0 && fsync(out))
        rc = -1, e = errno;
    if (rc == 0 && !named) {
        if (name_unnamed(out, tmp))
            rc = -1, e = errno;
        else
            named = true;
    }
    if (rc == 0 && (rename(tmp, dst) || sync_parent(dst)))
        rc = -1, e = errno;
    close(out);
    if (rc) {
        if (named)
            unlink(tmp);
        return fail(e, "copy of %s to %s failed: %s", src, dst, strerror(e));
    }
    return 0;
}
