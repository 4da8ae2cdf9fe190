/* test_corruption.c - the deterministic corruption sweep, and the replay of
   the fuzzers' regression corpus.

   For real segments (empty, many small objects, a fragmented heap, many
   named objects) every byte of header page A is flipped (and, separately,
   the same byte in both copies), a sample of control, heap and directory
   bytes is flipped, and the file is truncated at many lengths. Each case
   runs mseg_check, a read-only open and the reads the tool does in a forked
   child that must exit normally, and its result must be the right one. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>

#include "helpers.h"
#include "layout.h"

#define FUZZ_NO_ENTRY
#include "fuzz/fuzz_open.c"
#include "fuzz/fuzz_ops.c"

#if defined(__SANITIZE_ADDRESS__)
#define SWEEP_SLOW 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SWEEP_SLOW 1
#endif
#endif
#ifndef SWEEP_SLOW
#define SWEEP_SLOW 0
#endif

/* Outcome classes, packed into the child's exit status. */
enum { RES_OK = 0, RES_EUCLEAN = 1, RES_EPROTO = 2, RES_ENOENT = 3, RES_OTHER = 4 };

static int classify(int rc, int err)
{
    if (rc == 0)
        return RES_OK;
    return err == EUCLEAN ? RES_EUCLEAN : err == EPROTO ? RES_EPROTO : err == ENOENT ? RES_ENOENT : RES_OTHER;
}

static int count_object(const struct mseg_named *n, void *arg)
{
    size_t cnt;
    const unsigned char *p = mseg_find(((void **)arg)[0], n->name, n->type, n->elem_size, &cnt);
    for (size_t i = 0; p && i < cnt * n->elem_size; i++)
        *(unsigned *)((void **)arg)[1] += p[i];
    return 0;
}

/* In the child: check, then a read-only open and what the tool reads.
   Exit status: check class | open class << 3. */
static void probe_child(const char *path)
{
    alarm(20);
    int rc = mseg_check(path, 0, NULL);
    int check = classify(rc, errno);     /* two statements: errno after the call */
    mseg *s = mseg_open(path, MSEG_RDONLY, NULL);
    int open = classify(s ? 0 : -1, errno);
    if (s) {
        unsigned sum = 0;
        void *arg[2] = { s, &sum };
        mseg_named_count(s);
        mseg_free_memory(s);
        mseg_named_foreach(s, count_object, arg);
        mseg_close(s);
    }
    _exit(check | open << 3);
}

struct sweep {
    const char *what;
    char path[256];
    unsigned char *orig;
    size_t len;
    unsigned long cases;
};

static unsigned long total_cases;

/* Runs one case on the file as it is now; returns the child's exit status
   (asserting it exited, not crashed or hung). */
static int run_case(struct sweep *sw, const char *desc, size_t at)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        probe_child(sw->path);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        cr_assert_eq(errno, EINTR);
    char why[128];
    cr_assert(WIFEXITED(st), "%s: %s at offset %zu: the child %s", sw->what, desc, at,
              th_status_str(st, why, sizeof why));
    sw->cases++;
    return WEXITSTATUS(st);
}

static void put_byte(struct sweep *sw, size_t at, unsigned char v)
{
    int fd = open(sw->path, O_WRONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, &v, 1, (off_t)at), 1);
    close(fd);
}

/* Flips the bytes at a (and b, unless b is (size_t)-1), runs the case,
   restores them. */
static int flip(struct sweep *sw, const char *desc, size_t a, size_t b)
{
    put_byte(sw, a, sw->orig[a] ^ 0xff);
    if (b != (size_t)-1)
        put_byte(sw, b, sw->orig[b] ^ 0xff);
    int r = run_case(sw, desc, a);
    put_byte(sw, a, sw->orig[a]);
    if (b != (size_t)-1)
        put_byte(sw, b, sw->orig[b]);
    return r;
}

/* ---- the segments ---- */

static void fill(mseg *s, int kind)
{
    char name[32];
    void *p[400];
    if (kind == 1)
        for (int i = 0; i < 60; i++)
            cr_assert_not_null(mseg_alloc(s, (size_t)(i * 13) % 90));
    if (kind == 2) {
        for (int i = 0; i < 300; i++)
            cr_assert_not_null(p[i] = mseg_alloc(s, 16 + (size_t)(i * 37) % 120));
        for (int i = 0; i < 300; i += 2)
            cr_assert_eq(mseg_free(s, p[i]), 0);
    }
    for (int i = 0; kind == 1 && i < 20; i++) {
        snprintf(name, sizeof name, "small%d", i);
        cr_assert_not_null(mseg_construct(s, name, "int", 4, (size_t)i + 1, NULL));
    }
    for (int i = 0; kind == 3 && i < 200; i++) {
        snprintf(name, sizeof name, "named-%03d", i);
        cr_assert_not_null(mseg_construct(s, name, "double", 8, 2, NULL), "%s", mseg_errmsg());
    }
}

static void make_segment(struct sweep *sw, int kind)
{
    static const char *what[] = { "empty", "small objects", "fragmented heap", "many named objects" };
    sw->what = what[kind];
    sw->cases = 0;
    th_name(sw->path, 0);
    struct mseg_config c = { .size = MSEG_MIN_SIZE };
    mseg *s = mseg_open(sw->path, MSEG_CREATE | MSEG_EXCL, &c);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    fill(s, kind);
    cr_assert_eq(mseg_close(s), 0);
    sw->orig = th_read_file(sw->path, &sw->len);
    cr_assert_not_null(sw->orig);
    cr_assert_eq(mseg_check(sw->path, 0, NULL), 0, "%s: %s", sw->what, mseg_errmsg());
}

/* ---- the sweeps ---- */

/* Every byte of page A for the first segment; past the 256 header bytes
   (unused, so all alike) a sample for the others, and under ASan. */
static void sweep_header(struct sweep *sw, int kind)
{
    size_t stride = SWEEP_SLOW ? 64 : kind == 0 ? 1 : 32;
    for (size_t i = 0; i < MSEG_PAGE; i += i < 256 ? 1 : stride) {
        int r = flip(sw, "header A byte", i, (size_t)-1);
        int check = r & 7, open = r >> 3;
        cr_assert_eq(open, RES_OK, "%s: header A byte %zu flipped: open failed (%d)", sw->what, i, open);
        if (i < sizeof(struct mseg_header))
            cr_assert_eq(check, RES_EUCLEAN, "%s: header A byte %zu: check says %d", sw->what, i, check);
        else
            cr_assert_eq(check, RES_OK, "%s: header A byte %zu (unused): check says %d", sw->what, i, check);
    }
    for (size_t i = 0; i < MSEG_PAGE; i += i < 256 ? 1 : 64) {
        int r = flip(sw, "byte of both headers", i, MSEG_HEADER_B_OFF + i);
        int check = r & 7, open = r >> 3;
        if (i < sizeof(struct mseg_header)) {
            cr_assert(open == RES_EUCLEAN || open == RES_EPROTO, "%s: byte %zu of both headers: open gave %d",
                      sw->what, i, open);
            cr_assert(check == RES_EUCLEAN || check == RES_EPROTO, "%s: byte %zu of both: check %d",
                      sw->what, i, check);
        } else {
            cr_assert(open == RES_OK && check == RES_OK, "%s: unused byte %zu of both: %d/%d",
                      sw->what, i, open, check);
        }
    }
}

/* Offsets worth damaging: control fields and bin heads in use, every block
   header of the first blocks, directory slots and records, random heap. */
static size_t damage_targets(const struct sweep *sw, size_t *out, size_t max)
{
    const struct mseg_control *ctl = (const void *)(sw->orig + MSEG_CONTROL_OFF);
    size_t n = 0;
    for (size_t i = 0; i < 56 && n < max; i++)
        out[n++] = MSEG_CONTROL_OFF + i;
    for (unsigned b = 0; b < MSEG_BINS && n < max; b++)
        if (ctl->bin_head[b])
            out[n++] = MSEG_CONTROL_OFF + 192 + 8 * b + (b % 8);
    uint64_t p = ctl->heap_start + MSEG_GRANULE;
    for (int k = 0; k < 80 && p < ctl->heap_end && n + 4 <= max; k++) {
        uint32_t h;
        memcpy(&h, sw->orig + p - 4, 4);
        for (int j = 0; j < 4; j++)
            out[n++] = p - 4 + (size_t)j;
        if ((h >> 2) == 0)
            break;
        p += (uint64_t)(h >> 2) * MSEG_GRANULE;
    }
    for (uint64_t i = 0; ctl->dir_table && i < ctl->dir_capacity && n + 2 <= max; i += 3) {
        out[n++] = ctl->dir_table + 16 * i + 8 + (i % 3);
        uint64_t rec;
        memcpy(&rec, sw->orig + ctl->dir_table + 16 * i + 8, 8);
        if (rec > 1 && rec + 40 < sw->len)
            out[n++] = rec + (i * 7) % 48;
    }
    uint64_t rs = 42;
    while (n < max)
        out[n++] = MSEG_HEAP_OFF + th_rand(&rs) % (sw->len - MSEG_HEAP_OFF);
    return n;
}

static void sweep_heap(struct sweep *sw)
{
    size_t targets[400];
    size_t n = damage_targets(sw, targets, SWEEP_SLOW ? 120 : 300);
    for (size_t i = 0; i < n; i++) {
        int r = flip(sw, "heap/directory byte", targets[i], (size_t)-1);
        int check = r & 7, open = r >> 3;
        cr_assert(check == RES_OK || check == RES_EUCLEAN, "%s: byte %zu flipped: check gave %d",
                  sw->what, targets[i], check);
        cr_assert(open == RES_OK || open == RES_EUCLEAN, "%s: byte %zu flipped: open gave %d",
                  sw->what, targets[i], open);
    }
}

static void sweep_truncation(struct sweep *sw)
{
    size_t step = SWEEP_SLOW ? 4 * MSEG_PAGE : MSEG_PAGE;
    size_t lens[128], n = 0;
    static const size_t small[] = { 1, 7, 8, 100, 255, 256, 4095, 4096, 4097, 4352, 8191, 8192, 8448 };
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++)
        lens[n++] = small[i];
    for (size_t l = 3 * MSEG_PAGE; l < sw->len && n < 126; l += step)
        lens[n++] = l;
    lens[n++] = sw->len - 1;
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(truncate(sw->path, (off_t)lens[i]), 0);
        int r = run_case(sw, "truncated to", lens[i]);
        cr_assert_eq(r & 7, RES_EUCLEAN, "%s: truncated to %zu: check gave %d", sw->what, lens[i], r & 7);
        cr_assert_eq(r >> 3, RES_EUCLEAN, "%s: truncated to %zu: open gave %d", sw->what, lens[i], r >> 3);
    }
    cr_assert_eq(th_write_file(sw->path, sw->orig, sw->len), 0);
}

static void sweep_one(int kind, const char *part)
{
    struct sweep sw;
    make_segment(&sw, kind);
    if (!strcmp(part, "header"))
        sweep_header(&sw, kind);
    else if (!strcmp(part, "heap"))
        sweep_heap(&sw);
    else
        sweep_truncation(&sw);
    total_cases += sw.cases;
    cr_log_info("corruption sweep (%s, %s): %lu cases", sw.what, part, sw.cases);
    free(sw.orig);
}

#define SWEEP_TEST(part, desc)                                                          \
    Test(corruption, desc, .timeout = 240, .fini = th_cleanup)                          \
    {                                                                                   \
        for (int kind = 0; kind < 4; kind++)                                            \
            sweep_one(kind, #part);                                                     \
        cr_log_info("corruption sweep (%s): %lu cases in all", #part, total_cases);     \
    }

SWEEP_TEST(header, every_header_byte_flipped_in_one_copy_opens_and_in_both_is_refused)
SWEEP_TEST(heap, flipped_heap_and_directory_bytes_are_reported_or_harmless_never_a_crash)
SWEEP_TEST(truncation, a_truncated_segment_is_euclean_at_every_length)

/* ---- the fuzzers' regression corpus ---- */

/* tests/fuzz/regressions, found from this file's path or the build dir. */
static int open_regressions(DIR **d, char *dir, size_t n)
{
    const char *cands[] = { "tests/fuzz/regressions", MSEG_BUILD_DIR "/../tests/fuzz/regressions",
                            MSEG_BUILD_DIR "/../../tests/fuzz/regressions" };
    char here[512];
    snprintf(here, sizeof here, "%s", __FILE__);
    char *slash = strrchr(here, '/');
    if (slash) {
        snprintf(slash, sizeof here - (size_t)(slash - here), "/fuzz/regressions");
        snprintf(dir, n, "%s", here);
        if ((*d = opendir(dir)))
            return 0;
    }
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        snprintf(dir, n, "%s", cands[i]);
        if ((*d = opendir(dir)))
            return 0;
    }
    return -1;
}

static void replay_child(const char *path, int ops)
{
    alarm(30);
    size_t len;
    unsigned char *buf = (unsigned char *)th_read_file(path, &len);
    if (!buf)
        _exit(97);
    if (ops)
        fuzz_ops_input(buf, len);
    else
        fuzz_open_input(buf, len);
    free(buf);
    _exit(0);
}

Test(corruption, every_fuzzer_regression_replays_without_a_crash, .timeout = 240)
{
    DIR *d;
    char dir[600];
    cr_assert_eq(open_regressions(&d, dir, sizeof dir), 0, "tests/fuzz/regressions not found");
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        int ops = !strncmp(e->d_name, "ops-", 4);
        if (!ops && strncmp(e->d_name, "open-", 5))
            continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        fflush(NULL);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0)
            replay_child(path, ops);
        int st;
        waitpid(pid, &st, 0);
        char why[128];
        cr_assert(TH_EXITED_OK(st), "regression %s: %s", e->d_name, th_status_str(st, why, sizeof why));
        n++;
    }
    closedir(d);
    cr_log_info("replayed %d fuzzer regressions from %s", n, dir);
    cr_assert_gt(n, 0);
}
