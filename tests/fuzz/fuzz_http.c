/* tests/fuzz/fuzz_http.c: libFuzzer harness for src/http_parse.c. The first
 * two bytes pick the limits and seed the chunking; the rest is a byte
 * stream fed once whole and once in random pieces with random pauses from
 * the callbacks. Both runs must give the same events and status, bodies
 * must match their framing, and every accepted request is run through the
 * helpers (path, query, Range, WebSocket checks) with their invariants.
 * Any violation aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/mem.h>

#include "http_parse.h"

typedef struct {
    pv_buf_t log;
    uint32_t rng; /* 0 = never pause */
    uint64_t body_seen;
    uint64_t max_body;
} run_t;

static uint32_t
next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static int
maybe_pause(run_t *r)
{
    return r->rng != 0 && next(&r->rng) % 4 == 0;
}

static void
check_helpers(const pv_http_request_t *req)
{
    char *out = pv_xmalloc(req->path_len + 1);
    char val[64];
    size_t n, i;
    const char *q = req->query;
    pv_http_param_t prm;
    uint64_t a, b;
    const char *key;
    char acc[PV_HTTP_WS_ACCEPT_LEN + 1];

    if (pv_http_path_decode(req->target, req->path_len, out, &n) == PV_OK) {
        if (n > req->path_len || out[0] != '/' || strlen(out) != n ||
            strstr(out, "/../") || strstr(out, "/./") || strchr(out, '\\'))
            abort();
        if ((n >= 3 && strcmp(out + n - 3, "/..") == 0) ||
            (n >= 2 && strcmp(out + n - 2, "/.") == 0))
            abort();
    }
    free(out);
    while (pv_http_query_next(&q, &prm)) {
        char *d = pv_xmalloc(prm.value_len + 1);

        if (prm.key[0] == '&' || prm.key[0] == '\0' ||
            memchr(prm.key, '&', prm.key_len) ||
            memchr(prm.value, '&', prm.value_len))
            abort();
        if (pv_http_query_decode(prm.value, prm.value_len, d, &n) == PV_OK &&
            (n > prm.value_len || strlen(d) != n))
            abort();
        free(d);
    }
    (void)pv_http_query_get(req->query, "v", val, sizeof(val));
    for (i = 0; i < 3; i++) {
        static const uint64_t lens[] = {0, 1, 10000};
        pv_http_range_t rt = pv_http_range_parse(
            pv_http_request_header(req, "range"), lens[i], &a, &b);

        if (rt == PV_HTTP_RANGE_PARTIAL && (a > b || b >= lens[i]))
            abort();
    }
    if (pv_http_ws_check(req, &key) == 101) {
        if (strlen(key) != 24 ||
            pv_http_ws_accept(key, strlen(key), acc) != PV_OK ||
            strlen(acc) != PV_HTTP_WS_ACCEPT_LEN)
            abort();
    }
}

static int
on_headers(void *ud, const pv_http_request_t *req)
{
    run_t *r = ud;
    size_t i;

    if (!req->method[0] || !req->target[0] || req->version_minor > 1 ||
        (req->is_chunked && req->content_length != 0))
        abort();
    for (i = 0; i < req->n_headers; i++) {
        const char *v = req->headers[i].value;

        if (!req->headers[i].name[0] || strpbrk(v, "\r\n") ||
            (v[0] == ' ' || v[0] == '\t'))
            abort();
    }
    pv_buf_printf(&r->log, "H %s %s %d %d%d%d%d %zu %llu|", req->method,
                  req->target, req->version_minor, req->keep_alive,
                  req->is_chunked, req->is_upgrade, req->expect_continue,
                  req->n_headers, (unsigned long long)req->content_length);
    for (i = 0; i < req->n_headers; i++)
        pv_buf_printf(&r->log, "%s=%s|", req->headers[i].name,
                      req->headers[i].value);
    r->body_seen = 0;
    check_helpers(req);
    return maybe_pause(r);
}

static int
on_body(void *ud, const char *data, size_t len)
{
    run_t *r = ud;

    if (len == 0)
        abort();
    r->body_seen += len;
    if (r->body_seen > r->max_body)
        abort();
    /* a digest, not the bytes: pieces differ between runs */
    for (size_t i = 0; i < len; i++)
        pv_buf_printf(&r->log, "%02x", (unsigned char)data[i]);
    return maybe_pause(r);
}

static int
on_complete(void *ud, const pv_http_request_t *req)
{
    run_t *r = ud;

    if (!req->is_chunked && r->body_seen != req->content_length)
        abort();
    pv_buf_printf(&r->log, " C%llu\n", (unsigned long long)r->body_seen);
    return maybe_pause(r);
}

/* Feeds data in pieces (rng 0: whole) and returns the final status. */
static int
run(const uint8_t *data, size_t size, const pv_http_limits_t *lim, uint32_t rng,
    run_t *r)
{
    pv_http_cb_t cb = {on_headers, on_body, on_complete};
    pv_http_parser_t *p = pv_http_parser_new(&cb, r, lim);
    size_t off = 0, used;
    int rc = PV_OK, status = 0;

    r->rng = rng;
    while (off < size) {
        size_t n = size - off;

        if (rng != 0)
            n = 1 + next(&rng) % (n < 64 ? n : 64);
        rc = pv_http_parser_feed(p, (const char *)data + off, n, &used);
        if (used > n || (rc == PV_OK && used != n))
            abort();
        off += used;
        if (rc == PV_ERROR)
            break;
    }
    /* a last empty feed delivers a complete() left by a pause */
    if (rc != PV_ERROR)
        rc = pv_http_parser_feed(p, "", 0, NULL);
    while (rc == PV_AGAIN)
        rc = pv_http_parser_feed(p, "", 0, NULL);
    if (rc == PV_ERROR) {
        status = pv_http_parser_status(p);
        if (status != 400 && status != 413 && status != 414 && status != 431 &&
            status != 501 && status != 505)
            abort();
    }
    pv_http_parser_free(p);
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pv_http_limits_t lim = {0};
    run_t a = {{0}, 0, 0, 0}, b = {{0}, 0, 0, 0};
    int sa, sb;
    uint32_t seed;

    if (size < 2)
        return 0;
    if (data[0] & 1) {
        /* small limits reach every limit branch */
        lim.max_request_line = 64;
        lim.max_header_bytes = 256;
        lim.max_headers = 8;
        lim.max_body = 100;
    }
    seed = (uint32_t)data[1] * 2654435761u + 1;
    a.max_body = b.max_body = lim.max_body ? lim.max_body : 1024 * 1024;
    sa = run(data + 2, size - 2, &lim, 0, &a);
    sb = run(data + 2, size - 2, &lim, seed, &b);
    if (sa != sb || a.log.len != b.log.len ||
        (a.log.len && memcmp(a.log.data, b.log.data, a.log.len) != 0))
        abort();
    pv_buf_free(&a.log);
    pv_buf_free(&b.log);
    return 0;
}
