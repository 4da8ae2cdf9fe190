/*
 * fuzz_common.h - what the two fuzz targets share: turning bytes into a
 * segment file, and a mutator that keeps the header (and a committed log)
 * checksums valid, so mutations reach the heap, the directory and recovery
 * instead of dying at the header check.
 *
 * The targets are also compiled without libFuzzer, into the Criterion tests
 * (test_corruption.c defines FUZZ_NO_ENTRY), which replay every file of
 * tests/fuzz/regressions/ through the same code.
 */
#ifndef MSEG_FUZZ_COMMON_H
#define MSEG_FUZZ_COMMON_H

#define _GNU_SOURCE
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "layout.h"
#include "mseg.h"

/* Writes the image to a memfd and names it by a path mseg_open accepts
   (/proc/self/fd/N reopens the memfd as a new open file description, so the
   segment's open-file-description locks behave as with a real file). */
static inline int fz_image_file(const uint8_t *img, size_t len, char path[64])
{
    int fd = memfd_create("mseg-fuzz", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t put = 0;
    while (put < len) {
        ssize_t n = write(fd, img + put, len - put);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        put += (size_t)n;
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

/* ---- keeping checksums valid ---- */

static inline void fz_seal_header(uint8_t *img, size_t len, size_t at)
{
    if (len < at + sizeof(struct mseg_header))
        return;
    uint32_t hs;
    memcpy(&hs, img + at + 12, 4);
    if (hs < 24 || hs > sizeof(struct mseg_header) || hs % 8)
        hs = sizeof(struct mseg_header);
    uint64_t sum = XXH3_64bits(img + at, hs - 8);
    memcpy(img + at + hs - 8, &sum, 8);
}

/* Same formula as log.c's log_checksum: a commit slot's checksum covers its
   sequence number, its packed count (bits 0-15 records, 16-31 first index)
   and its records. */
static inline void fz_seal_slot(uint8_t *img, uint64_t commit, uint32_t packed, uint64_t *checksum)
{
    uint32_t n = packed & 0xffffu, start = packed >> 16;
    if (commit == 0 || n == 0 || (uint64_t)start + n > MSEG_LOG_CAPACITY)
        return;
    uint64_t seed = commit * 0x9e3779b97f4a7c15ull + packed;
    *checksum = XXH3_64bits_withSeed(img + MSEG_LOG_OFF + sizeof(struct mseg_log_head) +
                                     (size_t)start * sizeof(struct mseg_log_entry),
                                     (size_t)n * sizeof(struct mseg_log_entry), seed);
}

static inline void fz_seal_log(uint8_t *img, size_t len)
{
    struct mseg_log_head h;
    if (len < MSEG_LOG_OFF + MSEG_LOG_SIZE)
        return;
    memcpy(&h, img + MSEG_LOG_OFF, sizeof h);
    fz_seal_slot(img, h.commit, h.count, &h.checksum);
    fz_seal_slot(img, h.commit_b, h.count_b, &h.checksum_b);
    memcpy(img + MSEG_LOG_OFF, &h, sizeof h);
}

static inline void fz_seal(uint8_t *img, size_t len)
{
    fz_seal_log(img, len);
    fz_seal_header(img, len, MSEG_HEADER_A_OFF);
    fz_seal_header(img, len, MSEG_HEADER_B_OFF);
}

/* ---- the mutator ---- */

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

static inline uint64_t fz_rand(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Where mutations matter most: header fields, the control page's roots and
   bins, the log head and first records, the first heap blocks, anywhere. */
static inline size_t fz_pick_offset(uint64_t *rs, size_t len)
{
    static const size_t hot[][2] = {
        { MSEG_HEADER_A_OFF, 248 }, { MSEG_HEADER_B_OFF, 248 },
        { MSEG_RUNTIME_OFF + 64, 48 }, { MSEG_CONTROL_OFF, 192 + 8 * 64 },
        { MSEG_LOG_OFF, 64 + 16 * 16 }, { MSEG_HEAP_OFF, 4096 },
    };
    uint64_t r = fz_rand(rs);
    size_t n = sizeof hot / sizeof hot[0];
    if (r % (n + 2) < n) {
        size_t i = (size_t)(r % (n + 2));
        return hot[i][0] + (size_t)(fz_rand(rs) % hot[i][1]);
    }
    return len ? (size_t)(fz_rand(rs) % len) : 0;
}

/* A small interesting value for an 8-byte field. */
static inline uint64_t fz_value(uint64_t *rs, size_t len)
{
    static const uint64_t v[] = { 0, 1, 2, 3, 4, 15, 16, 32, 0x7fffffff, 0xffffffff,
                                  0x100000000ull, UINT64_MAX, UINT64_MAX - 15,
                                  1ull << 60, 1ull << 63 };
    uint64_t r = fz_rand(rs);
    switch (r % 4) {
    case 0: return v[(r >> 8) % (sizeof v / sizeof v[0])];
    case 1: return len ? (fz_rand(rs) % len) & ~15ull : 0;          /* a heap-ish offset */
    case 2: return MSEG_HEAP_OFF + 16 * (fz_rand(rs) % 64);          /* an early block */
    default: return fz_rand(rs);
    }
}

/* A committed log of a few records that target the control page or heap. */
static inline void fz_make_log(uint8_t *img, size_t len, uint64_t *rs)
{
    if (len < MSEG_LOG_OFF + MSEG_LOG_SIZE)
        return;
    struct mseg_log_head h;
    memset(&h, 0, sizeof h);
    uint32_t n = 1 + (uint32_t)(fz_rand(rs) % 8), start = (uint32_t)(fz_rand(rs) % 16);
    if (fz_rand(rs) & 1) {              /* slot 0, or slot 1 after an older slot 0 */
        h.commit = 1 + fz_rand(rs) % 1000;
        h.count = start << 16 | n;
    } else {
        h.commit_b = 1 + fz_rand(rs) % 1000;
        h.count_b = start << 16 | n;
    }
    for (uint32_t i = start; i < start + n; i++) {
        struct mseg_log_entry e;
        if (fz_rand(rs) & 1)
            e.where = MSEG_CONTROL_OFF + 8 * (fz_rand(rs) % 512);
        else
            e.where = fz_value(rs, len) & ~7ull;
        if (fz_rand(rs) & 1)
            e.where |= MSEG_LOG_WIDTH32;
        e.value = fz_value(rs, len);
        memcpy(img + MSEG_LOG_OFF + sizeof h + i * sizeof e, &e, sizeof e);
    }
    memcpy(img + MSEG_LOG_OFF, &h, sizeof h);
}

/* Mutates img[0..len) (max bytes of room); returns the new length. */
static inline size_t fz_mutate_image(uint8_t *img, size_t len, size_t max, uint64_t *rs)
{
    uint64_t r = fz_rand(rs) % 16;
    if (r < 8 && len) {                       /* a small window, mostly in hot spots */
        size_t at = fz_pick_offset(rs, len), w = 1 + (size_t)(fz_rand(rs) % 16);
        if (at >= len)
            at = len - 1;
        if (w > len - at)
            w = len - at;
        uint8_t buf[16];
        memcpy(buf, img + at, w);
        size_t got = LLVMFuzzerMutate(buf, w, w);
        memcpy(img + at, buf, got < w ? got : w);
    } else if (r < 12 && len >= 8) {          /* an interesting 8-byte value */
        size_t at = fz_pick_offset(rs, len) & ~(size_t)3;
        if (at + 8 <= len) {
            uint64_t v = fz_value(rs, len);
            memcpy(img + at, &v, 8);
        }
    } else if (r < 13) {
        fz_make_log(img, len, rs);
    } else if (r < 14 && len > 1) {           /* truncate */
        len -= (size_t)(fz_rand(rs) % (len < 8192 ? len : 8192));
    } else {
        len = LLVMFuzzerMutate(img, len, max);
    }
    fz_seal(img, len);
    return len;
}

#endif
