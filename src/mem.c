/* src/mem.c: x-allocators, arenas and growable buffers. Arenas back every
 * stanza and session; the buffer backs serialisation. No global state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/log.h>
#include <palaver/mem.h>

typedef struct pv_arena_block_s {
    struct pv_arena_block_s *next;
    size_t size;
    size_t used;
    /* data follows, 8-byte aligned by max_align_t padding of the header */
    _Alignas(16) unsigned char data[];
} pv_arena_block_t;

struct pv_arena_s {
    pv_arena_block_t *head;   /* current block: allocations come from here */
    size_t first_size;
    size_t total;
};

static PV_NORETURN void
oom(size_t size)
{
    /* pv_log may itself allocate nothing: it formats on the stack */
    pv_log(PV_LOG_ERROR, NULL, "out of memory allocating %zu bytes", size);
    abort();
}

void *
pv_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

void *
pv_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *
pv_xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

char *
pv_xstrdup(const char *s)
{
    return pv_xstrndup(s, strlen(s));
}

char *
pv_xstrndup(const char *s, size_t len)
{
    char *p = pv_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *
pv_xasprintf(const char *fmt, ...)
{
    pv_buf_t b = {0};
    va_list ap;

    va_start(ap, fmt);
    pv_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    return pv_buf_steal(&b, NULL);
}

static pv_arena_block_t *
arena_block_new(size_t size)
{
    pv_arena_block_t *b = pv_xmalloc(sizeof(*b) + size);
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

pv_arena_t *
pv_arena_new(size_t first_block)
{
    pv_arena_t *a = pv_xmalloc(sizeof(*a));
    a->first_size = first_block ? first_block : 512;
    a->head = NULL;
    a->total = sizeof(*a);
    return a;
}

void
pv_arena_free(pv_arena_t *a)
{
    pv_arena_block_t *b, *next;

    if (a == NULL)
        return;
    for (b = a->head; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    free(a);
}

void
pv_arena_reset(pv_arena_t *a)
{
    pv_arena_block_t *b = a->head, *next;

    if (b == NULL)
        return;
    /* keep the oldest (first) block: it is the tail of the list */
    while (b->next != NULL) {
        next = b->next;
        free(b);
        b = next;
    }
    b->used = 0;
    a->head = b;
    a->total = sizeof(*a) + sizeof(*b) + b->size;
}

void *
pv_arena_alloc(pv_arena_t *a, size_t size)
{
    pv_arena_block_t *b = a->head;
    size_t need = (size + 15) & ~(size_t)15;
    void *p;

    if (b == NULL || b->size - b->used < need) {
        size_t bsize = b == NULL ? a->first_size : b->size * 2;
        if (bsize > 64 * 1024)
            bsize = 64 * 1024;
        if (bsize < need)
            bsize = need;
        b = arena_block_new(bsize);
        b->next = a->head;
        a->head = b;
        a->total += sizeof(*b) + bsize;
    }
    p = b->data + b->used;
    b->used += need;
    return p;
}

void *
pv_arena_calloc(pv_arena_t *a, size_t size)
{
    void *p = pv_arena_alloc(a, size);
    memset(p, 0, size);
    return p;
}

char *
pv_arena_strdup(pv_arena_t *a, const char *s)
{
    return pv_arena_strndup(a, s, strlen(s));
}

char *
pv_arena_strndup(pv_arena_t *a, const char *s, size_t len)
{
    char *p = pv_arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *
pv_arena_printf(pv_arena_t *a, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return pv_arena_strdup(a, "");
    if ((size_t)n < sizeof(small))
        return pv_arena_strndup(a, small, (size_t)n);
    char *p = pv_arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

size_t
pv_arena_size(const pv_arena_t *a)
{
    return a->total;
}

size_t
pv_arena_used(const pv_arena_t *a)
{
    const pv_arena_block_t *b;
    size_t n = 0;

    for (b = a->head; b != NULL; b = b->next)
        n += b->used;
    return n;
}

static void
buf_reserve(pv_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    size_t cap;

    if (need <= b->cap)
        return;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = pv_xrealloc(b->data, cap);
    b->cap = cap;
}

void
pv_buf_append(pv_buf_t *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void
pv_buf_puts(pv_buf_t *b, const char *s)
{
    pv_buf_append(b, s, strlen(s));
}

void
pv_buf_vprintf(pv_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;

    va_copy(ap2, ap);
    buf_reserve(b, 64);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return;
    if ((size_t)n >= b->cap - b->len) {
        buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    }
    b->len += (size_t)n;
}

void
pv_buf_printf(pv_buf_t *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    pv_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void
pv_buf_append_escaped(pv_buf_t *b, const char *s, size_t len, int in_attr)
{
    size_t i, start = 0;
    const char *rep;

    buf_reserve(b, len);
    for (i = 0; i < len; i++) {
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '\'': rep = in_attr ? "&apos;" : NULL; break;
        case '"': rep = in_attr ? "&quot;" : NULL; break;
        default: rep = NULL; break;
        }
        if (rep == NULL)
            continue;
        pv_buf_append(b, s + start, i - start);
        pv_buf_puts(b, rep);
        start = i + 1;
    }
    pv_buf_append(b, s + start, len - start);
}

void
pv_buf_reset(pv_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void
pv_buf_free(pv_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *
pv_buf_steal(pv_buf_t *b, size_t *len)
{
    char *p;

    if (b->data == NULL)
        buf_reserve(b, 0);
    p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
