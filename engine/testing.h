/*
 * testing.h - hooks for mseg's own tests (not installed, not public API).
 *
 * Every persist point of the intent log, and a few crash points between
 * them, call crash_point(), which calls the hook installed here. A test
 * installs a hook that _exit()s or raise(SIGKILL)s at the N-th point to
 * simulate a process killed exactly there. The hook is process-global; tests
 * install it in a forked child.
 *
 * Points, in the order one engine operation reaches them:
 *   "log.fresh"      durable: large fresh bytes (and the slots' pages) flushed
 *   "log.written"    redo records written, commit word not yet stored
 *   "log.committed"  commit word stored (durable: the one flush, of the log
 *                    and the previous commit's pages)
 *   "log.applying"   half of the records applied in place
 *   "log.applied"    all records applied (nothing flushed)
 *   "log.retired"    operation over (non-durable: its slot emptied)
 *   "direct.store"   before each in-place store of mseg_alloc / mseg_free
 *   "vec.stored", "vec.pushed"   an in-place push: element, then length
 * Recovery reaches "recover.replayed" after replaying a committed slot and
 * "recover.rollback" before rolling an operation back; creation reaches
 * "create.formatted" when the headers are on disk, before the directory is
 * fsynced.
 */
#ifndef MSEG_TESTING_H
#define MSEG_TESTING_H

#include <stdint.h>

#include "mseg.h"

typedef void (*mseg_crash_hook_fn)(const char *point, unsigned long n, void *arg);

/* Installs fn (NULL removes it); n counts crash points reached since. */
void mseg_test_set_crash_hook(mseg_crash_hook_fn fn, void *arg);

/* Crash points reached in this process since the hook was last set. */
unsigned long mseg_test_crash_points(void);

/* Called by every msync of a segment (durable commits, mseg_sync, the
   unsynced mark), before it runs: the pages [off, off+len) of the mapping at
   base are about to be on disk. The power-loss simulator keeps its image of
   the disk with this. */
typedef void (*mseg_flush_hook_fn)(const uint8_t *base, uint64_t size, uint64_t off,
                                   uint64_t len, void *arg);
void mseg_test_set_flush_hook(mseg_flush_hook_fn fn, void *arg);

/* Called for each page that a flush after another handle's failed flush
   marks dirty again (sync.c), so that the power-loss simulator writes it
   at that flush even if its bytes did not change. */
typedef void (*mseg_redirty_hook_fn)(uint64_t off, uint64_t len, void *arg);
void mseg_test_set_redirty_hook(mseg_redirty_hook_fn fn, void *arg);

/* Makes the n-th flush from now fail as if the disk reported EIO (0: never). */
void mseg_test_fail_flush(unsigned long n);

/* Pretends the kernel's boot id is id (16 bytes), as after a reboot; NULL
   goes back to the real one. */
void mseg_test_set_boot_id(const uint8_t *id);

/* msync calls made through this handle so far. */
unsigned long mseg_test_flushes(mseg *s);

/* Over the named objects, the mean number of directory slots a find of
   one reads (1: its name's home slot) and, in *longest, the most. The
   directory is an open-addressed table: these stay small however many
   objects there are, which is what makes a find take constant time. */
double mseg_test_dir_probes(mseg *s, unsigned long *longest);

/* Notes of program mutexes taken through this handle (mutex.c) kept now. */
unsigned mseg_test_held_notes(mseg *s);

#endif
