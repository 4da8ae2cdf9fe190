/*
 * persist_demo.c - a map and a vector outlive the process that wrote them.
 *
 *   persist_demo write FILE    creates FILE, fills a map (10,000 entries,
 *                              key i -> i * i) and a vector (10,000
 *                              elements, i * 3), and exits;
 *   persist_demo verify FILE   opens FILE in another process (read-only)
 *                              and checks every entry and element;
 *   persist_demo FILE          both, each in its own process (system()),
 *                              then removes FILE;
 *   persist_demo file|shm      the same with a fresh segment name for that
 *                              backend (how `make demo` and the tests run it).
 *
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

#define ENTRIES 10000

static uint64_t map_value(uint64_t k) { return k * k; }
static uint64_t vec_value(uint64_t i) { return i * 3; }

static int write_step(const char *name, unsigned flags)
{
    struct mseg_config cfg = { .size = 16 << 20 };
    mseg *s = mseg_open(name, flags | MSEG_CREATE | MSEG_EXCL, &cfg);
    if (!s) {
        fprintf(stderr, "write: cannot create %s: %s\n", name, mseg_errmsg());
        return 1;
    }
    mseg_map *m = mseg_map_open(s, "squares", MSEG_KEY_U64, sizeof(uint64_t), MSEG_CREATE);
    mseg_vec *v = mseg_vec_open(s, "triples", sizeof(uint64_t), MSEG_CREATE);
    int rc = m && v ? 0 : 1;
    for (uint64_t i = 0; rc == 0 && i < ENTRIES; i++) {
        uint64_t k = (i * 7919) % ENTRIES, val = map_value(k), e = vec_value(i);
        if (mseg_map_put(s, m, &k, sizeof k, &val, sizeof val) || mseg_vec_push(s, v, &e))
            rc = 1;
    }
    if (rc)
        fprintf(stderr, "write: %s\n", mseg_errmsg());
    else
        printf("write: %s holds map \"squares\" (%zu entries) and vector \"triples\" (%zu elements)\n",
               name, mseg_map_len(s, m), mseg_vec_len(s, v));
    if (mseg_close(s) != 0)
        rc = 1;
    return rc;
}

static int verify_map(mseg *s)
{
    mseg_map *m = mseg_map_open(s, "squares", MSEG_KEY_U64, sizeof(uint64_t), 0);
    if (!m) {
        fprintf(stderr, "verify: map \"squares\": %s\n", mseg_errmsg());
        return -1;
    }
    struct mseg_cursor c;
    uint64_t n = 0;
    for (int rc = mseg_map_first(s, m, &c); rc == 0; rc = mseg_map_next(s, &c), n++) {
        uint64_t k, val;
        memcpy(&k, c.key, 8);
        memcpy(&val, c.val, 8);
        if (k != n || val != map_value(n)) {
            fprintf(stderr, "verify: map entry %llu is %llu -> %llu\n", (unsigned long long)n,
                    (unsigned long long)k, (unsigned long long)val);
            return -1;
        }
    }
    if (n != ENTRIES) {
        fprintf(stderr, "verify: the map has %llu entries, expected %d\n", (unsigned long long)n, ENTRIES);
        return -1;
    }
    printf("verify: map \"squares\": all %llu entries present, in key order, values right\n",
           (unsigned long long)n);
    return 0;
}

static int verify_vector(mseg *s)
{
    mseg_vec *v = mseg_vec_open(s, "triples", sizeof(uint64_t), 0);
    if (!v) {
        fprintf(stderr, "verify: vector \"triples\": %s\n", mseg_errmsg());
        return -1;
    }
    size_t n = mseg_vec_len(s, v);
    const uint64_t *d = mseg_vec_data(s, v);
    if (n != ENTRIES || !d) {
        fprintf(stderr, "verify: the vector has %zu elements, expected %d\n", n, ENTRIES);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (d[i] != vec_value(i)) {
            fprintf(stderr, "verify: vector element %zu is %llu\n", i, (unsigned long long)d[i]);
            return -1;
        }
    printf("verify: vector \"triples\": all %zu elements right\n", n);
    return 0;
}

static int verify_step(const char *name, unsigned flags)
{
    struct mseg_report r;
    if (mseg_check(name, flags, &r) != 0) {
        fprintf(stderr, "verify: mseg_check %s: %s\n", name, mseg_errmsg());
        return 1;
    }
    mseg *s = mseg_open(name, flags | MSEG_RDONLY, NULL);
    if (!s) {
        fprintf(stderr, "verify: cannot open %s: %s\n", name, mseg_errmsg());
        return 1;
    }
    int rc = verify_map(s) == 0 && verify_vector(s) == 0 ? 0 : 1;
    if (mseg_close(s) != 0)
        rc = 1;
    if (rc == 0)
        printf("verify: %s is sound (%llu blocks in use) and every entry checks\n", name,
               (unsigned long long)r.blocks_used);
    return rc;
}

/* Runs `program verb name [shm]` as a separate process. */
static int run_step(const char *program, const char *verb, const char *name, unsigned flags)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s '%s'%s", program, verb, name, (flags & MSEG_SHM) ? " shm" : "");
    printf("persist_demo: running %s\n", cmd);
    fflush(stdout);
    int status = system(cmd);
    return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

static int both(const char *program, const char *name, unsigned flags)
{
    mseg_remove(name, flags);
    int rc = run_step(program, "write", name, flags) || run_step(program, "verify", name, flags);
    if (mseg_remove(name, flags) != 0 && errno != ENOENT)
        rc = 1;
    printf("persist_demo (%s): %s\n", name, rc == 0 ? "OK" : "FAILED");
    return rc;
}

int main(int argc, char **argv)
{
    unsigned flags = argc == 4 && strcmp(argv[3], "shm") == 0 ? MSEG_SHM : 0;
    if (argc >= 3 && strcmp(argv[1], "write") == 0)
        return write_step(argv[2], flags);
    if (argc >= 3 && strcmp(argv[1], "verify") == 0)
        return verify_step(argv[2], flags);
    if (argc != 2) {
        fprintf(stderr, "usage: %s write FILE | verify FILE | FILE | file | shm\n", argv[0]);
        return 2;
    }
    char name[4096];
    const char *tmp = getenv("TMPDIR");
    if (strcmp(argv[1], "shm") == 0) {
        snprintf(name, sizeof name, "/mseg-qg-%ld-persist", (long)getpid());
        return both(argv[0], name, MSEG_SHM);
    }
    if (strcmp(argv[1], "file") == 0) {
        snprintf(name, sizeof name, "%s/mseg-qg-%ld-persist", tmp && *tmp ? tmp : "/tmp", (long)getpid());
        return both(argv[0], name, 0);
    }
    return both(argv[0], argv[1], 0);
}
