/* test_badinput.c - damaged segment files: clear errors, never a crash.

   Each case writes a damaged copy of a real segment and opens it (and runs
   mseg_check on it) in a forked child, so a crash is a failed test, not a
   dead test runner. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include "helpers.h"
#include "layout.h"

#define MiB (1024u * 1024u)
#define SEG_SIZE (1 * MiB)

static const int one_init[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
static const char two_init[] = "the second object";

/* A real segment with three objects, as bytes. */
static unsigned char *original(size_t *len)
{
    char name[256];
    th_name(name, 0);
    struct mseg_config c = { .size = SEG_SIZE };
    mseg *s = mseg_open(name, MSEG_CREATE | MSEG_EXCL, &c);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    cr_assert_not_null(MSEG_NEW_FROM(s, "one", int, 10, one_init));
    cr_assert_not_null(MSEG_NEW_FROM(s, "two", char, sizeof two_init, two_init));
    double *d = MSEG_NEW(s, "three", double, 5);
    cr_assert_not_null(d);
    d[4] = 4.5;
    void *raw = mseg_alloc(s, 5000);
    cr_assert_not_null(raw);
    memset(raw, 0x77, 5000);
    cr_assert_eq(mseg_close(s), 0);
    unsigned char *buf = (unsigned char *)th_read_file(name, len);
    cr_assert_not_null(buf);
    cr_assert_geq(*len, (size_t)SEG_SIZE);
    mseg_remove(name, 0);
    return buf;
}

static struct mseg_header *hdr(unsigned char *buf, int copy)
{
    return (struct mseg_header *)(void *)(buf + (copy ? MSEG_HEADER_B_OFF : MSEG_HEADER_A_OFF));
}

static void seal(struct mseg_header *h)
{
    h->checksum = th_hash(h, offsetof(struct mseg_header, checksum));
}

struct outcome {
    int opened, err, found;
    int check_rc, check_err, hdr_a_ok, hdr_b_ok, check_problems;
    char msg[400], check_msg[400];
};

/* In the child: mseg_check first (an open may repair), then open and, if
   it opened, look at the objects and use the segment a little. */
static void probe(const char *path, unsigned flags, int use, struct outcome *o)
{
    struct mseg_report r;
    memset(&r, 0, sizeof r);
    r.header_a_ok = r.header_b_ok = -1;
    errno = 0;
    o->check_rc = mseg_check(path, flags, &r);
    o->check_err = errno;
    o->hdr_a_ok = r.header_a_ok;
    o->hdr_b_ok = r.header_b_ok;
    o->check_problems = (int)r.problems;
    snprintf(o->check_msg, sizeof o->check_msg, "%s", mseg_errmsg());

    errno = 0;
    mseg *s = mseg_open(path, flags, NULL);
    o->err = errno;
    snprintf(o->msg, sizeof o->msg, "%s", mseg_errmsg());
    if (!s)
        return;
    o->opened = 1;
    size_t n1 = 0, n2 = 0, n3 = 0;
    int *one = MSEG_FIND(s, "one", int, &n1);
    char *two = MSEG_FIND(s, "two", char, &n2);
    double *three = MSEG_FIND(s, "three", double, &n3);
    o->found = one && n1 == 10 && memcmp(one, one_init, sizeof one_init) == 0 &&
               two && n2 == sizeof two_init && strcmp(two, two_init) == 0 &&
               three && n3 == 5 && three[4] == 4.5;
    if (use) {
        /* on a damaged heap these may fail, but must not crash or hang */
        void *p[50];
        for (int i = 0; i < 50; i++)
            p[i] = mseg_alloc(s, (size_t)i * 40);
        for (int i = 0; i < 50; i++)
            if (p[i])
                mseg_free(s, p[i]);
        MSEG_NEW(s, "new-object", long, 100);
        MSEG_FIND(s, "new-object", long, NULL);
        mseg_destroy(s, "two");
        mseg_named_count(s);
        mseg_free_memory(s);
        mseg_verify(s, NULL);
    }
    mseg_close(s);
}

/* Writes bytes to a fresh path and probes it in a child; asserts the child
   exited normally (no signal, no hang). */
static struct outcome try_bytes(const void *bytes, size_t len, int use, const char *what)
{
    char path[256];
    th_name(path, 0);
    cr_assert_eq(th_write_file(path, bytes, len), 0);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        alarm(30);
        struct outcome o;
        memset(&o, 0, sizeof o);
        probe(path, 0, use, &o);
        ssize_t w = write(fds[1], &o, sizeof o);
        _exit(w == (ssize_t)sizeof o ? 0 : 98);
    }
    close(fds[1]);
    struct outcome o;
    memset(&o, 0, sizeof o);
    size_t got = 0;
    ssize_t n;
    while (got < sizeof o && (n = read(fds[0], (char *)&o + got, sizeof o - got)) > 0)
        got += (size_t)n;
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    char why[128];
    cr_assert(TH_EXITED_OK(st), "%s: the probing child %s", what, th_status_str(st, why, sizeof why));
    cr_assert_eq(got, sizeof o, "%s: no report from the child", what);
    mseg_remove(path, 0);
    return o;
}

static int msg_has(const char *m, const char *a, const char *b, const char *c)
{
    return (a && strcasestr(m, a)) || (b && strcasestr(m, b)) || (c && strcasestr(m, c));
}

/* The case must fail to open with errno err (or err2), a message, and
   mseg_check must return -1. */
static struct outcome expect_refused(const void *bytes, size_t len, int err, int err2, const char *what)
{
    struct outcome o = try_bytes(bytes, len, 0, what);
    cr_assert_eq(o.opened, 0, "%s: opened", what);
    cr_assert(o.err == err || (err2 && o.err == err2), "%s: errno %d (%s), expected %d", what, o.err, o.msg, err);
    cr_assert(o.msg[0] && strcmp(o.msg, "no error") != 0, "%s: no message", what);
    cr_assert_eq(o.check_rc, -1, "%s: mseg_check returned %d", what, o.check_rc);
    cr_assert_neq(o.check_err, 0, "%s: mseg_check failed without errno", what);
    return o;
}

Test(badinput, empty_file_is_an_interrupted_creation_and_fails_with_enoent, .timeout = 60, .fini = th_cleanup)
{
    struct outcome o = expect_refused("", 0, ENOENT, 0, "empty file");
    (void)o;
}

Test(badinput, truncated_files_fail_with_euclean_naming_the_size, .timeout = 60, .fini = th_cleanup)
{
    size_t len;
    unsigned char *buf = original(&len);
    size_t cuts[] = { 100, 255, 256, 4096, 8192 + 100, MSEG_HEAP_OFF, len / 2, len - 4096, len - 1 };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu bytes", cuts[i]);
        struct outcome o = expect_refused(buf, cuts[i], EUCLEAN, 0, what);
        cr_assert(msg_has(o.msg, "size", "truncat", "bytes") || msg_has(o.msg, "short", "small", NULL),
                  "%s: the message does not mention the size: \"%s\"", what, o.msg);
    }
    free(buf);
}

Test(badinput, wrong_magic_in_both_copies_fails_with_euclean_not_a_segment, .timeout = 60, .fini = th_cleanup)
{
    size_t len;
    unsigned char *buf = original(&len);
    memcpy(hdr(buf, 0)->magic, "XXXXXXXX", 8);
    memcpy(hdr(buf, 1)->magic, "XXXXXXXX", 8);
    struct outcome o = expect_refused(buf, len, EUCLEAN, 0, "wrong magic");
    cr_assert(msg_has(o.msg, "magic", "not an mseg", "not a segment"),
              "message does not say it is not a segment: \"%s\"", o.msg);
    /* and with valid checksums over the wrong magic */
    seal(hdr(buf, 0));
    seal(hdr(buf, 1));
    expect_refused(buf, len, EUCLEAN, 0, "wrong magic, sealed");
    /* a text file */
    char text[20000];
    memset(text, 'a', sizeof text);
    expect_refused(text, sizeof text, EUCLEAN, 0, "a text file");
    free(buf);
}

struct field { const char *name; size_t off, size; };
#define F(f) { #f, offsetof(struct mseg_header, f), sizeof(((struct mseg_header *)0)->f) }
static const struct field fields[] = {
    F(magic), F(format_version), F(header_size), F(compat_features), F(incompat_features),
    F(word_size), F(byte_order), F(granule), F(page_size), F(generation), F(size),
    F(max_size), F(runtime_off), F(control_off), F(log_off), F(log_size), F(heap_off),
    F(created_ns), F(uuid), F(reserved), F(checksum),
};
#define NFIELDS (sizeof fields / sizeof fields[0])

static void flip(unsigned char *buf, int copy, const struct field *f, unsigned char mask)
{
    unsigned char *h = (unsigned char *)hdr(buf, copy);
    h[f->off + f->size / 2] ^= mask;
}

Test(badinput, a_flipped_byte_in_any_header_field_of_both_copies_fails_with_euclean, .timeout = 120, .fini = th_cleanup)
{
    size_t len;
    unsigned char *orig = original(&len);
    unsigned char *buf = malloc(len);
    for (size_t i = 0; i < NFIELDS; i++) {
        memcpy(buf, orig, len);
        flip(buf, 0, &fields[i], 0x10);
        flip(buf, 1, &fields[i], 0x10);
        char what[80];
        snprintf(what, sizeof what, "flipped byte in %s of both copies", fields[i].name);
        expect_refused(buf, len, EUCLEAN, 0, what);
    }
    free(buf);
    free(orig);
}

Test(badinput, a_flipped_byte_in_one_header_copy_falls_back_to_the_other, .timeout = 120, .fini = th_cleanup)
{
    size_t len;
    unsigned char *orig = original(&len);
    unsigned char *buf = malloc(len);
    for (int copy = 0; copy < 2; copy++)
        for (size_t i = 0; i < NFIELDS; i++) {
            memcpy(buf, orig, len);
            flip(buf, copy, &fields[i], 0x01);
            char what[80];
            snprintf(what, sizeof what, "flipped byte in %s of copy %c", fields[i].name, "AB"[copy]);
            struct outcome o = try_bytes(buf, len, 1, what);
            cr_assert_eq(o.opened, 1, "%s: not opened: errno %d, %s", what, o.err, o.msg);
            cr_assert_eq(o.found, 1, "%s: objects not found intact", what);
            cr_assert_eq(copy ? o.hdr_b_ok : o.hdr_a_ok, 0, "%s: check calls the damaged copy valid", what);
            cr_assert_eq(copy ? o.hdr_a_ok : o.hdr_b_ok, 1, "%s: check calls the intact copy invalid", what);
        }
    free(buf);
    free(orig);
}

Test(badinput, a_future_format_version_fails_with_eproto, .timeout = 60, .fini = th_cleanup)
{
    size_t len;
    unsigned char *buf = original(&len);
    for (int c = 0; c < 2; c++) {
        hdr(buf, c)->format_version = 99;
        seal(hdr(buf, c));
    }
    struct outcome o = expect_refused(buf, len, EPROTO, 0, "format version 99");
    cr_assert(msg_has(o.msg, "version", NULL, NULL), "message does not name the version: \"%s\"", o.msg);
    cr_assert(msg_has(o.msg, "99", NULL, NULL), "message does not give the version found: \"%s\"", o.msg);
    for (int c = 0; c < 2; c++) {
        hdr(buf, c)->format_version = 0;
        seal(hdr(buf, c));
    }
    expect_refused(buf, len, EPROTO, EUCLEAN, "format version 0");
    free(buf);
}

Test(badinput, an_unknown_incompatible_feature_fails_with_eproto, .timeout = 60, .fini = th_cleanup)
{
    size_t len;
    unsigned char *buf = original(&len);
    for (int c = 0; c < 2; c++) {
        hdr(buf, c)->incompat_features |= 1ull << 40;
        seal(hdr(buf, c));
    }
    struct outcome o = expect_refused(buf, len, EPROTO, 0, "unknown incompat feature");
    (void)o;
    free(buf);
}

/* A later version of mseg may rewrite one header copy only (as an update
   of this one does: header_write_size), with a feature this library does
   not know, or a format it does not read. That copy's checksum holds, so
   it is no torn write: it is the newer one, and the segment is refused.
   Before the fix the open took the older copy, opened a segment of an
   unknown format, and its first writer wrote the older copy over the
   newer one. */
Test(badinput, a_newer_header_copy_of_an_unknown_format_is_refused_not_passed_over, .timeout = 60,
     .fini = th_cleanup)
{
    size_t len;
    unsigned char *orig = original(&len);
    unsigned char *buf = malloc(len);
    for (int c = 0; c < 2; c++) {
        char what[120];
        memcpy(buf, orig, len);
        hdr(buf, c)->generation = hdr(buf, !c)->generation + 1;
        hdr(buf, c)->incompat_features |= 1ull << 40;
        seal(hdr(buf, c));
        snprintf(what, sizeof what, "copy %c a generation newer, with an unknown incompatible feature",
                 "AB"[c]);
        expect_refused(buf, len, EPROTO, 0, what);

        memcpy(buf, orig, len);
        hdr(buf, c)->generation = hdr(buf, !c)->generation + 1;
        hdr(buf, c)->format_version = MSEG_FORMAT_VERSION + 1;
        seal(hdr(buf, c));
        snprintf(what, sizeof what, "copy %c a generation newer, of format version %u", "AB"[c],
                 MSEG_FORMAT_VERSION + 1);
        struct outcome o = expect_refused(buf, len, EPROTO, 0, what);
        cr_assert(msg_has(o.msg, "version", NULL, NULL), "%s: message does not name the version: \"%s\"",
                  what, o.msg);

        /* the older copy has the unknown feature (a later version wrote the
           newer one without it): the newer copy, which this library reads, is
           the segment */
        memcpy(buf, orig, len);
        hdr(buf, !c)->generation = hdr(buf, c)->generation + 1;
        seal(hdr(buf, !c));
        hdr(buf, c)->incompat_features |= 1ull << 40;
        seal(hdr(buf, c));
        snprintf(what, sizeof what, "copy %c a generation older, with an unknown incompatible feature",
                 "AB"[c]);
        o = try_bytes(buf, len, 1, what);
        cr_assert_eq(o.opened, 1, "%s: not opened: errno %d, %s", what, o.err, o.msg);
        cr_assert_eq(o.found, 1, "%s: objects not found intact", what);
    }
    free(buf);
    free(orig);
}

Test(badinput, an_unknown_compatible_feature_is_ignored, .timeout = 60, .fini = th_cleanup)
{
    size_t len;
    unsigned char *buf = original(&len);
    for (int c = 0; c < 2; c++) {
        hdr(buf, c)->compat_features |= 1ull << 40;
        seal(hdr(buf, c));
    }
    struct outcome o = try_bytes(buf, len, 1, "unknown compat feature");
    cr_assert_eq(o.opened, 1, "errno %d, %s", o.err, o.msg);
    cr_assert_eq(o.found, 1);
    cr_assert_eq(o.check_rc, 0, "mseg_check: %s", o.check_msg);
    free(buf);
}

Test(badinput, a_header_claiming_more_than_the_file_fails_with_euclean, .timeout = 60, .fini = th_cleanup)
{
    size_t len;
    unsigned char *buf = original(&len);
    uint64_t sizes[] = { len + 4096, 2ull * len, UINT64_MAX, UINT64_MAX - 4095, MSEG_MAX_SIZE * 2 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (int c = 0; c < 2; c++) {
            hdr(buf, c)->size = sizes[i];
            seal(hdr(buf, c));
        }
        char what[80];
        snprintf(what, sizeof what, "header size %#llx, file %zu", (unsigned long long)sizes[i], len);
        expect_refused(buf, len, EUCLEAN, 0, what);
    }
    free(buf);
}

Test(badinput, foreign_word_size_or_byte_order_is_refused, .timeout = 60, .fini = th_cleanup)
{
    size_t len;
    unsigned char *orig = original(&len);
    unsigned char *buf = malloc(len);
    for (int k = 0; k < 2; k++) {
        memcpy(buf, orig, len);
        for (int c = 0; c < 2; c++) {
            if (k == 0)
                hdr(buf, c)->word_size = 4;
            else
                hdr(buf, c)->byte_order = 2;
            seal(hdr(buf, c));
        }
        expect_refused(buf, len, EPROTO, EUCLEAN, k ? "byte order 2" : "word size 4");
    }
    free(buf);
    free(orig);
}

/* Fields that are sealed (valid checksum) but say something impossible. */
Test(badinput, impossible_sealed_header_fields_are_refused, .timeout = 120, .fini = th_cleanup)
{
    size_t len;
    unsigned char *orig = original(&len);
    unsigned char *buf = malloc(len);
    struct { const char *what; size_t off; uint64_t v; int width; } cases[] = {
        { "granule 8", offsetof(struct mseg_header, granule), 8, 2 },
        { "granule 0", offsetof(struct mseg_header, granule), 0, 2 },
        { "page size 0", offsetof(struct mseg_header, page_size), 0, 4 },
        { "page size 3", offsetof(struct mseg_header, page_size), 3, 4 },
        { "size 0", offsetof(struct mseg_header, size), 0, 8 },
        { "size 4096", offsetof(struct mseg_header, size), 4096, 8 },
        { "runtime page at 0", offsetof(struct mseg_header, runtime_off), 0, 8 },
        { "control page at 2^60", offsetof(struct mseg_header, control_off), 1ull << 60, 8 },
        { "control page at -4096", offsetof(struct mseg_header, control_off), (uint64_t)-4096, 8 },
        { "log at the end", offsetof(struct mseg_header, log_off), SEG_SIZE - 4096, 8 },
        { "log size 0", offsetof(struct mseg_header, log_size), 0, 8 },
        { "log size huge", offsetof(struct mseg_header, log_size), UINT64_MAX, 8 },
        { "heap at 0", offsetof(struct mseg_header, heap_off), 0, 8 },
        { "heap past the end", offsetof(struct mseg_header, heap_off), 2ull * SEG_SIZE, 8 },
        { "heap unaligned", offsetof(struct mseg_header, heap_off), MSEG_HEAP_OFF + 3, 8 },
        { "header size 0", offsetof(struct mseg_header, header_size), 0, 4 },
        { "header size huge", offsetof(struct mseg_header, header_size), 0xfffffff0u, 4 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(buf, orig, len);
        for (int c = 0; c < 2; c++) {
            unsigned char *h = (unsigned char *)hdr(buf, c);
            memcpy(h + cases[i].off, &cases[i].v, (size_t)cases[i].width);
            seal(hdr(buf, c));
        }
        expect_refused(buf, len, EUCLEAN, EPROTO, cases[i].what);
    }
    free(buf);
    free(orig);
}

/* ---- damage behind a valid header ---- */

static void fill_random(unsigned char *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = th_rand(&seed);
        memcpy(p + i, &v, n - i < 8 ? n - i : 8);
    }
}

/* Must not crash or hang; check must find the damage. */
static void expect_survived(const unsigned char *buf, size_t len, const char *what)
{
    struct outcome o = try_bytes(buf, len, 1, what);
    cr_assert_eq(o.check_rc, -1, "%s: mseg_check calls it sound", what);
    cr_assert(o.check_err == EUCLEAN, "%s: mseg_check errno %d (%s)", what, o.check_err, o.check_msg);
    if (!o.opened)
        cr_assert(o.err == EUCLEAN, "%s: open failed with errno %d (%s)", what, o.err, o.msg);
}

Test(badinput, garbage_in_the_control_page_is_reported_never_followed, .timeout = 120, .fini = th_cleanup)
{
    size_t len;
    unsigned char *orig = original(&len);
    unsigned char *buf = malloc(len);
    for (uint64_t seed = 1; seed <= 4; seed++) {
        memcpy(buf, orig, len);
        fill_random(buf + MSEG_CONTROL_OFF, MSEG_PAGE, seed);
        expect_survived(buf, len, "random control page");
    }
    /* plausible-looking but wrong: every bin head points at the header */
    memcpy(buf, orig, len);
    struct mseg_control *ctl = (struct mseg_control *)(void *)(buf + MSEG_CONTROL_OFF);
    for (unsigned b = 0; b < MSEG_BINS; b++)
        ctl->bin_head[b] = 16;
    for (unsigned w = 0; w < MSEG_BIN_WORDS; w++)
        ctl->bin_bitmap[w] = ~0ull;
    expect_survived(buf, len, "bin heads into the header");
    memcpy(buf, orig, len);
    ctl->dir_table = len - 16;
    expect_survived(buf, len, "directory table at the end of the file");
    memcpy(buf, orig, len);
    ctl->dir_capacity = 1ull << 62;
    expect_survived(buf, len, "directory capacity 2^62");
    memcpy(buf, orig, len);
    ctl->heap_end = (uint64_t)len * 4;
    expect_survived(buf, len, "heap end past the file");
    free(buf);
    free(orig);
}

Test(badinput, garbage_in_the_heap_is_reported_never_followed, .timeout = 120, .fini = th_cleanup)
{
    size_t len;
    unsigned char *orig = original(&len);
    unsigned char *buf = malloc(len);
    size_t spans[][2] = { { MSEG_HEAP_OFF, 256 }, { MSEG_HEAP_OFF, 64 * 1024 }, { MSEG_HEAP_OFF + 4000, 20000 } };
    for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++) {
        memcpy(buf, orig, len);
        fill_random(buf + spans[i][0], spans[i][1], i + 10);
        char what[64];
        snprintf(what, sizeof what, "%zu random bytes at %#zx", spans[i][1], spans[i][0]);
        expect_survived(buf, len, what);
    }
    /* zeros instead: every block header says size 0 */
    memcpy(buf, orig, len);
    memset(buf + MSEG_HEAP_OFF, 0, 8192);
    expect_survived(buf, len, "zeroed heap start");
    /* all ones: huge sizes */
    memcpy(buf, orig, len);
    memset(buf + MSEG_HEAP_OFF, 0xff, 8192);
    expect_survived(buf, len, "0xff heap start");
    free(buf);
    free(orig);
}

/* A free block whose list link points at itself: a cycle that a careless
   walk would follow forever. */
Test(badinput, a_cycle_in_a_free_list_ends_in_an_error_not_a_hang, .timeout = 120, .fini = th_cleanup)
{
    size_t len;
    unsigned char *orig = original(&len);
    unsigned char *buf = malloc(len);
    memcpy(buf, orig, len);
    struct mseg_control *ctl = (struct mseg_control *)(void *)(buf + MSEG_CONTROL_OFF);
    int done = 0;
    for (unsigned b = 0; b < MSEG_BINS && !done; b++) {
        uint64_t p = ctl->bin_head[b];
        if (p && p + 16 <= len) {
            memcpy(buf + p, &p, 8);        /* next = itself */
            memcpy(buf + p + 8, &p, 8);    /* prev = itself */
            done = 1;
        }
    }
    cr_assert(done, "no free block found in the original segment's bins");
    expect_survived(buf, len, "free-list cycle");
    free(buf);
    free(orig);
}

Test(badinput, a_torn_log_is_discarded_and_the_segment_opens, .timeout = 60, .fini = th_cleanup)
{
    size_t len;
    unsigned char *buf = original(&len);
    struct mseg_log_head *lh = (struct mseg_log_head *)(void *)(buf + MSEG_LOG_OFF);
    struct mseg_log_entry *e = (struct mseg_log_entry *)(void *)(buf + MSEG_LOG_OFF + sizeof *lh);
    lh->commit = 12345;
    lh->count = 3;
    lh->checksum = 0xdeadbeef;               /* does not match */
    for (int i = 0; i < 3; i++) {
        e[i].where = 0;                      /* would smash the header */
        e[i].value = 0xffffffffffffffffull;
    }
    struct outcome o = try_bytes(buf, len, 1, "torn log");
    cr_assert_eq(o.opened, 1, "errno %d, %s", o.err, o.msg);
    cr_assert_eq(o.found, 1);
    lh->count = 0xffffffffu;
    o = try_bytes(buf, len, 1, "torn log with a huge count");
    cr_assert_eq(o.opened, 1, "errno %d, %s", o.err, o.msg);
    cr_assert_eq(o.found, 1);
    free(buf);
}

/* Offset of the record of the object `name` in a segment's bytes, found by
   its name after a record header (0 if absent). */
static size_t record_offset(const unsigned char *buf, size_t len, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = MSEG_HEAP_OFF; i + sizeof(struct mseg_dir_record) + nl + 1 < len; i += 16) {
        const struct mseg_dir_record *r = (const struct mseg_dir_record *)(const void *)(buf + i);
        if (r->magic == MSEG_RECORD_MAGIC && r->name_len == nl && memcmp(buf + i + sizeof *r, name, nl + 1) == 0)
            return i;
    }
    return 0;
}

Test(badinput, a_named_record_with_lengths_past_its_block_is_reported, .timeout = 60, .fini = th_cleanup)
{
    size_t len;
    unsigned char *orig = original(&len);
    unsigned char *buf = malloc(len);
    size_t at = record_offset(orig, len, "two");
    cr_assert_neq(at, 0, "record of \"two\" not found where layout.h says");
    struct { const char *what; size_t off; uint64_t v; int width; } cases[] = {
        { "name_len 0", offsetof(struct mseg_dir_record, name_len), 0, 2 },
        { "name_len 65535", offsetof(struct mseg_dir_record, name_len), 65535, 2 },
        { "data_off huge", offsetof(struct mseg_dir_record, data_off), 0xfffffff0u, 4 },
        { "count huge", offsetof(struct mseg_dir_record, count), 1ull << 60, 8 },
        { "elem_size huge", offsetof(struct mseg_dir_record, elem_size), 1ull << 62, 8 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(buf, orig, len);
        memcpy(buf + at + cases[i].off, &cases[i].v, (size_t)cases[i].width);
        expect_survived(buf, len, cases[i].what);
    }
    free(buf);
    free(orig);
}

/* Every field of a record that find relies on, damaged one at a time: the
   find of that object is an EUCLEAN error, never its data, and the other
   objects are still found whole. */
Test(badinput, a_find_of_a_damaged_record_is_euclean_and_the_others_are_found, .timeout = 60, .fini = th_cleanup)
{
    size_t len;
    unsigned char *orig = original(&len);
    unsigned char *buf = malloc(len);
    cr_assert_not_null(buf);
    size_t at = record_offset(orig, len, "two");
    cr_assert_neq(at, 0, "record of \"two\" not found where layout.h says");
    const struct mseg_dir_record *r = (const struct mseg_dir_record *)(const void *)(orig + at);
    size_t name_nul = at + sizeof *r + r->name_len, type_nul = name_nul + 1 + r->type_len;
    uint32_t head;
    memcpy(&head, orig + at - 4, 4);
    struct { const char *what; size_t off; uint64_t v; int width; } cases[] = {
        { "magic", at + offsetof(struct mseg_dir_record, magic), 0x4a424f4f, 4 },
        { "name_len 0", at + offsetof(struct mseg_dir_record, name_len), 0, 2 },
        { "name_len 4", at + offsetof(struct mseg_dir_record, name_len), 4, 2 },
        { "type_len 0", at + offsetof(struct mseg_dir_record, type_len), 0, 1 },
        { "type_len 200", at + offsetof(struct mseg_dir_record, type_len), 200, 1 },
        { "data_off 16 short", at + offsetof(struct mseg_dir_record, data_off), r->data_off - 16, 4 },
        { "data_off huge", at + offsetof(struct mseg_dir_record, data_off), 0xfffffff0u, 4 },
        { "elem_size 0", at + offsetof(struct mseg_dir_record, elem_size), 0, 8 },
        { "count past the block", at + offsetof(struct mseg_dir_record, count), 1u << 20, 8 },
        { "count overflowing", at + offsetof(struct mseg_dir_record, count), 1ull << 63, 8 },
        { "name without its NUL", name_nul, 'X', 1 },
        { "type without its NUL", type_nul, 'X', 1 },
        { "block marked free", at - 4, head & ~1u, 4 },
    };
    char path[256];
    th_name(path, 1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(buf, orig, len);
        memcpy(buf + cases[i].off, &cases[i].v, (size_t)cases[i].width);
        cr_assert_eq(th_write_file(path, buf, len), 0);
        mseg *s = mseg_open(path, 0, NULL);
        cr_assert_not_null(s, "%s: open: %s", cases[i].what, mseg_errmsg());
        size_t n = 12345;
        errno = 0;
        char *two = MSEG_FIND(s, "two", char, &n);
        cr_assert_null(two, "%s: find returned the damaged object", cases[i].what);
        cr_assert_eq(errno, EUCLEAN, "%s: errno %d (%s)", cases[i].what, errno, mseg_errmsg());
        cr_assert_eq(n, 12345, "%s: count written on failure", cases[i].what);
        size_t n1 = 0, n3 = 0;
        int *one = MSEG_FIND(s, "one", int, &n1);
        double *three = MSEG_FIND(s, "three", double, &n3);
        cr_assert(one && n1 == 10 && memcmp(one, one_init, sizeof one_init) == 0,
                  "%s: \"one\" lost: %s", cases[i].what, mseg_errmsg());
        cr_assert(three && n3 == 5 && three[4] == 4.5, "%s: \"three\" lost", cases[i].what);
        cr_assert_eq(mseg_close(s), 0);
        mseg_remove(path, 0);
    }
    free(buf);
    free(orig);
}

/* A name that is not a regular file: a FIFO, a directory, a device. The
   read-only opens (mseg_check, MSEG_RDONLY, and `mseg info`, `ls`, `check`,
   `stats`) waited forever on a FIFO (open(2) of a FIFO for reading waits for
   a writer), and a directory was described as a segment file of 4096 bytes,
   truncated. Now every open mode fails at once with EINVAL and says why
   (a read-write open of a directory, too: it was EISDIR, where the read-only
   ones said EINVAL and README promises EINVAL for "a directory"). */
Test(badinput, a_fifo_a_directory_or_a_device_is_refused_at_once_not_waited_on, .timeout = 60,
     .fini = th_cleanup)
{
    char fifo[256], dir[256];
    th_name(fifo, 0);
    th_name(dir, 0);
    cr_assert_eq(mkfifo(fifo, 0600), 0, "mkfifo: %s", strerror(errno));
    cr_assert_eq(mkdir(dir, 0700), 0, "mkdir: %s", strerror(errno));
    const char *names[] = { fifo, dir, "/dev/null" };
    const unsigned modes[] = { MSEG_RDONLY, MSEG_COW, 0, MSEG_CREATE };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            pid_t pid = fork();
            cr_assert_neq(pid, -1);
            if (pid == 0) {
                alarm(5);
                errno = 0;
                mseg *s = mseg_open(names[i], modes[m], NULL);
                _exit(s ? 1 : errno == EINVAL && strstr(mseg_errmsg(), "not a regular file") ? 0 : 2);
            }
            int st;
            cr_assert_eq(waitpid(pid, &st, 0), pid);
            char buf[64];
            cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mseg_open(%s, %#x): %s", names[i], modes[m],
                      th_status_str(st, buf, sizeof buf));
        }
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0) {
            alarm(5);
            errno = 0;
            struct mseg_report r;
            _exit(mseg_check(names[i], 0, &r) == 0 ? 1 : errno == EINVAL ? 0 : 2);
        }
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        char buf[64];
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mseg_check(%s): %s", names[i],
                  th_status_str(st, buf, sizeof buf));
    }
    rmdir(dir);
}

/* ---- targeted damage to maps, made in place through an open handle ---- */

/* A fresh read-write segment of SEG_SIZE bytes at path holding an empty
   named map. */
static mseg *map_segment(char *path, const char *name, enum mseg_key kind, size_t val_size, mseg_map **m)
{
    th_name(path, 0);
    struct mseg_config cfg = { .size = SEG_SIZE };
    mseg *s = mseg_open(path, MSEG_CREATE | MSEG_EXCL, &cfg);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    *m = mseg_map_open(s, name, kind, val_size, MSEG_CREATE);
    cr_assert_not_null(*m, "%s", mseg_errmsg());
    return s;
}

/* A read-write segment of `size` bytes holding the named byte-key map "mb"
   of n entries "key00000".. with values of i % 40 bytes of 'a' + i % 26. */
static mseg *byte_map_segment(char *path, mseg_map **m, int n)
{
    mseg *s = map_segment(path, "mb", MSEG_KEY_BYTES, 0, m);
    for (int i = 0; i < n; i++) {
        char k[32], v[64];
        snprintf(k, sizeof k, "key%05d", i);
        memset(v, 'a' + i % 26, sizeof v);
        cr_assert_eq(mseg_map_put(s, *m, k, strlen(k), v, (size_t)(i % 40)), 0, "%s", mseg_errmsg());
    }
    return s;
}

/* The segment offset of the cell whose bytes (key or value) are at p. */
static uint64_t cell_of(mseg *s, const void *p)
{
    return mseg_off_of(s, p) - MSEG_MAP_CELL_HEAD;
}

/* A key or value cell's length word that runs past its heap block (but not
   past the segment): the lookup read the neighbouring blocks' bytes as the
   key (a silent ENOENT for a key that is there) or returned them as the
   value, and mseg_check called the map sound. */
Test(badinput, a_map_cell_whose_length_runs_past_its_block_is_euclean, .timeout = 60, .fini = th_cleanup)
{
    char path[256];
    mseg_map *m;
    mseg *s = byte_map_segment(path, &m, 200);
    struct mseg_cursor c;
    cr_assert_eq(mseg_map_seek(s, m, &c, "key00033", 8), 0, "%s", mseg_errmsg());
    uint64_t kcell = cell_of(s, c.key), vcell = cell_of(s, c.val);
    uint64_t *klen = mseg_at(s, kcell), *vlen = mseg_at(s, vcell);
    cr_assert_eq(*klen, 8);
    cr_assert_eq(*vlen, 33);
    for (int which = 0; which < 2; which++) {
        uint64_t *len = which ? vlen : klen, good = *len;
        *len = 200;                    /* the cell's block holds 24 or 52 bytes */
        size_t n = 0;
        errno = 0;
        const char *v = mseg_map_get(s, m, "key00033", 8, &n);
        cr_assert_null(v, "%s cell length past its block: get returned %zu bytes", which ? "value" : "key", n);
        cr_assert_eq(errno, EUCLEAN, "%s cell length past its block: errno %d (%s)", which ? "value" : "key",
                     errno, mseg_errmsg());
        cr_assert(strstr(mseg_errmsg(), "cell"), "%s", mseg_errmsg());
        struct mseg_report r;
        cr_assert_eq(mseg_verify(s, &r), -1, "%s cell length past its block: verify calls it sound",
                     which ? "value" : "key");
        cr_assert_eq(errno, EUCLEAN);
        *len = good;
        cr_assert_eq(mseg_verify(s, &r), 0, "%s", r.first_problem);
    }
    cr_assert_eq(mseg_close(s), 0);
}

/* A u64 map "mu" of n entries k * 7 -> k, in a fresh segment. */
static mseg *u64_map_segment(char *path, mseg_map **m, uint64_t n)
{
    mseg *s = map_segment(path, "mu", MSEG_KEY_U64, 8, m);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t k = i * 7;
        cr_assert_eq(mseg_map_put(s, *m, &k, 8, &i, 8), 0, "%s", mseg_errmsg());
    }
    return s;
}

/* The map's leaves, left to right, found from the root down (not through
   the leaf links); returns how many (at most max). */
static unsigned map_leaves(mseg *s, mseg_map *m, struct mseg_map_node **out, unsigned max)
{
    const struct mseg_map_root *r = (const void *)m;
    struct mseg_map_node *level[2048];
    unsigned n = 1;
    level[0] = mseg_at(s, r->root);
    while (level[0]->level > 0) {
        struct mseg_map_node *below[2048];
        unsigned nb = 0;
        for (unsigned i = 0; i < n; i++) {
            const uint8_t *perm = level[i]->perm[(level[i]->state >> 8) & 1];
            for (unsigned j = 0; j < (level[i]->state & 0xff) && nb < 2048; j++)
                below[nb++] = mseg_at(s, level[i]->vals[perm[j]]);
        }
        memcpy(level, below, nb * sizeof below[0]);
        n = nb;
    }
    for (unsigned i = 0; i < n && i < max; i++)
        out[i] = level[i];
    return n < max ? n : max;
}

/* u64_map_segment of 2000 keys, and its leaves (at least `least` of them)
   in leaf[64]; their number. */
static mseg *map_and_leaves(char *path, mseg_map **m, struct mseg_map_node **leaf, unsigned least, unsigned *nl)
{
    mseg *s = u64_map_segment(path, m, 2000);
    *nl = map_leaves(s, *m, leaf, 64);
    cr_assert_geq(*nl, least, "only %u leaves", *nl);
    return s;
}

/* Walks m with a cursor for at most `limit` steps: how many entries it
   gave; *err the errno it ended with (0 if it was still going). */
static uint64_t cursor_walk(mseg *s, mseg_map *m, uint64_t limit, int *err)
{
    struct mseg_cursor c;
    uint64_t n = 0;
    int rc = mseg_map_first(s, m, &c);
    while (rc == 0 && n < limit) {
        n++;
        rc = mseg_map_next(s, &c);
    }
    *err = rc ? errno : 0;
    return n;
}

/* A leaf's next link damaged to a leaf that is not the one after it:
   itself or an earlier leaf (a cycle), or the leaf after next (a skip).
   A cursor followed the link: it went round the cycle for ever (a program
   iterating to ENOENT hung) or left out a leaf's entries, without an
   error. Now each hop checks that the leaf it reaches links back (its
   prev), and the walk ends with EUCLEAN. */
Test(badinput, a_cursor_on_a_damaged_leaf_link_fails_with_euclean_not_loops_or_skips, .timeout = 60,
     .fini = th_cleanup)
{
    char path[256];
    mseg_map *m;
    struct mseg_map_node *leaf[64];
    unsigned nl;
    mseg *s = map_and_leaves(path, &m, leaf, 6, &nl);
    struct { const char *what; struct mseg_map_node *at, *to; } cases[] = {
        { "itself", leaf[2], leaf[2] },
        { "the leaf before it", leaf[2], leaf[1] },
        { "the first leaf", leaf[4], leaf[0] },
        { "the leaf after next", leaf[2], leaf[4] },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t good = cases[i].at->next;
        cases[i].at->next = mseg_off_of(s, cases[i].to);
        int err;
        uint64_t n = cursor_walk(s, m, 4000, &err);
        cr_assert_eq(err, EUCLEAN, "next link to %s: the walk gave %llu entries and ended with errno %d (%s)",
                     cases[i].what, (unsigned long long)n, err, err ? mseg_errmsg() : "still going");
        cr_assert(n < 2000, "next link to %s: %llu entries", cases[i].what, (unsigned long long)n);
        cases[i].at->next = good;
        n = cursor_walk(s, m, 4000, &err);
        cr_assert(n == 2000 && err == ENOENT, "restored: %llu entries, errno %d", (unsigned long long)n, err);
    }
    cr_assert_eq(mseg_close(s), 0);
}

/* A leaf's next link damaged to 0 in the middle of the map: a cursor
   ended there with ENOENT, as if the map had no more entries. Now the
   leaf that ends a walk must be the tree's last one (EUCLEAN if not). */
Test(badinput, a_cursor_that_meets_a_leaf_link_cut_short_fails_with_euclean, .timeout = 60, .fini = th_cleanup)
{
    char path[256];
    mseg_map *m;
    struct mseg_map_node *leaf[64];
    unsigned nl;
    mseg *s = map_and_leaves(path, &m, leaf, 4, &nl);
    uint64_t good = leaf[1]->next;
    leaf[1]->next = 0;
    int err;
    uint64_t n = cursor_walk(s, m, 4000, &err);
    cr_assert_eq(err, EUCLEAN, "next link cut: the walk gave %llu entries and ended with errno %d (%s)",
                 (unsigned long long)n, err, mseg_errmsg());
    struct mseg_cursor c;
    uint64_t past = 7 * 2000;
    cr_assert_eq(mseg_map_seek(s, m, &c, &past, 8), -1);
    cr_assert_eq(errno, ENOENT, "a seek past the end: %s", mseg_errmsg());
    leaf[1]->next = good;
    n = cursor_walk(s, m, 4000, &err);
    cr_assert(n == 2000 && err == ENOENT, "restored: %llu entries, errno %d", (unsigned long long)n, err);
    cr_assert_eq(mseg_close(s), 0);
}

/* Walks the byte-key map m to its end (at most limit steps), asserting
   every key is above the one before; *err as cursor_walk. */
static uint64_t cursor_walk_ordered(mseg *s, mseg_map *m, uint64_t limit, int *err)
{
    struct mseg_cursor c;
    uint64_t n = 0;
    char prev[64] = "";
    int rc = mseg_map_first(s, m, &c);
    while (rc == 0 && n < limit) {
        cr_assert(c.klen < sizeof prev && (n == 0 || memcmp(prev, c.key, c.klen) < 0),
                  "entry %llu: a key that is not above the one before it, without an error",
                  (unsigned long long)n);
        memcpy(prev, c.key, c.klen);
        prev[c.klen] = 0;
        n++;
        rc = mseg_map_next(s, &c);
    }
    *err = rc ? errno : 0;
    return n;
}

/* A leaf's order array listing one slot twice, or two of its keys swapped:
   a cursor gave that entry twice (or stepped back) and went on. Each step
   now checks that the entry's key is above the one before it in the leaf:
   EUCLEAN. Integer keys (the lock-free step) and byte keys (the general
   one). */
Test(badinput, a_cursor_on_a_leaf_with_entries_out_of_order_fails_with_euclean, .timeout = 60, .fini = th_cleanup)
{
    char path[256], path2[256];
    mseg_map *mu, *mb;
    mseg *s = u64_map_segment(path, &mu, 2000), *s2 = byte_map_segment(path2, &mb, 600);
    for (int bytes = 0; bytes < 2; bytes++) {
        mseg *x = bytes ? s2 : s;
        mseg_map *m = bytes ? mb : mu;
        uint64_t total = bytes ? 600 : 2000;
        struct mseg_map_node *leaf[64];
        cr_assert_geq(map_leaves(x, m, leaf, 64), 3);
        struct mseg_map_node *l = leaf[1];
        uint8_t *perm = l->perm[(l->state >> 8) & 1];
        for (int dmg = 0; dmg < 2; dmg++) {
            uint8_t p5 = perm[5];
            uint64_t k4 = l->keys[perm[4]], k5 = l->keys[p5];
            if (dmg == 0) {
                perm[5] = perm[4];             /* slot listed twice */
            } else {
                l->keys[perm[4]] = k5;         /* two keys swapped */
                l->keys[p5] = k4;
            }
            int err;
            uint64_t n = bytes ? cursor_walk_ordered(x, m, 2 * total, &err) : cursor_walk(x, m, 2 * total, &err);
            cr_assert_eq(err, EUCLEAN, "%s keys, %s: the walk gave %llu entries and ended with errno %d (%s)",
                         bytes ? "byte" : "u64", dmg ? "keys swapped" : "slot listed twice",
                         (unsigned long long)n, err, mseg_errmsg());
            perm[5] = p5;
            l->keys[perm[4]] = k4;
            l->keys[p5] = k5;
            n = cursor_walk(x, m, 2 * total, &err);
            cr_assert(n == total && err == ENOENT, "restored: %llu entries, errno %d", (unsigned long long)n, err);
        }
    }
    cr_assert_eq(mseg_close(s), 0);
    cr_assert_eq(mseg_close(s2), 0);
}

/* The root node's child link of one entry damaged to the next entry's
   child (a live leaf of the right level, in the wrong place), or the next
   entry's separator raised past a few keys: lookups of the keys that now
   lead to the wrong leaf said ENOENT, a put of one inserted it a second
   time and a delete said ENOENT. Now the miss is checked against the
   leaf's neighbour: EUCLEAN, and the failed put changes nothing. */
Test(badinput, a_lookup_sent_to_the_wrong_leaf_is_euclean_not_enoent, .timeout = 60, .fini = th_cleanup)
{
    char path[256];
    mseg_map *m;
    mseg *s = u64_map_segment(path, &m, 2000);
    const struct mseg_map_root *r = (const void *)m;
    cr_assert_eq(r->height, 2, "height %llu", (unsigned long long)r->height);
    struct mseg_map_node *root = mseg_at(s, r->root);
    uint8_t *perm = root->perm[(root->state >> 8) & 1];
    struct mseg_map_node *leaf[64];
    cr_assert_geq(map_leaves(s, m, leaf, 64), 5);
    uint64_t want = leaf[2]->keys[leaf[2]->perm[(leaf[2]->state >> 8) & 1][0]];   /* first key of leaf 2 */
    for (int dmg = 0; dmg < 2; dmg++) {
        uint64_t child = root->vals[perm[2]], sep = root->keys[perm[3]];
        if (dmg == 0)
            root->vals[perm[2]] = root->vals[perm[3]];     /* leaf 2's link to leaf 3 */
        else
            root->keys[perm[3]] = sep + 21;                /* leaf 3's first keys now lead to leaf 2 */
        uint64_t k = dmg ? sep : want, v = 12345;
        const char *what = dmg ? "separator raised" : "child link to the next leaf";
        errno = 0;
        cr_assert_null(mseg_map_get(s, m, &k, 8, NULL), "%s: get found the key", what);
        cr_assert_eq(errno, EUCLEAN, "%s: get errno %d (%s)", what, errno, mseg_errmsg());
        size_t len = 0, len2 = 0;
        unsigned char *before = th_read_file(path, &len);
        cr_assert_eq(mseg_map_put(s, m, &k, 8, &v, 8), -1, "%s: put of a key already there succeeded", what);
        cr_assert_eq(errno, EUCLEAN, "%s: put errno %d (%s)", what, errno, mseg_errmsg());
        unsigned char *after = th_read_file(path, &len2);
        cr_assert(len == len2 && memcmp(before + MSEG_HEAP_OFF, after + MSEG_HEAP_OFF, len - MSEG_HEAP_OFF) == 0 &&
                  memcmp(before + MSEG_CONTROL_OFF, after + MSEG_CONTROL_OFF, MSEG_PAGE) == 0,
                  "%s: the failed put changed the segment", what);
        free(before);
        free(after);
        cr_assert_eq(mseg_map_del(s, m, &k, 8), -1, "%s: del", what);
        cr_assert_eq(errno, EUCLEAN, "%s: del errno %d (%s)", what, errno, mseg_errmsg());
        struct mseg_cursor c;
        cr_assert_eq(mseg_map_seek(s, m, &c, &k, 8), -1, "%s: seek gave %llu", what,
                     (unsigned long long)*(const uint64_t *)c.key);
        cr_assert_eq(errno, EUCLEAN, "%s: seek errno %d (%s)", what, errno, mseg_errmsg());
        root->vals[perm[2]] = child;
        root->keys[perm[3]] = sep;
        uint64_t *got = mseg_map_get(s, m, &k, 8, NULL);
        cr_assert(got && *got == k / 7, "restored: %s", mseg_errmsg());
        cr_assert_eq(mseg_verify(s, NULL), 0, "%s", mseg_errmsg());
    }
    cr_assert_eq(mseg_close(s), 0);
}

/* A byte-key map whose key or value cell offset names no live block (a
   free block, the middle of a live one, the directory's table): its
   destroy failed with EINVAL, the error for a caller's bad pointer, though
   the caller passed nothing wrong. Now EUCLEAN naming the map and the
   cell, and the failed destroy changes nothing. */
Test(badinput, destroying_a_map_whose_cell_names_no_live_block_is_euclean, .timeout = 60, .fini = th_cleanup)
{
    char path[256];
    mseg_map *m;
    mseg *s = byte_map_segment(path, &m, 200);
    void *hole = mseg_alloc(s, 100);
    cr_assert_not_null(hole);
    mseg_alloc(s, 100);
    cr_assert_eq(mseg_free(s, hole), 0);
    struct mseg_cursor c;
    cr_assert_eq(mseg_map_seek(s, m, &c, "key00033", 8), 0, "%s", mseg_errmsg());
    struct mseg_map_node *leaf[64];
    cr_assert_geq(map_leaves(s, m, leaf, 64), 2);
    uint64_t *word = NULL;
    for (unsigned l = 0; l < 2; l++) {
        const uint8_t *perm = leaf[l]->perm[(leaf[l]->state >> 8) & 1];
        for (unsigned i = 0; i < (leaf[l]->state & 0xff) && !word; i++)
            if (leaf[l]->keys[perm[i]] == cell_of(s, c.key))
                word = &leaf[l]->keys[perm[i]];
    }
    cr_assert_not_null(word, "key00033's key word not found in the first two leaves");
    uint64_t good = *word, bad[] = { mseg_off_of(s, hole), good + 16 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        *word = bad[i];
        size_t len = 0, len2 = 0;
        unsigned char *before = th_read_file(path, &len);
        errno = 0;
        cr_assert_eq(mseg_destroy(s, "mb"), -1, "destroy succeeded");
        cr_assert_eq(errno, EUCLEAN, "key cell %#llx: destroy errno %d (%s)", (unsigned long long)bad[i], errno,
                     mseg_errmsg());
        unsigned char *after = th_read_file(path, &len2);
        cr_assert(len == len2 && memcmp(before + MSEG_HEAP_OFF, after + MSEG_HEAP_OFF, len - MSEG_HEAP_OFF) == 0 &&
                  memcmp(before + MSEG_CONTROL_OFF, after + MSEG_CONTROL_OFF, MSEG_PAGE) == 0,
                  "the failed destroy changed the segment");
        free(before);
        free(after);
    }
    *word = good;
    cr_assert_eq(mseg_verify(s, NULL), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_destroy(s, "mb"), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0);
}

/* A directory slot whose record word was damaged to name another live
   record (the slot keeps its own name's hash): the lookup of the slot's
   name compared names, found them different, went on probing and said
   ENOENT, for an object that is there (its record is still whole, only
   unreachable); a construct of the name made a second one. The record's
   own hash must equal its slot's (mseg_check's rule): now EUCLEAN. */
Test(badinput, a_directory_slot_naming_another_objects_record_is_euclean_not_enoent, .timeout = 60,
     .fini = th_cleanup)
{
    char path[256];
    th_name(path, 0);
    struct mseg_config cfg = { .size = SEG_SIZE };
    mseg *s = mseg_open(path, MSEG_CREATE | MSEG_EXCL, &cfg);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    int *one = MSEG_NEW(s, "one", int, 4);
    double *two = MSEG_NEW(s, "two", double, 3);
    cr_assert(one && two, "%s", mseg_errmsg());
    unsigned char *base = (unsigned char *)mseg_at(s, MSEG_HEAP_OFF) - MSEG_HEAP_OFF;
    size_t len = mseg_size(s);
    uint64_t rec_one = record_offset(base, len, "one"), rec_two = record_offset(base, len, "two");
    cr_assert(rec_one && rec_two);
    const struct mseg_control *ctl = (const void *)(base + MSEG_CONTROL_OFF);
    struct mseg_dir_slot *slot = NULL;
    for (uint64_t i = 0; i < ctl->dir_capacity; i++) {
        struct mseg_dir_slot *sl = (void *)(base + ctl->dir_table + 16 * i);
        if (sl->rec == rec_one)
            slot = sl;
    }
    cr_assert_not_null(slot);
    slot->rec = rec_two;
    size_t n;
    errno = 0;
    cr_assert_null(MSEG_FIND(s, "one", int, &n), "found");
    cr_assert_eq(errno, EUCLEAN, "find of \"one\": errno %d (%s)", errno, mseg_errmsg());
    errno = 0;
    cr_assert_null(MSEG_NEW(s, "one", int, 4), "a second \"one\" was made");
    cr_assert_eq(errno, EUCLEAN, "construct of \"one\": errno %d (%s)", errno, mseg_errmsg());
    double *t = MSEG_FIND(s, "two", double, &n);
    cr_assert(t == two && n == 3, "\"two\" lost: %s", mseg_errmsg());
    cr_assert_eq(mseg_verify(s, NULL), -1);
    slot->rec = rec_one;
    cr_assert_eq(MSEG_FIND(s, "one", int, &n), one, "%s", mseg_errmsg());
    cr_assert_eq(mseg_verify(s, NULL), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0);
}

/* A leaf's count one too large (a stale slot's entry at its end), or its
   last key changed to one past the next leaf's first: a cursor gave an
   entry out of order at the step into the next leaf and went on. The
   step into a leaf now compares its first key with the last one of the
   leaf before (EUCLEAN). */
Test(badinput, a_cursor_stepping_into_a_leaf_whose_keys_are_not_above_the_last_ones_fails, .timeout = 60,
     .fini = th_cleanup)
{
    char path[256];
    mseg_map *m;
    struct mseg_map_node *leaf[64];
    unsigned nl;
    mseg *s = map_and_leaves(path, &m, leaf, 3, &nl);
    struct mseg_map_node *l = leaf[1];
    uint8_t *perm = l->perm[(l->state >> 8) & 1];
    unsigned cnt = l->state & 0xff;
    uint64_t next_first = leaf[2]->keys[leaf[2]->perm[(leaf[2]->state >> 8) & 1][0]];
    uint64_t *last = &l->keys[perm[cnt - 1]], good = *last;
    *last = next_first + 7;                      /* above the next leaf's first key */
    int err;
    uint64_t n = cursor_walk(s, m, 4000, &err);
    cr_assert_eq(err, EUCLEAN, "last key past the next leaf: %llu entries, errno %d (%s)", (unsigned long long)n,
                 err, mseg_errmsg());
    *last = good;
    n = cursor_walk(s, m, 4000, &err);
    cr_assert(n == 2000 && err == ENOENT, "restored: %llu entries, errno %d", (unsigned long long)n, err);
    cr_assert_eq(mseg_close(s), 0);
}

/* A map root's entry count damaged past what its tree can hold (64 per
   node, so 64^height): mseg_map_len returned it as the map's length. Now
   EUCLEAN (a count only a little too large needs a walk: mseg_check). */
Test(badinput, a_map_count_larger_than_its_tree_can_hold_is_euclean, .timeout = 60, .fini = th_cleanup)
{
    char path[256];
    mseg_map *m;
    mseg *s = u64_map_segment(path, &m, 2000);
    struct mseg_map_root *r = (void *)m;
    cr_assert_eq(r->height, 2);
    uint64_t good = r->count;
    uint64_t bad[] = { 64 * 64 + 1, 1ull << 40, UINT64_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r->count = bad[i];
        errno = 0;
        size_t n = mseg_map_len(s, m);
        cr_assert(n == 0 && errno == EUCLEAN, "count %llu: len %zu, errno %d", (unsigned long long)bad[i], n, errno);
    }
    r->count = good;
    errno = 0;
    cr_assert_eq(mseg_map_len(s, m), 2000, "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0);
}

/* A named container's record whose kind byte was damaged (a map's to raw
   or to vector, a vector's to map): mseg_map_open and mseg_vec_open said
   EINVAL "object m is a mseg_map, not a mseg_map", and for a kind of raw
   mseg_check called the segment sound, though the record holds a map's
   root under a container's type name and a destroy would leak the map's
   nodes. Now the open says EUCLEAN and the check reports it. */
Test(badinput, a_container_record_whose_kind_byte_disagrees_with_its_type_is_euclean, .timeout = 60,
     .fini = th_cleanup)
{
    char path[256];
    mseg_map *m;
    mseg *s = u64_map_segment(path, &m, 100);
    cr_assert_not_null(mseg_vec_open(s, "v", 8, MSEG_CREATE), "%s", mseg_errmsg());
    unsigned char *base = (unsigned char *)mseg_at(s, MSEG_HEAP_OFF) - MSEG_HEAP_OFF;
    size_t len = mseg_size(s);
    struct mseg_dir_record *rm = (void *)(base + record_offset(base, len, "mu"));
    struct mseg_dir_record *rv = (void *)(base + record_offset(base, len, "v"));
    cr_assert(rm->kind == MSEG_KIND_MAP && rv->kind == MSEG_KIND_VEC);
    struct { struct mseg_dir_record *r; uint8_t kind; const char *what; } cases[] = {
        { rm, MSEG_KIND_RAW, "map's kind raw" },
        { rm, MSEG_KIND_VEC, "map's kind vector" },
        { rv, MSEG_KIND_MAP, "vector's kind map" },
        { rv, MSEG_KIND_RAW, "vector's kind raw" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t good = cases[i].r->kind;
        cases[i].r->kind = cases[i].kind;
        errno = 0;
        void *h = cases[i].r == rm ? (void *)mseg_map_open(s, "mu", MSEG_KEY_U64, 8, 0)
                                   : (void *)mseg_vec_open(s, "v", 8, 0);
        cr_assert_null(h, "%s: opened", cases[i].what);
        cr_assert_eq(errno, EUCLEAN, "%s: errno %d (%s)", cases[i].what, errno, mseg_errmsg());
        struct mseg_report r;
        cr_assert_eq(mseg_verify(s, &r), -1, "%s: verify calls it sound", cases[i].what);
        cases[i].r->kind = good;
    }
    cr_assert_eq(mseg_verify(s, NULL), 0, "%s", mseg_errmsg());
    cr_assert_eq(mseg_close(s), 0);
}

/* The garbage list (blocks a large destroy still owes) is drained by the
   next first writer, which then frees the array's own block. With the
   list's offset damaged to name a live vector's buffer (3 entries, none of
   them live blocks), the open freed that buffer: the segment opened, and
   the vector was damaged from then on ("has a buffer ... that is not a
   live block"). The array's block was allocated for exactly its entries,
   so a much larger block is not one: the list is dropped instead. Found by
   an adversarial review of damaged segments (helper session). */
Test(badinput, a_garbage_list_naming_a_live_vectors_buffer_never_frees_it, .timeout = 60, .fini = th_cleanup)
{
    char path[256];
    th_name(path, 0);
    struct mseg_config cfg = { .size = 1u << 20 };
    mseg *s = mseg_open(path, MSEG_CREATE | MSEG_EXCL, &cfg);
    cr_assert_not_null(s, "%s", mseg_errmsg());
    mseg_vec *v = mseg_vec_open(s, "v", 8, MSEG_CREATE);
    cr_assert_not_null(v, "%s", mseg_errmsg());
    cr_assert_eq(mseg_vec_resize(s, v, 100), 0, "%s", mseg_errmsg());
    uint64_t *e = mseg_vec_data(s, v);
    for (uint64_t i = 0; i < 100; i++)
        e[i] = i + 1;
    struct mseg_control *ctl = mseg_at(s, MSEG_CONTROL_OFF);
    ctl->garbage = mseg_off_of(s, e);
    ctl->garbage_count = 3;
    ctl->garbage_done = 0;
    mseg_close(s);
    s = mseg_open(path, 0, NULL);                  /* the first writer drains the garbage */
    cr_assert_not_null(s, "%s", mseg_errmsg());
    v = mseg_vec_open(s, "v", 8, 0);
    cr_assert_not_null(v, "%s", mseg_errmsg());
    struct mseg_report r;
    cr_assert_eq(mseg_verify(s, &r), 0, "after the drain: %s", r.first_problem);
    cr_assert_eq(mseg_vec_len(s, v), 100);
    for (uint64_t i = 0; i < 100; i++)
        cr_assert_eq(*(uint64_t *)mseg_vec_at(s, v, i), i + 1, "element %llu", (unsigned long long)i);
    mseg_close(s);
}
