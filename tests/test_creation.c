/* test_creation.c - a power loss during a segment's creation.

   MSEG_CREATE formats a file only when it is a leftover of an interrupted
   creation (empty, all zeros, or header A "MSEGINIT"), and refuses every
   other file that is not a valid segment, so that a wrong name never costs
   a user's file its contents (test_segment.c). That rule is safe only if
   no creation cut short by a power loss leaves anything else: a file with
   the new segment's pages but no marker would be refused for ever, and the
   user would have to find and delete it by hand.

   The model: the disk holds what the last fsync made durable; at a power
   loss, of the pages that changed since, any subset is on disk, and the
   file has its size at that fsync or the newer one. The engine's fsync
   calls are seen through th_fsync_hook (fsync_hook.h), and the file is
   read at each: those are the durable states, D1 .. Dn; D0 is the empty
   file open(O_CREAT) makes, and the last is the file once mseg_open has
   returned (the headers' msyncs are not seen: the last window takes them
   with any subset, more images than a disk could hold, never fewer).
   Between each pair of states every subset of the changed pages is tried
   (sampled when more than EXH_PAGES changed), at both sizes.

   Each image is reopened as after a reboot (another boot id): mseg_open
   with MSEG_CREATE must succeed, and give a sound segment; an open without
   it either succeeds or reports the interrupted creation (ENOENT). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <limits.h>

#include "fsync_hook.h"
#include "helpers.h"

#define PAGE       4096u
#define MAX_STATES 16
#define EXH_PAGES  10       /* up to 2^10 subsets per window, else samples */
#define SAMPLES    200

static const struct mseg_config creation_config = { .size = 1024 * 1024 };

struct state {
    uint8_t *bytes;
    size_t size;
};

static struct {
    const char *path;       /* the segment being created */
    struct state states[MAX_STATES];
    int count;
} rec;

static struct state read_file(const char *path)
{
    struct state st = { NULL, 0 };
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "cannot read %s: %s", path, strerror(errno));
    struct stat sb;
    cr_assert_eq(fstat(fd, &sb), 0);
    st.size = (size_t)sb.st_size;
    st.bytes = calloc(1, st.size + PAGE);
    cr_assert_not_null(st.bytes);
    cr_assert_eq(pread(fd, st.bytes, st.size, 0), (ssize_t)st.size);
    close(fd);
    return st;
}

static void record(struct state st)
{
    cr_assert_lt(rec.count, MAX_STATES, "more fsyncs than the test expects");
    rec.states[rec.count++] = st;
}

/* An fsync of the file being created: what it holds is durable now. */
static void on_fsync(int fd)
{
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0)
        return;
    target[n] = 0;
    if (strcmp(target, rec.path) == 0)
        record(read_file(rec.path));
}

static uint8_t page_byte(const struct state *st, size_t at)
{
    return at < st->size ? st->bytes[at] : 0;
}

static bool page_differs(const struct state *a, const struct state *b, size_t page)
{
    for (size_t at = page * PAGE; at < (page + 1) * PAGE; at++)
        if (page_byte(a, at) != page_byte(b, at))
            return true;
    return false;
}

/* Writes the image: `size` bytes, page p from `newer` when bit i of `pick`
   is set for changed[i] == p, else from `older`. */
static void write_image(const char *img, const struct state *older, const struct state *newer,
                        const size_t *changed, int nchanged, const bool *pick, size_t size)
{
    uint8_t *bytes = calloc(1, size + PAGE);
    cr_assert_not_null(bytes);
    for (size_t at = 0; at < size; at++)
        bytes[at] = page_byte(older, at);
    for (int i = 0; i < nchanged; i++) {
        if (!pick[i])
            continue;
        for (size_t at = changed[i] * PAGE; at < (changed[i] + 1) * PAGE && at < size; at++)
            bytes[at] = page_byte(newer, at);
    }
    int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "cannot write the image %s: %s", img, strerror(errno));
    cr_assert_eq(pwrite(fd, bytes, size, 0), (ssize_t)size);
    close(fd);
    free(bytes);
}

static const uint8_t other_boot[16] = "another boot id";

/* The image as found after the reboot: must open, or be formatted. */
static void judge_image(const char *img, int window, const char *what)
{
    mseg_test_set_boot_id(other_boot);
    errno = 0;
    mseg *s = mseg_open(img, 0, NULL);
    int open_errno = errno;
    char open_msg[512];
    snprintf(open_msg, sizeof open_msg, "%s", s ? "" : mseg_errmsg());
    if (s)
        mseg_close(s);
    s = mseg_open(img, MSEG_CREATE, &creation_config);
    mseg_test_set_boot_id(NULL);
    cr_assert_not_null(s, "window %d, %s: MSEG_CREATE refuses the image: errno %d, %s",
                       window, what, errno, mseg_errmsg());
    struct mseg_report r;
    cr_assert_eq(mseg_verify(s, &r), 0, "window %d, %s: verify: %s", window, what, mseg_errmsg());
    cr_assert_eq(r.problems, 0, "window %d, %s: %s", window, what, r.first_problem);
    mseg_close(s);
    cr_assert(open_msg[0] == 0 || open_errno == ENOENT,
              "window %d, %s: a plain open fails with errno %d, not ENOENT: %s",
              window, what, open_errno, open_msg);
}

static unsigned long images;

static void try_pick(const char *img, int window, const struct state *older, const struct state *newer,
                     const size_t *changed, int nchanged, const bool *pick)
{
    size_t sizes[2] = { older->size, newer->size };
    for (int k = 0; k < (sizes[0] == sizes[1] ? 1 : 2); k++) {
        char what[128];
        int n = snprintf(what, sizeof what, "size %zu, newer pages:", sizes[k]);
        for (int i = 0; i < nchanged && n < (int)sizeof what - 8; i++)
            if (pick[i])
                n += snprintf(what + n, sizeof what - (size_t)n, " %zu", changed[i]);
        write_image(img, older, newer, changed, nchanged, pick, sizes[k]);
        judge_image(img, window, what);
        images++;
    }
}

static void try_window(const char *img, int window, const struct state *older, const struct state *newer)
{
    size_t pages = ((older->size > newer->size ? older->size : newer->size) + PAGE - 1) / PAGE;
    size_t *changed = calloc(pages + 1, sizeof *changed);
    bool *pick = calloc(pages + 1, sizeof *pick);
    cr_assert(changed && pick);
    int n = 0;
    for (size_t p = 0; p < pages; p++)
        if (page_differs(older, newer, p))
            changed[n++] = p;
    if (n <= EXH_PAGES) {
        for (unsigned long mask = 0; mask < (1ul << n); mask++) {
            for (int i = 0; i < n; i++)
                pick[i] = (mask >> i) & 1;
            try_pick(img, window, older, newer, changed, n, pick);
        }
    } else {
        /* each page alone, each page left out, then random mixes */
        uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)window;
        for (int t = 0; t < 2 * n + SAMPLES; t++) {
            for (int i = 0; i < n; i++) {
                if (t < n)
                    pick[i] = i == t;
                else if (t < 2 * n)
                    pick[i] = i != t - n;
                else {
                    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                    pick[i] = rng & 1;
                }
            }
            try_pick(img, window, older, newer, changed, n, pick);
        }
    }
    free(changed);
    free(pick);
}

Test(creation, a_power_loss_at_any_point_of_creation_leaves_a_file_create_accepts,
     .timeout = 300, .fini = th_cleanup)
{
    char name[256], img[256];
    th_name(name, 0);
    rec.path = name;
    record((struct state){ calloc(1, PAGE), 0 });   /* D0: the empty new file */
    th_fsync_hook = on_fsync;
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &creation_config);
    th_fsync_hook = NULL;
    cr_assert_not_null(s, "create: %s", mseg_errmsg());
    mseg_close(s);
    record(read_file(name));
    cr_assert_geq(rec.count, 3, "creation made %d fsyncs of the file", rec.count - 2);

    th_name(img, 0);
    for (int w = 0; w + 1 < rec.count; w++)
        try_window(img, w, &rec.states[w], &rec.states[w + 1]);
    cr_log_info("creation: %d durable states, %lu images, every one opened or formatted",
                rec.count, images);
}

/* MSEG_CREATE formatting a leftover of an interrupted creation (here an
   empty file, as a creator killed right after open(O_CREAT) leaves it) is
   a creation too: the leftover's directory entry may never have reached
   the disk (its creator died before fsyncing the directory), and a power
   loss would then take the new segment, with every durable operation made
   in it, away by its name. Only a file this open made itself had its
   directory fsynced. */
static unsigned dir_fsyncs;
static void count_dir_fsync(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
        dir_fsyncs++;
}

Test(creation, formatting_a_leftover_of_an_interrupted_creation_fsyncs_its_directory, .fini = th_cleanup)
{
    char name[256];
    th_name(name, 0);
    cr_assert_eq(th_write_file(name, "", 0), 0);      /* the leftover */
    dir_fsyncs = 0;
    th_fsync_hook = count_dir_fsync;
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_DURABLE, &creation_config);
    th_fsync_hook = NULL;
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_expect_geq(dir_fsyncs, 1u, "the directory of the formatted leftover was not fsynced");
    mseg_close(s);
}

/* A creator killed once the headers were on disk, before it fsynced the
   directory, left a whole segment that opened normally and was never
   directory-synced: a power loss could take it, with every durable commit
   made in it since, away by its name. The next first writer fsyncs the
   directory, once; a segment whose creator finished costs no such fsync. */
static void die_when_formatted(const char *point, unsigned long n, void *arg)
{
    (void)n, (void)arg;
    if (strcmp(point, "create.formatted") == 0)
        _exit(42);
}

static unsigned dir_fsyncs_of_open(const char *name)
{
    dir_fsyncs = 0;
    th_fsync_hook = count_dir_fsync;
    mseg *s = mseg_open(name, MSEG_DURABLE, NULL);
    th_fsync_hook = NULL;
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0, "%s", mseg_errmsg());
    return dir_fsyncs;
}

Test(creation, the_first_writer_after_a_creator_killed_before_its_directory_fsync_does_it, .fini = th_cleanup)
{
    char name[256];
    th_name(name, 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        mseg_test_set_crash_hook(die_when_formatted, NULL);
        mseg_open(name, MSEG_CREATE | MSEG_EXCL, &creation_config);
        _exit(1);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 42, "the creator did not stop at create.formatted");
    cr_expect_eq(dir_fsyncs_of_open(name), 1u, "the first writer did not fsync the directory");
    cr_expect_eq(dir_fsyncs_of_open(name), 0u, "the directory was fsynced again");
    char other[256];
    th_name(other, 0);
    mseg *s = mseg_open(other, MSEG_CREATE | MSEG_EXCL, &creation_config);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    mseg_close(s);
    cr_expect_eq(dir_fsyncs_of_open(other), 0u, "a segment whose creator finished cost a directory fsync");
}
