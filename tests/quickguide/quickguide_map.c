/*
 * quickguide_map.c - an ordered map int -> float built by one process and
 * walked in key order by another.
 *
 * The C version of Boost.Interprocess's quick guide "Creating maps in
 * shared memory":
 *
 *   1. the parent creates a map named "MyMap" with i64 keys and float values
 *      and puts 100 entries, key i -> (float)i / 2, in a shuffled order;
 *   2. it starts itself as a child (system()), which finds "MyMap", walks it
 *      with a cursor and checks that the keys come out 0..99 in order, each
 *      with its value, then destroys it;
 *   3. the parent checks that "MyMap" is gone.
 *
 * Usage: quickguide_map file|shm
 * Exit status 0 when every check holds, 1 otherwise (with a message).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mseg.h"

#define COUNT 100

static int backend_flags(const char *backend, unsigned *flags)
{
    if (strcmp(backend, "file") == 0) { *flags = 0; return 0; }
    if (strcmp(backend, "shm") == 0)  { *flags = MSEG_SHM; return 0; }
    return -1;
}

static void segment_name(char *buf, size_t len, unsigned flags)
{
    const char *tmp = getenv("TMPDIR");
    if (flags & MSEG_SHM)
        snprintf(buf, len, "/mseg-qg-%ld-map", (long)getpid());
    else
        snprintf(buf, len, "%s/mseg-qg-%ld-map", tmp && *tmp ? tmp : "/tmp", (long)getpid());
}

static float value_of(int64_t key) { return (float)key / 2; }

/* The child: every entry, in key order, through a cursor. */
static int child_work(mseg *s)
{
    mseg_map *m = mseg_map_open(s, "MyMap", MSEG_KEY_I64, sizeof(float), 0);
    if (!m) {
        fprintf(stderr, "child: cannot find MyMap: %s\n", mseg_errmsg());
        return -1;
    }
    struct mseg_cursor c;
    int64_t want = 0;
    for (int rc = mseg_map_first(s, m, &c); rc == 0; rc = mseg_map_next(s, &c), want++) {
        int64_t key;
        float val;
        memcpy(&key, c.key, sizeof key);
        memcpy(&val, c.val, sizeof val);
        if (key != want || val != value_of(want)) {
            fprintf(stderr, "child: entry %lld is %lld -> %g, expected %lld -> %g\n",
                    (long long)want, (long long)key, val, (long long)want, value_of(want));
            return -1;
        }
        if (want < 3 || want == COUNT - 1)
            printf("child: %lld -> %g\n", (long long)key, val);
        else if (want == 3)
            printf("child: ...\n");
    }
    if (want != COUNT || errno != ENOENT) {
        fprintf(stderr, "child: the cursor gave %lld entries, expected %d\n", (long long)want, COUNT);
        return -1;
    }
    printf("child: MyMap holds %zu entries, in key order, each as written\n", mseg_map_len(s, m));
    if (mseg_destroy(s, "MyMap") != 0) {
        fprintf(stderr, "child: mseg_destroy MyMap: %s\n", mseg_errmsg());
        return -1;
    }
    printf("child: destroyed MyMap\n");
    return 0;
}

static int child(const char *backend, const char *name)
{
    unsigned flags;
    if (backend_flags(backend, &flags) != 0)
        return 1;
    mseg *s = mseg_open(name, flags, NULL);                  /* open_only */
    if (!s) {
        fprintf(stderr, "child: cannot open %s: %s\n", name, mseg_errmsg());
        return 1;
    }
    int rc = child_work(s) == 0 ? 0 : 1;
    if (mseg_close(s) != 0)
        rc = 1;
    return rc;
}

static int build_map(mseg *s)
{
    mseg_map *m = mseg_map_open(s, "MyMap", MSEG_KEY_I64, sizeof(float), MSEG_CREATE);
    if (!m) {
        fprintf(stderr, "parent: cannot create MyMap: %s\n", mseg_errmsg());
        return -1;
    }
    for (int i = 0; i < COUNT; i++) {
        int64_t key = (i * 37) % COUNT;       /* 37 is prime to 100: every key once, shuffled */
        float val = value_of(key);
        if (mseg_map_put(s, m, &key, sizeof key, &val, sizeof val) != 0) {
            fprintf(stderr, "parent: put %lld: %s\n", (long long)key, mseg_errmsg());
            return -1;
        }
    }
    printf("parent: built MyMap with %zu entries (key i -> i/2), inserted out of order\n",
           mseg_map_len(s, m));
    return 0;
}

static int parent(const char *program, const char *backend, unsigned flags, const char *name)
{
    struct mseg_config cfg = { .size = 1 << 20 };
    mseg *s = mseg_open(name, flags | MSEG_CREATE | MSEG_EXCL, &cfg);  /* create_only */
    if (!s) {
        fprintf(stderr, "parent: cannot create %s: %s\n", name, mseg_errmsg());
        return 1;
    }
    int rc = 1;
    if (build_map(s) != 0)
        goto out;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' child %s '%s'", program, backend, name);
    printf("parent: running %s\n", cmd);
    fflush(stdout);
    int status = system(cmd);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "parent: the child failed (status %#x)\n", status);
        goto out;
    }
    errno = 0;
    if (mseg_map_open(s, "MyMap", MSEG_KEY_I64, sizeof(float), 0) != NULL || errno != ENOENT) {
        fprintf(stderr, "parent: MyMap is still there\n");
        goto out;
    }
    printf("parent: MyMap is gone\n");
    rc = 0;
out:
    if (mseg_close(s) != 0)
        rc = 1;
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "child") == 0)
        return child(argv[2], argv[3]);
    unsigned flags;
    if (argc != 2 || backend_flags(argv[1], &flags) != 0) {
        fprintf(stderr, "usage: %s file|shm\n", argv[0]);
        return 2;
    }
    char name[4096];
    segment_name(name, sizeof name, flags);
    int rc = parent(argv[0], argv[1], flags, name);
    if (mseg_remove(name, flags) != 0 && errno != ENOENT) {
        fprintf(stderr, "parent: mseg_remove %s: %s\n", name, mseg_errmsg());
        rc = 1;
    }
    printf("quickguide_map (%s): %s\n", argv[1], rc == 0 ? "OK" : "FAILED");
    return rc;
}
