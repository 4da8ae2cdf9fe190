/* test_tool.c - the mseg command on real segments: output and exit codes. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/resource.h>


#include "fsync_hook.h"
#include "helpers.h"
#include "inspect.h"
#include "layout.h"
#include "testing.h"

#define TOOL MSEG_BUILD_DIR "/mseg"

struct run {
    int status;            /* exit code, or -1 if it did not exit */
    char out[65536], err[8192];
};

static void slurp_into(const char *path, char *buf, size_t n)
{
    size_t len = 0;
    char *p = th_read_file(path, &len);
    if (len >= n)
        len = n - 1;
    if (p)
        memcpy(buf, p, len);
    buf[len] = '\0';
    free(p);
}

/* Runs the tool with args (NULL-terminated), stdout and stderr captured
   through files (so neither pipe can fill up). */
static struct run *run_tool(const char *arg0, ...)
{
    static struct run r;
    const char *argv[16] = { TOOL };
    va_list ap;
    va_start(ap, arg0);
    int n = 1;
    for (const char *a = arg0; a && n < 15; a = va_arg(ap, const char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char outp[256], errp[256];
    th_name(outp, 0);
    th_name(errp, 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(o, 1);
        dup2(e, 2);
        execv(TOOL, (char *const *)argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    slurp_into(outp, r.out, sizeof r.out);
    slurp_into(errp, r.err, sizeof r.err);
    unlink(outp);
    unlink(errp);
    return &r;
}

/* A segment with two named objects and a few blocks. */
static char *sample(char *path)
{
    mseg *s = th_create(path, 0, 1 << 20);
    cr_assert_not_null(mseg_construct(s, "greeting", "char", 1, 6, "hello"));
    int *v = MSEG_NEW(s, "numbers", int, 4);
    cr_assert_not_null(v);
    v[0] = 0x01020304;
    for (int i = 0; i < 10; i++)
        cr_assert_not_null(mseg_alloc(s, 100 + 50 * (size_t)i));
    cr_assert_eq(mseg_close(s), 0);
    return path;
}

#define ASSERT_EXIT(r, code) \
    cr_assert_eq((r)->status, (code), "exit %d, expected %d\nstdout: %s\nstderr: %s", \
                 (r)->status, (code), (r)->out, (r)->err)

Test(tool, version_names_the_library_and_format_versions, .fini = th_cleanup)
{
    struct run *r = run_tool("--version", NULL);
    ASSERT_EXIT(r, 0);
    char want[64];
    snprintf(want, sizeof want, "mseg %s (segment format %u)", mseg_version(), mseg_format_version());
    cr_assert(strstr(r->out, want), "%s", r->out);
}

Test(tool, help_documents_every_command_and_the_exit_codes, .fini = th_cleanup)
{
    struct run *r = run_tool("--help", NULL);
    ASSERT_EXIT(r, 0);
    char *all = strdup(r->out);        /* run_tool reuses its buffers */
    static const char *cmds[] = { "check", "recover", "info", "ls", "dump", "stats", "copy" };
    for (size_t i = 0; i < 7; i++) {
        cr_assert(strstr(all, cmds[i]), "no %s in --help", cmds[i]);
        struct run *c = run_tool(cmds[i], "--help", NULL);
        ASSERT_EXIT(c, 0);
        cr_assert(strstr(c->out, "usage: mseg") && strstr(c->out, "Exit status"), "%s", c->out);
    }
    cr_assert(strstr(all, "2  the segment is corrupt") && strstr(all, "3  could not run"));
    free(all);
    ASSERT_EXIT(run_tool("frobnicate", NULL), 3);
    ASSERT_EXIT(run_tool("check", NULL), 3);
    ASSERT_EXIT(run_tool("check", "--bogus", "x", NULL), 3);
}

Test(tool, check_of_a_sound_segment_exits_0_without_progress_when_not_a_terminal, .fini = th_cleanup)
{
    char path[256];
    sample(path);
    struct run *r = run_tool("check", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "sound"), "%s", r->out);
    cr_assert_str_empty(r->err, "stderr is not a terminal, yet: %s", r->err);
    r = run_tool("check", "--json", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "\"result\":\"sound\"") && strstr(r->out, "\"named\":2"), "%s", r->out);
}

static void die_after_commit(const char *point, unsigned long n, void *arg)
{
    (void)n, (void)arg;
    if (strcmp(point, "log.committed") == 0)
        _exit(0);
}

/* Killed after its log commit: a construct goes through the log (an
   mseg_alloc on its own stores in place, with no commit to replay). */
static void killed_construct(void *arg)
{
    mseg *s = mseg_open(arg, 0, NULL);
    if (!s)
        _exit(1);
    mseg_test_set_crash_hook(die_after_commit, NULL);
    mseg_construct(s, "killed", "char", 1, 4000, NULL);
    _exit(2);
}

Test(tool, check_and_ls_after_a_killed_operation_and_recover_applies_it, .fini = th_cleanup)
{
    char path[256];
    sample(path);
    cr_assert(TH_EXITED_OK(th_fork_run(killed_construct, path)));
    long long size0;
    uint64_t h0 = th_hash_file(path, &size0);
    struct run *r = run_tool("check", path, NULL);
    ASSERT_EXIT(r, 1);
    cr_assert(strstr(r->out, "recovery"), "%s", r->out);
    long long size1;
    cr_assert_eq(th_hash_file(path, &size1), h0, "check wrote the segment");
    /* ls cannot open read-only (recovery is due, no writer attached): it
       reads a private view with the recovery applied, and writes nothing */
    r = run_tool("ls", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "killed"), "ls shows the committed construct: %s", r->out);
    cr_assert_eq(th_hash_file(path, &size1), h0, "ls wrote the segment");
    r = run_tool("recover", "--json", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "\"recovered\":true"), "%s", r->out);
    ASSERT_EXIT(run_tool("check", path, NULL), 0);
}

/* Killed inside a transaction that changed an owning map: nothing of it
   committed, so recovery rolls it back. The check used to say "a committed
   operation was replayed" of every recovery, this one included. */
static void killed_in_transaction(void *arg)
{
    mseg *s = mseg_open(arg, 0, NULL);
    if (!s)
        _exit(1);
    mseg_map *m = mseg_map_open(s, "owner", MSEG_KEY_U64, sizeof(mseg_off), MSEG_CREATE | MSEG_OWNED);
    if (!m || mseg_tx_begin(s))
        _exit(1);
    for (uint64_t k = 0; k < 20; k++) {
        mseg_off v = mseg_off_of(s, mseg_vec_new(s, 8));
        if (mseg_map_put(s, m, &k, 8, &v, 8))
            _exit(1);
    }
    kill(getpid(), SIGKILL);
}

Test(tool, check_after_a_transaction_killed_before_its_commit_does_not_claim_a_replay, .fini = th_cleanup)
{
    char path[256];
    sample(path);
    cr_assert(WIFSIGNALED(th_fork_run(killed_in_transaction, path)));
    struct run *r = run_tool("check", path, NULL);
    ASSERT_EXIT(r, 1);
    cr_assert(strstr(r->out, "rolled back") && !strstr(r->out, "committed"), "%s", r->out);
    ASSERT_EXIT(run_tool("recover", path, NULL), 0);
    mseg *s = mseg_open(path, 0, NULL);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    mseg_map *m = mseg_map_open(s, "owner", MSEG_KEY_U64, sizeof(mseg_off), MSEG_OWNED);
    cr_assert(m && mseg_map_len(s, m) == 0, "the killed transaction's puts are gone");
    mseg_close(s);
    ASSERT_EXIT(run_tool("check", path, NULL), 0);
}

Test(tool, check_of_a_corrupt_segment_exits_2_naming_the_offset, .fini = th_cleanup)
{
    char path[256];
    sample(path);
    size_t len;
    unsigned char *buf = (unsigned char *)th_read_file(path, &len);
    uint32_t bad = 0xffffff00u | 1;      /* a used block larger than the heap */
    memcpy(buf + MSEG_HEAP_OFF + MSEG_GRANULE - 4, &bad, 4);
    cr_assert_eq(th_write_file(path, buf, len), 0);
    free(buf);
    struct run *r = run_tool("check", path, NULL);
    ASSERT_EXIT(r, 2);
    cr_assert(strstr(r->out, "CORRUPT") && strstr(r->out, "0x14010"), "%s", r->out);
    r = run_tool("check", "--json", path, NULL);
    ASSERT_EXIT(r, 2);
    cr_assert(strstr(r->out, "\"result\":\"corrupt\""), "%s", r->out);
}

/* Rewrites both header copies of the segment file at path with the next
   format version (checksums kept valid): a format this mseg does not know. */
static void make_newer_format(const char *path)
{
    size_t len;
    unsigned char *buf = (unsigned char *)th_read_file(path, &len);
    for (int c = 0; c < 2; c++) {
        struct mseg_header *h = (void *)(buf + (c ? MSEG_HEADER_B_OFF : 0));
        h->format_version = MSEG_FORMAT_VERSION + 1;
        h->checksum = th_hash(h, offsetof(struct mseg_header, checksum));
    }
    cr_assert_eq(th_write_file(path, buf, len), 0);
    free(buf);
}

Test(tool, check_exits_3_when_it_cannot_run, .fini = th_cleanup)
{
    char path[256];
    th_name(path, 0);
    ASSERT_EXIT(run_tool("check", path, NULL), 3);           /* missing */
    sample(path);
    make_newer_format(path);
    struct run *r = run_tool("check", path, NULL);
    ASSERT_EXIT(r, 3);
    cr_assert(strstr(r->err, "format version"), "%s", r->err);
}

Test(tool, info_shows_both_headers_sizes_fragmentation_and_state, .fini = th_cleanup)
{
    char path[256];
    sample(path);
    struct run *r = run_tool("info", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "header A") && strstr(r->out, "header B") && strstr(r->out, "fragmentation") &&
              strstr(r->out, "named objects  2") && strstr(r->out, "clean"), "%s", r->out);
    r = run_tool("info", "--json", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "\"header_a\":{\"valid\":true") && strstr(r->out, "\"size\":1048576") &&
              strstr(r->out, "\"clean\":true"), "%s", r->out);
}

Test(tool, ls_and_dump_show_named_objects, .fini = th_cleanup)
{
    char path[256];
    sample(path);
    struct run *r = run_tool("ls", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "greeting") && strstr(r->out, "numbers") && strstr(r->out, "int"), "%s", r->out);
    r = run_tool("ls", "--json", path, NULL);
    cr_assert(strstr(r->out, "{\"name\":\"greeting\",\"type\":\"char\",\"elem_size\":1,\"count\":6,\"bytes\":6"),
              "%s", r->out);
    r = run_tool("dump", path, "greeting", NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "68 65 6c 6c 6f 00") && strstr(r->out, "|hello.|"), "%s", r->out);
    r = run_tool("dump", "--json", path, "numbers", NULL);
    cr_assert(strstr(r->out, "\"hex\":\"04030201"), "%s", r->out);
    ASSERT_EXIT(run_tool("dump", path, "absent", NULL), 3);
}

Test(tool, stats_histogram_counts_every_block, .fini = th_cleanup)
{
    char path[256];
    sample(path);
    struct run *r = run_tool("stats", "--json", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "\"blocks_used\":13"), "%s", r->out);  /* 2 objects, 10 blocks, the directory */
    r = run_tool("stats", path, NULL);
    cr_assert(strstr(r->out, "[128, 256)") && strstr(r->out, "fragmentation"), "%s", r->out);
}

/* Allocates and frees until killed: another process working meanwhile. */
static void busy(void *arg)
{
    mseg *s = mseg_open(arg, 0, NULL);
    if (!s)
        _exit(1);
    for (unsigned i = 0;; i++) {
        void *p = mseg_alloc(s, 64 + i % 500);
        if (p)
            mseg_free(s, p);
    }
}

Test(tool, copy_of_a_segment_in_use_is_sound, .fini = th_cleanup)
{
    char path[256], dst[256];
    sample(path);
    th_name(dst, 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        busy(path);
    usleep(50000);
    struct run *r = run_tool("copy", path, dst, NULL);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "copied"), "%s", r->out);
    ASSERT_EXIT(run_tool("check", dst, NULL), 0);
    r = run_tool("ls", dst, NULL);
    cr_assert(strstr(r->out, "greeting"), "%s", r->out);
}

Test(tool, recover_and_info_of_a_corrupt_header_exit_2, .fini = th_cleanup)
{
    char path[256];
    sample(path);
    size_t len;
    unsigned char *buf = (unsigned char *)th_read_file(path, &len);
    buf[20] ^= 1;
    buf[MSEG_HEADER_B_OFF + 20] ^= 1;
    cr_assert_eq(th_write_file(path, buf, len), 0);
    free(buf);
    ASSERT_EXIT(run_tool("recover", path, NULL), 2);
    struct run *r = run_tool("info", path, NULL);
    ASSERT_EXIT(r, 2);
    cr_assert(strstr(r->out, "INVALID"), "%s", r->out);
}

Test(tool, dump_prints_vectors_and_maps_one_entry_a_line, .fini = th_cleanup)
{
    char path[256];
    mseg *s = th_create(path, 0, 1 << 20);
    mseg_vec *v = mseg_vec_open(s, "vec", 8, MSEG_CREATE);
    for (uint64_t i = 0; v && i < 3; i++)
        cr_assert_eq(mseg_vec_push(s, v, &i), 0);
    mseg_map *m = mseg_map_open(s, "ids", MSEG_KEY_I64, 8, MSEG_CREATE);
    int64_t k = -5;
    uint64_t val = 7;
    cr_assert_eq(mseg_map_put(s, m, &k, 8, &val, 8), 0);
    mseg_map *b = mseg_map_open(s, "names", MSEG_KEY_BYTES, 0, MSEG_CREATE);
    cr_assert_eq(mseg_map_put(s, b, "a\nb", 3, "x", 1), 0);
    cr_assert_eq(mseg_close(s), 0);
    struct run *r = run_tool("dump", path, "vec", NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "[2] 0200000000000000"), "%s", r->out);
    r = run_tool("dump", path, "ids", NULL);
    cr_assert(strstr(r->out, "-5 = 0700000000000000"), "%s", r->out);
    r = run_tool("dump", path, "names", NULL);
    cr_assert(strstr(r->out, "a\\x0ab = 78"), "%s", r->out);
    r = run_tool("dump", "--json", path, "ids", NULL);
    cr_assert(strstr(r->out, "{\"key\":-5,\"value\":\"0700000000000000\"}"), "%s", r->out);
}

/* The value column of a u64 -> u64 dump line for key k. */
static void value_hex(uint64_t k, char *out)
{
    for (int i = 0; i < 8; i++)
        sprintf(out + 2 * i, "%02x", (unsigned)(k >> (8 * i)) & 0xff);
}

Test(tool, dump_of_a_map_another_process_changes_lists_every_stable_entry_once_in_order,
     .timeout = 60, .fini = th_cleanup)
{
    char path[256];
    mseg *s = th_create(path, 0, 4 << 20);
    mseg_map *m = mseg_map_open(s, "m", MSEG_KEY_U64, 8, MSEG_CREATE);
    cr_assert_not_null(m);
    for (uint64_t k = 0; k < 1600; k += 2)   /* the stable entries */
        cr_assert_eq(mseg_map_put(s, m, &k, 8, &k, 8), 0);
    cr_assert_eq(mseg_close(s), 0);

    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        th_churn_odd_keys(path, MSEG_KEY_U64, 800);
    usleep(50000);
    for (int round = 0; round < 3; round++) {
        struct run *r = run_tool("dump", path, "m", NULL);
        ASSERT_EXIT(r, 0);
        char *line = strchr(r->out, '\n');   /* after "m: map of N entries" */
        cr_assert_not_null(line, "%s", r->out);
        uint64_t stable = 0, prev = 0;
        bool first = true;
        for (line++; *line; line = strchr(line, '\n') + 1) {
            unsigned long long k;
            char hexv[17], want[17];
            cr_assert_eq(sscanf(line, "%llu = %16s", &k, hexv), 2, "bad line: %.40s", line);
            cr_assert(first || k > prev, "round %d: key %llu after %llu", round, k, (unsigned long long)prev);
            value_hex(k, want);
            cr_assert_str_eq(hexv, want, "round %d: key %llu", round, k);
            stable += k % 2 == 0;
            prev = k;
            first = false;
            if (!strchr(line, '\n'))
                break;
        }
        cr_assert_eq(stable, 800, "round %d: %llu of the 800 stable keys listed", round,
                     (unsigned long long)stable);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* --json with names that are UTF-8: the name comes out as the same
   characters. Every byte >= 0x7f was escaped as the code point of its
   value, so "café" read back as "cafÃ©" and a dump by that name failed.
   Bytes that are not UTF-8 stay escaped, so the output is still JSON, as
   \udcXX (surrogateescape): as \u00XX, the byte 0xff read back as "ÿ",
   the very string the name "ÿ" (0xc3 0xbf) reads back as. */
Test(tool, json_names_in_utf8_read_back_as_the_same_characters, .fini = th_cleanup)
{
    char path[256];
    mseg *s = th_create(path, 0, 1 << 20);
    cr_assert_not_null(mseg_construct(s, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "int", 4, 1, NULL));
    cr_assert_not_null(mseg_construct(s, "bad\xc3\x28\xff\xed\xa0\x80", "int", 4, 1, NULL));
    cr_assert_not_null(mseg_construct(s, "y\xff", "int", 4, 1, NULL));
    cr_assert_not_null(mseg_construct(s, "y\xc3\xbf", "int", 4, 1, NULL));
    cr_assert_not_null(mseg_construct(s, "del\x7f", "int", 4, 1, NULL));
    cr_assert_eq(mseg_close(s), 0);
    struct run *r = run_tool("ls", "--json", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "\"name\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""), "%s", r->out);
    cr_assert(strstr(r->out, "\"name\":\"bad\\udcc3(\\udcff\\udced\\udca0\\udc80\""), "%s", r->out);
    cr_assert(strstr(r->out, "\"name\":\"y\\udcff\""), "%s", r->out);
    cr_assert(strstr(r->out, "\"name\":\"y\xc3\xbf\""), "%s", r->out);
    cr_assert(strstr(r->out, "\"name\":\"del\\u007f\""), "%s", r->out);
}

/* mseg copy SRC SRC used to rename the copy over the segment: a process
   that had it open went on writing to the unlinked old file, and what it
   wrote afterwards was lost. */
Test(tool, copy_onto_the_source_itself_is_refused_and_loses_nothing, .fini = th_cleanup)
{
    char path[256], alias[300];
    sample(path);
    struct stat before, after;
    cr_assert_eq(stat(path, &before), 0);
    mseg *s = mseg_open(path, 0, NULL);   /* a live writer */
    cr_assert_not_null(s, "%s", mseg_errmsg());
    struct run *r = run_tool("copy", path, path, NULL);
    ASSERT_EXIT(r, 3);
    cr_assert(strstr(r->err, "source segment itself"), "%s", r->err);
    snprintf(alias, sizeof alias, "%s/./%s", th_tmpdir(), strrchr(path, '/') + 1);
    ASSERT_EXIT(run_tool("copy", path, alias, NULL), 3);
    cr_assert_eq(stat(path, &after), 0);
    cr_assert_eq(before.st_ino, after.st_ino, "the segment's file was replaced");
    cr_assert_not_null(mseg_construct(s, "after", "char", 1, 4, "new"));
    cr_assert_eq(mseg_close(s), 0);
    r = run_tool("ls", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "after"), "the writer's change was lost: %s", r->out);

    /* --shm /NAME onto /dev/shm/NAME is the same object */
    char shm[256], shmpath[300];
    th_name(shm, MSEG_SHM);
    struct mseg_config c = { .size = 1 << 20 };
    s = mseg_open(shm, MSEG_CREATE | MSEG_EXCL | MSEG_SHM, &c);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0);
    snprintf(shmpath, sizeof shmpath, "/dev/shm%s", shm);
    ASSERT_EXIT(run_tool("copy", "--shm", shm, shmpath, NULL), 3);
}

/* No DST.XXXXXX temporary of a copy to dst is left in its directory. */
static void assert_no_temporary_beside(const char *dst)
{
    char pattern[300];
    snprintf(pattern, sizeof pattern, "%s.", strrchr(dst, '/') + 1);
    DIR *d = opendir(th_tmpdir());
    cr_assert_not_null(d);
    for (struct dirent *e; (e = readdir(d));)
        cr_assert(strncmp(e->d_name, pattern, strlen(pattern)) != 0, "left behind: %s", e->d_name);
    closedir(d);
}

/* A file size limit reached while copying used to kill the tool with
   SIGXFSZ (exit 153), leaving DST.XXXXXX behind. */
Test(tool, copy_past_a_file_size_limit_exits_3_and_leaves_no_temporary_file, .fini = th_cleanup)
{
    char path[256], dst[256];
    sample(path);               /* 1 MiB */
    th_name(dst, 0);
    signal(SIGXFSZ, SIG_DFL);   /* what a shell gives the tool */
    struct rlimit old, lim;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 100000;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    struct run *r = run_tool("copy", path, dst, NULL);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    ASSERT_EXIT(r, 3);
    cr_assert(strstr(r->err, "File too large"), "%s", r->err);
    struct stat st;
    cr_assert_neq(stat(dst, &st), 0);
    assert_no_temporary_beside(dst);
}

/* ls printed names (and dump their headers) raw: a name with a newline
   forged a line of the listing, one with an escape sequence drove the
   terminal. */
Test(tool, ls_and_dump_escape_control_bytes_in_names, .fini = th_cleanup)
{
    char path[256];
    mseg *s = th_create(path, 0, 1 << 20);
    const char *odd = "a\nfake 0x1 \x1b[2J\xff\\caf\xc3\xa9";
    cr_assert_not_null(mseg_construct(s, odd, "t\ty", 1, 2, "x"));
    cr_assert_eq(mseg_close(s), 0);
    struct run *r = run_tool("ls", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "a\\x0afake 0x1 \\x1b[2J\\xff\\x5ccaf\xc3\xa9"), "%s", r->out);
    cr_assert(strstr(r->out, "t\\x09y"), "%s", r->out);
    cr_assert_null(strchr(r->out, '\x1b'), "%s", r->out);
    int lines = 0;
    for (const char *p = r->out; (p = strchr(p, '\n')); p++)
        lines++;
    cr_assert_eq(lines, 2, "%s", r->out);   /* the heading and the one object */
    r = run_tool("dump", path, odd, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strncmp(r->out, "a\\x0afake", 9) == 0, "%s", r->out);
    cr_assert_null(strchr(r->out, '\x1b'), "%s", r->out);
}

/* ls and dump of a segment with no named objects passed qsort a NULL
   array, undefined behaviour that UBSan stopped the tool for (exit 1). */
Test(tool, ls_and_dump_of_a_segment_without_objects, .fini = th_cleanup)
{
    char path[256];
    mseg *s = th_create(path, 0, 1 << 20);
    cr_assert_eq(mseg_close(s), 0);
    struct run *r = run_tool("ls", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "NAME"), "%s", r->out);
    r = run_tool("ls", "--json", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "\"objects\":[]"), "%s", r->out);
    r = run_tool("dump", path, "x", NULL);
    ASSERT_EXIT(r, 3);
    cr_assert(strstr(r->err, "no object named x"), "%s", r->err);
}

/* A new segment file at path (256 bytes) holding one map, name, of 500
   entries, spread over several leaves, with the first leaf's link to the
   next one broken: the map reads as damaged after its first leaf. */
static void map_with_a_broken_leaf_link(char *path, const char *name)
{
    mseg *s = th_create(path, 0, 1 << 20);
    mseg_map *m = mseg_map_open(s, name, MSEG_KEY_U64, 8, MSEG_CREATE);
    cr_assert_not_null(m, "%s", mseg_errmsg());
    for (uint64_t i = 0; i < 500; i++)
        cr_assert_eq(mseg_map_put(s, m, &i, 8, &i, 8), 0);
    cr_assert_eq(mseg_close(s), 0);
    size_t len = 0;
    unsigned char *buf = (unsigned char *)th_read_file(path, &len);
    cr_assert(buf && len > MSEG_HEAP_OFF);
    unsigned char *node = memmem(buf + MSEG_HEAP_OFF, len - MSEG_HEAP_OFF, "NODE", 4);
    cr_assert_not_null(node);
    node[24] = 0xff;   /* the first leaf's link to the next one */
    cr_assert_eq(th_write_file(path, buf, len), 0);
    free(buf);
}

/* dump --json of a map damaged after its first leaf printed a complete
   object of the entries read so far ("entries":[...]}) and then a second,
   error object: a script reading one object took the first leaf for the
   whole map. The error now ends the one object. */
Test(tool, dump_json_of_a_map_damaged_midway_is_one_object_with_the_error, .fini = th_cleanup)
{
    char path[256];
    map_with_a_broken_leaf_link(path, "big");
    struct run *r = run_tool("dump", "--json", path, "big", NULL);
    ASSERT_EXIT(r, 2);
    char *nl = strchr(r->out, '\n');
    cr_assert(nl && nl[1] == '\0', "not one line: %s", r->out);
    cr_assert(strstr(r->out, "\"entries\":[{\"key\":0,"), "%s", r->out);
    cr_assert(strstr(r->out, "],\"error\":\"") && strstr(r->out, "\"exit\":2}\n"), "%s", r->out);
    ASSERT_EXIT(run_tool("check", path, NULL), 2);
}

/* Output the tool could not write (stdout on a full disk) used to be lost
   with exit 0, an empty listing passing for a good one. */
Test(tool, output_that_cannot_be_written_exits_3, .fini = th_cleanup)
{
    char path[256], errp[256];
    sample(path);
    th_name(errp, 0);
    const char *cmds[][4] = { { "ls", path, NULL }, { "dump", path, "greeting", NULL },
                              { "info", path, NULL }, { "stats", "--json", path, NULL } };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        fflush(NULL);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            int full = open("/dev/full", O_WRONLY);
            int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (full < 0 || e < 0)
                _exit(126);
            dup2(full, 1);
            dup2(e, 2);
            execl(TOOL, TOOL, cmds[i][0], cmds[i][1], cmds[i][2], (char *)NULL);
            _exit(127);
        }
        int st;
        waitpid(pid, &st, 0);
        cr_assert(WIFEXITED(st), "mseg %s did not exit", cmds[i][0]);
        cr_assert_eq(WEXITSTATUS(st), 3, "mseg %s to /dev/full: exit %d", cmds[i][0], WEXITSTATUS(st));
        size_t len = 0;
        char *err = th_read_file(errp, &len);
        cr_assert(err && strstr(err, "cannot write the output"), "%s", err ? err : "");
        free(err);
    }
    unlink(errp);
}

/* A copy stopped before it is complete (Ctrl-C, a kill) used to leave its
   DST.XXXXXX temporary behind. It is now written unnamed and named only
   once synced: killed at that sync, it leaves no file at all. */
static ino_t copy_src_ino;
static void kill_at_the_copys_sync(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_ino != copy_src_ino)
        raise(SIGKILL);
}

Test(tool, copy_killed_before_it_is_complete_leaves_no_file, .fini = th_cleanup)
{
    char path[256], dst[256];
    sample(path);
    th_name(dst, 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    copy_src_ino = st.st_ino;
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        th_fsync_hook = kill_at_the_copys_sync;
        mseg_copy_locked(path, 0, dst, NULL);
        _exit(0);                                   /* the hook never fired */
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "killed at the copy's fsync (status %#x)", status);
    cr_assert_neq(stat(dst, &st), 0, "no DST");
    assert_no_temporary_beside(dst);
    /* and a copy that runs to the end is a sound segment with the objects */
    struct run *r = run_tool("copy", path, dst, NULL);
    ASSERT_EXIT(r, 0);
    ASSERT_EXIT(run_tool("check", dst, NULL), 0);
    ASSERT_EXIT(run_tool("dump", dst, "greeting", NULL), 0);
    unlink(dst);
}

/* A torn header write damages one copy, and open takes the other (DESIGN):
   check used to call that CORRUPT (exit 2), and recover said it had
   nothing to do while it rewrote the copy. */
Test(tool, one_damaged_header_copy_is_sound_once_repaired_and_recover_says_it_repaired_it, .fini = th_cleanup)
{
    char path[256];
    sample(path);
    for (int copy = 0; copy < 2; copy++) {
        size_t len = 0;
        unsigned char *buf = (unsigned char *)th_read_file(path, &len);
        buf[(copy ? MSEG_HEADER_B_OFF : 0) + 40] ^= 0xff;                /* damage one copy */
        cr_assert_eq(th_write_file(path, buf, len), 0);
        free(buf);
        char want[64];
        snprintf(want, sizeof want, "sound once header %c is repaired", copy ? 'B' : 'A');
        struct run *r = run_tool("check", path, NULL);
        ASSERT_EXIT(r, 1);
        cr_assert(strstr(r->out, want) && strstr(r->out, "checksum mismatch"), "%s", r->out);
        r = run_tool("check", "--json", path, NULL);
        ASSERT_EXIT(r, 1);
        cr_assert(strstr(r->out, copy ? "\"header_b_ok\":false" : "\"header_a_ok\":false"), "%s", r->out);
        r = run_tool("recover", path, NULL);
        ASSERT_EXIT(r, 0);
        snprintf(want, sizeof want, "header %c was damaged and is rewritten", copy ? 'B' : 'A');
        cr_assert(strstr(r->out, want), "%s", r->out);
        ASSERT_EXIT(run_tool("check", path, NULL), 0);
    }
    /* one copy bad and other damage: still corrupt */
    size_t len = 0;
    unsigned char *buf = (unsigned char *)th_read_file(path, &len);
    buf[MSEG_HEADER_B_OFF + 40] ^= 0xff;
    buf[MSEG_HEAP_OFF + MSEG_GRANULE - 4] ^= 0x40;                        /* the first block's header */
    cr_assert_eq(th_write_file(path, buf, len), 0);
    free(buf);
    ASSERT_EXIT(run_tool("check", path, NULL), 2);
}

/* mseg.1 says --json prints errors as JSON too; a usage error (an unknown
   option, a missing or an extra argument) printed only the usage text on
   stderr, so a script reading the JSON got nothing (found by an adversarial
   review). Without --json, the message names what is wrong: more than four
   arguments used to print the usage alone. */
Test(tool, usage_errors_come_out_as_json_with_json_and_say_what_is_wrong_without, .fini = th_cleanup)
{
    static const char *const cases[][7] = {
        { "info", "--json", NULL },
        { "info", "--bogus", "x", "--json", NULL },
        { "info", "--json", "a", "b", "c", "d", "e" },
    };
    static const char *const why[] = { "expected 1 argument", "unknown option --bogus", "too many arguments" };
    for (size_t i = 0; i < 3; i++) {
        const char *const *a = cases[i];
        struct run *r = run_tool(a[0], a[1], a[2], a[3], a[4], a[5], a[6], NULL);
        ASSERT_EXIT(r, 3);
        cr_assert(strncmp(r->out, "{\"command\":\"info\",\"error\":", 26) == 0 && strstr(r->out, why[i]) &&
                  strstr(r->out, "\"exit\":3}"), "case %zu: stdout: %s", i, r->out);
    }
    struct run *r = run_tool("info", "a", "b", "c", "d", "e", NULL);
    ASSERT_EXIT(r, 3);
    cr_assert(strstr(r->err, "mseg info: too many arguments") && strstr(r->err, "usage: mseg info"), "%s", r->err);
}

/* Killed just after committing a transaction that put 200 keys into map
   "m": recovery replays it, which writes the map's root and nodes. */
static void killed_putting_into_m(void *arg)
{
    mseg *s = mseg_open(arg, 0, NULL);
    CHILD_CHECK(s != NULL);
    mseg_map *m = mseg_map_open(s, "m", MSEG_KEY_U64, 8, 0);
    CHILD_CHECK(m != NULL);
    CHILD_CHECK(mseg_tx_begin(s) == 0);
    for (uint64_t k = 1; k < 400; k += 2)
        CHILD_CHECK(mseg_map_put(s, m, &k, 8, &k, 8) == 0);
    mseg_test_set_crash_hook(die_after_commit, NULL);
    mseg_tx_commit(s);
    _exit(2);
}

/* A writer attaches (it recovers the file for real) and rewrites map "m":
   deletes the upper half of its keys and puts odd keys in their place. */
static void rewrite_m(void *arg)
{
    mseg *s = mseg_open(arg, 0, NULL);
    CHILD_CHECK(s != NULL);
    mseg_map *m = mseg_map_open(s, "m", MSEG_KEY_U64, 8, 0);
    CHILD_CHECK(m != NULL);
    for (uint64_t k = 10000; k < 20000; k += 2)
        CHILD_CHECK(mseg_map_del(s, m, &k, 8) == 0);
    for (uint64_t k = 1; k < 20000; k += 2)
        CHILD_CHECK(mseg_map_put(s, m, &k, 8, &k, 8) == 0);
    CHILD_CHECK(mseg_close(s) == 0);
}

/* Runs `mseg dump path name` with its stdout a pipe that nobody reads
   until it is full (the dump then waits in a write), runs writer(path) in
   a child meanwhile, then reads the rest; the output, malloc'd. */
static char *dump_with_a_writer_meanwhile(const char *path, const char *name, void (*writer)(void *))
{
    char errp[256], why[200];
    int pfd[2], st;
    cr_assert_eq(pipe(pfd), 0);
    th_name(errp, 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(pfd[1], 1);
        dup2(e, 2);
        close(pfd[0]);
        execl(TOOL, TOOL, "dump", path, name, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    int avail = 0;
    for (int i = 0; i < 5000; i++) {
        cr_assert_eq(ioctl(pfd[0], FIONREAD, &avail), 0);
        if (avail >= 65536 - 4096)
            break;
        usleep(1000);
    }
    cr_assert_geq(avail, 65536 - 4096, "the dump did not fill the pipe: %d bytes", avail);
    usleep(100000);
    st = th_fork_run(writer, (void *)path);
    cr_assert(TH_EXITED_OK(st), "the writer %s", th_status_str(st, why, sizeof why));
    size_t cap = 8 << 20, len = 0;
    char *out = malloc(cap);
    cr_assert_not_null(out);
    for (ssize_t n; (n = read(pfd[0], out + len, cap - 1 - len)) > 0;)
        len += (size_t)n;
    out[len] = '\0';
    close(pfd[0]);
    if (len == cap - 1)   /* a dump that does not end */
        kill(pid, SIGKILL);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    char err[8192];
    slurp_into(errp, err, sizeof err);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "dump %s: %s", th_status_str(st, why, sizeof why), err);
    return out;
}

/* info, ls, dump and stats read a segment that needs recovery, with no
   writer attached, through a private copy-on-write view that recovers it
   privately (open_for_reading). The pages that recovery wrote (here the
   map's root and nodes) stop following the file; a writer that attaches
   meanwhile recovers the file and changes the rest of it under them. The
   dump went on through that mix and exited 0 with a listing the map never
   held: "key 5456 after 5470", keys listed twice. */
Test(tool, dump_through_a_private_recovery_is_not_fooled_by_a_writer_that_attaches_meanwhile,
     .timeout = 60, .fini = th_cleanup)
{
    char path[256], why[200];
    mseg *s = th_create(path, 0, 8 << 20);
    mseg_map *m = mseg_map_open(s, "m", MSEG_KEY_U64, 8, MSEG_CREATE);
    cr_assert_not_null(m);
    for (uint64_t k = 0; k < 20000; k += 2)
        cr_assert_eq(mseg_map_put(s, m, &k, 8, &k, 8), 0);
    cr_assert_eq(mseg_close(s), 0);
    int st = th_fork_run(killed_putting_into_m, path);
    cr_assert(TH_EXITED_OK(st), "the writer %s", th_status_str(st, why, sizeof why));
    char *out = dump_with_a_writer_meanwhile(path, "m", rewrite_m);
    char *line = strchr(out, '\n');
    cr_assert_not_null(line);
    uint64_t prev = 0, lines = 0, stable = 0;
    for (line++; *line; lines++) {
        unsigned long long k;
        char hexv[17], want[17];
        cr_assert_eq(sscanf(line, "%llu = %16s", &k, hexv), 2, "bad line: %.40s", line);
        cr_assert(lines == 0 || k > prev, "key %llu after %llu", k, (unsigned long long)prev);
        value_hex(k, want);
        cr_assert_str_eq(hexv, want, "key %llu", k);
        stable += k % 2 == 0 && k < 10000;
        prev = k;
        char *nl = strchr(line, '\n');
        cr_assert_not_null(nl);
        line = nl + 1;
    }
    cr_assert_eq(stable, 5000, "%llu of the 5000 keys no one removed listed", (unsigned long long)stable);
    free(out);
}

/* Killed just after committing a transaction that pushed onto vector "v":
   recovery replays it, which writes the vector's root and elements. */
static void killed_pushing_onto_v(void *arg)
{
    mseg *s = mseg_open(arg, 0, NULL);
    CHILD_CHECK(s != NULL);
    mseg_vec *v = mseg_vec_open(s, "v", 8, 0);
    CHILD_CHECK(v != NULL);
    CHILD_CHECK(mseg_tx_begin(s) == 0);
    for (uint64_t i = 20000; i < 20100; i++)
        CHILD_CHECK(mseg_vec_push(s, v, &i) == 0);
    mseg_test_set_crash_hook(die_after_commit, NULL);
    mseg_tx_commit(s);
    _exit(2);
}

/* A writer attaches (it recovers the file) and moves vector "v" to a new
   buffer (pushes past its capacity), then fills the block that held it. */
static void regrow_v(void *arg)
{
    mseg *s = mseg_open(arg, 0, NULL);
    CHILD_CHECK(s != NULL);
    mseg_vec *v = mseg_vec_open(s, "v", 8, 0);
    CHILD_CHECK(v != NULL);
    size_t len = mseg_vec_len(s, v);
    for (uint64_t i = len; i < 4 * len; i++)
        CHILD_CHECK(mseg_vec_push(s, v, &i) == 0);
    for (int i = 0; i < 8; i++) {
        void *p = mseg_alloc(s, 40000);
        CHILD_CHECK(p != NULL);
        memset(p, 0xee, 40000);
    }
    CHILD_CHECK(mseg_close(s) == 0);
}

/* A new segment file at path (256 bytes) holding vector "v" of the
   8-byte elements 0, 1, ..., 19999. */
static void vector_v_of_20000(char *path)
{
    mseg *s = th_create(path, 0, 8 << 20);
    mseg_vec *v = mseg_vec_open(s, "v", 8, MSEG_CREATE);
    cr_assert_not_null(v);
    for (uint64_t i = 0; i < 20000; i++)
        cr_assert_eq(mseg_vec_push(s, v, &i), 0);
    cr_assert_eq(mseg_close(s), 0);
}

/* The element lines of a dump of such a vector (out, after its heading):
   asserts that each is its index's element, in order from 0; how many. */
static uint64_t vector_lines(char *out)
{
    char *line = strchr(out, '\n');
    cr_assert_not_null(line);
    uint64_t lines = 0;
    for (line++; *line; lines++) {
        unsigned long long i;
        char hexv[17], want[17];
        cr_assert_eq(sscanf(line, "[%llu] %16s", &i, hexv), 2, "bad line: %.40s", line);
        cr_assert_eq(i, lines, "line %llu is element %llu", (unsigned long long)lines, i);
        value_hex(i, want);
        cr_assert_str_eq(hexv, want, "element %llu", i);
        char *nl = strchr(line, '\n');
        cr_assert_not_null(nl);
        line = nl + 1;
    }
    return lines;
}

/* The same with a vector: each line must be its index's element. */
Test(tool, dump_of_a_vector_through_a_private_recovery_is_not_fooled_by_a_writer_that_attaches_meanwhile,
     .timeout = 60, .fini = th_cleanup)
{
    char path[256], why[200];
    vector_v_of_20000(path);
    int st = th_fork_run(killed_pushing_onto_v, path);
    cr_assert(TH_EXITED_OK(st), "the writer %s", th_status_str(st, why, sizeof why));
    char *out = dump_with_a_writer_meanwhile(path, "v", regrow_v);
    uint64_t lines = vector_lines(out);
    cr_assert_eq(lines, 20100, "%llu elements listed", (unsigned long long)lines);
    free(out);
}

/* mseg.1: with --json, errors come out as one object "with the fields
   error, errno and exit", for every command. check's error object had no
   errno, so a script could not tell a missing segment from a newer format
   or a permission problem but by parsing the message. */
Test(tool, check_json_errors_carry_the_errno_as_every_command_s_do, .fini = th_cleanup)
{
    char path[256];
    th_name(path, 0);
    struct run *r = run_tool("check", "--json", path, NULL);   /* missing */
    ASSERT_EXIT(r, 3);
    cr_assert(strstr(r->out, "\"error\":") && strstr(r->out, "\"errno\":\"ENOENT\"") &&
              strstr(r->out, "\"exit\":3"), "%s", r->out);
    sample(path);
    make_newer_format(path);
    r = run_tool("check", "--json", path, NULL);
    ASSERT_EXIT(r, 3);
    cr_assert(strstr(r->out, "\"errno\":\"EPROTO\"") && strstr(r->out, "\"exit\":3"), "%s", r->out);
}

/* check's text report names a damaged container by its name, bytes the
   segment's writer chose. ls and dump escape such names (text_str), but
   check printed it raw: a newline in it forged a line of the report
   ("forged line: sound") and an escape sequence reached the terminal. */
Test(tool, check_escapes_control_bytes_of_a_name_in_its_problem_line, .fini = th_cleanup)
{
    char path[256];
    map_with_a_broken_leaf_link(path, "evil\nforged line: sound\033[2J");
    struct run *r = run_tool("check", path, NULL);
    ASSERT_EXIT(r, 2);
    cr_assert(strstr(r->out, "CORRUPT: container evil\\x0aforged line: sound\\x1b[2J at "), "%s", r->out);
    cr_assert(!strchr(r->out, '\033') && !strstr(r->out, "\nforged"), "%s", r->out);
}

/* copy writes DST beside itself and renames it over DST: over a FIFO, a
   device or a socket, that replaced the special file with the copy. Run as
   root, `mseg copy data.seg /dev/null` left a regular file of 1 MB, mode
   0600, in place of /dev/null. */
Test(tool, copy_onto_an_existing_file_that_is_not_a_regular_file_is_refused_and_leaves_it, .fini = th_cleanup)
{
    char path[256], fifo[256];
    sample(path);
    th_name(fifo, 0);
    cr_assert_eq(mkfifo(fifo, 0600), 0, "%s", strerror(errno));
    struct run *r = run_tool("copy", path, fifo, NULL);
    ASSERT_EXIT(r, 3);
    cr_assert(strstr(r->err, "not a regular file"), "%s", r->err);
    struct stat st;
    cr_assert_eq(lstat(fifo, &st), 0);
    cr_assert(S_ISFIFO(st.st_mode), "the FIFO was replaced: mode %o", (unsigned)st.st_mode);
    r = run_tool("copy", "--json", path, fifo, NULL);
    ASSERT_EXIT(r, 3);
    cr_assert(strstr(r->out, "\"errno\":\"EINVAL\""), "%s", r->out);
}

/* Only the first read-write open rewrites a damaged header copy. With
   another process attached, recover's open rewrote nothing, and recover
   still exited 0 saying "nothing to recover", while check went on saying
   the copy is damaged and that recover rewrites it. */
Test(tool, recover_with_another_process_attached_says_a_damaged_header_copy_is_not_rewritten,
     .fini = th_cleanup)
{
    char path[256];
    sample(path);
    mseg *s = mseg_open(path, 0, NULL);   /* another process attached */
    cr_assert_not_null(s, "%s", mseg_errmsg());
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    unsigned char b;
    cr_assert_eq(pread(fd, &b, 1, MSEG_HEADER_B_OFF + 40), 1);
    b ^= 0xff;                                                      /* damage copy B */
    cr_assert_eq(pwrite(fd, &b, 1, MSEG_HEADER_B_OFF + 40), 1);
    close(fd);
    struct run *r = run_tool("recover", path, NULL);
    ASSERT_EXIT(r, 3);
    cr_assert(strstr(r->err, "header B is damaged") && strstr(r->err, "another process"), "%s", r->err);
    r = run_tool("recover", "--json", path, NULL);
    ASSERT_EXIT(r, 3);
    cr_assert(strstr(r->out, "\"errno\":\"EBUSY\""), "%s", r->out);
    ASSERT_EXIT(run_tool("check", path, NULL), 1);   /* still damaged */
    cr_assert_eq(mseg_close(s), 0);
    r = run_tool("recover", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "header B was damaged and is rewritten"), "%s", r->out);
    ASSERT_EXIT(run_tool("check", path, NULL), 0);
}

/* A writer died in the middle of an operation while another process had
   the segment open: recovery is then the next lock taker's, not an
   open's. check said "open read-write to recover", and recover, which
   does that, exited 0 with "nothing to recover" and left it undone: check
   and ls went on failing (exit 3). */
Test(tool, recover_with_another_process_attached_recovers_a_dead_writers_operation, .fini = th_cleanup)
{
    char path[256];
    sample(path);
    mseg *s = mseg_open(path, 0, NULL);   /* another process attached, idle */
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert(TH_EXITED_OK(th_fork_run(killed_construct, path)));
    struct run *r = run_tool("recover", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "recovered: the interrupted operation was completed"), "%s", r->out);
    ASSERT_EXIT(run_tool("check", path, NULL), 0);
    r = run_tool("ls", path, NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "killed"), "the committed construct: %s", r->out);
    cr_assert_eq(mseg_close(s), 0);
}

/* A writer attaches and pops vector "v" down to 100 elements. */
static void pop_v_to_100(void *arg)
{
    mseg *s = mseg_open(arg, 0, NULL);
    CHILD_CHECK(s != NULL);
    mseg_vec *v = mseg_vec_open(s, "v", 8, 0);
    CHILD_CHECK(v != NULL);
    while (mseg_vec_len(s, v) > 100)
        CHILD_CHECK(mseg_vec_pop(s, v, NULL) == 0);
    CHILD_CHECK(mseg_close(s) == 0);
}

/* A vector that another process pops while it is dumped ends sooner than
   the length the dump read first. The dump then stopped with exit 3 and
   "vector at 0x...: index 2979 past the end (length 100)", as if it could
   not run, where a map changed meanwhile is listed with exit 0 (mseg.1):
   it now ends the listing at the vector's new end. */
Test(tool, dump_of_a_vector_another_process_shortens_meanwhile_ends_at_its_new_end, .timeout = 60,
     .fini = th_cleanup)
{
    char path[256];
    vector_v_of_20000(path);
    char *out = dump_with_a_writer_meanwhile(path, "v", pop_v_to_100);
    uint64_t lines = vector_lines(out);
    cr_assert(lines >= 100 && lines < 20000, "%llu elements listed", (unsigned long long)lines);
    free(out);
}

/* mseg.1: --json prints errors as one JSON object too. An unknown command
   printed only the text usage on stderr, whatever options followed it. */
Test(tool, an_unknown_command_with_json_is_a_json_error, .fini = th_cleanup)
{
    struct run *r = run_tool("frob\"nicate", "--json", "x", NULL);
    ASSERT_EXIT(r, 3);
    cr_assert_str_eq(r->out, "{\"command\":\"frob\\\"nicate\",\"error\":\"unknown command 'frob\\\"nicate'\","
                     "\"errno\":\"EINVAL\",\"exit\":3}\n");
    r = run_tool("frobnicate", "x", NULL);
    ASSERT_EXIT(r, 3);
    cr_assert(strstr(r->err, "unknown command 'frobnicate'") && strstr(r->err, "usage: mseg"), "%s", r->err);
    cr_assert_str_empty(r->out);
}

/* mseg dump --help said "Prints object NAME's bytes as a hex dump", while
   the dump (and mseg.1) gives vectors one element a line and maps one
   entry a line. */
Test(tool, dump_help_says_how_vectors_and_maps_are_printed, .fini = th_cleanup)
{
    struct run *r = run_tool("dump", "--help", NULL);
    ASSERT_EXIT(r, 0);
    cr_assert(strstr(r->out, "one element a line for a vector") && strstr(r->out, "one entry a line for a map"),
              "%s", r->out);
}

/* copy writes DST's bytes into a temporary named DST.XXXXXX: for a DST
   whose name is longer than NAME_MAX - 7 bytes, a valid name, that
   temporary's name was too long, and the copy failed with "File name too
   long" as if DST were. */
Test(tool, copy_to_a_destination_whose_name_is_near_name_max_succeeds, .fini = th_cleanup)
{
    char path[256], name[256], dst[NAME_MAX + 1];
    sample(path);
    th_name(name, 0);
    /* DST a name of NAME_MAX bytes in the current directory: as a full
       path it would not fit th_track's buffer for the cleanup */
    cr_assert_eq(chdir(th_tmpdir()), 0);
    const char *base = strrchr(name, '/') + 1;
    memset(dst, 'z', NAME_MAX);
    memcpy(dst, base, strlen(base));
    dst[NAME_MAX] = '\0';
    th_track(dst, 0);
    struct run *r = run_tool("copy", path, dst, NULL);
    ASSERT_EXIT(r, 0);
    ASSERT_EXIT(run_tool("check", dst, NULL), 0);
}

/* A copy is a segment no process has open, synced whole before it is
   named. Its runtime page said what the source's did while copy held it
   open: "open", and "unsynced" while another process had changes not yet
   synced. After a reboot the copy passed for a segment the machine had
   stopped under: a read-only open failed with EAGAIN ("needs recovery"),
   mseg check said "sound after recovery", a first writer rebuilt and
   verified it all. */
Test(tool, a_copy_after_a_reboot_is_a_cleanly_closed_segment, .fini = th_cleanup)
{
    char path[256], dst[256];
    sample(path);
    th_name(dst, 0);
    mseg *s = mseg_open(path, 0, NULL);   /* another process, with a change not synced */
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_not_null(mseg_construct(s, "unsynced", "char", 1, 3, "un"));
    ASSERT_EXIT(run_tool("copy", path, dst, NULL), 0);
    cr_assert_eq(mseg_close(s), 0);
    uint8_t other_boot[16];
    memset(other_boot, 0x5a, sizeof other_boot);
    mseg_test_set_boot_id(other_boot);
    struct mseg_report r;
    int rc = mseg_check(dst, 0, &r);
    mseg *ro = mseg_open(dst, MSEG_RDONLY, NULL);
    const char *why = ro ? "" : mseg_errmsg();
    mseg_test_set_boot_id(NULL);
    cr_assert(rc == 0 && !r.recovered, "check of the copy after a reboot: rc %d, recovered %d: %s", rc,
              r.recovered, r.first_problem);
    cr_assert_not_null(ro, "read-only open of the copy after a reboot: %s", why);
    cr_assert_not_null(mseg_find(ro, "unsynced", "char", 1, NULL));
    mseg_close(ro);
}

/* Every --json object of a command on a segment names it ("segment"), as
   the dump of a raw object did; a vector's or a map's dump did not. */
Test(tool, dump_json_of_a_vector_and_a_map_names_the_segment, .fini = th_cleanup)
{
    char path[256], want[300];
    mseg *s = th_create(path, 0, 1 << 20);
    cr_assert_not_null(mseg_vec_open(s, "vec", 8, MSEG_CREATE));
    cr_assert_not_null(mseg_map_open(s, "map", MSEG_KEY_U64, 8, MSEG_CREATE));
    cr_assert_eq(mseg_close(s), 0);
    snprintf(want, sizeof want, "{\"command\":\"dump\",\"segment\":\"%s\",\"name\":", path);
    const char *names[] = { "vec", "map" };
    for (int i = 0; i < 2; i++) {
        struct run *r = run_tool("dump", "--json", path, names[i], NULL);
        ASSERT_EXIT(r, 0);
        cr_assert(strncmp(r->out, want, strlen(want)) == 0, "%s", r->out);
    }
}

#define BIG_ELEM (256u << 10)

/* Child: pops vector "w"'s one element of BIG_ELEM bytes and pushes it
   back filled with the next byte value, until killed (also when the
   test's process exits). */
static void pop_and_push_w(const char *path)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    mseg *s = mseg_open(path, 0, NULL);
    CHILD_CHECK(s != NULL);
    mseg_vec *v = mseg_vec_open(s, "w", BIG_ELEM, 0);
    CHILD_CHECK(v != NULL);
    unsigned char *e = malloc(BIG_ELEM);
    CHILD_CHECK(e != NULL);
    for (unsigned n = 2;; n++) {
        memset(e, (int)(n & 0xff), BIG_ELEM);
        CHILD_CHECK(mseg_vec_pop(s, v, NULL) == 0);
        CHILD_CHECK(mseg_vec_push(s, v, e) == 0);
    }
}

/* The element line of `mseg dump PATH w` in the file at out, if any:
   every byte of the element is one value. */
static void assert_element_whole(const char *out, int run)
{
    size_t len = 0;
    char *text = th_read_file(out, &len);
    cr_assert_not_null(text);
    text[len] = '\0';
    char *line = strstr(text, "\n[0] ");
    if (line) {
        const char *hex = line + 5;
        size_t n = strcspn(hex, "\n");
        cr_assert_eq(n, 2 * BIG_ELEM, "run %d: %zu hex digits", run, n);
        for (size_t i = 2; i < n; i += 2)
            cr_assert(hex[i] == hex[0] && hex[i + 1] == hex[1], "run %d: byte %zu is %.2s, byte 0 %.2s: an "
                      "element the vector never held", run, i / 2, hex + i, hex);
    }
    free(text);
}

/* dump copied a vector's element through mseg_vec_at's pointer, after the
   read that found it: another process that popped the element and pushed
   a new one meanwhile could leave the copy half old, half new, and the
   dump printed an element the vector never held, exit 0 ("run 20: byte
   179024 is f8, byte 0 d0"). The element is now copied within the read,
   which such a change makes retry. A race: 300 dumps caught the old code
   in nearly every run of this test, and cannot fail with the new one. */
Test(tool, dump_of_a_vector_never_prints_an_element_half_old_half_new, .timeout = 120, .fini = th_cleanup)
{
    char path[256], out[256];
    th_name(path, 0);
    th_name(out, 0);
    struct mseg_config c = { .size = 8 << 20 };
    mseg *s = mseg_open(path, MSEG_CREATE | MSEG_EXCL, &c);
    cr_assert_not_null(s);
    mseg_vec *v = mseg_vec_open(s, "w", BIG_ELEM, MSEG_CREATE);
    cr_assert_not_null(v);
    cr_assert_eq(mseg_vec_reserve(s, v, 2), 0, "%s", mseg_errmsg());
    unsigned char *e = malloc(BIG_ELEM);
    cr_assert_not_null(e);
    memset(e, 1, BIG_ELEM);
    cr_assert_eq(mseg_vec_push(s, v, e), 0);
    free(e);
    cr_assert_eq(mseg_close(s), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        pop_and_push_w(path);
    for (int run = 0; run < 300; run++) {
        fflush(NULL);
        pid_t d = fork();
        cr_assert_geq(d, 0);
        if (d == 0) {
            int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            dup2(fd, 1);
            execl(TOOL, TOOL, "dump", path, "w", (char *)NULL);
            _exit(127);
        }
        int st;
        cr_assert_eq(waitpid(d, &st, 0), d);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "run %d: dump status %#x", run, st);
        assert_element_whole(out, run);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}
