/*
 * header.c - the segment header: two copies, checksummed, validated on open.
 *
 * Format (struct mseg_header in layout.h, 256 bytes, little endian):
 *
 *   +0   magic "MSEG\r\n\032\n"     +8   format_version   +12  header_size
 *   +16  compat_features            +24  incompat_features
 *   +32  word_size, byte_order, granule, page_size
 *   +40  generation                 +48  size             +56  max_size
 *   +64  runtime_off, control_off, log_off, log_size, heap_off (5 x 8)
 *   +104 created_ns                 +112 uuid[16]
 *   +128 reserved[120]              +248 checksum = XXH3-64(bytes 0..247)
 *
 * Copy A lives at offset 0, copy B at 4096, so a torn page write can damage
 * at most one. An update rewrites the copy with the older generation with
 * generation + 1; open takes the valid copy with the newer generation.
 *
 * Validation order, so each failure gets the right errno and message:
 *   magic -> header_size -> checksum (EUCLEAN: not a segment, or damaged)
 *   -> version, features, word size, byte order (EPROTO: valid, but not
 *   for this library) -> layout and sizes against the file (EUCLEAN).
 * magic, format_version, header_size and "the checksum is the last 8 bytes
 * of header_size" are frozen for all future versions, so this library can
 * tell a future segment (EPROTO) from a damaged one (EUCLEAN).
 */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "hash.h"
#include "internal.h"

void header_build(struct mseg_header *h, uint64_t size, uint64_t max_size, uint64_t generation)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, MSEG_MAGIC, 8);
    h->format_version = MSEG_FORMAT_VERSION;
    h->header_size = sizeof *h;
    h->word_size = 8;
    h->byte_order = MSEG_BYTE_ORDER_LE;
    h->granule = MSEG_GRANULE;
    h->page_size = MSEG_PAGE;
    h->generation = generation;
    h->size = size;
    h->max_size = max_size;
    h->runtime_off = MSEG_RUNTIME_OFF;
    h->control_off = MSEG_CONTROL_OFF;
    h->log_off = MSEG_LOG_OFF;
    h->log_size = MSEG_LOG_SIZE;
    h->heap_off = MSEG_HEAP_OFF;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    h->created_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    if (getrandom(h->uuid, sizeof h->uuid, 0) != (ssize_t)sizeof h->uuid)
        memcpy(h->uuid, &h->created_ns, sizeof h->created_ns);
}

void header_seal(struct mseg_header *h)
{
    h->checksum = mseg_hash(h, offsetof(struct mseg_header, checksum));
}

#define WHY(e, ...) (snprintf(why, whylen, __VA_ARGS__), *err = (e), -1)

static int validate_identity(const struct mseg_header *h, char *why, size_t whylen, int *err)
{
    if (memcmp(h->magic, MSEG_MAGIC, 8) != 0)
        return WHY(EUCLEAN, "bad magic: not an mseg segment");
    uint32_t hs = h->header_size;
    if (hs < 24 || hs > MSEG_PAGE || hs % 8)
        return WHY(EUCLEAN, "header_size %u is impossible", hs);
    /* Callers hold only sizeof *h bytes: a longer header cannot be
       checksummed here. It is a newer format only if the version says so. */
    if (hs > sizeof *h && h->format_version <= MSEG_FORMAT_VERSION)
        return WHY(EUCLEAN, "header_size %u is impossible for format version %u", hs, h->format_version);
    if (hs > sizeof *h)
        return WHY(EPROTO, "format version %u (a %u-byte header); this library reads version %u",
                   h->format_version, hs, MSEG_FORMAT_VERSION);
    uint64_t stored;
    memcpy(&stored, (const uint8_t *)h + hs - 8, 8);
    uint64_t computed = mseg_hash(h, hs - 8);
    if (stored != computed)
        return WHY(EUCLEAN, "checksum mismatch (stored %#llx, computed %#llx)",
                   (unsigned long long)stored, (unsigned long long)computed);
    if (h->format_version != MSEG_FORMAT_VERSION || hs != sizeof *h)
        return WHY(EPROTO, "format version %u; this library reads version %u",
                   h->format_version, MSEG_FORMAT_VERSION);
    if (h->incompat_features & ~MSEG_INCOMPAT_KNOWN)
        return WHY(EPROTO, "unknown incompatible features %#llx",
                   (unsigned long long)(h->incompat_features & ~MSEG_INCOMPAT_KNOWN));
    if (h->word_size != 8 || h->byte_order != MSEG_BYTE_ORDER_LE)
        return WHY(EPROTO, "written for %u-byte words, byte order %u; this machine uses "
                   "8-byte words, little endian", h->word_size, h->byte_order);
    return 0;
}

static int validate_geometry(const struct mseg_header *h, uint64_t file_size,
                             char *why, size_t whylen, int *err)
{
    if (h->granule != MSEG_GRANULE || h->page_size != MSEG_PAGE)
        return WHY(EUCLEAN, "granule %u / page size %u, expected %u / %u",
                   h->granule, h->page_size, MSEG_GRANULE, MSEG_PAGE);
    if (h->runtime_off != MSEG_RUNTIME_OFF || h->control_off != MSEG_CONTROL_OFF ||
        h->log_off != MSEG_LOG_OFF || h->log_size != MSEG_LOG_SIZE ||
        h->heap_off != MSEG_HEAP_OFF)
        return WHY(EUCLEAN, "area offsets differ from the version %u layout", MSEG_FORMAT_VERSION);
    if (h->size < MSEG_MIN_SIZE || h->size % MSEG_PAGE || h->size > MSEG_MAX_SIZE)
        return WHY(EUCLEAN, "size %llu is not a valid segment size",
                   (unsigned long long)h->size);
    if (h->max_size && (h->max_size < h->size || h->max_size > MSEG_MAX_SIZE))
        return WHY(EUCLEAN, "max_size %llu is below size %llu or too large",
                   (unsigned long long)h->max_size, (unsigned long long)h->size);
    /* mseg rounds it up to a page: a growth to another value would write
       a size that no header may hold */
    if (h->max_size % MSEG_PAGE)
        return WHY(EUCLEAN, "max_size %llu is not a multiple of %u",
                   (unsigned long long)h->max_size, MSEG_PAGE);
    if (h->size > file_size)
        return WHY(EUCLEAN, "truncated: the header says %llu bytes, the file has %llu",
                   (unsigned long long)h->size, (unsigned long long)file_size);
    return 0;
}

int header_validate(const struct mseg_header *h, uint64_t file_size, char *why, size_t whylen, int *err)
{
    if (validate_identity(h, why, whylen, err))
        return -1;
    return validate_geometry(h, file_size, why, whylen, err);
}

int header_write_size(mseg *s, uint64_t size)
{
    const struct mseg_header *a = seg_header(s, 0), *b = seg_header(s, 1);
    char why[200];
    int err;
    uint64_t limit = seg_header_limit(s);
    bool a_ok = header_validate(a, limit, why, sizeof why, &err) == 0;
    bool b_ok = header_validate(b, limit, why, sizeof why, &err) == 0;
    if (!a_ok && !b_ok)
        return fail(EUCLEAN, "segment %s: both header copies are damaged", s->name);
    const struct mseg_header *newer = (!a_ok || (b_ok && b->generation > a->generation)) ? b : a;
    int target = newer == a ? 1 : 0;
    struct mseg_header h = *newer;
    h.size = size;
    h.generation++;
    header_seal(&h);
    memcpy(seg_header(s, target), &h, sizeof h);
    return flush_now(s, target ? MSEG_HEADER_B_OFF : MSEG_HEADER_A_OFF, MSEG_PAGE);
}
