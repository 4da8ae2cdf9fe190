/*
 * cmd_objects.c - mseg ls and mseg dump: named objects.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Opens read-only and lists every object, sorted by name; 0 or an exit code. */
static int load(const struct opts *o, mseg **sp, struct list *l)
{
    memset(l, 0, sizeof *l);
    mseg *s = open_for_reading(o);
    if (!s)
        return report_error(o, errno, mseg_errmsg());
    int rc = mseg_named_foreach(s, collect, l);
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
    int code = load(o, &s, &l);
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

static void dump_bytes(const struct opts *o, const struct entry *e, const uint8_t *p, size_t n)
{
    if (o->json) {
        printf("{\"command\":\"dump\",\"segment\":");
        json_str(stdout, o->args[0]);
        printf(",\"name\":");
        json_str(stdout, e->name);
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

/* One line per element: index and bytes in hex. */
static int dump_vector(const struct opts *o, mseg *s, const struct entry *e, const struct mseg_vec_root *root)
{
    mseg_vec *v = mseg_vec_open(s, e->name, (size_t)root->elem_size, 0);
    if (!v)
        return report_error(o, errno, mseg_errmsg());
    size_t len = mseg_vec_len(s, v);
    if (o->json) {
        printf("{\"command\":\"dump\",\"name\":");
        json_str(stdout, e->name);
        printf(",\"kind\":\"vector\",\"elem_size\":%llu,\"len\":%zu,\"elements\":[",
               (unsigned long long)root->elem_size, len);
    } else {
        printf("%s: vector of %zu elements of %llu bytes\n", e->tname, len, (unsigned long long)root->elem_size);
    }
    int err = 0;
    for (size_t i = 0; i < len; i++) {
        const uint8_t *p = mseg_vec_at(s, v, i);
        if (!p) {   /* shorter than its length said (another process popped): say so */
            err = errno;
            break;
        }
        printf(o->json ? "%s\"" : "%s[%zu] ", o->json ? (i ? "," : "") : "", i);
        hex(p, (size_t)root->elem_size);
        printf(o->json ? "\"" : "\n");
    }
    if (o->json)
        printf("]");
    if (err)
        return end_with_error(o, err, mseg_errmsg());
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
 * with nothing printed.
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

/* One line per entry: key (numbers as numbers, bytes escaped), value hex. */
static int dump_map(const struct opts *o, mseg *s, const struct entry *e, const struct mseg_map_root *root)
{
    enum mseg_key kind = (enum mseg_key)root->key_kind;
    unsigned flags = (root->flags & MSEG_MAP_OWNED) ? MSEG_OWNED : 0;
    mseg_map *m = mseg_map_open(s, e->name, kind, (size_t)root->val_size, flags);
    if (!m)
        return report_error(o, errno, mseg_errmsg());
    if (o->json) {
        printf("{\"command\":\"dump\",\"name\":");
        json_str(stdout, e->name);
        printf(",\"kind\":\"map\",\"count\":%zu,\"entries\":[", mseg_map_len(s, m));
    } else {
        printf("%s: map of %zu entries\n", e->tname, mseg_map_len(s, m));
    }
    struct mseg_cursor c;
    struct entry_copy cur = { 0 }, last = { 0 };
    unsigned resumes = 0;
    int err = mseg_map_first(s, m, &c) ? errno : 0;   /* printing below may change errno */
    for (size_t i = 0;;) {
        while (err == ESTALE && resumes++ < DUMP_RESUMES_MAX)
            err = resume_after(s, m, &c, &last) ? errno : 0;
        if (err)
            break;
        if (entry_copy_set(&cur, &c)) {
            err = ENOMEM;
            break;
        }
        err = mseg_map_next(s, &c) ? errno : 0;
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
    if (err == ENOMEM)
        return end_with_error(o, err, "out of memory");
    if (err != ENOENT)
        return end_with_error(o, err, mseg_errmsg());
    if (o->json)
        printf("}\n");
    return EXIT_SOUND;
}

/* Vectors and maps by their type name; the roots only choose the
   parameters for mseg_vec_open/mseg_map_open, which validate them. */
static int dump_container(const struct opts *o, mseg *s, const struct entry *e, const uint8_t *p)
{
    if (strcmp(e->type, "mseg_vec") == 0 && e->elem_size == sizeof(struct mseg_vec_root))
        return dump_vector(o, s, e, (const struct mseg_vec_root *)p);
    if (strcmp(e->type, "mseg_map") == 0 && e->elem_size == sizeof(struct mseg_map_root))
        return dump_map(o, s, e, (const struct mseg_map_root *)p);
    return -1;
}

int cmd_dump(const struct opts *o)
{
    mseg *s;
    struct list l;
    int code = load(o, &s, &l);
    if (code)
        return code;
    const struct entry *e = NULL;
    for (size_t i = 0; i < l.n && !e; i++)
        if (strcmp(l.e[i].name, o->args[1]) == 0)
            e = &l.e[i];
    char msg[300];
    if (!e) {
        snprintf(msg, sizeof msg, "no object named %s", o->args[1]);
        code = report_error(o, ENOENT, msg);
    } else {
        size_t count = 0;
        const uint8_t *p = mseg_find(s, e->name, e->type, e->elem_size, &count);
        if (!p)
            code = report_error(o, errno, mseg_errmsg());
        else if ((code = dump_container(o, s, e, p)) < 0) {
            code = EXIT_SOUND;
            dump_bytes(o, e, p, count * e->elem_size);
        }
    }
    list_free(&l);
    mseg_close(s);
    return code;
}
