/*
 * layout.h - every persistent structure of an mseg segment.
 *
 * Rules for everything in this file:
 *   - fixed-width integers only, little-endian, naturally aligned;
 *   - every reference is an offset from the segment base (0 = null);
 *   - each struct's size and the offsets that matter are checked below with
 *     _Static_assert, so a compiler or ABI change cannot move a byte silently;
 *   - the header records word size and byte order, and open refuses a
 *     segment written with others.
 *
 * The segment, by offset:
 *
 *   0x00000  +---------------------------+
 *            | header copy A (4 KiB)     |  struct mseg_header, checksummed
 *   0x01000  +---------------------------+
 *            | header copy B (4 KiB)     |  same; the newer valid copy wins
 *   0x02000  +---------------------------+
 *            | runtime page (4 KiB)      |  struct mseg_runtime: lock, state;
 *            |                           |  rebuilt by the first opener
 *   0x03000  +---------------------------+
 *            | control page (4 KiB)      |  struct mseg_control: allocator
 *            |                           |  bins and counters, directory root
 *   0x04000  +---------------------------+
 *            | intent log (64 KiB)       |  struct mseg_log_head + entries
 *   0x14000  +---------------------------+
 *            | heap                      |  blocks with boundary tags
 *            |   ...                     |
 *   size     +---------------------------+
 *
 * Only the header copies are checksummed as a whole. The control page and the
 * heap's boundary tags change on every operation, always through the intent
 * log (log.c), which carries its own checksum.
 */
#ifndef MSEG_LAYOUT_H
#define MSEG_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define MSEG_PAGE            4096u
#define MSEG_HEADER_A_OFF    0x00000u
#define MSEG_HEADER_B_OFF    0x01000u
#define MSEG_RUNTIME_OFF     0x02000u
#define MSEG_CONTROL_OFF     0x03000u
#define MSEG_LOG_OFF         0x04000u
#define MSEG_LOG_SIZE        0x10000u
#define MSEG_HEAP_OFF        0x14000u
#define MSEG_MIN_SIZE        (MSEG_HEAP_OFF + 0x10000u)   /* 144 KiB */
#define MSEG_DEFAULT_SIZE    (64u << 20)
#define MSEG_MAX_SIZE        (1ull << 46)                  /* 64 TiB */

/* ------------------------------------------------------------------ */
/* Header (two copies, pages 0 and 1)                                  */
/* ------------------------------------------------------------------ */

#define MSEG_MAGIC       "MSEG\r\n\032\n"   /* catches text-mode and truncating copies */
#define MSEG_MAGIC_INIT  "MSEGINIT"        /* creation in progress (never a valid segment) */
#define MSEG_FORMAT_VERSION 1u

/* Feature flags. An unknown compatible flag is ignored; an unknown
   incompatible flag makes open fail with EPROTO. None defined yet. */
#define MSEG_COMPAT_KNOWN    0x0ull
#define MSEG_INCOMPAT_KNOWN  0x0ull

#define MSEG_BYTE_ORDER_LE   1u

/*
 *   off  size  field
 *     0     8  magic               MSEG_MAGIC
 *     8     4  format_version      1
 *    12     4  header_size         256; the checksum is its last 8 bytes.
 *                                  Fields 0..15 and the checksum's position
 *                                  rule are frozen across all versions.
 *    16     8  compat_features
 *    24     8  incompat_features
 *    32     1  word_size           8
 *    33     1  byte_order          1 = little endian
 *    34     2  granule             16, the allocator's unit
 *    36     4  page_size           4096
 *    40     8  generation          +1 on every header update; newer valid wins
 *    48     8  size                segment bytes (file or shm object size)
 *    56     8  max_size            growth limit; 0 = never grows
 *    64     8  runtime_off         0x2000
 *    72     8  control_off         0x3000
 *    80     8  log_off             0x4000
 *    88     8  log_size            0x10000
 *    96     8  heap_off            0x14000
 *   104     8  created_ns          CLOCK_REALTIME at creation
 *   112    16  uuid                random, identifies the segment
 *   128   120  reserved            zero
 *   248     8  checksum            XXH3-64 of bytes 0..247
 */
struct mseg_header {
    uint8_t  magic[8];
    uint32_t format_version;
    uint32_t header_size;
    uint64_t compat_features;
    uint64_t incompat_features;
    uint8_t  word_size;
    uint8_t  byte_order;
    uint16_t granule;
    uint32_t page_size;
    uint64_t generation;
    uint64_t size;
    uint64_t max_size;
    uint64_t runtime_off;
    uint64_t control_off;
    uint64_t log_off;
    uint64_t log_size;
    uint64_t heap_off;
    uint64_t created_ns;
    uint8_t  uuid[16];
    uint8_t  reserved[120];
    uint64_t checksum;
};
_Static_assert(sizeof(struct mseg_header) == 256, "header is 256 bytes");
_Static_assert(offsetof(struct mseg_header, format_version) == 8, "frozen field");
_Static_assert(offsetof(struct mseg_header, header_size) == 12, "frozen field");
_Static_assert(offsetof(struct mseg_header, generation) == 40, "layout");
_Static_assert(offsetof(struct mseg_header, size) == 48, "layout");
_Static_assert(offsetof(struct mseg_header, uuid) == 112, "layout");
_Static_assert(offsetof(struct mseg_header, checksum) == 248, "checksum last");

/* ------------------------------------------------------------------ */
/* Runtime page (page 2): never trusted from disk                      */
/* ------------------------------------------------------------------ */

#define MSEG_STATE_OPEN   1u   /* some process has it open (or crashed with it open) */
#define MSEG_STATE_CLEAN  2u   /* the last process closed it */

/*
 *   off  size  field
 *     0    64  lock          pthread_mutex_t (robust, process-shared). Its
 *                            bytes are the C library's business, so the first
 *                            process to attach re-initializes it.
 *    64     8  state         MSEG_STATE_*
 *    72     8  op_seq        odd while an operation applies its changes,
 *                            even otherwise; lock-free readers retry on change
 *    80     8  attach_count  opens since creation (informational)
 *    88    16  boot_id       kernel boot id of the last unsynced writer
 *   104     8  unsynced      1 when changes since the last mseg_sync may not be on disk
 *   112     8  size          the segment's size as last grown or shrunk: other
 *                            processes extend their mapping when it passes theirs
 *                            (the checksummed header holds the truth)
 *   120     8  epoch         +1 at every first attach (up to the next multiple
 *                            of 2^32 at the first of a boot): mseg_mutex and mseg_cond
 *                            objects from an older epoch are stale (their
 *                            owners are gone) and are re-initialized on use;
 *                            a copy-on-write handle's private page holds the
 *                            writers' epoch with bit 63 set (never theirs)
 *   128    64  objects_lock  pthread_mutex_t (robust, process-shared), held
 *                            only while one such object is re-initialized;
 *                            re-initialized with `lock` at the first attach
 *   192     8  flush_failures  flushes of the segment that failed (msync,
 *                            fsync) in the boot named by failed_boot_id; 0
 *                            once a later flush rewrote every page (sync.c)
 *   200    16  failed_boot_id  kernel boot id of the boot of those failures
 *   216     8  name_synced   1 once the directory holding the segment's
 *                            name was fsynced after its creation: the creator
 *                            does it last, and one killed before leaves 0 for
 *                            the next first writer to do it (segment.c)
 *   224  3872  reserved      (zero; segments made before flush_failures
 *                            have zeros there, which mean "none")
 */
struct mseg_runtime {
    uint8_t  lock[64];
    uint64_t state;
    uint64_t op_seq;
    uint64_t attach_count;
    uint8_t  boot_id[16];
    uint64_t unsynced;
    uint64_t size;
    uint64_t epoch;
    uint8_t  objects_lock[64];
    uint64_t flush_failures;
    uint8_t  failed_boot_id[16];
    uint64_t name_synced;
    uint8_t  reserved[MSEG_PAGE - 224];
};
_Static_assert(sizeof(struct mseg_runtime) == MSEG_PAGE, "runtime is one page");
_Static_assert(offsetof(struct mseg_runtime, state) == 64, "layout");
_Static_assert(offsetof(struct mseg_runtime, objects_lock) == 128, "layout");
_Static_assert(offsetof(struct mseg_runtime, flush_failures) == 192, "layout");
_Static_assert(offsetof(struct mseg_runtime, failed_boot_id) == 200, "layout");
_Static_assert(offsetof(struct mseg_runtime, name_synced) == 216, "layout");

/* ------------------------------------------------------------------ */
/* Control page (page 3): allocator and directory roots                */
/* ------------------------------------------------------------------ */

/* Segregated free lists, two-level (TLSF): sizes in granules g; g < 16 has
   its own bin; above, 16 bins per power of two. 30-bit sizes give 432 bins. */
#define MSEG_BINS        432u
#define MSEG_BIN_WORDS   7u                 /* 64-bit bitmap words for the bins */

/*
 *   off  size  field
 *     0     8  heap_start     first heap byte (16-aligned); first block's
 *                             header is at heap_start + 12
 *     8     8  heap_end       one past the heap (16-aligned); the end marker
 *                             (a used, zero-size header) is at heap_end - 4
 *    16     8  free_bytes     sum of the payloads (size - 4) of free blocks
 *    24     8  dir_table      payload offset of the directory's slot array, 0 if none
 *    32     8  dir_capacity   slots (a power of two)
 *    40     8  dir_count      live named objects
 *    48     8  dir_used       live + deleted slots (drives rehashing)
 *    56     8  garbage        payload offset of an array of blocks still to free, 0 if
 *                             none: an operation that frees more blocks than one log
 *                             can record commits them here, and they are freed in
 *                             batches of their own operations right after (or by
 *                             recovery, if a crash came first)
 *    64     8  garbage_count  entries in that array
 *    72     8  garbage_done   entries already freed
 *    80     8  map_serial     maps created so far: seeds each new map's
 *                             `changes` word, so a cursor on a deleted map
 *                             never matches a map built at its address
 *    88    40  reserved
 *   128    56  bin_bitmap     bit b of word b/64 set <=> bin b is non-empty
 *   184     8  reserved
 *   192  3456  bin_head       payload offset of each bin's first free block
 */
struct mseg_control {
    uint64_t heap_start;
    uint64_t heap_end;
    uint64_t free_bytes;
    uint64_t dir_table;
    uint64_t dir_capacity;
    uint64_t dir_count;
    uint64_t dir_used;
    uint64_t garbage;
    uint64_t garbage_count;
    uint64_t garbage_done;
    uint64_t map_serial;
    uint64_t reserved[5];
    uint64_t bin_bitmap[MSEG_BIN_WORDS];
    uint64_t reserved2;
    uint64_t bin_head[MSEG_BINS];
    uint8_t  pad[MSEG_PAGE - 192 - 8 * MSEG_BINS];
};
_Static_assert(sizeof(struct mseg_control) == MSEG_PAGE, "control is one page");
_Static_assert(offsetof(struct mseg_control, bin_bitmap) == 128, "layout");
_Static_assert(offsetof(struct mseg_control, bin_head) == 192, "layout");

/* ------------------------------------------------------------------ */
/* Intent log                                                          */
/* ------------------------------------------------------------------ */

/*
 * The log of one operation (or one transaction): redo records of its
 * metadata stores, growing up from the head, and undo records of user bytes
 * declared with mseg_tx_add, growing down from the end of the log area.
 *
 *   head (64 bytes): two commit slots, 0 and 1, each (commit, count,
 *   checksum); log.c says why there are two
 *     0   8  commit     slot 0: 0 = empty; else the commit's sequence number
 *                       (one more than the other slot's). Stored last, with one
 *                       aligned 8-byte store.
 *     8   4  count      slot 0: bits 0-15 the number of redo records, bits
 *                       16-31 the index of the first (records of the two slots
 *                       never overlap)
 *    12   4  active     0 when no operation is in progress; else 1 + the slot
 *                       it will commit into. If it never commits, recovery
 *                       rebuilds the free lists (an operation writes its new
 *                       blocks in place before commit, over links and footers
 *                       of the free block it carved them from)
 *    16   8  checksum   slot 0: XXH3-64 of (commit, count, its redo records)
 *    24   8  undo_size  bytes of undo records at the end of the log area
 *    32   8  undo_seq   new for every transaction's first undo record, and part
 *                       of each record's checksum: records a power loss left
 *                       from an earlier transaction never verify
 *    40   8  commit_b   slot 1, as slot 0
 *    48   4  count_b
 *    52   4  spare      0
 *    56   8  checksum_b
 *   redo record (16 bytes each, from offset 64 up)
 *     0   8  where      offset of the word; bit 0 set: a 4-byte store
 *                       (the value's low 32 bits), clear: an 8-byte store
 *     8   8  value
 *   undo record (from the end of the log area down; its trailer is at its
 *   high end, so recovery walks them from the end, oldest first)
 *     0   n  old bytes, padded to a multiple of 8
 *     n   8  off        where the bytes belong
 *   n+8   8  len        how many bytes
 *  n+16   8  checksum   XXH3-64 of (off, len, bytes); a torn record is the
 *                       newest and was never acted on, so recovery stops there
 */
struct mseg_log_head {
    uint64_t commit;
    uint32_t count;
    uint32_t active;
    uint64_t checksum;
    uint64_t undo_size;
    uint64_t undo_seq;
    uint64_t commit_b;      /* commit slot 1 (slot 0: commit, count, checksum) */
    uint32_t count_b;
    uint32_t spare;
    uint64_t checksum_b;
};
_Static_assert(sizeof(struct mseg_log_head) == 64, "log head is 64 bytes");

struct mseg_undo_trailer {
    uint64_t off;
    uint64_t len;
    uint64_t checksum;
};
_Static_assert(sizeof(struct mseg_undo_trailer) == 24, "undo trailer is 24 bytes");

struct mseg_log_entry {
    uint64_t where;
    uint64_t value;
};
_Static_assert(sizeof(struct mseg_log_entry) == 16, "log entry is 16 bytes");

#define MSEG_LOG_WIDTH32     1ull
#define MSEG_LOG_CAPACITY    ((MSEG_LOG_SIZE - sizeof(struct mseg_log_head)) / sizeof(struct mseg_log_entry))

/* ------------------------------------------------------------------ */
/* Heap blocks                                                         */
/* ------------------------------------------------------------------ */

/*
 * The heap is cut into blocks whose sizes are multiples of the 16-byte
 * granule. A block is named by its payload offset P (16-aligned); its 4-byte
 * header sits just before the payload:
 *
 *        P-4       P                                     P+size-8  P+size-4
 *   used  | head   | payload (size - 4 bytes) ..................... |
 *   free  | head   | next (8) | prev (8) | ... unused ...  | foot (4)|
 *                                                                   ^ next block's head
 *
 *   head  bits 31..2  size in granules (so a block is at most 16 GiB - 16)
 *         bit 1       the previous block is used (so it has no footer)
 *         bit 0       this block is used
 *   foot  size in granules (free blocks only), so a block being freed can
 *         find and merge with a free left neighbour
 *   next, prev  payload offsets of the neighbours in the block's bin (0 = none)
 *
 * The smallest block is 32 bytes (28 usable). The heap ends with a used,
 * zero-size header at heap_end - 4 so no walk runs past it.
 */
#define MSEG_GRANULE         16u
#define MSEG_BLOCK_USED      1u
#define MSEG_BLOCK_PREV_USED 2u
#define MSEG_BLOCK_MIN       32u
#define MSEG_BLOCK_MAX_GRANULES ((1u << 30) - 1)
#define MSEG_BLOCK_MAX       ((uint64_t)MSEG_BLOCK_MAX_GRANULES * MSEG_GRANULE)

/* ------------------------------------------------------------------ */
/* Named-object directory                                              */
/* ------------------------------------------------------------------ */

/*
 * An open-addressing hash table (linear probing) of slots, in a heap block
 * whose offset is control.dir_table. It is rebuilt at twice the size when
 * live + deleted slots pass 3/4 of the capacity.
 *
 *   slot: 0 hash  XXH3-64 of the name
 *         8 rec   payload offset of the object's record; 0 empty, 1 deleted
 */
struct mseg_dir_slot {
    uint64_t hash;
    uint64_t rec;
};
_Static_assert(sizeof(struct mseg_dir_slot) == 16, "slot is 16 bytes");

#define MSEG_DIR_EMPTY    0ull
#define MSEG_DIR_DELETED  1ull
#define MSEG_DIR_MIN_CAPACITY 64u

/*
 * A named object is one heap block: a record, the name and type strings, and
 * the data at data_off (16-aligned). The four bytes before the data are
 * always zero, so the data's address is never mistaken for a block start.
 *
 *   off  size  field
 *     0     4  magic      MSEG_RECORD_MAGIC
 *     4     2  name_len   bytes, without the NUL (1..1024)
 *     6     1  type_len   bytes, without the NUL (1..255)
 *     7     1  kind       MSEG_KIND_*
 *     8     4  data_off   from the record to the data
 *    12     4  reserved
 *    16     8  elem_size
 *    24     8  count
 *    32     8  hash       XXH3-64 of the name (equals the slot's)
 *    40     .  name, NUL, type, NUL, zero padding up to data_off
 */
#define MSEG_RECORD_MAGIC 0x4a424f4eu  /* "NOBJ" */
#define MSEG_KIND_RAW     0u
#define MSEG_KIND_VEC     1u   /* data: struct mseg_vec_root */
#define MSEG_KIND_MAP     2u   /* data: struct mseg_map_root */

struct mseg_dir_record {
    uint32_t magic;
    uint16_t name_len;
    uint8_t  type_len;
    uint8_t  kind;
    uint32_t data_off;
    uint32_t reserved;
    uint64_t elem_size;
    uint64_t count;
    uint64_t hash;
};
_Static_assert(sizeof(struct mseg_dir_record) == 40, "record is 40 bytes");

/* ------------------------------------------------------------------ */
/* Vectors                                                             */
/* ------------------------------------------------------------------ */

/*
 * A vector's root: the data of a named object of kind MSEG_KIND_VEC, or
 * the payload of its own heap block for an anonymous vector. The elements
 * live in one heap block, buf, of at least cap * elem_size bytes; growth
 * builds a new block (fresh, unreachable until commit), copies, and logs
 * only buf, cap and len, so a crash never leaves a half-moved buffer.
 *
 *   off  size  field
 *     0     4  magic      MSEG_VEC_MAGIC
 *     4     4  flags      MSEG_VEC_ANON: the root is its own heap block
 *     8     8  elem_size  bytes per element (> 0)
 *    16     8  len        elements in use (<= cap)
 *    24     8  cap        elements buf holds (0: no buffer)
 *    32     8  buf        payload offset of the element block, 0 if none
 *    40     8  reserved   zero
 *    48     8  owner      anonymous vectors: the root of the map (MSEG_MAP_OWNED)
 *                         whose entry owns it; 0 = owned by no map. Same
 *                         offset as in a map root (MSEG_CONTAINER_OWNER_OFF).
 *                         Segments written before this word existed hold 0
 *                         here: "no owner recorded", so they stay readable
 *    56     8  reserved   zero
 */
#define MSEG_VEC_MAGIC    0x43455653u   /* "SVEC" */
#define MSEG_VEC_ANON     1u

struct mseg_vec_root {
    uint32_t magic;
    uint32_t flags;
    uint64_t elem_size;
    uint64_t len;
    uint64_t cap;
    uint64_t buf;
    uint64_t reserved0;
    uint64_t owner;
    uint64_t reserved;
};
_Static_assert(sizeof(struct mseg_vec_root) == 64, "vector root is 64 bytes");
_Static_assert(offsetof(struct mseg_vec_root, len) == 16, "layout");
_Static_assert(offsetof(struct mseg_vec_root, buf) == 32, "layout");
_Static_assert(offsetof(struct mseg_vec_root, owner) == 48, "layout");

/* ------------------------------------------------------------------ */
/* Maps                                                                */
/* ------------------------------------------------------------------ */

/*
 * A map's root: the data of a named object of kind MSEG_KIND_MAP, or the
 * payload of its own heap block for an anonymous map.
 *
 *   off  size  field
 *     0     4  magic      MSEG_MAP_MAGIC
 *     4     1  key_kind   enum mseg_key
 *     5     1  flags      MSEG_MAP_ANON, MSEG_MAP_OWNED
 *     6     2  reserved   zero
 *     8     8  val_size   bytes per value; 0 = variable-length values
 *    16     8  count      entries
 *    24     8  root       payload offset of the root node, 0 when empty
 *    32     8  height     levels of nodes: 0 when empty, 1 = the root is a leaf
 *    40     8  changes    bumped by every put and delete that changes the map;
 *                         starts at control.map_serial << 32; a cursor keeps
 *                         it and a step that finds another value fails (ESTALE)
 *    48     8  owner      anonymous maps: the root of the map (MSEG_MAP_OWNED)
 *                         whose entry owns it; 0 = owned by no map (and in
 *                         segments written before this word existed). Set by
 *                         a logged store of the put that makes the entry; the
 *                         replace or delete that ends the entry frees the
 *                         container in the same operation, so the two agree
 *    56     8  reserved   zero
 */
#define MSEG_MAP_MAGIC    0x50414d53u   /* "SMAP" */
#define MSEG_MAP_ANON     1u
#define MSEG_MAP_OWNED    2u            /* values are owned anonymous containers */
#define MSEG_MAP_MAX_HEIGHT 16u

struct mseg_map_root {
    uint32_t magic;
    uint8_t  key_kind;
    uint8_t  flags;
    uint16_t reserved0;
    uint64_t val_size;
    uint64_t count;
    uint64_t root;
    uint64_t height;
    uint64_t changes;
    uint64_t owner;
    uint64_t reserved;
};
_Static_assert(sizeof(struct mseg_map_root) == 64, "map root is 64 bytes");
_Static_assert(offsetof(struct mseg_map_root, changes) == 40, "layout");
_Static_assert(offsetof(struct mseg_map_root, count) == 16, "layout");
_Static_assert(offsetof(struct mseg_map_root, height) == 32, "layout");
_Static_assert(offsetof(struct mseg_map_root, owner) == 48, "layout");

/* Both kinds of container root keep their owner at this offset, so code that
   does not care which kind it holds reads and writes it alike. */
#define MSEG_CONTAINER_OWNER_OFF 48u
_Static_assert(offsetof(struct mseg_vec_root, owner) == MSEG_CONTAINER_OWNER_OFF, "shared owner word");

/*
 * A B+tree node, one heap block; leaves and internal nodes share the format.
 * Entries sit in slots in no particular order; perm lists the slots in key
 * order. There are two perm arrays: the live one (state bit 8) and a spare.
 * An insert writes its key and value into a slot no committed state uses and
 * the new order into the spare array, both in place (unreachable memory),
 * then logs one word, state, which publishes both. So an insert into a leaf
 * with room costs one log record (plus the map's count).
 *
 *   off  size  field
 *     0     4  magic      MSEG_MAP_NODE_MAGIC
 *     4     2  level      0 = leaf; else the height above the leaves
 *     6     2  reserved   zero
 *     8     8  state      bits 0..7 entries (0..64); bit 8 the live perm array
 *    16     8  prev       leaves: the previous leaf (0 = first); internal: 0
 *    24     8  next       leaves: the next leaf (0 = last); internal: 0
 *    32   128  perm[2][64] entry i in key order is in slot perm[live][i]
 *   160   512  keys[64]   u64/i64 key; bytes maps: offset of a key cell
 *   672   512  vals[64]   leaf: the value (val_size <= 8, little-endian,
 *                         zero-padded) or the offset of a value cell;
 *                         internal: the child node. An internal node's
 *                         entry 0 covers every key below entry 1's key;
 *                         its key word is a placeholder (a cell or 0).
 *
 * A cell (key or value out of line) is one heap block:
 *     0     8  len        bytes
 *     8     8  reserved   zero (keeps the bytes 16-aligned)
 *    16   len  bytes
 */
#define MSEG_MAP_NODE_MAGIC 0x45444f4eu /* "NODE" */
#define MSEG_MAP_FANOUT     64u
#define MSEG_MAP_INLINE_MAX 8u          /* fixed values up to this size live in the node */
#define MSEG_MAP_CELL_HEAD  16u

struct mseg_map_node {
    uint32_t magic;
    uint16_t level;
    uint16_t reserved0;
    uint64_t state;
    uint64_t prev;
    uint64_t next;
    uint8_t  perm[2][MSEG_MAP_FANOUT];
    uint64_t keys[MSEG_MAP_FANOUT];
    uint64_t vals[MSEG_MAP_FANOUT];
};
_Static_assert(sizeof(struct mseg_map_node) == 1184, "map node is 1184 bytes");
_Static_assert(offsetof(struct mseg_map_node, state) == 8, "layout");
_Static_assert(offsetof(struct mseg_map_node, perm) == 32, "layout");
_Static_assert(offsetof(struct mseg_map_node, keys) == 160, "layout");
_Static_assert(offsetof(struct mseg_map_node, vals) == 672, "layout");

#endif /* MSEG_LAYOUT_H */
