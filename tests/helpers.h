/*
 * helpers.h - small utilities shared by the Criterion tests.
 *
 * Every test runs in its own forked process, so the state below (the list
 * of segments to remove) belongs to one test. Names are unique per process
 * and carry the test run's id (the runner's pid, MSEG_TEST_RUN, set by
 * test_leftovers.c): files "${TMPDIR:-/tmp}/mseg-t-<run>-<pid>-<n>", shm
 * objects "/mseg-t-<run>-<pid>-<n>". A test passes `.fini = th_cleanup` so
 * what it created is removed even when an assertion fails; what a test that
 * crashed or timed out left behind, the runner removes at the end of the
 * run (test_leftovers.c). Forked children report failure with CHILD_CHECK (an
 * exit status), never with cr_assert.
 */
#ifndef MSEG_TEST_HELPERS_H
#define MSEG_TEST_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "mseg.h"
#include "testing.h"

#define TH_MAX_TRACKED 64

static char th_tracked[TH_MAX_TRACKED][256];
static unsigned th_tracked_flags[TH_MAX_TRACKED];
static int th_ntracked;
static pid_t th_owner;

static inline const char *th_tmpdir(void)
{
    const char *d = getenv("TMPDIR");
    return (d && *d) ? d : "/tmp";
}

/* Records name (flags 0: a path; MSEG_SHM: a shm name; 0x80000000: a
   directory) for th_cleanup. */
static inline void th_track(const char *name, unsigned flags)
{
    if (th_owner != getpid()) {
        th_owner = getpid();
        th_ntracked = 0;
    }
    if (th_ntracked < TH_MAX_TRACKED) {
        snprintf(th_tracked[th_ntracked], sizeof th_tracked[0], "%s", name);
        th_tracked_flags[th_ntracked++] = flags;
    }
}

#define TH_DIR 0x80000000u

/* The test run's id: the runner's pid, which test_leftovers.c puts in the
   environment before any test starts (the process's own pid outside a
   Criterion run). */
static inline int th_run_id(void)
{
    const char *r = getenv("MSEG_TEST_RUN");
    return r && *r ? atoi(r) : (int)getpid();
}

/* A fresh unique segment name for backend (0 = file, MSEG_SHM = shm),
   registered for cleanup. buf must hold 256 bytes. */
static inline char *th_name(char *buf, unsigned backend)
{
    static unsigned counter;
    char path[300];
    struct stat st;
    /* skip names left behind by a dead process that had our pid */
    do {
        unsigned n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
        if (backend & MSEG_SHM) {
            snprintf(buf, 256, "/mseg-t-%d-%d-%u", th_run_id(), (int)getpid(), n);
            snprintf(path, sizeof path, "/dev/shm%s", buf);
        } else {
            snprintf(buf, 256, "%s/mseg-t-%d-%d-%u", th_tmpdir(), th_run_id(), (int)getpid(), n);
            snprintf(path, sizeof path, "%s", buf);
        }
    } while (lstat(path, &st) == 0);
    th_track(buf, backend & MSEG_SHM);
    return buf;
}

/* A new segment of size bytes at a fresh name (th_name) of backend (0 or
   MSEG_SHM), open read-write; asserts that it opened. */
static inline mseg *th_create(char *name, unsigned backend, size_t size)
{
    th_name(name, backend);
    struct mseg_config c = { .size = size };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL | backend, &c);
    cr_assert_not_null(s, "create %s: %s", name, mseg_errmsg());
    return s;
}

/* Removes everything this process registered (Criterion .fini). */
/* Puts entries "k00000000", ... with 200-byte values into byte-key map m
   until a put fails (errno says why); returns how many went in. */
static inline long th_fill_byte_map(mseg *s, mseg_map *m)
{
    char key[32], val[200];
    memset(val, 1, sizeof val);
    long n = 0;
    for (;; n++) {
        snprintf(key, sizeof key, "k%08ld", n);
        if (mseg_map_put(s, m, key, strlen(key), val, sizeof val))
            return n;
    }
}

static inline void th_cleanup(void)
{
    if (th_owner != getpid())
        return;
    for (int i = th_ntracked; i-- > 0;) {
        if (th_tracked_flags[i] & TH_DIR)
            rmdir(th_tracked[i]);
        else
            mseg_remove(th_tracked[i], th_tracked_flags[i]);
    }
    th_ntracked = 0;
}

/* The file system path of a segment: the file, or /dev/shm/<name>. */
static inline char *th_path(char *buf, const char *name, unsigned backend)
{
    if (backend & MSEG_SHM)
        snprintf(buf, 300, "/dev/shm%s", name);
    else
        snprintf(buf, 300, "%s", name);
    return buf;
}

/* XXH3 of a file's bytes (and its size in *size); 0 with *size = -1 when
   the file cannot be read. */
static inline uint64_t th_hash_file(const char *path, long long *size)
{
    int fd = open(path, O_RDONLY);
    *size = -1;
    if (fd < 0)
        return 0;
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    char buf[1 << 16];
    long long total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        XXH3_64bits_update(st, buf, (size_t)n);
        total += n;
    }
    close(fd);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    *size = n < 0 ? -1 : total;
    return h;
}

static inline uint64_t th_hash(const void *p, size_t n)
{
    return (uint64_t)XXH3_64bits(p, n);
}

/* Whole-file read and write, for building damaged copies. */
static inline void *th_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return buf;
}

static inline int th_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    size_t put = 0;
    while (put < len) {
        ssize_t n = write(fd, (const char *)data + put, len - put);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        put += (size_t)n;
    }
    return close(fd);
}

/* Seconds on the monotonic clock. */
static inline double th_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* splitmix64: a small deterministic generator for randomized tests. */
static inline uint64_t th_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* In a forked child: on failure print where and why, and exit 99. */
#define CHILD_CHECK(c)                                                         \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "%s:%d: child check failed: %s (errno %d, %s)\n", \
                    __FILE__, __LINE__, #c, errno, mseg_errmsg());             \
            _exit(99);                                                         \
        }                                                                      \
    } while (0)

/* An 8-byte big-endian byte key: memcmp order is numeric order. */
static inline void th_be_key(uint64_t k, unsigned char out[8])
{
    for (int i = 0; i < 8; i++)
        out[i] = (unsigned char)(k >> (56 - 8 * i));
}

/* Child: puts and deletes the odd keys 1, 3, ..., 2 * pairs - 1 of map "m"
   (u64 keys, or th_be_key byte keys), each with itself as value, in a
   fixed pseudo-random order, until killed; also when the test's process
   exits, so a failed assertion leaves no writer behind. */
static inline void th_churn_odd_keys(const char *name, enum mseg_key kind, uint64_t pairs)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    mseg *w = mseg_open(name, 0, NULL);
    CHILD_CHECK(w != NULL);
    mseg_map *m = mseg_map_open(w, "m", kind, kind == MSEG_KEY_BYTES ? 0 : 8, 0);
    CHILD_CHECK(m != NULL);
    for (uint64_t r = 1;; r = r * 6364136223846793005ull + 1442695040888963407ull) {
        uint64_t k = 2 * ((r >> 33) % pairs) + 1;
        unsigned char b[8];
        th_be_key(k, b);
        const void *key = kind == MSEG_KEY_BYTES ? (const void *)b : (const void *)&k;
        if ((r >> 20) & 1)
            mseg_map_put(w, m, key, 8, key, 8);
        else
            mseg_map_del(w, m, key, 8);
    }
}

/* Runs fn(arg) in a forked child that then _exit(0)s; returns the raw wait
   status (fn may _exit itself or die by a signal). */
static inline int th_fork_run(void (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        fn(arg);
        _exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return status;
}

/* Forks a child that runs fn(arg, fd), fd the write end of a new pipe, and
   then _exit(0)s; the parent gets the read end in *read_fd. The child's
   pid, or -1 if the pipe or the fork failed. */
static inline pid_t th_fork_piped(void (*fn)(void *arg, int fd), void *arg, int *read_fd)
{
    int fds[2];
    if (pipe(fds))
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        fn(arg, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    if (pid < 0)
        close(fds[0]);
    *read_fd = fds[0];
    return pid;
}

/* A readable description of a wait status for assertion messages. */
static inline const char *th_status_str(int status, char *buf, size_t n)
{
    if (status == -1)
        snprintf(buf, n, "fork/wait failed");
    else if (WIFEXITED(status))
        snprintf(buf, n, "exited with %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(buf, n, "status %#x", status);
    return buf;
}

/* A flush hook that _exit(42)s at the flush of a header copy: growth's
   step 3, the new size written, before the attached processes are told. */
static inline void th_die_at_header_flush(const uint8_t *base, uint64_t size, uint64_t off, uint64_t len,
                                          void *arg)
{
    (void)base; (void)size; (void)arg;
    if (off < 2 * 4096 && len == 4096)
        _exit(42);
}

/* In a child: opens name, allocates `bytes` (which must grow the segment)
   and dies with status 42 at the header flush of that growth; status 0 if
   the growth never flushed a header. */
static inline void th_grow_and_die_at_header(const char *name, unsigned flags, size_t bytes)
{
    mseg *s = mseg_open(name, flags, NULL);
    CHILD_CHECK(s != NULL);
    mseg_test_set_flush_hook(th_die_at_header_flush, NULL);
    mseg_alloc(s, bytes);
    _exit(0);
}

/* Killing a child at its k-th crash event: every crash point of the engine
   and every flush (a growth flushes its new header before its operation
   commits). The parent sets th_die_at before it forks (0: never); the
   child counts from th_count_events(true) and _exit(42)s at that event;
   th_count_events(false) stops counting. */
static unsigned long th_die_at, th_events;

static inline void th_event(void)
{
    if (++th_events == th_die_at)
        _exit(42);
}

static inline void th_event_at_crash_point(const char *point, unsigned long n, void *arg)
{
    (void)point; (void)n; (void)arg;
    th_event();
}

static inline void th_event_at_flush(const uint8_t *base, uint64_t size, uint64_t off, uint64_t len, void *arg)
{
    (void)base; (void)size; (void)off; (void)len; (void)arg;
    th_event();
}

static inline void th_count_events(int on)
{
    th_events = 0;
    mseg_test_set_crash_hook(on ? th_event_at_crash_point : NULL, NULL);
    mseg_test_set_flush_hook(on ? th_event_at_flush : NULL, NULL);
}

/* A call that failed (failed) with errno err, whose message names the
   segment seg and, unless NULL, the object (a name, or "map at 0x..."). In
   the test's own process: it asserts. */
#define th_expect_failure(failed, err, seg, object, what)                                                    \
    do {                                                                                                     \
        int failed_ = (failed), errno_ = errno;   /* before an assertion's own calls */                      \
        const char *obj_ = (object);                                                                         \
        cr_assert(failed_, "%s succeeded", (what));                                                          \
        cr_assert_eq(errno_, (err), "%s: errno %d (%s), not %d", (what), errno_, mseg_errmsg(), (err));        \
        cr_assert(strstr(mseg_errmsg(), (seg)), "%s: the message does not name the segment: \"%s\"", (what),  \
                  mseg_errmsg());                                                                            \
        cr_assert(!obj_ || strstr(mseg_errmsg(), obj_), "%s: the message does not name %s: \"%s\"", (what),  \
                  obj_, mseg_errmsg());                                                                      \
    } while (0)

/* st is evaluated once (it may be a th_fork_run call). */
#define TH_EXITED_OK(st) __extension__ ({ int st_ = (st); st_ != -1 && WIFEXITED(st_) && WEXITSTATUS(st_) == 0; })

#endif
