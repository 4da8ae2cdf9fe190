/*
 * fuzz_open.c - libFuzzer target: the input is a segment image.
 *
 * The image goes to a memfd; then everything the tool does read-only runs on
 * it: mseg_check, the raw header copies, a read-only open with ls (foreach),
 * find and a dump of every object's bytes (every entry of vectors and maps),
 * the heap walk and its histogram,
 * mseg_verify, and the check with progress. None of it may crash, hang,
 * leak or read outside the mapping, whatever the bytes.
 */
#include "fuzz_common.h"
#include "inspect.h"

#include <string.h>

struct fz_open_ctx {
    mseg *s;
    uint64_t sum;
};

/* What `mseg dump` does for an object: find it as the type it claims, read
   every byte. */
static int fz_open_visit(const struct mseg_named *n, void *arg)
{
    struct fz_open_ctx *c = arg;
    size_t count = 0;
    const uint8_t *p = mseg_find(c->s, n->name, n->type, n->elem_size, &count);
    if (!p)
        return 0;
    size_t bytes = n->elem_size * count;
    for (size_t i = 0; i < bytes; i++)
        c->sum += p[i];
    /* what `mseg dump` does for containers: a named container's data is
       its handle; walk every entry (bounded: the library must stop a
       damaged structure itself, this only caps a huge valid one) */
    if (strcmp(n->type, "mseg_map") == 0) {
        struct mseg_cursor cur;
        int more = mseg_map_first(c->s, (mseg_map *)(uintptr_t)p, &cur) == 0;
        for (int i = 0; more && i < 100000; i++) {
            const uint8_t *k = cur.key, *v = cur.val;
            for (size_t j = 0; k && j < cur.klen; j++)
                c->sum += k[j];
            for (size_t j = 0; v && j < cur.vlen; j++)
                c->sum += v[j];
            more = mseg_map_next(c->s, &cur) == 0;
        }
    } else if (strcmp(n->type, "mseg_vec") == 0) {
        mseg_vec *v = (mseg_vec *)(uintptr_t)p;
        size_t len = mseg_vec_len(c->s, v);
        for (size_t i = 0; i < len && i < 100000; i++) {
            const uint8_t *e = mseg_vec_at(c->s, v, i);
            if (e)
                c->sum += e[0];
        }
    }
    return 0;
}

static void fz_open_progress(uint64_t done, uint64_t total, void *arg)
{
    if (done > total)
        abort();           /* the walk must never report past the heap */
    (void)arg;
}

static void fz_open_readonly(const char *path)
{
    mseg *s = mseg_open(path, MSEG_RDONLY, NULL);
    if (!s)
        return;
    struct fz_open_ctx c = { .s = s };
    mseg_named_count(s);
    mseg_free_memory(s);
    mseg_named_foreach(s, fz_open_visit, &c);
    struct inspect_stats st;
    if (inspect_heap_stats(s, &st, fz_open_progress, NULL) == 0)
        (void)inspect_fragmentation(&st);
    mseg_verify(s, NULL);
    mseg_find(s, "one", "int", 4, NULL);
    mseg_close(s);
}

int fuzz_open_input(const uint8_t *data, size_t size)
{
    uint8_t *img = malloc(size ? size : 1);
    if (!img)
        return 0;
    memcpy(img, data, size);
    /* A stale odd op_seq makes read-only readers wait 200 ms for a writer
       that is not there (then EAGAIN): correct, but it would slow the
       fuzzer to a crawl. */
    if (size >= MSEG_RUNTIME_OFF + 80)
        img[MSEG_RUNTIME_OFF + 72] &= 0xfe;
    char path[64];
    int fd = fz_image_file(img, size, path);
    free(img);
    if (fd < 0)
        return 0;
    struct mseg_report r;
    mseg_check(path, 0, &r);
    struct inspect_header h[2];
    inspect_headers(path, 0, h);
    fz_open_readonly(path);
    inspect_check(path, 0, &r, fz_open_progress, NULL);
    close(fd);
    return 0;
}

#ifndef FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_open_input(data, size);
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    uint64_t rs = seed;
    return fz_mutate_image(data, size, max_size, &rs);
}
#endif
