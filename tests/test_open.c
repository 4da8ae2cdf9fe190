/* test_open.c - what an open reads of a segment that others are using.

   The door (segment.c) keeps creators and shrinkers out while an open
   reads the file's size and its header copies, but not growers: these
   tests run a growth at the moment the open reads, through a pread of the
   test binary that the statically linked engine calls in place of libc's
   (as test_powerloss.c does with fsync). Every test runs in a process of
   its own, so a test may set the hook without affecting another. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include "helpers.h"
#include "inspect.h"
#include "layout.h"
#include "testing.h"

#define KiB (1024ull)
#define MiB (1024ull * 1024ull)

static const unsigned backends[] = { 0, MSEG_SHM };
static const char *backend_name(unsigned b) { return b & MSEG_SHM ? "shm" : "file"; }

/* Called (once set) before each pread of the test binary, with its arguments. */
static void (*th_pread_hook)(int fd, size_t count, off_t offset);

ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
    if (th_pread_hook)
        th_pread_hook(fd, count, offset);
    return (ssize_t)syscall(SYS_pread64, fd, buf, count, offset);
}

/* ---- a growth between the size and the header copies ---- */

static mseg *grower;   /* another handle of the segment, which grows it in the hook */

/* Allocates until the segment has grown once. */
static void grow_once(mseg *s)
{
    size_t before = mseg_size(s);
    while (mseg_size(s) == before)
        if (!mseg_alloc(s, 16 * KiB))
            return;
}

/* At the read of both header copies (the first 4352 bytes, which only an
   open reads): two growths, so each copy records a size the file did not
   have a moment before. Once. */
static void grow_twice_at_header_read(int fd, size_t count, off_t offset)
{
    (void)fd;
    if (offset != 0 || count != MSEG_HEADER_B_OFF + sizeof(struct mseg_header))
        return;
    th_pread_hook = NULL;
    grow_once(grower);
    grow_once(grower);
}

/* An open of a segment that another process grows, twice, while the open
   reads its size and headers: the open must succeed and follow the growth.
   Before the fix the size was read first, both copies then recorded more
   than it and the open failed as if the file were damaged ("header A:
   truncated: the header says 2097152 bytes, the file has 524288; header B:
   truncated: the header says 1048576 bytes ..."); a racing grower found it
   with a copy-on-write open (mseg_check's) of a shm segment. */
static void open_during_two_growths(unsigned backend)
{
    static const unsigned modes[] = { 0, MSEG_RDONLY, MSEG_COW };
    static const char *const mode_names[] = { "read-write", "read-only", "copy-on-write" };
    char name[256];
    th_name(name, backend);
    struct mseg_config cfg = { .size = 256 * KiB, .max_size = 64 * MiB };
    grower = mseg_open(name, MSEG_CREATE | MSEG_EXCL | backend, &cfg);
    cr_assert_not_null(grower, "%s", mseg_errmsg());
    cr_assert_not_null(mseg_construct(grower, "one", "int", sizeof(int), 10, NULL), "%s", mseg_errmsg());
    for (int m = 0; m < 3; m++) {
        size_t before = mseg_size(grower);
        th_pread_hook = grow_twice_at_header_read;
        mseg *s = mseg_open(name, modes[m] | backend, NULL);
        cr_assert_null(th_pread_hook, "%s, %s: the open read no header copies", backend_name(backend),
                       mode_names[m]);
        cr_assert_gt(mseg_size(grower), 2 * before, "%s: the grower did not grow twice", backend_name(backend));
        cr_assert_not_null(s, "%s, %s open during two growths: %s", backend_name(backend), mode_names[m],
                           mseg_errmsg());
        cr_assert_eq(mseg_size(s), mseg_size(grower), "%s, %s: the open does not follow the growth",
                     backend_name(backend), mode_names[m]);
        size_t n = 0;
        cr_assert_not_null(mseg_find(s, "one", "int", sizeof(int), &n), "%s", mseg_errmsg());
        cr_assert_eq(n, 10);
        struct mseg_report r;
        cr_assert_eq(mseg_verify(s, &r), 0, "%s", mseg_errmsg());
        cr_assert_eq(r.problems, 0);
        cr_assert_eq(mseg_close(s), 0);
    }
    cr_assert_eq(mseg_close(grower), 0);
}

Test(open, an_open_while_another_handle_grows_twice_reads_headers_that_fit_the_file, .timeout = 60,
     .fini = th_cleanup)
{
    for (size_t b = 0; b < sizeof backends / sizeof *backends; b++)
        open_during_two_growths(backends[b]);
}

/* At the read of header copy A alone (inspect_headers, what `mseg info`
   shows, reads each copy by itself): two growths. Once. */
static void grow_twice_at_copy_a_read(int fd, size_t count, off_t offset)
{
    (void)fd;
    if (offset != MSEG_HEADER_A_OFF || count != sizeof(struct mseg_header))
        return;
    th_pread_hook = NULL;
    grow_once(grower);
    grow_once(grower);
}

/* inspect_headers had the open's old order too (the size, then each
   copy): two growths at its read of copy A showed both sound copies to
   `mseg info` as truncated ("truncated: the header says 1048576 bytes,
   the file has 262144"); found in review of the open's fix. */
Test(open, the_tool_reads_header_copies_that_fit_the_file_while_another_handle_grows_twice,
     .timeout = 60, .fini = th_cleanup)
{
    for (size_t b = 0; b < sizeof backends / sizeof *backends; b++) {
        char name[256];
        th_name(name, backends[b]);
        struct mseg_config cfg = { .size = 256 * KiB, .max_size = 64 * MiB };
        grower = mseg_open(name, MSEG_CREATE | MSEG_EXCL | backends[b], &cfg);
        cr_assert_not_null(grower, "%s", mseg_errmsg());
        size_t before = mseg_size(grower);
        struct inspect_header hdr[2];
        th_pread_hook = grow_twice_at_copy_a_read;
        cr_assert_eq(inspect_headers(name, backends[b], hdr), 0, "%s", mseg_errmsg());
        cr_assert_null(th_pread_hook, "%s: inspect_headers read no copy A", backend_name(backends[b]));
        cr_assert_gt(mseg_size(grower), 2 * before, "%s: the grower did not grow twice",
                     backend_name(backends[b]));
        for (int c = 0; c < 2; c++)
            cr_assert(hdr[c].valid, "%s: header %c read during two growths: %s", backend_name(backends[b]),
                      'A' + c, hdr[c].why);
        cr_assert_eq(mseg_close(grower), 0);
    }
}

/* ---- names that lead to no regular file ---- */

/* A symbolic link to a missing file. An open-only finds no segment there;
   a creation makes none through the link (O_EXCL does not follow it, and a
   link in a shared directory must not choose where a segment is made).
   The open-or-create used to try 100 times, each open finding nothing and
   each O_EXCL finding the name taken, and fail with EAGAIN, "Resource
   temporarily unavailable": as if a retry could help. */
Test(open, a_symbolic_link_to_a_missing_file_is_refused_at_once_and_nothing_is_made_through_it,
     .timeout = 30, .fini = th_cleanup)
{
    char link[256], target[256];
    th_name(link, 0);
    th_name(target, 0);
    cr_assert_eq(symlink(target, link), 0, "symlink: %s", strerror(errno));
    static const unsigned creates[] = { MSEG_CREATE, MSEG_CREATE | MSEG_EXCL };
    for (size_t i = 0; i < 2; i++) {
        errno = 0;
        cr_assert_null(mseg_open(link, creates[i], NULL), "flags %#x: opened", creates[i]);
        cr_assert_eq(errno, EEXIST, "flags %#x: errno %d (%s), expected EEXIST", creates[i], errno,
                     mseg_errmsg());
        cr_assert(strstr(mseg_errmsg(), "symbolic link"), "flags %#x: the message does not say why: %s",
                  creates[i], mseg_errmsg());
        struct stat st;
        cr_assert(lstat(target, &st) != 0 && errno == ENOENT, "flags %#x: a file was made through the link",
                  creates[i]);
        cr_assert(lstat(link, &st) == 0 && S_ISLNK(st.st_mode), "flags %#x: the link is gone", creates[i]);
    }
    static const unsigned opens[] = { 0, MSEG_RDONLY, MSEG_COW };
    for (size_t i = 0; i < 3; i++) {
        errno = 0;
        cr_assert_null(mseg_open(link, opens[i], NULL));
        cr_assert_eq(errno, ENOENT, "flags %#x: errno %d (%s)", opens[i], errno, mseg_errmsg());
    }
    unlink(link);
}

/* A Unix domain socket is not a regular file either: EINVAL, as for a FIFO,
   a directory or a device (README), where open(2) said ENXIO, "No such
   device or address". */
Test(open, a_unix_socket_is_refused_with_einval_as_not_a_regular_file, .timeout = 30, .fini = th_cleanup)
{
    char path[256];
    th_name(path, 0);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    cr_assert_lt(strlen(path), sizeof a.sun_path);
    strcpy(a.sun_path, path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0, "bind: %s", strerror(errno));
    static const unsigned modes[] = { 0, MSEG_RDONLY, MSEG_COW, MSEG_CREATE, MSEG_CREATE | MSEG_EXCL };
    for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
        errno = 0;
        cr_assert_null(mseg_open(path, modes[m], NULL), "flags %#x: opened", modes[m]);
        int want = modes[m] & MSEG_EXCL ? EEXIST : EINVAL;
        cr_assert_eq(errno, want, "flags %#x: errno %d (%s), expected %d", modes[m], errno, mseg_errmsg(), want);
        if (want == EINVAL)
            cr_assert(strstr(mseg_errmsg(), "not a regular file"), "flags %#x: %s", modes[m], mseg_errmsg());
    }
    struct mseg_report r;
    errno = 0;
    cr_assert_eq(mseg_check(path, 0, &r), -1);
    cr_assert_eq(errno, EINVAL, "mseg_check: errno %d (%s)", errno, mseg_errmsg());
    close(fd);
    unlink(path);
}

/* A FIFO or a directory under a shm segment's name (/dev/shm is writable
   by every user). The file backend refuses them at once (badinput); the
   shm backend opened them as they were: a read-only or copy-on-write open
   of a FIFO, and so mseg_check, waited for a writer forever, and the other
   opens failed with "read: Illegal seek" or "read: Is a directory". */
static char shm_dir_path[300];

static void remove_shm_dir(void)
{
    if (shm_dir_path[0])
        rmdir(shm_dir_path);
    th_cleanup();
}

Test(open, a_fifo_or_a_directory_under_a_shm_name_is_refused_at_once_not_waited_on, .timeout = 60,
     .fini = remove_shm_dir)
{
    char fifo[256], dir[256], path[300];
    th_name(fifo, MSEG_SHM);
    th_name(dir, MSEG_SHM);
    cr_assert_eq(mkfifo(th_path(path, fifo, MSEG_SHM), 0600), 0, "mkfifo: %s", strerror(errno));
    cr_assert_eq(mkdir(th_path(shm_dir_path, dir, MSEG_SHM), 0700), 0, "mkdir: %s", strerror(errno));
    const char *names[] = { fifo, dir };
    static const unsigned modes[] = { MSEG_RDONLY, MSEG_COW, 0, MSEG_CREATE };
    for (size_t i = 0; i < 2; i++) {
        for (size_t m = 0; m <= sizeof modes / sizeof *modes; m++) {
            bool check = m == sizeof modes / sizeof *modes;
            fflush(NULL);
            pid_t pid = fork();
            cr_assert_neq(pid, -1);
            if (pid == 0) {
                alarm(5);
                errno = 0;
                struct mseg_report r;
                if (check)
                    _exit(mseg_check(names[i], MSEG_SHM, &r) == 0 ? 1 : errno == EINVAL ? 0 : 2);
                mseg *s = mseg_open(names[i], modes[m] | MSEG_SHM, NULL);
                if (!s && (errno != EINVAL || !strstr(mseg_errmsg(), "not a regular file")))
                    fprintf(stderr, "errno %d: %s\n", errno, mseg_errmsg());
                _exit(s ? 1 : errno == EINVAL && strstr(mseg_errmsg(), "not a regular file") ? 0 : 2);
            }
            int st;
            cr_assert_eq(waitpid(pid, &st, 0), pid);
            char buf[64];
            cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s(%s, %#x): %s", check ? "mseg_check" : "mseg_open",
                      i ? "a directory" : "a FIFO", check ? 0 : modes[m], th_status_str(st, buf, sizeof buf));
        }
    }
    struct stat st;
    cr_assert(stat(path, &st) == 0 && S_ISFIFO(st.st_mode), "the FIFO was changed");
}

/* ---- the first writer's repair of a damaged header copy ---- */

/* The repaired copy is flushed as every flush is (flush_now): a failure is
   fatal for the handle (DESIGN), here for the open, which cannot say the
   copy is repaired. The repair called msync itself and ignored its result:
   the open succeeded, mseg recover said "header B was damaged and is
   rewritten", and the disk could still hold the damaged copy; nor did the
   flush reach the tests' hooks (the power-loss model, failure injection). */
Test(open, a_failed_flush_of_a_repaired_header_copy_fails_the_open_with_eio, .timeout = 30, .fini = th_cleanup)
{
    char name[256];
    th_name(name, 0);
    struct mseg_config cfg = { .size = 1 * MiB };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &cfg);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_not_null(mseg_construct(s, "one", "int", sizeof(int), 10, NULL), "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0);
    size_t len = 0;
    unsigned char *buf = th_read_file(name, &len);
    cr_assert_not_null(buf);
    buf[MSEG_HEADER_B_OFF + 40] ^= 0xff;   /* the generation: copy B fails its checksum */
    cr_assert_eq(th_write_file(name, buf, len), 0);

    mseg_test_fail_flush(1);
    errno = 0;
    s = mseg_open(name, 0, NULL);
    int e = errno;
    mseg_test_fail_flush(0);
    cr_assert_null(s, "the open succeeded though the flush of the repaired copy failed");
    cr_assert_eq(e, EIO, "errno %d (%s)", e, mseg_errmsg());

    /* with a disk that works, the open repairs it, onto the disk */
    s = mseg_open(name, 0, NULL);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0);
    free(buf);
    buf = th_read_file(name, &len);
    cr_assert_not_null(buf);
    cr_assert_eq(memcmp(buf + MSEG_HEADER_A_OFF, buf + MSEG_HEADER_B_OFF, sizeof(struct mseg_header)), 0,
                 "copy B is not copy A after the repair");
    free(buf);
}
