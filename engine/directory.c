/*
 * directory.c - named objects: a hash table from name to record.
 *
 * Format: see layout.h ("Named-object directory"). The table is an array of
 * (hash, record offset) slots with linear probing, in one heap block; each
 * named object is one heap block holding its record, name, type and data.
 *
 * Constructing an object is one engine operation: allocate its block, fill it
 * in place (a fresh block, unreachable until commit), and log the slot and
 * counters. When live plus deleted slots pass 3/4 of the capacity, the same
 * operation first builds a new table (fresh, twice as large unless most
 * slots are deleted) and logs only the switch of dir_table and the freeing of
 * the old one. So an object appears whole or not at all, and a find costs one
 * hash and, on average, one or two probes whatever the number of objects.
 *
 * Every record offset read from the table is validated before use (a live
 * block, the magic, lengths inside the block), and every probe sequence is
 * bounded by the capacity, so a damaged directory is an EUCLEAN error, not a
 * crash or a hang.
 */
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "internal.h"
#include "testing.h"

#define CTRL(field) ((uint64_t)MSEG_CONTROL_OFF + offsetof(struct mseg_control, field))

struct dir_view {           /* the table as the current operation sees it */
    uint64_t table, capacity;
};

static struct dir_view dir_view(mseg *s)
{
    struct dir_view v = { op_get64(s, CTRL(dir_table)), op_get64(s, CTRL(dir_capacity)) };
    return v;
}

static uint64_t slot_off(const struct dir_view *v, uint64_t i) { return v->table + 16 * i; }

/* Length of a record's header, name and type, padded so that the four bytes
   before the 16-aligned data are zero. */
static uint32_t data_offset(size_t name_len, size_t type_len)
{
    size_t n = sizeof(struct mseg_dir_record) + name_len + 1 + type_len + 1 + 4;
    return (uint32_t)((n + 15) & ~(size_t)15);
}

/* Checks the handle, the name and the type (type may be NULL only where no
   type is involved: destroy) and gives their lengths, measured once. */
static int measure_name(mseg *s, const char *name, const char *type, bool need_type, size_t *nl, size_t *tl)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle");
    *nl = name ? strnlen(name, MSEG_NAME_MAX + 1) : 0;
    *tl = type ? strnlen(type, MSEG_TYPE_MAX + 1) : 0;
    if (!name)
        return fail(EINVAL, "segment %s: NULL object name", s->name);
    if (*nl == 0 || *nl > MSEG_NAME_MAX)
        return fail(EINVAL, "segment %s: object name \"%.40s\"%s must be 1..%d bytes", s->name, name,
                    *nl > 40 ? "..." : "", MSEG_NAME_MAX);
    if (need_type && !type)
        return fail(EINVAL, "segment %s: object %s: NULL type name", s->name, name);
    if (type && (*tl == 0 || *tl > MSEG_TYPE_MAX))
        return fail(EINVAL, "segment %s: object %s: type name must be 1..%d bytes", s->name, name, MSEG_TYPE_MAX);
    return 0;
}

static int check_name(mseg *s, const char *name, const char *type, bool need_type)
{
    size_t nl, tl;
    return measure_name(s, name, type, need_type, &nl, &tl);
}

/* mseg_construct and mseg_find_or_construct: the type names of the
   containers are theirs. A raw object typed "mseg_vec" was listed as a
   vector, mseg_vec_open of it said "object x is a mseg_vec, not a
   mseg_vec", and `mseg dump` took its bytes for a vector's root. */
static int check_raw_type(mseg *s, const char *name, const char *type)
{
    if (strcmp(type, "mseg_vec") == 0 || strcmp(type, "mseg_map") == 0)
        return fail(EINVAL, "segment %s: object %s: type name %s is reserved for %s (made with %s)", s->name,
                    name, type,
                    type[5] == 'v' ? "vectors" : "maps", type[5] == 'v' ? "mseg_vec_open" : "mseg_map_open");
    return 0;
}

/* count elements of elem_size bytes fit in `room` bytes (no division: this
   runs on every lookup). */
static bool elements_fit(const struct mseg_dir_record *r, uint64_t room)
{
    uint64_t bytes;
    return !__builtin_mul_overflow(r->elem_size, r->count, &bytes) && bytes <= room;
}

/* The record at rec if it is sound, else NULL with EUCLEAN. */
static const struct mseg_dir_record *record_at(mseg *s, uint64_t rec)
{
    uint64_t room = heap_block_room(s, rec);
    if (!room)
        return fail_null(EUCLEAN, "segment %s: directory points at %#llx, which is not a live block",
                         s->name, (unsigned long long)rec);
    const struct mseg_dir_record *r = (const void *)(s->base + rec);
    if (r->magic != MSEG_RECORD_MAGIC || r->name_len == 0 || r->name_len > MSEG_NAME_MAX ||
        r->type_len == 0 || r->data_off != data_offset(r->name_len, r->type_len) ||
        r->data_off > room || r->elem_size == 0 || !elements_fit(r, room - r->data_off))
        return fail_null(EUCLEAN, "segment %s: named-object record at %#llx is damaged",
                         s->name, (unsigned long long)rec);
    const char *name = (const char *)(r + 1);
    if (name[r->name_len] || name[r->name_len + 1 + r->type_len])
        return fail_null(EUCLEAN, "segment %s: named-object record at %#llx has unterminated strings",
                         s->name, (unsigned long long)rec);
    return r;
}

static const char *record_name(const struct mseg_dir_record *r) { return (const char *)(r + 1); }
static const char *record_type(const struct mseg_dir_record *r) { return (const char *)(r + 1) + r->name_len + 1; }

/* Looks name up. Returns the record offset (0 if absent, with *slot the
   first reusable slot for an insert) or -1 cast (UINT64_MAX) on damage. */
static uint64_t dir_lookup_record(mseg *s, const char *name, size_t len, uint64_t hash,
                                  uint64_t *slot, const struct mseg_dir_record **found);

static uint64_t dir_lookup(mseg *s, const char *name, size_t len, uint64_t hash, uint64_t *slot)
{
    const struct mseg_dir_record *r;
    return dir_lookup_record(s, name, len, hash, slot, &r);
}

/* dir_lookup, also giving the sound record it found (*found). */
static uint64_t dir_lookup_record(mseg *s, const char *name, size_t len, uint64_t hash,
                                  uint64_t *slot, const struct mseg_dir_record **found)
{
    struct dir_view v = dir_view(s);
    uint64_t reusable = UINT64_MAX;
    /* a table below the heap (the runtime page, say) reads as zeros through
       op_get64, i.e. empty slots: every name looked absent (ENOENT) */
    if (v.table < MSEG_HEAP_OFF || v.table % 16 || v.capacity == 0 || (v.capacity & (v.capacity - 1)) ||
        v.capacity > s->size / 16 || !seg_range_ok(s, v.table, v.capacity * 16)) {
        if (v.table || v.capacity) {
            fail(EUCLEAN, "segment %s: directory table %#llx/%llu slots is damaged", s->name,
                 (unsigned long long)v.table, (unsigned long long)v.capacity);
            return UINT64_MAX;
        }
        *slot = UINT64_MAX;
        return 0;
    }
    for (uint64_t n = 0, i = hash & (v.capacity - 1); n < v.capacity; n++, i = (i + 1) & (v.capacity - 1)) {
        uint64_t rec = op_get64(s, slot_off(&v, i) + 8);
        if (rec == MSEG_DIR_EMPTY) {
            *slot = reusable != UINT64_MAX ? reusable : i;
            return 0;
        }
        if (rec == MSEG_DIR_DELETED) {
            if (reusable == UINT64_MAX)
                reusable = i;
            continue;
        }
        if (op_get64(s, slot_off(&v, i)) != hash)
            continue;
        const struct mseg_dir_record *r = record_at(s, rec);
        if (!r)
            return UINT64_MAX;
        /* a record keeps its name's hash, equal to its slot's: a slot whose
           record word names another object's record (which a name compare
           alone passes over, saying ENOENT for an object that is there) */
        if (r->hash != hash) {
            fail(EUCLEAN, "segment %s: directory slot %llu holds the hash of another name than its record's "
                 "(at %#llx)", s->name, (unsigned long long)i, (unsigned long long)rec);
            return UINT64_MAX;
        }
        if (r->name_len == len && memcmp(record_name(r), name, len) == 0) {
            *slot = i;
            *found = r;
            return rec;
        }
    }
    *slot = reusable;
    return 0;
}

/* Builds a new table of `capacity` slots holding every live entry, fresh, and
   logs the switch to it. 0, or -1 with ENOMEM. */
static int dir_rebuild(mseg *s, uint64_t capacity)
{
    struct dir_view old = dir_view(s);
    uint64_t table = heap_alloc(s, capacity * 16, MSEG_GRANULE);
    if (!table)
        return errno == ENOMEM ? fail(ENOMEM, "segment %s: no room to grow the directory to %llu slots",
                                      s->name, (unsigned long long)capacity) : -1;
    memset(s->base + table, 0, capacity * 16);
    op_fresh(s, table, capacity * 16);
    struct mseg_dir_slot *slots = (void *)(s->base + table);
    for (uint64_t i = 0; i < old.capacity; i++) {
        uint64_t rec = op_get64(s, slot_off(&old, i) + 8);
        if (rec == MSEG_DIR_EMPTY || rec == MSEG_DIR_DELETED)
            continue;
        uint64_t hash = op_get64(s, slot_off(&old, i));
        uint64_t j = hash & (capacity - 1);
        while (slots[j].rec)
            j = (j + 1) & (capacity - 1);
        slots[j].hash = hash;
        slots[j].rec = rec;
    }
    op_set64(s, CTRL(dir_table), table);
    op_set64(s, CTRL(dir_capacity), capacity);
    op_set64(s, CTRL(dir_used), op_get64(s, CTRL(dir_count)));
    if (old.table && heap_free(s, old.table))
        return -1;
    return 0;
}

/* Makes room for one more entry. */
static int dir_reserve(mseg *s)
{
    uint64_t cap = op_get64(s, CTRL(dir_capacity));
    uint64_t used = op_get64(s, CTRL(dir_used));
    uint64_t live = op_get64(s, CTRL(dir_count));
    if (cap && (used + 1) * 4 <= cap * 3)
        return 0;
    uint64_t want = cap ? cap : MSEG_DIR_MIN_CAPACITY;
    while ((live + 1) * 2 > want)
        want *= 2;
    return dir_rebuild(s, want);
}

/* Creates the object inside the current operation; returns its data. */
static void *dir_create(mseg *s, const char *name, const char *type, size_t elem_size,
                        size_t count, const void *init, uint64_t hash, uint8_t kind)
{
    if (elem_size == 0)
        return fail_null(EINVAL, "segment %s: object %s: element size 0", s->name, name);
    size_t nl = strlen(name), tl = strlen(type);
    uint32_t doff = data_offset(nl, tl);
    size_t total;
    if (__builtin_mul_overflow(elem_size, count, &total))   /* mseg.h: EINVAL */
        return fail_null(EINVAL, "segment %s: object %s: %zu x %zu bytes overflows a size", s->name, name, count,
                         elem_size);
    if (count && elem_size > (MSEG_BLOCK_MAX - 4 - doff) / count)
        return fail_null(ENOMEM, "segment %s: object %s: %zu x %zu bytes is larger than the largest block",
                         s->name, name, count, elem_size);
    if (dir_reserve(s))
        return NULL;
    uint64_t slot;
    if (dir_lookup(s, name, nl, hash, &slot) == UINT64_MAX || slot == UINT64_MAX)
        return fail_null(EUCLEAN, "segment %s: directory has no free slot", s->name);
    uint64_t bytes = doff + (uint64_t)elem_size * count;
    uint64_t rec = heap_alloc(s, bytes, MSEG_GRANULE);
    if (!rec)
        return errno == ENOMEM ? fail_null(ENOMEM, "segment %s: no room for object %s (%llu bytes)",
                                           s->name, name, (unsigned long long)bytes) : NULL;
    uint8_t *p = s->base + rec;
    struct mseg_dir_record r = {
        .magic = MSEG_RECORD_MAGIC, .name_len = (uint16_t)nl, .type_len = (uint8_t)tl,
        .kind = kind, .data_off = doff, .elem_size = elem_size, .count = count,
        .hash = hash,
    };
    memset(p, 0, doff);
    memcpy(p, &r, sizeof r);
    memcpy(p + sizeof r, name, nl);
    memcpy(p + sizeof r + nl + 1, type, tl);
    if (init)
        memcpy(p + doff, init, elem_size * count);
    else
        memset(p + doff, 0, elem_size * count);
    op_fresh(s, rec, bytes);

    struct dir_view v = dir_view(s);
    bool was_empty = op_get64(s, slot_off(&v, slot) + 8) == MSEG_DIR_EMPTY;
    op_set64(s, slot_off(&v, slot), hash);
    op_set64(s, slot_off(&v, slot) + 8, rec);
    op_set64(s, CTRL(dir_count), op_get64(s, CTRL(dir_count)) + 1);
    if (was_empty)
        op_set64(s, CTRL(dir_used), op_get64(s, CTRL(dir_used)) + 1);
    return p + doff;
}

/* Removes the entry in slot; the last one takes the table with it, so an
   empty directory holds no memory (free memory is back where it started). */
static int dir_remove(mseg *s, uint64_t slot)
{
    struct dir_view v = dir_view(s);
    uint64_t live = op_get64(s, CTRL(dir_count)) - 1;
    op_set64(s, CTRL(dir_count), live);
    if (live > 0) {
        op_set64(s, slot_off(&v, slot) + 8, MSEG_DIR_DELETED);
        return 0;
    }
    op_set64(s, CTRL(dir_table), 0);
    op_set64(s, CTRL(dir_capacity), 0);
    op_set64(s, CTRL(dir_used), 0);
    return heap_free(s, v.table);
}

/* The data of record rec, if type and elem_size match (EINVAL if not). */
/* The data of the sound record r at rec, if it has that type and element
   size (EINVAL otherwise). */
static void *typed_data(mseg *s, uint64_t rec, const struct mseg_dir_record *r, const char *name,
                        const char *type, size_t elem_size, size_t *count)
{
    if (strcmp(record_type(r), type) != 0 || r->elem_size != elem_size)
        return fail_null(EINVAL, "segment %s: object %s is a %s of %llu-byte elements, not a %s of %zu-byte "
                         "elements", s->name, name, record_type(r), (unsigned long long)r->elem_size, type, elem_size);
    if (count)
        *count = (size_t)r->count;
    return s->base + rec + r->data_off;
}

/* ---- for the tests ---- */

double mseg_test_dir_probes(mseg *s, unsigned long *longest)
{
    struct dir_view v = dir_view(s);
    unsigned long total = 0, live = 0, most = 0;
    for (uint64_t i = 0; v.table && i < v.capacity; i++) {
        uint64_t rec = op_peek64(s, slot_off(&v, i) + 8);
        if (rec == MSEG_DIR_EMPTY || rec == MSEG_DIR_DELETED)
            continue;
        unsigned long reads = (unsigned long)((i - op_peek64(s, slot_off(&v, i))) & (v.capacity - 1)) + 1;
        total += reads;
        live++;
        most = reads > most ? reads : most;
    }
    *longest = most;
    return live ? (double)total / (double)live : 0;
}

/* ---- for check.c ---- */

int dir_record_name(mseg *s, uint64_t rec, char name[MSEG_NAME_MAX + 1])
{
    const struct mseg_dir_record *r = record_at(s, rec);
    if (!r)
        return -1;
    memcpy(name, record_name(r), r->name_len + 1u);
    return 0;
}

uint64_t dir_record_lookup(mseg *s, const char *name)
{
    size_t nl = strlen(name);
    uint64_t slot;
    return dir_lookup(s, name, nl, mseg_hash(name, nl), &slot);
}

/* ---- named containers ---- */

/* The record's type is a container's ("mseg_vec", "mseg_map") but its kind
   byte says otherwise: damage, when the kind is the other container's, or
   raw while the data holds that container's root (its magic). A raw object
   typed so by an older mseg, whose construct did not refuse those names,
   holds no root, and is not taken for damage. */
bool dir_record_kind_lost(mseg *s, uint64_t rec, const struct mseg_dir_record *r)
{
    const char *type = record_type(r);
    uint8_t want = strcmp(type, "mseg_vec") == 0 ? MSEG_KIND_VEC
                 : strcmp(type, "mseg_map") == 0 ? MSEG_KIND_MAP : MSEG_KIND_RAW;
    if (want == MSEG_KIND_RAW || r->kind == want)
        return false;
    if (r->kind != MSEG_KIND_RAW)
        return true;
    uint32_t magic = want == MSEG_KIND_VEC ? MSEG_VEC_MAGIC : MSEG_MAP_MAGIC;
    return heap_block_room(s, rec) >= (uint64_t)r->data_off + 4 && op_peek32(s, rec + r->data_off) == magic;
}

uint64_t dir_open_kind(mseg *s, const char *name, uint8_t kind, const char *type,
                       size_t root_size, bool create, bool *created)
{
    *created = false;
    if (check_name(s, name, type, true))
        return 0;
    size_t nl = strlen(name);
    uint64_t hash = mseg_hash(name, nl), slot;
    uint64_t rec = dir_lookup(s, name, nl, hash, &slot);
    if (rec == UINT64_MAX)
        return 0;
    if (rec) {
        const struct mseg_dir_record *r = record_at(s, rec);
        if (!r)
            return 0;
        if (dir_record_kind_lost(s, rec, r))
            return fail(EUCLEAN, "segment %s: named-object record at %#llx (%s) is damaged: type %s, but kind %u",
                        s->name, (unsigned long long)rec, name, record_type(r), r->kind), 0;
        if (r->kind != kind || strcmp(record_type(r), type) != 0)
            return fail(EINVAL, "segment %s: object %s is a %s, not a %s", s->name, name, record_type(r), type), 0;
        return rec + r->data_off;
    }
    if (!create)
        return fail(ENOENT, "no object named %s in segment %s", name, s->name), 0;
    uint8_t *data = dir_create(s, name, type, root_size, 1, NULL, hash, kind);
    if (!data)
        return 0;
    *created = true;
    return (uint64_t)(data - s->base);
}

/* ---- public API ---- */

void *mseg_construct(mseg *s, const char *name, const char *type,
                     size_t elem_size, size_t count, const void *init)
{
    if (check_name(s, name, type, true) || check_raw_type(s, name, type) || seg_write_begin(s))
        return NULL;
    size_t nl = strlen(name);
    uint64_t hash = mseg_hash(name, nl), slot;
    uint64_t rec = dir_lookup(s, name, nl, hash, &slot);
    void *data = NULL;
    if (rec == UINT64_MAX)
        ;
    else if (rec)
        fail(EEXIST, "object %s already exists in segment %s", name, s->name);
    else
        data = dir_create(s, name, type, elem_size, count, init, hash, MSEG_KIND_RAW);
    int e = errno;
    if (seg_write_end(s, data != NULL) || !data) {
        if (!data)
            errno = e;
        return NULL;
    }
    return data;
}

void *mseg_find_or_construct(mseg *s, const char *name, const char *type,
                             size_t elem_size, size_t count, const void *init)
{
    if (check_name(s, name, type, true) || check_raw_type(s, name, type))
        return NULL;
    if (s->mode == MODE_RDONLY)
        return seg_found_read_only(s, mseg_find(s, name, type, elem_size, NULL), "construct", name);
    if (seg_write_begin(s))
        return NULL;
    size_t nl = strlen(name);
    uint64_t hash = mseg_hash(name, nl), slot;
    const struct mseg_dir_record *r = NULL;
    uint64_t rec = dir_lookup_record(s, name, nl, hash, &slot, &r);
    void *data = NULL;
    bool made = false;
    if (rec == UINT64_MAX)
        ;
    else if (rec)
        data = typed_data(s, rec, r, name, type, elem_size, NULL);
    else
        made = (data = dir_create(s, name, type, elem_size, count, init, hash, MSEG_KIND_RAW)) != NULL;
    int e = errno;
    if (seg_write_end(s, made) || !data) {
        if (!data)
            errno = e;
        return NULL;
    }
    return data;
}

/*
 * The common find, shaped so that little has to wait for the record's cache
 * miss. Before the record arrives, the name and type already say what its
 * first bytes must hold (magic, lengths, data_off) and where its strings
 * lie, so the record is compared with those values instead of being
 * validated field by field; equal values are valid ones. The processor can
 * then start the caller's next lookup while this one waits for memory.
 *
 * It answers only a hit it is sure of: a live record in the current table,
 * in a read the sequence word confirms (seg_fast_read_begin). Anything else
 * (an absent name, a long probe, a collision, a wrong type, damage, a
 * writer at work, a range past this mapping, which growth may explain)
 * returns NULL, and mseg_find's general path gives the answer or the
 * error, following growth first.
 */
#define FIND_FAST_PROBES 8

static void *find_fast(mseg *s, const char *name, size_t nl, const char *type, size_t tl,
                       uint64_t hash, size_t elem_size, size_t *count)
{
    uint64_t seq;
    if (elem_size == 0 || !seg_fast_read_begin(s, &seq))
        return NULL;
    const struct mseg_control *c = seg_control(s);
    uint64_t table = c->dir_table, cap = c->dir_capacity;
    if (table < MSEG_HEAP_OFF || table % 16 || cap == 0 || (cap & (cap - 1)) || cap > s->size / 16 ||
        !seg_range_ok(s, table, cap * 16))
        return NULL;
    uint64_t data_off = data_offset(nl, tl);
    for (uint64_t n = 0, i = hash & (cap - 1); n < FIND_FAST_PROBES; n++, i = (i + 1) & (cap - 1)) {
        const struct mseg_dir_slot *slot = (const void *)(s->base + table + 16 * i);
        uint64_t rec = slot->rec;
        if (rec == MSEG_DIR_EMPTY)
            return NULL;
        if (slot->hash != hash || rec == MSEG_DIR_DELETED)
            continue;
        uint64_t room = heap_block_room(s, rec), bytes;
        if (room < data_off)
            return NULL;   /* and rec may be anything: no address is formed from it */
        const struct mseg_dir_record *r = (const void *)(s->base + rec);
        const char *strings = (const char *)(r + 1);
        if (r->magic != MSEG_RECORD_MAGIC || r->name_len != nl ||
            r->type_len != tl || r->data_off != data_off || r->elem_size != elem_size ||
            __builtin_mul_overflow(r->elem_size, r->count, &bytes) || bytes > room - data_off ||
            memcmp(strings, name, nl + 1) || memcmp(strings + nl + 1, type, tl + 1))
            return NULL;
        size_t n_elems = (size_t)r->count;
        if (!seg_fast_read_end(s, seq))
            return NULL;
        *count = n_elems;
        return s->base + rec + data_off;
    }
    return NULL;
}

void *mseg_find(mseg *s, const char *name, const char *type, size_t elem_size, size_t *count)
{
    size_t nl, tl, n = 0;   /* *count only from a validated success */
    if (measure_name(s, name, type, true, &nl, &tl))
        return NULL;
    uint64_t hash = mseg_hash(name, nl), slot, seq;
    void *data = find_fast(s, name, nl, type, tl, hash, elem_size, &n);
    if (data) {
        if (count)
            *count = n;
        return data;
    }
    int e;
    do {
        if (seg_read_begin(s, &seq))
            return NULL;
        const struct mseg_dir_record *r = NULL;
        uint64_t rec = dir_lookup_record(s, name, nl, hash, &slot, &r);
        data = NULL;
        if (rec == 0)
            fail(ENOENT, "no object named %s in segment %s", name, s->name);
        else if (rec != UINT64_MAX)
            data = typed_data(s, rec, r, name, type, elem_size, &n);
        e = errno;
    } while (!seg_read_end(s, seq));
    if (data && count)
        *count = n;
    errno = e;
    return data;
}

int mseg_destroy(mseg *s, const char *name)
{
    if (check_name(s, name, NULL, false) || seg_write_begin(s))
        return -1;
    size_t nl = strlen(name);
    uint64_t hash = mseg_hash(name, nl), slot;
    uint64_t rec = dir_lookup(s, name, nl, hash, &slot);
    int rc = -1;
    if (rec == 0)
        fail(ENOENT, "no object named %s in segment %s", name, s->name);
    else if (rec != UINT64_MAX) {
        const struct mseg_dir_record *r = record_at(s, rec);
        if (r)
            rc = kind_release(s, r->kind, rec + r->data_off) || dir_remove(s, slot) ||
                 heap_free(s, rec) ? -1 : 0;
        /* a container's root lies past the words a free block's header and
           links overwrite, so the freed record would keep its magic and a
           call on the old handle would write into the freed block (and leak
           what it allocated): clear it, as an anonymous root's is. Both
           roots start with their 32-bit magic. Inside a transaction the
           cleared magic, in its view only, is also how later calls know
           the container was deleted in it (deleted_in_this_tx). */
        _Static_assert(offsetof(struct mseg_vec_root, magic) == 0 && offsetof(struct mseg_map_root, magic) == 0,
                       "a container root starts with its magic");
        if (rc == 0 && (r->kind == MSEG_KIND_VEC || r->kind == MSEG_KIND_MAP))
            op_set32(s, rec + r->data_off, 0);
    }
    int e = errno;
    if (seg_write_end(s, rc == 0))
        return -1;
    errno = e;
    return rc;
}

size_t mseg_named_count(mseg *s)
{
    uint64_t seq, n, used, cap;
    do {
        if (seg_read_begin(s, &seq))
            return 0;
        n = op_get64(s, CTRL(dir_count));
        used = op_get64(s, CTRL(dir_used));
        cap = op_get64(s, CTRL(dir_capacity));
    } while (!seg_read_end(s, seq));
    /* live objects take slots of the table: a count past them is damage,
       not a number of objects */
    if (n > used || used > cap)
        return fail(EUCLEAN, "segment %s: the directory is damaged: %llu objects in %llu used slots of %llu",
                    s->name, (unsigned long long)n, (unsigned long long)used, (unsigned long long)cap), 0;
    return (size_t)n;
}

/* ---- iteration on a snapshot ---- */

struct snapshot {
    struct mseg_named *items;
    char *strings;
    size_t n;
};

/* Appends n bytes to the snapshot's string buffer; returns their position. */
static int snap_strings(mseg *s, struct snapshot *snap, size_t *cap, size_t *used, const char *p, size_t n)
{
    if (*used + n > *cap) {
        size_t ncap = (*cap ? *cap * 2 : 4096) + n;
        char *q = realloc(snap->strings, ncap);
        if (!q)
            return fail(ENOMEM, "segment %s: out of process memory for a directory snapshot", s->name);
        snap->strings = q;
        *cap = ncap;
    }
    memcpy(snap->strings + *used, p, n);
    *used += n;
    return 0;
}

/* Copies every entry (and its strings) so fn can run without the lock. The
   name and type fields hold positions in the string buffer until the end,
   when they become pointers (the buffer moves while it grows). */
static int take_snapshot(mseg *s, struct snapshot *snap)
{
    struct dir_view v = dir_view(s);
    size_t icap = 0, scap = 0, sused = 0;
    memset(snap, 0, sizeof *snap);
    if (v.table && (v.capacity > s->size / 16 || !seg_range_ok(s, v.table, v.capacity * 16)))
        return fail(EUCLEAN, "segment %s: directory table is damaged", s->name);
    for (uint64_t i = 0; v.table && i < v.capacity; i++) {
        uint64_t rec = op_get64(s, slot_off(&v, i) + 8);
        if (rec == MSEG_DIR_EMPTY || rec == MSEG_DIR_DELETED)
            continue;
        const struct mseg_dir_record *r = record_at(s, rec);
        if (!r)
            return -1;
        if (snap->n == icap) {
            icap = icap ? icap * 2 : 64;
            struct mseg_named *q = realloc(snap->items, icap * sizeof *q);
            if (!q)
                return fail(ENOMEM, "segment %s: out of process memory for a directory snapshot", s->name);
            snap->items = q;
        }
        size_t at = sused;
        if (snap_strings(s, snap, &scap, &sused, record_name(r), (size_t)r->name_len + 1u + r->type_len + 1u))
            return -1;
        snap->items[snap->n++] = (struct mseg_named){
            .name = (const char *)(uintptr_t)at, .type = (const char *)(uintptr_t)(at + r->name_len + 1),
            .elem_size = (size_t)r->elem_size, .count = (size_t)r->count, .off = rec + r->data_off };
    }
    for (size_t i = 0; i < snap->n; i++) {
        snap->items[i].name = snap->strings + (uintptr_t)snap->items[i].name;
        snap->items[i].type = snap->strings + (uintptr_t)snap->items[i].type;
    }
    return 0;
}

int mseg_named_foreach(mseg *s, int (*fn)(const struct mseg_named *, void *), void *arg)
{
    if (!s)
        return fail(EINVAL, "NULL segment handle");
    if (!fn)
        return fail(EINVAL, "segment %s: mseg_named_foreach: NULL callback", s->name);
    struct snapshot snap;
    uint64_t seq, since = 0;
    int rc, e;
    for (;;) {
        if (seg_read_begin(s, &seq))
            return -1;
        rc = take_snapshot(s, &snap);
        e = errno;
        if (seg_read_end(s, seq))
            break;
        free(snap.items);
        free(snap.strings);
        if (!seg_read_retry(s, &since))
            return -1;
    }
    if (rc) {
        free(snap.items);
        free(snap.strings);
        errno = e;
        return -1;
    }
    for (size_t i = 0; rc == 0 && i < snap.n; i++)
        rc = fn(&snap.items[i], arg);
    free(snap.items);
    free(snap.strings);
    return rc;
}
