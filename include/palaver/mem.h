/* include/palaver/mem.h: allocation helpers. Arenas own everything of one
 * stanza or one session and are freed in one go; x-allocators abort with a
 * log line on OOM (small allocations only); pv_buf_t is a growable byte
 * buffer for serialisation. */
#ifndef PALAVER_MEM_H
#define PALAVER_MEM_H

#include <stdarg.h>
#include <palaver/defs.h>

/* Abort the process with "out of memory" on failure. Never return NULL. */
void *pv_xmalloc(size_t size);
void *pv_xcalloc(size_t n, size_t size);
void *pv_xrealloc(void *ptr, size_t size);
char *pv_xstrdup(const char *s);
char *pv_xstrndup(const char *s, size_t len);
/* Returns a new malloc'd string; aborts on OOM. */
char *pv_xasprintf(const char *fmt, ...) PV_PRINTF(1, 2);

/* A bump allocator. Blocks grow geometrically from first_block bytes
 * (0 = 512). Allocations are 8-byte aligned and live until
 * pv_arena_free(). Not thread-safe. */
typedef struct pv_arena_s pv_arena_t;

pv_arena_t *pv_arena_new(size_t first_block);
void pv_arena_free(pv_arena_t *a);
/* Frees every block but the first and rewinds; for per-turn scratch use. */
void pv_arena_reset(pv_arena_t *a);
void *pv_arena_alloc(pv_arena_t *a, size_t size);
void *pv_arena_calloc(pv_arena_t *a, size_t size);
char *pv_arena_strdup(pv_arena_t *a, const char *s);
/* Copies len bytes and appends a NUL. */
char *pv_arena_strndup(pv_arena_t *a, const char *s, size_t len);
char *pv_arena_printf(pv_arena_t *a, const char *fmt, ...) PV_PRINTF(2, 3);
/* Bytes handed out plus block overhead: what the arena costs. */
size_t pv_arena_size(const pv_arena_t *a);
/* Bytes handed out so far (with alignment), without block overhead. */
size_t pv_arena_used(const pv_arena_t *a);

/* Growable buffer; data is always NUL-terminated for convenience.
 * Zero-initialise ({0}) before first use; pv_buf_free() releases. */
typedef struct pv_buf_s {
    char *data;
    size_t len;
    size_t cap;
} pv_buf_t;

void pv_buf_append(pv_buf_t *b, const void *data, size_t len);
void pv_buf_puts(pv_buf_t *b, const char *s);
void pv_buf_printf(pv_buf_t *b, const char *fmt, ...) PV_PRINTF(2, 3);
void pv_buf_vprintf(pv_buf_t *b, const char *fmt, va_list ap)
    PV_PRINTF(2, 0);
/* Appends s with XML escaping of & < > and, when in_attr, ' and ". */
void pv_buf_append_escaped(pv_buf_t *b, const char *s, size_t len, int in_attr);
void pv_buf_reset(pv_buf_t *b);
void pv_buf_free(pv_buf_t *b);
/* Hands the data over to the caller (malloc'd, NUL-terminated) and
 * resets b. */
char *pv_buf_steal(pv_buf_t *b, size_t *len);

#endif
