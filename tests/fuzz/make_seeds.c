/*
 * make_seeds.c - writes the fuzzers' seed corpora: images of real segments
 * of the smallest size (MSEG_MIN_SIZE), so that the committed seeds stay
 * small.
 *
 *   empty        a new segment
 *   small        named objects and small raw blocks
 *   fragmented   many blocks, every other one freed
 *   named        many named objects (the directory has grown)
 *   committed    an allocation killed after its log committed, before it
 *                was applied (recovery replays it)
 *   unclean      objects, then the process died with the segment open
 *   containers   a named u64 map and a named u32 vector
 *   powerloss-*  what a power loss can leave: a synced image D and the image
 *                N after more operations, mixed page by page as a kernel's
 *                write-back could have: N's log pages over D (log-only), N's
 *                heap pages without its control page (data-only), and N with
 *                every other changed 512-byte sector still D's (torn)
 *
 * Usage: make_seeds OPEN_DIR OPS_DIR. The ops seeds are the same images
 * behind a script that exercises every operation once.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "layout.h"
#include "mseg.h"
#include "testing.h"

static void die(const char *what)
{
    fprintf(stderr, "make_seeds: %s: %s\n", what, mseg_errmsg());
    exit(1);
}

static mseg *create(const char *path)
{
    struct mseg_config cfg = { .size = MSEG_MIN_SIZE };
    unlink(path);
    mseg *s = mseg_open(path, MSEG_CREATE | MSEG_EXCL, &cfg);
    if (!s)
        die("create");
    return s;
}

static void fill_small(mseg *s)
{
    char name[32];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "obj%d", i);
        int *p = MSEG_NEW(s, name, int, (size_t)i + 1);
        if (!p)
            die("construct");
        p[0] = i;
    }
    for (int i = 0; i < 40; i++)
        if (!mseg_alloc(s, (size_t)(i * 7) % 100))
            die("alloc");
}

static void fill_fragmented(mseg *s)
{
    void *p[300];
    for (int i = 0; i < 300; i++)
        if (!(p[i] = mseg_alloc(s, 16 + (size_t)(i * 37) % 160)))
            die("alloc");
    for (int i = 0; i < 300; i += 2)
        mseg_free(s, p[i]);
}

static void fill_named(mseg *s)
{
    char name[32];
    for (int i = 0; i < 150; i++) {
        snprintf(name, sizeof name, "n%03d", i);
        if (!mseg_construct(s, name, i % 2 ? "double" : "char", i % 2 ? 8 : 1, 3, NULL))
            die("construct");
    }
    for (int i = 0; i < 150; i += 5) {
        snprintf(name, sizeof name, "n%03d", i);
        mseg_destroy(s, name);
    }
}

static void fill_containers(mseg *s)
{
    mseg_map *m = mseg_map_open(s, "m", MSEG_KEY_U64, 8, MSEG_CREATE);
    mseg_vec *v = mseg_vec_open(s, "v", 4, MSEG_CREATE);
    if (!m || !v)
        die("containers");
    for (uint64_t i = 0; i < 200; i++) {
        uint64_t k = i * 7919, val = i;
        uint32_t e = (uint32_t)i;
        if (mseg_map_put(s, m, &k, 8, &val, 8) || mseg_vec_push(s, v, &e))
            die("container put");
    }
}

static void die_at_commit(const char *point, unsigned long n, void *arg)
{
    (void)n, (void)arg;
    if (strcmp(point, "log.committed") == 0)
        _exit(0);
}

/* Runs fn on the segment in a child that dies without closing. */
static void in_dying_child(const char *path, int committed)
{
    pid_t pid = fork();
    if (pid == 0) {
        mseg *s = mseg_open(path, 0, NULL);
        if (!s)
            _exit(1);
        fill_small(s);
        if (committed) {
            mseg_test_set_crash_hook(die_at_commit, NULL);
            mseg_alloc(s, 1000);
        }
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
}

static void *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    void *buf = malloc(MSEG_MIN_SIZE);
    *len = fread(buf, 1, MSEG_MIN_SIZE, f);
    fclose(f);
    return buf;
}

static void put(const char *dir, const char *name, const void *pre, size_t plen,
                const void *img, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(pre, 1, plen, f) != plen || fwrite(img, 1, len, f) != len || fclose(f))
        die(path);
}

/* Every operation of fuzz_ops.c once or twice (containers and
   transactions included): script length, then opcode and two arguments. */
static const unsigned char script[] = {
    84,
    0, 1, 10,   0, 2, 200,  2, 0, 5,   2, 1, 7,   3, 0, 0,   5, 0, 0,
    8, 6, 30,   1, 1, 0,    6, 0, 0,   4, 1, 0,   10, 2, 3,  9, 0, 3,
    11, 3, 4,   7, 0, 0,    3, 2, 0,   0, 3, 40,  1, 3, 0,   4, 2, 0,
    6, 0, 0,    2, 5, 1,
    12, 5, 9,   12, 6, 1,   14, 0, 0,  13, 5, 0,  15, 0, 7,  16, 0, 0,
    17, 4, 2,   17, 3, 3,
};

/* Page p of the image (4 KiB), bounded by its length. */
static void copy_pages(unsigned char *dst, const unsigned char *src, size_t len,
                       size_t from, size_t to)
{
    if (to > len)
        to = len;
    if (from < to)
        memcpy(dst + from, src + from, to - from);
}

/* The power-loss seeds: D (synced) and N (after more operations, as the
   page cache holds it), mixed. */
static void powerloss_seeds(const char *path, const char *open_dir, const char *ops_dir)
{
    mseg *s = create(path);
    fill_small(s);
    if (mseg_sync(s))
        die("sync");
    size_t len;
    unsigned char *d = slurp(path, &len);
    fill_fragmented(s);                    /* more operations, not synced */
    size_t nlen;
    unsigned char *n = slurp(path, &nlen);
    mseg_close(s);
    unsigned char *img = malloc(len);
    static const char *kinds[] = { "powerloss-log-only", "powerloss-data-only", "powerloss-torn" };
    for (int k = 0; k < 3; k++) {
        memcpy(img, k == 2 ? n : d, len);
        if (k == 0)
            copy_pages(img, n, len, MSEG_LOG_OFF, MSEG_LOG_OFF + MSEG_LOG_SIZE);
        if (k == 1)                       /* the heap without its control page */
            copy_pages(img, n, len, MSEG_HEAP_OFF, len);
        if (k == 2)                       /* every other changed sector is old */
            for (size_t at = MSEG_CONTROL_OFF, flip = 0; at + 512 <= len; at += 512)
                if (memcmp(d + at, n + at, 512) != 0 && flip++ % 2 == 0)
                    copy_pages(img, d, len, at, at + 512);
        char file[64];
        snprintf(file, sizeof file, "seed-%s", kinds[k]);
        put(open_dir, file, "", 0, img, len);
        put(ops_dir, file, script, sizeof script, img, len);
    }
    free(img);
    free(d);
    free(n);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: make_seeds OPEN_DIR OPS_DIR\n");
        return 2;
    }
    const char *tmp = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/mseg-seed-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    static const char *names[] = { "empty", "small", "fragmented", "named", "committed", "unclean",
                                   "containers" };
    for (int i = 0; i < 7; i++) {
        mseg *s = create(path);
        if (i == 1)
            fill_small(s);
        if (i == 2)
            fill_fragmented(s);
        if (i == 3)
            fill_named(s);
        if (i == 6)
            fill_containers(s);
        mseg_close(s);
        if (i == 4 || i == 5)
            in_dying_child(path, i == 4);
        size_t len;
        void *img = slurp(path, &len);
        char file[64];
        snprintf(file, sizeof file, "seed-%s", names[i]);
        put(argv[1], file, "", 0, img, len);
        put(argv[2], file, script, sizeof script, img, len);
        free(img);
    }
    powerloss_seeds(path, argv[1], argv[2]);
    unlink(path);
    return 0;
}
