/*
 * cmd_objects.c - mseg ls and mseg dump: named objects.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inspect.h"
#include "layout.h"
#include "tool.h"

struct entry {
    char *name, *type;
    char *tname, *ttype;   /* name and type escaped for text output (text_str) */
    size_t elem_size, count;
    mseg_off off;
};

struct list {
    struct entry *e;
    size_t n, cap;
};

static int collect(const struct mseg_named *n, void *arg)
{
    struct list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        struct entry *e = realloc(l->e, cap * sizeof *e);
        if (!e)
            return ENOMEM;
        l->e = e;
        l->cap = cap;
    }
    struct entry *e = &l->e[l->n];
    e->name = strdup(n->name);
    e->type = strdup(n->type);
    e->tname = text_str(n->name);
    e->ttype = text_str(n->type);
    if (!e->name || !e->type || !e->tname || !e->ttype) {
        free(e->name);
        free(e->type);
        free(e->tname);
        free(e->ttype);
        return ENOMEM;
    }
    e->elem_size = n->elem_size;
    e->count = n->count;
    e->off = n->off;
    l->n++;
    return 0;
}

static void list_free(struct list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->e[i].name);
        free(l->e[i].type);
        free(l->e[i].tname);
        free(l->e[i].ttype);
    }
    free(l->e);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

/* Opens read-only and lists every object, sorted by name; 0 or an exit
   code. tries: views that moved so far (open_for_reading). */
static int load(const struct opts *o, mseg **sp, struct list *l, int *tries)
{
    memset(l, 0, sizeof *l);
    mseg *s = open_for_reading(o);
    if (!s)
        return report_error(o, errno, mseg_errmsg());
    int rc = mseg_named_foreach(s, collect, l);
    if (inspect_view_moved(s)) {   /* the listing, or its error, may mix two states */
        list_free(l);
        mseg_close(s);
        if (++*tries < VIEW_TRIES)
            return load(o, sp, l, tries);
        return report_error(o, EAGAIN, VIEW_MOVED_MSG);
    }
    if (rc) {
        int e = rc > 0 ? rc : errno;
        const char *msg = rc > 0 ? "out of memory" : mseg_errmsg();
        int code = report_error(o, e, msg);
        list_free(l);
        mseg_close(s);
        return code;
    }
    if (l->n)   /* no objects: l->e is NULL, which qsort must not be given (UBSan) */
        qsort(l->e, l->n, sizeof *l->e, by_name);
    *sp = s;
    return 0;
}

/* count * elem_size; the library checked it fits the object's block. */
static unsigned long long bytes_of(const struct entry *e)
{
    return (unsigned long long)e->count * e->elem_size;
}

int cmd_ls(const struct opts *o)
{
    mseg *s;
    struct list l;
    int tries = 0;
    int code = load(o, &s, &l, &tries);
    if (code)
        return code;
    if (o->json) {
        printf("{\"command\":\"ls\",\"segment\":");
        json_str(stdout, o->args[0]);
        printf(",\"objects\":[");
    } else {
        printf("%-24s %-16s %10s %10s %12s %12s\n", "NAME", "TYPE", "ELEM_SIZE", "COUNT", "BYTES", "OFFSET");
    }
    for (size_t i = 0; i < l.n; i++) {
        const struct entry *e = &l.e[i];
        if (o->json) {
            printf("%s{\"name\":", i ? "," : "");
            json_str(stdout, e->name);
            printf(",\"type\":");
            json_str(stdout, e->type);
            printf(",\"elem_size\":%zu,\"count\":%zu,\"bytes\":%llu,\"offset\":%llu}",
                   e->elem_size, e->count, bytes_of(e), (unsigned long long)e->off);
        } else {
            printf("%-24s %-16s %10zu %10zu %12llu %#12llx\n", e->tname, e->ttype, e->elem_size,
                   e->count, bytes_of(e), (unsigned long long)e->off);
        }
    }
    if (o->json)
        printf("]}\n");
    list_free(&l);
    mseg_close(s);
    return EXIT_SOUND;
}

/* ---- dump ---- */

static void hex_line(const uint8_t *p, size_t at, size_t n)
{
    printf("%08zx ", at);
    for (size_t i = 0; i < 16; i++)
        printf(i < n ? " %02x" : "   ", i < n ? p[i] : 0);
    printf("  |");
    for (size_t i = 0; i < n; i++)
        putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.');
    printf("|\n");
}

/* The start of dump's JSON object, the same for every kind of object:
   {"command":"dump","segment":...,"name":... */
static void json_dump_head(const struct opts *o, const struct entry *e)
{
    printf("{\"command\":\"dump\",\"segment\":");
    json_str(stdout, o->args[0]);
    printf(",\"name\":");
    json_str(stdout, e->name);
}

static void dump_bytes(const struct opts *o, const struct entry *e, const uint8_t *p, size_t n)
{
    if (o->json) {
        json_dump_head(o, e);
        printf(",\"type\":");
        json_str(stdout, e->type);
        printf(",\"elem_size\":%zu,\"count\":%zu,\"offset\":%llu,\"hex\":\"",
               e->elem_size, e->count, (unsigned long long)e->off);
        for (size_t i = 0; i < n; i++)
            printf("%02x", p[i]);
        printf("\"}\n");
        return;
    }
    printf("%s: %s, %zu x %zu bytes at %#llx\n", e->tname, e->ttype, e->count, e->elem_size,
           (unsigned long long)e->off);
    for (size_t at = 0; at < n; at += 16)
        hex_line(p + at, at, n - at < 16 ? n - at : 16);
}

static void hex(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
}

/* A byte key, printable ASCII as is, the rest as \xNN (text) or hex (JSON). */
static void escaped(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf(p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\' ? "%c" : "\\x%02x", p[i]);
}

/* The view *sp moved (inspect_view_moved): a fresh one in its place, or
   NULL with errno, EAGAIN once VIEW_TRIES views moved (*tries counts them). */
static mseg *reopen(const struct opts *o, mseg **sp, int *tries)
{
    mseg_close(*sp);
    *sp = NULL;
    if (++*tries >= VIEW_TRIES) {
        errno = EAGAIN;
        return NULL;
    }
    return *sp = open_for_reading(o);
}

/* The message for err, met by a dump that read through *tries moved views. */
static const char *dump_errmsg(int err, int tries)
{
    return err == ENOMEM ? "out of memory" : tries >= VIEW_TRIES ? VIEW_MOVED_MSG : mseg_errmsg();
}

/* One line per element: index and bytes in hex. An element is copied,
   and printed once the view is known not to have moved meanwhile; if it
   moved, the dump goes on at that index through a fresh view. */
static int dump_vector(const struct opts *o, mseg **sp, const struct entry *e, const struct mseg_vec_root *root,
                       int *tries)
{
    size_t esz = (size_t)root->elem_size, len;
    mseg_vec *v;
    for (;;) {
        v = mseg_vec_open(*sp, e->name, esz, 0);
        int err = errno;
        len = v ? mseg_vec_len(*sp, v) : 0;
        if (!inspect_view_moved(*sp)) {
            if (!v)
                return report_error(o, err, mseg_errmsg());
            break;
        }
        if (!reopen(o, sp, tries))
            return report_error(o, errno, dump_errmsg(errno, *tries));
    }
    uint8_t *elem = malloc(esz ? esz : 1);
    if (!elem)
        return report_error(o, ENOMEM, "out of memory");
    if (o->json) {
        json_dump_head(o, e);
        printf(",\"kind\":\"vector\",\"elem_size\":%zu,\"len\":%zu,\"elements\":[", esz, len);
    } else {
        printf("%s: vector of %zu elements of %zu bytes\n", e->tname, len, esz);
    }
    int err = 0;
    for (size_t i = 0; i < len;) {
        err = inspect_vec_copy(*sp, v, i, elem, esz) ? errno : 0;
        if (inspect_view_moved(*sp)) {   /* elem, or its error, may mix two states */
            if (!reopen(o, sp, tries) || !(v = mseg_vec_open(*sp, e->name, esz, 0))) {
                err = errno;
                break;
            }
            continue;
        }
        if (err) {
            /* ERANGE: another process shortened the vector since its length
               was read. The listing ends at its new end, as a map's lists the
               entries it still holds (mseg.1); that is no failure to run */
            if (err == ERANGE)
                err = 0;
            break;
        }
        printf(o->json ? "%s\"" : "%s[%zu] ", o->json ? (i ? "," : "") : "", i);
        hex(elem, esz);
        printf(o->json ? "\"" : "\n");
        i++;
    }
    free(elem);
    if (o->json)
        printf("]");
    if (err)
        return end_with_error(o, err, dump_errmsg(err, *tries));
    if (o->json)
        printf("}\n");
    return EXIT_SOUND;
}

/*
 * A map that another process changes during the dump makes the cursor
 * ESTALE (mseg_map_next). The dump then goes on after the last key it
 * printed: each line is an entry the map held at that moment, keys still
 * ascend and none repeats, but the whole is not one snapshot (mseg copy
 * takes one). The cursor's key and value point into the map's nodes, which
 * a writer may reuse as soon as the map changes, so an entry is copied out
 * and printed only once the next step succeeds (or ends the map), which
 * shows the map did not change in between; after ESTALE the copy may be
 * torn, and the resume reads that entry again. A map that changes faster
 * than the dump can step gives up after DUMP_RESUMES_MAX resumes in a row
 * with nothing printed. A private view (open_for_reading) that moved is
 * treated the same way: the step's result may mix two states, so the dump
 * resumes after the last key printed, through a fresh view.
 */
#define DUMP_RESUMES_MAX 1000

struct entry_copy {
    void *key, *val;
    size_t klen, vlen, kcap, vcap;
};

static int grow_copy(void **p, size_t *cap, const void *src, size_t n)
{
    if (n > *cap) {
        void *q = realloc(*p, n);
        if (!q)
            return -1;
        *p = q;
        *cap = n;
    }
    if (n)
        memcpy(*p, src, n);
    return 0;
}

static int entry_copy_set(struct entry_copy *e, const struct mseg_cursor *c)
{
    if (grow_copy(&e->key, &e->kcap, c->key, c->klen) || grow_copy(&e->val, &e->vcap, c->val, c->vlen))
        return -1;
    e->klen = c->klen;
    e->vlen = c->vlen;
    return 0;
}

static void entry_copy_free(struct entry_copy *e)
{
    free(e->key);
    free(e->val);
}

/* Positions c on the first key after last's (the first key when nothing
   was printed yet: last->key NULL). */
static int resume_after(mseg *s, mseg_map *m, struct mseg_cursor *c, const struct entry_copy *last)
{
    if (!last->key)
        return mseg_map_first(s, m, c);
    int rc = mseg_map_seek(s, m, c, last->key, last->klen);
    if (rc == 0 && c->klen == last->klen && memcmp(c->key, last->key, last->klen) == 0)
        rc = mseg_map_next(s, c);
    return rc;
}

static void print_key(const struct opts *o, enum mseg_key kind, const struct entry_copy *e)
{
    uint64_t u = 0;
    if (kind != MSEG_KEY_BYTES && e->klen == 8)
        memcpy(&u, e->key, 8);
    if (kind == MSEG_KEY_U64)
        printf("%llu", (unsigned long long)u);
    else if (kind == MSEG_KEY_I64)
        printf("%lld", (long long)(int64_t)u);
    else if (o->json)
        printf("\""), hex(e->key, e->klen), printf("\"");
    else
        escaped(e->key, e->klen);
}

/* The map being dumped, and the view it is read through. */
struct map_src {
    const struct opts *o;
    mseg **sp;
    mseg_map *m;
    const char *name;
    enum mseg_key kind;
    size_t val_size;
    unsigned flags;
    int *tries;
};

/* err from a map call through *ms->sp, as the dump takes it: when the view
   moved, the call's result may mix two states: a fresh view in its place
   and ESTALE (resume after the last entry printed); else err unchanged. */
static int settle(struct map_src *ms, int err)
{
    if (err == ESTALE || !inspect_view_moved(*ms->sp))
        return err;
    if (!reopen(ms->o, ms->sp, ms->tries) ||
        !(ms->m = mseg_map_open(*ms->sp, ms->name, ms->kind, ms->val_size, ms->flags)))
        return errno == ESTALE ? EAGAIN : errno;
    return ESTALE;
}

/* One line per entry: key (numbers as numbers, bytes escaped), value hex. */
static int dump_map(const struct opts *o, mseg **sp, const struct entry *e, const struct mseg_map_root *root,
                    int *tries)
{
    struct map_src ms = { o, sp, NULL, e->name, (enum mseg_key)root->key_kind, (size_t)root->val_size,
                          (root->flags & MSEG_MAP_OWNED) ? MSEG_OWNED : 0, tries };
    enum mseg_key kind = ms.kind;
    size_t len;
    for (;;) {
        ms.m = mseg_map_open(*sp, e->name, kind, ms.val_size, ms.flags);
        int err = errno;
        len = ms.m ? mseg_map_len(*sp, ms.m) : 0;
        if (!inspect_view_moved(*sp)) {
            if (!ms.m)
                return report_error(o, err, mseg_errmsg());
            break;
        }
        if (!reopen(o, sp, tries))
            return report_error(o, errno, dump_errmsg(errno, *tries));
    }
    if (o->json) {
        json_dump_head(o, e);
        printf(",\"kind\":\"map\",\"count\":%zu,\"entries\":[", len);
    } else {
        printf("%s: map of %zu entries\n", e->tname, len);
    }
    struct mseg_cursor c;
    struct entry_copy cur = { 0 }, last = { 0 };
    unsigned resumes = 0;
    int err = settle(&ms, mseg_map_first(*sp, ms.m, &c) ? errno : 0);   /* printing below may change errno */
    for (size_t i = 0;;) {
        while (err == ESTALE && resumes++ < DUMP_RESUMES_MAX)
            err = settle(&ms, resume_after(*sp, ms.m, &c, &last) ? errno : 0);
        if (err)
            break;
        if (entry_copy_set(&cur, &c)) {
            err = ENOMEM;
            break;
        }
        err = settle(&ms, mseg_map_next(*sp, &c) ? errno : 0);
        if (err == ESTALE)
            continue;   /* cur may be torn: the resume reads it again */
        resumes = 0;
        printf(o->json ? "%s{\"key\":" : "%s", o->json && i++ ? "," : "");
        print_key(o, kind, &cur);
        printf(o->json ? ",\"value\":\"" : " = ");
        hex(cur.val, cur.vlen);
        printf(o->json ? "\"}" : "\n");
        struct entry_copy t = last;   /* cur becomes last; last's buffers are reused */
        last = cur;
        cur = t;
    }
    entry_copy_free(&cur);
    entry_copy_free(&last);
    if (o->json)
        printf("]");
    /* An error ends the one JSON object begun above (printing a complete
       listing and then a second, error object made a damaged map's first
       entries read as the whole map to a script reading one object). */
    if (err != ENOENT)
        return end_with_error(o, err, dump_errmsg(err, *tries));
    if (o->json)
        printf("}\n");
    return EXIT_SOUND;
}

/* Vectors and maps by their type name; the roots only choose the
   parameters for mseg_vec_open/mseg_map_open, which validate them. */
static int dump_container(const struct opts *o, mseg **sp, const struct entry *e, const uint8_t *p, int *tries)
{
    if (strcmp(e->type, "mseg_vec") == 0 && e->elem_size == sizeof(struct mseg_vec_root))
        return dump_vector(o, sp, e, (const struct mseg_vec_root *)p, tries);
    if (strcmp(e->type, "mseg_map") == 0 && e->elem_size == sizeof(struct mseg_map_root))
        return dump_map(o, sp, e, (const struct mseg_map_root *)p, tries);
    return -1;
}

/* The object's bytes are copied out of the view, and shown once it is known
   not to have moved meanwhile (inspect_view_moved); else it is read again. */
int cmd_dump(const struct opts *o)
{
    mseg *s;
    struct list l;
    int tries = 0, err, code;
    const struct entry *e;
    uint8_t *bytes;
    size_t n;
    for (;;) {
        if ((code = load(o, &s, &l, &tries)))
            return code;
        e = NULL;
        for (size_t i = 0; i < l.n && !e; i++)
            if (strcmp(l.e[i].name, o->args[1]) == 0)
                e = &l.e[i];
        size_t count = 0;
        const uint8_t *p = e ? mseg_find(s, e->name, e->type, e->elem_size, &count) : NULL;
        err = errno;
        n = p ? count * e->elem_size : 0;
        bytes = p ? malloc(n ? n : 1) : NULL;
        if (bytes)
            memcpy(bytes, p, n);
        else if (p)
            err = ENOMEM;
        if (!inspect_view_moved(s))
            break;
        free(bytes);
        list_free(&l);
        mseg_close(s);
        if (++tries >= VIEW_TRIES)
            return report_error(o, EAGAIN, VIEW_MOVED_MSG);
    }
    char msg[300];
    if (!e) {
        snprintf(msg, sizeof msg, "no object named %s", o->args[1]);
        code = report_error(o, ENOENT, msg);
    } else if (!bytes)
        code = report_error(o, err, err == ENOMEM ? "out of memory" : mseg_errmsg());
    else if ((code = dump_container(o, &s, e, bytes, &tries)) < 0) {
        code = EXIT_SOUND;
        dump_bytes(o, e, bytes, n);
    }
    free(bytes);
    list_free(&l);
    mseg_close(s);
    return code;
}
