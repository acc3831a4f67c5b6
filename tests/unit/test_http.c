/* tests/unit/test_http.c: table-driven tests of src/http_parse.c: valid
 * requests (keep-alive, chunked, pipelining), every request split at every
 * byte boundary and fed byte by byte, hostile inputs (CL+TE smuggling,
 * bad chunks, NUL, bare LF, obs-fold, overlong lines) with the status each
 * must get, streaming of large bodies, pausing, and the path, query,
 * Range and WebSocket handshake helpers (RFC 6455 §1.3 vector). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include <palaver/mem.h>

#include "http_parse.h"

/* What the callbacks saw, as text: one line per request,
 * "METHOD TARGET MINOR FLAGS|BODY", flags k(eep-alive) c(hunked)
 * u(pgrade) e(xpect 100-continue). */
typedef struct {
    pv_buf_t log;
    pv_buf_t body;
    int stop_at_complete;
    int stop_at_headers;
} rec_t;

static int
rec_headers(void *ud, const pv_http_request_t *req)
{
    rec_t *r = ud;

    pv_buf_printf(&r->log, "%s %s %d %s%s%s%s|", req->method, req->target,
                  req->version_minor, req->keep_alive ? "k" : "",
                  req->is_chunked ? "c" : "", req->is_upgrade ? "u" : "",
                  req->expect_continue ? "e" : "");
    pv_buf_reset(&r->body);
    return r->stop_at_headers;
}

static int
rec_body(void *ud, const char *data, size_t len)
{
    rec_t *r = ud;

    CU_ASSERT(len > 0);
    pv_buf_append(&r->body, data, len);
    return 0;
}

static int
rec_complete(void *ud, const pv_http_request_t *req)
{
    rec_t *r = ud;

    (void)req;
    pv_buf_append(&r->log, r->body.data ? r->body.data : "", r->body.len);
    pv_buf_puts(&r->log, "\n");
    pv_buf_reset(&r->body);
    return r->stop_at_complete;
}

static const pv_http_cb_t rec_cb = {rec_headers, rec_body, rec_complete};

static void
rec_free(rec_t *r)
{
    pv_buf_free(&r->log);
    pv_buf_free(&r->body);
}

/* Feeds in[0..len) in pieces of step bytes (0 = all at once) after an
 * optional first piece of split bytes; returns the final status (0 when
 * every byte was accepted). */
static int
run(const char *in, size_t len, size_t split, size_t step,
    const pv_http_limits_t *lim, rec_t *r)
{
    pv_http_parser_t *p = pv_http_parser_new(&rec_cb, r, lim);
    size_t off = 0, n, used;
    int rc = PV_OK, status;

    while (off < len && rc == PV_OK) {
        n = len - off;
        if (off == 0 && split > 0)
            n = split;
        else if (step > 0 && step < n)
            n = step;
        rc = pv_http_parser_feed(p, in + off, n, &used);
        CU_ASSERT(rc != PV_OK || used == n);
        off += used;
    }
    status = rc == PV_ERROR ? pv_http_parser_status(p) : 0;
    if (rc == PV_ERROR)
        CU_ASSERT(pv_http_parser_error(p)[0] != '\0');
    pv_http_parser_free(p);
    return status;
}

typedef struct {
    const char *name;
    const char *in;
    size_t len;
    const char *log; /* expected callback log */
    size_t log_len;
    int status; /* expected status, 0 = accepted */
} http_case_t;

/* sizeof, not strlen: some inputs and bodies hold NUL bytes */
#define C(name, in, log, status)                               \
    {                                                          \
        name, in, sizeof(in) - 1, log, sizeof(log) - 1, status \
    }

#define H11 " HTTP/1.1\r\nHost: example.org\r\n"

static const http_case_t valid_cases[] = {
    C("simple GET", "GET /" H11 "\r\n", "GET / 1 k|\n", 0),
    C("HTTP/1.0 without Host", "GET /x HTTP/1.0\r\n\r\n", "GET /x 0 |\n", 0),
    C("HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
      "GET / 0 k|\n", 0),
    C("HTTP/1.1 close", "GET /" H11 "Connection: close\r\n\r\n", "GET / 1 |\n",
      0),
    C("HTTP/1.2 is handled as 1.1", "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
      "GET / 1 k|\n", 0),
    C("websocket upgrade",
      "GET /xmpp-websocket" H11 "Connection: keep-alive, Upgrade\r\n"
      "Upgrade: websocket\r\n\r\n",
      "GET /xmpp-websocket 1 ku|\n", 0),
    C("Upgrade without Connection: upgrade",
      "GET /" H11 "Upgrade: websocket\r\n\r\n", "GET / 1 k|\n", 0),
    C("query string", "GET /a/b?x=1&y=%20" H11 "\r\n",
      "GET /a/b?x=1&y=%20 1 k|\n", 0),
    C("OPTIONS *", "OPTIONS *" H11 "\r\n", "OPTIONS * 1 k|\n", 0),
    C("leading empty lines", "\r\n\r\nGET /" H11 "\r\n", "GET / 1 k|\n", 0),
    C("Content-Length body",
      "PUT /upload/f.txt" H11 "Content-Length: 5\r\n\r\nhello",
      "PUT /upload/f.txt 1 k|hello\n", 0),
    C("Content-Length: 0", "POST /" H11 "Content-Length: 0\r\n\r\n",
      "POST / 1 k|\n", 0),
    C("repeated equal Content-Length",
      "POST /" H11 "Content-Length: 3\r\ncontent-length: 3\r\n\r\nabc",
      "POST / 1 k|abc\n", 0),
    C("Content-Length list of equal values",
      "POST /" H11 "Content-Length: 3 , 3\r\n\r\nabc", "POST / 1 k|abc\n", 0),
    C("chunked (RFC 9112 §7.1 shape)",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n"
      "4\r\nWiki\r\n5;name=val\r\npedia\r\nE ; a=\"b c\"\r\n in\r\n\r\nchunks."
      "\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n",
      "POST / 1 kc|Wikipedia in\r\n\r\nchunks.\n", 0),
    C("chunked, upper-case hex and coding name",
      "POST /" H11 "Transfer-Encoding: Chunked\r\n\r\n"
      "A\r\n0123456789\r\n000\r\n\r\n",
      "POST / 1 kc|0123456789\n", 0),
    C("chunked, no data",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\n",
      "POST / 1 kc|\n", 0),
    C("Expect: 100-continue",
      "PUT /f" H11 "Expect: 100-Continue\r\nContent-Length: 2\r\n\r\nok",
      "PUT /f 1 ke|ok\n", 0),
    C("Expect ignored in HTTP/1.0",
      "PUT /f HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
      "ok",
      "PUT /f 0 |ok\n", 0),
    C("obs-text and empty values",
      "GET /" H11 "X-Name: caf\xc3\xa9 \t\r\nX-Empty:\r\nX-Sp:   \r\n\r\n",
      "GET / 1 k|\n", 0),
    C("pipelined requests",
      "GET /1" H11 "\r\nPOST /2" H11 "Content-Length: 3\r\n\r\nabc"
      "POST /3" H11 "Transfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
      "GET /4 HTTP/1.0\r\n\r\n",
      "GET /1 1 k|\nPOST /2 1 k|abc\nPOST /3 1 kc|xyz\nGET /4 0 |\n", 0),
    C("binary body with NUL and CRLF",
      "PUT /b" H11 "Content-Length: 6\r\n\r\n\0\r\n\r\n\xff",
      "PUT /b 1 k|\0\r\n\r\n\xff\n", 0),
};

static const http_case_t bad_cases[] = {
    /* request line */
    C("bare LF", "GET / HTTP/1.1\nHost: a\n\n", "", 400),
    C("bare LF in headers", "GET / HTTP/1.1\r\nHost: a\n\r\n", "", 400),
    C("leading bare LF", "\nGET /" H11 "\r\n", "", 400),
    C("bare CR before request", "\rGET /" H11 "\r\n", "", 400),
    C("two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "", 400),
    C("tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", "", 400),
    C("no version (HTTP/0.9)", "GET /\r\n\r\n", "", 400),
    C("lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", "", 400),
    C("version with two digits", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", "", 400),
    C("trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "", 400),
    C("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", "", 505),
    C("HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", "", 505),
    C("absolute-form", "GET http://example.org/ HTTP/1.1\r\nHost: a\r\n\r\n",
      "", 400),
    C("authority-form", "CONNECT example.org:443" H11 "\r\n", "", 400),
    C("asterisk with GET", "GET *" H11 "\r\n", "", 400),
    C("fragment in target", "GET /a#b" H11 "\r\n", "", 400),
    C("NUL in method", "G\0T /" H11 "\r\n", "", 400),
    C("NUL in target", "GET /a\0b" H11 "\r\n", "", 400),
    C("DEL in target", "GET /a\x7f" H11 "\r\n", "", 400),
    C("UTF-8 in target", "GET /caf\xc3\xa9" H11 "\r\n", "", 400),
    C("method with slash", "G/ET /" H11 "\r\n", "", 400),
    /* headers */
    C("missing Host", "GET / HTTP/1.1\r\n\r\n", "", 400),
    C("two Hosts", "GET /" H11 "Host: evil.example\r\n\r\n", "", 400),
    C("two Hosts in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
      "", 400),
    C("obs-fold", "GET /" H11 "X-A: a\r\n b\r\n\r\n", "", 400),
    C("obs-fold with tab", "GET /" H11 "X-A: a\r\n\tb\r\n\r\n", "", 400),
    C("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", "", 400),
    C("empty name", "GET /" H11 ": a\r\n\r\n", "", 400),
    C("no colon", "GET /" H11 "X-A\r\n\r\n", "", 400),
    C("NUL in value", "GET /" H11 "X-A: a\0b\r\n\r\n", "", 400),
    C("bare CR in value (header injection)",
      "GET /" H11 "X-A: a\rSet-Cookie: x\r\n\r\n", "", 400),
    C("CR CR LF (injection)", "GET /" H11 "X-A: a\r\r\nX-B: b\r\n\r\n", "",
      400),
    C("control byte in value", "GET /" H11 "X-A: a\x01\r\n\r\n", "", 400),
    C("DEL in value", "GET /" H11 "X-A: a\x7f\r\n\r\n", "", 400),
    C("vertical tab before value (TE smuggling)",
      "POST /" H11 "Transfer-Encoding:\x0b"
      "chunked\r\n\r\n0\r\n\r\n",
      "", 400),
    /* framing: smuggling and lengths */
    C("CL and TE",
      "POST /" H11 "Content-Length: 4\r\n"
      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "", 400),
    C("TE and CL",
      "POST /" H11 "Transfer-Encoding: chunked\r\n"
      "Content-Length: 0\r\n\r\n0\r\n\r\n",
      "", 400),
    C("conflicting Content-Length",
      "POST /" H11 "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "",
      400),
    C("conflicting Content-Length list",
      "POST /" H11 "Content-Length: 3, 4\r\n\r\nabcd", "", 400),
    C("Content-Length with sign", "POST /" H11 "Content-Length: +3\r\n\r\nabc",
      "", 400),
    C("negative Content-Length", "POST /" H11 "Content-Length: -1\r\n\r\n", "",
      400),
    C("Content-Length with letters",
      "POST /" H11 "Content-Length: 3a\r\n\r\nabc", "", 400),
    C("hex Content-Length", "POST /" H11 "Content-Length: 0x3\r\n\r\nabc", "",
      400),
    C("empty Content-Length", "POST /" H11 "Content-Length:\r\n\r\n", "", 400),
    C("Content-Length list with empty element",
      "POST /" H11 "Content-Length: 3,\r\n\r\nabc", "", 400),
    C("Content-Length overflow",
      "POST /" H11 "Content-Length: 99999999999999999999999\r\n\r\n", "", 400),
    C("Content-Length 2^64",
      "POST /" H11 "Content-Length: 18446744073709551616\r\n\r\n", "", 400),
    C("Content-Length over max_body",
      "POST /" H11 "Content-Length: 1048577\r\n\r\n", "POST / 1 k|", 413),
    C("unknown transfer coding", "POST /" H11 "Transfer-Encoding: gzip\r\n\r\n",
      "", 501),
    C("gzip, chunked", "POST /" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n",
      "", 501),
    C("chunked then identity",
      "POST /" H11 "Transfer-Encoding: chunked\r\n"
      "Transfer-Encoding: identity\r\n\r\n",
      "", 501),
    C("xchunked", "POST /" H11 "Transfer-Encoding: xchunked\r\n\r\n", "", 501),
    C("chunked twice",
      "POST /" H11 "Transfer-Encoding: chunked, chunked\r\n"
      "\r\n",
      "", 400),
    C("empty Transfer-Encoding", "POST /" H11 "Transfer-Encoding:\r\n\r\n", "",
      400),
    C("Transfer-Encoding list with empty element",
      "POST /" H11 "Transfer-Encoding: ,chunked\r\n\r\n", "", 400),
    C("Transfer-Encoding in HTTP/1.0",
      "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "",
      400),
    /* chunks */
    C("chunk size not hex",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n"
      "X\r\n",
      "POST / 1 kc|", 400),
    C("negative chunk size",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n"
      "-1\r\n",
      "POST / 1 kc|", 400),
    C("chunk size with 0x",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n"
      "0x5\r\nhello\r\n0\r\n\r\n",
      "POST / 1 kc|", 400),
    C("empty chunk size",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n"
      "\r\n",
      "POST / 1 kc|", 400),
    C("leading space in chunk size",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n",
      "POST / 1 kc|", 400),
    C("trailing space without extension",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n",
      "POST / 1 kc|", 400),
    C("chunk size overflow",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n"
      "10000000000000000\r\n",
      "POST / 1 kc|", 400),
    C("chunk size line bare LF",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n",
      "POST / 1 kc|", 400),
    C("chunk data too long",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n",
      "POST / 1 kc|", 400),
    C("chunk data LF only",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
      "POST / 1 kc|", 400),
    C("NUL in chunk extension",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n5;a\0\r\nhello\r\n",
      "POST / 1 kc|", 400),
    C("bare CR in chunk extension",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n",
      "POST / 1 kc|", 400),
    C("chunked body over max_body",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n"
      "200000\r\n",
      "POST / 1 kc|", 413),
    C("huge chunk size",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n"
      "FFFFFFFFFFFFFFFF\r\n",
      "POST / 1 kc|", 413),
    C("obs-fold in trailer",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n",
      "POST / 1 kc|", 400),
    C("bare LF in trailer",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\n\r\n",
      "POST / 1 kc|", 400),
    C("bare CR in trailer",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\rb\r\n\r\n",
      "POST / 1 kc|", 400),
    C("CR not followed by LF ending trailers",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n0\r\n\rX", "POST / 1 kc|",
      400),
    C("bare LF ending trailers",
      "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n0\r\n\n", "POST / 1 kc|",
      400),
    /* a smuggled second request inside a body is just body */
    C("request after a bad one is not parsed",
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2"
      "\r\n\r\nGET /admin" H11 "\r\n",
      "", 400),
};

static void
check_case(const http_case_t *c, const pv_http_limits_t *lim)
{
    size_t k;
    int status;
    rec_t r = {0};

    status = run(c->in, c->len, 0, 0, lim, &r);
    if (status != c->status || r.log.len != c->log_len ||
        (c->log_len && memcmp(r.log.data, c->log, c->log_len) != 0))
        fprintf(stderr, "\n  %s: status %d (want %d), log \"%s\"\n", c->name,
                status, c->status, r.log.data ? r.log.data : "");
    CU_ASSERT_EQUAL(status, c->status);
    CU_ASSERT_EQUAL(r.log.len, c->log_len);
    CU_ASSERT(c->log_len == 0 || memcmp(r.log.data, c->log, c->log_len) == 0);

    /* every split point, then byte by byte: the same events */
    for (k = 1; k <= c->len; k++) {
        rec_t s = {0};
        int st =
            run(c->in, c->len, k < c->len ? k : 0, k < c->len ? 0 : 1, lim, &s);

        if (st != status || s.log.len != r.log.len ||
            (s.log.len && memcmp(s.log.data, r.log.data, s.log.len) != 0)) {
            fprintf(stderr, "\n  %s: split at %zu: status %d, log \"%s\"\n",
                    c->name, k, st, s.log.data ? s.log.data : "");
            CU_FAIL("split changes the result");
            rec_free(&s);
            break;
        }
        rec_free(&s);
    }
    rec_free(&r);
}

static void
test_valid_requests(void)
{
    size_t i;

    for (i = 0; i < PV_COUNTOF(valid_cases); i++)
        check_case(&valid_cases[i], NULL);
}

static void
test_bad_requests(void)
{
    size_t i;

    for (i = 0; i < PV_COUNTOF(bad_cases); i++)
        check_case(&bad_cases[i], NULL);
}

static void
test_chunked_limit(void)
{
    /* the sum of the chunks counts, not each chunk */
    static const char in[] = "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n"
                             "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n";
    static const http_case_t over =
        C("chunks over 11", in, "POST / 1 kc|", 413);
    static const http_case_t at =
        C("chunks at 12", in, "POST / 1 kc|abcdefghijkl\n", 0);
    pv_http_limits_t lim = {0, 0, 0, 11};

    check_case(&over, &lim);
    lim.max_body = 12;
    check_case(&at, &lim);
}

static void
test_limits(void)
{
    pv_http_limits_t lim = {64, 128, 4, 0};
    char in[1024];
    rec_t r = {0};
    int i;

    /* request line: 64 bytes is fine, 65 is 414; garbage gets 400 */
    snprintf(in, sizeof(in), "GET /%0*d HTTP/1.1\r\nHost: a\r\n\r\n", 64 - 14,
             0);
    CU_ASSERT_EQUAL(strchr(in, '\r') - in, 64);
    CU_ASSERT_EQUAL(run(in, strlen(in), 0, 0, &lim, &r), 0);
    rec_free(&r);
    snprintf(in, sizeof(in), "GET /%0*d HTTP/1.1\r\nHost: a\r\n\r\n", 65 - 14,
             0);
    CU_ASSERT_EQUAL(run(in, strlen(in), 0, 0, &lim, &r), 414);
    CU_ASSERT_EQUAL(run(in, strlen(in), 0, 1, &lim, &r), 414);
    rec_free(&r);
    memset(in, 'A', 200);
    CU_ASSERT_EQUAL(run(in, 200, 0, 0, &lim, &r), 400);
    CU_ASSERT_EQUAL(run(in, 200, 0, 7, &lim, &r), 400);
    rec_free(&r);

    /* header section bytes: 128 including CRLFs */
    snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: a\r\nX: %0*d\r\n\r\n",
             128 - 9 - 5 - 2, 0);
    CU_ASSERT_EQUAL(run(in, strlen(in), 0, 0, &lim, &r), 0);
    rec_free(&r);
    snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: a\r\nX: %0*d\r\n\r\n",
             128 - 9 - 5 - 1, 0);
    CU_ASSERT_EQUAL(run(in, strlen(in), 0, 0, &lim, &r), 431);
    CU_ASSERT_EQUAL(run(in, strlen(in), 0, 3, &lim, &r), 431);
    rec_free(&r);
    /* a header line that never ends */
    snprintf(in, sizeof(in), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(in + strlen(in), 'x', 300);
    CU_ASSERT_EQUAL(run(in, strlen(in) + 300, 0, 0, &lim, &r), 431);
    rec_free(&r);

    /* header count: 4 fine, 5 is 431 */
    strcpy(in, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (i = 0; i < 3; i++)
        strcat(in, "X: y\r\n");
    strcat(in, "\r\n");
    CU_ASSERT_EQUAL(run(in, strlen(in), 0, 0, &lim, &r), 0);
    rec_free(&r);
    strcpy(in, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (i = 0; i < 4; i++)
        strcat(in, "X: y\r\n");
    strcat(in, "\r\n");
    CU_ASSERT_EQUAL(run(in, strlen(in), 0, 0, &lim, &r), 431);
    rec_free(&r);

    /* trailer section bounded by max_header_bytes */
    {
        pv_buf_t b = {0};

        pv_buf_puts(&b, "POST / HTTP/1.1\r\nHost: a\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n0\r\n");
        for (i = 0; i < 20; i++)
            pv_buf_puts(&b, "X-Trailer: abcdefgh\r\n");
        pv_buf_puts(&b, "\r\n");
        CU_ASSERT_EQUAL(run(b.data, b.len, 0, 0, &lim, &r), 431);
        rec_free(&r);
        pv_buf_free(&b);
    }

    /* chunk extensions are bounded too */
    {
        pv_buf_t b = {0};

        pv_buf_puts(&b, "POST / HTTP/1.1\r\nHost: a\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n1;");
        for (i = 0; i < 5000; i++)
            pv_buf_puts(&b, "a");
        CU_ASSERT_EQUAL(run(b.data, b.len, 0, 0, NULL, &r), 400);
        rec_free(&r);
        pv_buf_free(&b);
    }
}

/* An upload bigger than max_body streams through after the headers
 * callback raises the limit; pieces point into the fed buffers. */
typedef struct {
    pv_http_parser_t *p;
    uint64_t max;
    uint64_t got;
    int completes;
    const char *fed;
    size_t fed_len;
    int outside;
} upload_t;

static int
up_headers(void *ud, const pv_http_request_t *req)
{
    upload_t *u = ud;

    (void)req;
    if (u->max)
        pv_http_parser_set_max_body(u->p, u->max);
    return 0;
}

static int
up_body(void *ud, const char *data, size_t len)
{
    upload_t *u = ud;

    if (data < u->fed || data + len > u->fed + u->fed_len)
        u->outside = 1;
    u->got += len;
    return 0;
}

static int
up_complete(void *ud, const pv_http_request_t *req)
{
    upload_t *u = ud;

    (void)req;
    u->completes++;
    return 0;
}

static int
upload(uint64_t size, uint64_t max, int chunked, upload_t *u)
{
    pv_http_cb_t cb = {up_headers, up_body, up_complete};
    char *block = pv_xmalloc(65536 + 32);
    char head[256];
    uint64_t left = size;
    int rc;

    memset(u, 0, sizeof(*u));
    u->max = max;
    u->p = pv_http_parser_new(&cb, u, NULL);
    if (chunked)
        snprintf(head, sizeof(head),
                 "PUT /upload/x HTTP/1.1\r\nHost: a\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n");
    else
        snprintf(head, sizeof(head),
                 "PUT /upload/x HTTP/1.1\r\nHost: a\r\n"
                 "Content-Length: %llu\r\n\r\n",
                 (unsigned long long)size);
    rc = pv_http_parser_feed(u->p, head, strlen(head), NULL);
    while (rc == PV_OK && left > 0) {
        size_t n = left < 65536 ? (size_t)left : 65536, off = 0;

        if (chunked)
            off = (size_t)sprintf(block, "%zx\r\n", n);
        memset(block + off, 'u', n);
        if (chunked) {
            memcpy(block + off + n, "\r\n", 2);
            n += 2;
        }
        u->fed = block;
        u->fed_len = off + n;
        rc = pv_http_parser_feed(u->p, block, off + n, NULL);
        left -= chunked ? n - 2 : n;
    }
    if (rc == PV_OK && chunked)
        rc = pv_http_parser_feed(u->p, "0\r\n\r\n", 5, NULL);
    if (rc == PV_ERROR)
        rc = pv_http_parser_status(u->p);
    pv_http_parser_free(u->p);
    free(block);
    return rc;
}

static void
test_streaming_upload(void)
{
    upload_t u;
    uint64_t big = 20 * 1024 * 1024 + 17;

    /* default max_body (1 MiB): refused before any body byte */
    CU_ASSERT_EQUAL(upload(big, 0, 0, &u), 413);
    CU_ASSERT_EQUAL(u.got, 0);
    /* chunked: as soon as the chunks would pass the limit */
    CU_ASSERT_EQUAL(upload(big, 0, 1, &u), 413);
    CU_ASSERT_EQUAL(u.got, 1024 * 1024);
    /* raised from headers(): streams through, never copied */
    CU_ASSERT_EQUAL(upload(big, 32 * 1024 * 1024, 0, &u), PV_OK);
    CU_ASSERT_EQUAL(u.got, big);
    CU_ASSERT_EQUAL(u.completes, 1);
    CU_ASSERT_EQUAL(u.outside, 0);
    CU_ASSERT_EQUAL(upload(big, 32 * 1024 * 1024, 1, &u), PV_OK);
    CU_ASSERT_EQUAL(u.got, big);
    CU_ASSERT_EQUAL(u.completes, 1);
    CU_ASSERT_EQUAL(u.outside, 0);
    /* exactly at the limit is fine, one over is not */
    CU_ASSERT_EQUAL(upload(1000, 1000, 0, &u), PV_OK);
    CU_ASSERT_EQUAL(upload(1001, 1000, 0, &u), 413);
    CU_ASSERT_EQUAL(upload(1000, 1000, 1, &u), PV_OK);
    CU_ASSERT_EQUAL(upload(1001, 1000, 1, &u), 413);
}

static void
test_pause_and_upgrade(void)
{
    static const char in[] =
        "GET /xmpp-websocket HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51"
        "\x58";
    static const char two[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                              "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    rec_t r = {0};
    pv_http_parser_t *p;
    size_t used, head = strlen(in) - 11;

    r.stop_at_complete = 1;
    p = pv_http_parser_new(&rec_cb, &r, NULL);
    CU_ASSERT_EQUAL(pv_http_parser_feed(p, in, sizeof(in) - 1, &used),
                    PV_AGAIN);
    CU_ASSERT_EQUAL(used, head);
    CU_ASSERT_STRING_EQUAL(r.log.data, "GET /xmpp-websocket 1 ku|\n");
    pv_http_parser_free(p);
    rec_free(&r);

    /* one request at a time: the second waits for the caller */
    r.stop_at_complete = 1;
    p = pv_http_parser_new(&rec_cb, &r, NULL);
    CU_ASSERT_EQUAL(pv_http_parser_feed(p, two, sizeof(two) - 1, &used),
                    PV_AGAIN);
    CU_ASSERT_EQUAL(used, (sizeof(two) - 1) / 2);
    CU_ASSERT(pv_http_parser_is_idle(p));
    CU_ASSERT_STRING_EQUAL(r.log.data, "GET /1 1 k|\n");
    CU_ASSERT_EQUAL(
        pv_http_parser_feed(p, two + used, sizeof(two) - 1 - used, &used),
        PV_AGAIN);
    CU_ASSERT_STRING_EQUAL(r.log.data, "GET /1 1 k|\nGET /2 1 k|\n");
    pv_http_parser_free(p);
    rec_free(&r);

    /* pausing at headers: the body comes with the next feed, even an
     * empty one completes a body-less request */
    memset(&r, 0, sizeof(r));
    r.stop_at_headers = 1;
    p = pv_http_parser_new(&rec_cb, &r, NULL);
    CU_ASSERT_EQUAL(pv_http_parser_feed(p, two, sizeof(two) - 1, &used),
                    PV_AGAIN);
    CU_ASSERT_EQUAL(used, (sizeof(two) - 1) / 2);
    CU_ASSERT_STRING_EQUAL(r.log.data, "GET /1 1 k|");
    CU_ASSERT_EQUAL(pv_http_parser_feed(p, "", 0, &used), PV_OK);
    CU_ASSERT_EQUAL(used, 0);
    CU_ASSERT_STRING_EQUAL(r.log.data, "GET /1 1 k|\n");
    pv_http_parser_free(p);
    rec_free(&r);

    /* errors stick until reset */
    memset(&r, 0, sizeof(r));
    p = pv_http_parser_new(&rec_cb, &r, NULL);
    CU_ASSERT_EQUAL(pv_http_parser_feed(p, "BAD\r\n\r\n", 7, NULL), PV_ERROR);
    CU_ASSERT_EQUAL(pv_http_parser_status(p), 400);
    CU_ASSERT_EQUAL(pv_http_parser_feed(p, two, sizeof(two) - 1, &used),
                    PV_ERROR);
    CU_ASSERT_EQUAL(used, 0);
    pv_http_parser_reset(p);
    CU_ASSERT_EQUAL(pv_http_parser_status(p), 0);
    CU_ASSERT_EQUAL(pv_http_parser_feed(p, two, sizeof(two) - 1, &used), PV_OK);
    CU_ASSERT_STRING_EQUAL(r.log.data, "GET /1 1 k|\nGET /2 1 k|\n");
    pv_http_parser_free(p);
    rec_free(&r);
}

static int
hdr_check(void *ud, const pv_http_request_t *req)
{
    int *ok = ud;

    *ok = req->n_headers == 4 &&
          strcmp(pv_http_request_header(req, "HOST"), "example.org") == 0 &&
          strcmp(pv_http_request_header(req, "x-multi"), "a") == 0 &&
          strcmp(req->headers[1].name, "X-Multi") == 0 &&
          strcmp(req->headers[2].value, "b,  c") == 0 &&
          strcmp(pv_http_request_header(req, "x-empty"), "") == 0 &&
          pv_http_request_header(req, "x-none") == NULL &&
          pv_http_header_has_token(req, "x-multi", "C") &&
          pv_http_header_has_token(req, "X-MULTI", "a") &&
          !pv_http_header_has_token(req, "x-multi", "b,") &&
          !pv_http_header_has_token(req, "host", "example") &&
          req->path_len == 4 && strcmp(req->query, "q=1") == 0;
    return 0;
}

static int
path_check(void *ud, const pv_http_request_t *req)
{
    *(size_t *)ud = req->path_len;
    return 0;
}

static void
test_headers_lookup(void)
{
    static const char in[] = "GET /a/b?q=1 HTTP/1.1\r\nHost: example.org\r\n"
                             "X-Multi: a\r\nx-multi:\tb,  c  \r\n"
                             "X-Empty: \r\n\r\n";
    pv_http_cb_t cb = {hdr_check, NULL, NULL};
    int ok = 0;
    pv_http_parser_t *p = pv_http_parser_new(&cb, &ok, NULL);

    CU_ASSERT_EQUAL(pv_http_parser_feed(p, in, sizeof(in) - 1, NULL), PV_OK);
    CU_ASSERT(ok);
    pv_http_parser_free(p);
    {
        /* without a query the path ends at the target, not the line */
        static const char noq[] = "GET /a/b HTTP/1.1\r\nHost: x\r\n\r\n";
        pv_http_cb_t cb2 = {path_check, NULL, NULL};
        size_t len = 0;

        p = pv_http_parser_new(&cb2, &len, NULL);
        CU_ASSERT_EQUAL(pv_http_parser_feed(p, noq, sizeof(noq) - 1, NULL),
                        PV_OK);
        CU_ASSERT_EQUAL(len, 4);
        pv_http_parser_free(p);
    }
    CU_ASSERT_STRING_EQUAL(pv_http_status_reason(416), "Range Not Satisfiable");
    CU_ASSERT_STRING_EQUAL(pv_http_status_reason(431),
                           "Request Header Fields Too Large");
    CU_ASSERT_STRING_EQUAL(pv_http_status_reason(999), "Unknown");
}

static void
test_path_decode(void)
{
    static const struct {
        const char *in;
        const char *out; /* NULL = refused */
    } cases[] = {
        {"/", "/"},
        {"/upload/abc/photo.jpg", "/upload/abc/photo.jpg"},
        {"/a%20b/c%2Bd+e", "/a b/c+d+e"},
        {"/caf%C3%A9", "/caf\xc3\xa9"},
        {"/a//b/", "/a//b/"},
        {"/...", "/..."},
        {"/a..b/.c/..d", "/a..b/.c/..d"},
        {"/..", NULL},
        {"/a/../b", NULL},
        {"/a/..", NULL},
        {"/.", NULL},
        {"/a/./b", NULL},
        {"/%2e%2e/etc/passwd", NULL},
        {"/a/%2E./b", NULL},
        {"/a/.%2e", NULL},
        {"/%2e", NULL},
        {"/a%2fb", NULL},
        {"/a%2Fb", NULL},
        {"/a%5cb", NULL},
        {"/a\\b", NULL},
        {"/a%00b", NULL},
        {"/a%", NULL},
        {"/a%4", NULL},
        {"/a%zz", NULL},
        {"/a%4g", NULL},
        {"a/b", NULL},
        {"", NULL},
        {"*", NULL},
    };
    char out[64];
    size_t i, n;

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        int rc = pv_http_path_decode(cases[i].in, strlen(cases[i].in), out, &n);

        if ((rc == PV_OK) != (cases[i].out != NULL))
            fprintf(stderr, "\n  path_decode(\"%s\"): rc %d\n", cases[i].in,
                    rc);
        CU_ASSERT_EQUAL(rc == PV_OK, cases[i].out != NULL);
        if (rc == PV_OK && cases[i].out) {
            CU_ASSERT_STRING_EQUAL(out, cases[i].out);
            CU_ASSERT_EQUAL(n, strlen(cases[i].out));
        }
    }
    /* a literal NUL inside the slice */
    CU_ASSERT_EQUAL(pv_http_path_decode("/a\0b", 4, out, NULL), PV_ERROR);
    /* only path_len bytes are looked at */
    CU_ASSERT_EQUAL(pv_http_path_decode("/ab?../x", 3, out, &n), PV_OK);
    CU_ASSERT_STRING_EQUAL(out, "/ab");
}

static void
test_query(void)
{
    const char *q = "&a=1&&b=x%20y+z&flag&=v&c=";
    static const char *want[][2] = {
        {"a", "1"}, {"b", "x%20y+z"}, {"flag", ""}, {"", "v"}, {"c", ""}};
    pv_http_param_t prm;
    char out[32];
    size_t i = 0, n;

    while (pv_http_query_next(&q, &prm)) {
        CU_ASSERT_FATAL(i < PV_COUNTOF(want));
        CU_ASSERT_EQUAL(prm.key_len, strlen(want[i][0]));
        CU_ASSERT(memcmp(prm.key, want[i][0], prm.key_len) == 0);
        CU_ASSERT_EQUAL(prm.value_len, strlen(want[i][1]));
        CU_ASSERT(memcmp(prm.value, want[i][1], prm.value_len) == 0);
        i++;
    }
    CU_ASSERT_EQUAL(i, PV_COUNTOF(want));
    q = NULL;
    CU_ASSERT_EQUAL(pv_http_query_next(&q, &prm), 0);

    CU_ASSERT_EQUAL(pv_http_query_decode("x%20y+z%2B", 10, out, &n), PV_OK);
    CU_ASSERT_STRING_EQUAL(out, "x y z+");
    CU_ASSERT_EQUAL(n, 6);
    CU_ASSERT_EQUAL(pv_http_query_decode("a%00", 4, out, &n), PV_ERROR);
    CU_ASSERT_EQUAL(pv_http_query_decode("a%0", 3, out, &n), PV_ERROR);
    CU_ASSERT_EQUAL(pv_http_query_decode("a%g0", 4, out, &n), PV_ERROR);

    CU_ASSERT_EQUAL(
        pv_http_query_get("v=abc&token=t%2Fk", "token", out, sizeof(out)),
        PV_OK);
    CU_ASSERT_STRING_EQUAL(out, "t/k");
    CU_ASSERT_EQUAL(pv_http_query_get("a+b=1&a%20b=2", "a b", out, sizeof(out)),
                    PV_OK);
    CU_ASSERT_STRING_EQUAL(out, "1");
    CU_ASSERT_EQUAL(pv_http_query_get("tok=1", "token", out, sizeof(out)),
                    PV_NOTFOUND);
    CU_ASSERT_EQUAL(pv_http_query_get("token", "token", out, sizeof(out)),
                    PV_OK);
    CU_ASSERT_STRING_EQUAL(out, "");
    CU_ASSERT_EQUAL(pv_http_query_get(NULL, "token", out, sizeof(out)),
                    PV_NOTFOUND);
    CU_ASSERT_EQUAL(pv_http_query_get("t=12345", "t", out, 5), PV_ERROR);
    CU_ASSERT_EQUAL(pv_http_query_get("t=1234", "t", out, 5), PV_OK);
    CU_ASSERT_EQUAL(pv_http_query_get("t=%zz", "t", out, sizeof(out)),
                    PV_ERROR);
    CU_ASSERT_EQUAL(pv_http_query_get("t%00=1", "t", out, sizeof(out)),
                    PV_NOTFOUND);
}

static void
test_range(void)
{
    static const struct {
        const char *value;
        uint64_t length;
        pv_http_range_t want;
        uint64_t first, last;
    } cases[] = {
        /* RFC 9110 §14.1.2 examples on a 10000-byte representation */
        {"bytes=0-499", 10000, PV_HTTP_RANGE_PARTIAL, 0, 499},
        {"bytes=500-999", 10000, PV_HTTP_RANGE_PARTIAL, 500, 999},
        {"bytes=-500", 10000, PV_HTTP_RANGE_PARTIAL, 9500, 9999},
        {"bytes=9500-", 10000, PV_HTTP_RANGE_PARTIAL, 9500, 9999},
        {"bytes=0-0", 10000, PV_HTTP_RANGE_PARTIAL, 0, 0},
        {"bytes=-1", 10000, PV_HTTP_RANGE_PARTIAL, 9999, 9999},
        {"bytes=0-0,-1", 10000, PV_HTTP_RANGE_NONE, 0, 0},
        {"bytes=500-600,601-999", 10000, PV_HTTP_RANGE_NONE, 0, 0},
        /* clamping and edges */
        {"bytes=0-", 10000, PV_HTTP_RANGE_PARTIAL, 0, 9999},
        {"bytes=9000-20000", 10000, PV_HTTP_RANGE_PARTIAL, 9000, 9999},
        {"bytes=9999-9999", 10000, PV_HTTP_RANGE_PARTIAL, 9999, 9999},
        {"bytes=0-99999999999999999999999", 10, PV_HTTP_RANGE_PARTIAL, 0, 9},
        {"bytes=-20000", 10000, PV_HTTP_RANGE_PARTIAL, 0, 9999},
        {"bytes=-99999999999999999999999", 10, PV_HTTP_RANGE_PARTIAL, 0, 9},
        {"Bytes= 1-2 ", 10, PV_HTTP_RANGE_PARTIAL, 1, 2},
        /* unsatisfiable */
        {"bytes=10000-", 10000, PV_HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=10000-10001", 10000, PV_HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=99999999999999999999999-", 10, PV_HTTP_RANGE_UNSATISFIABLE, 0,
         0},
        {"bytes=-0", 10000, PV_HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=0-", 0, PV_HTTP_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=-5", 0, PV_HTTP_RANGE_UNSATISFIABLE, 0, 0},
        /* ignored: malformed or another unit */
        {NULL, 10, PV_HTTP_RANGE_NONE, 0, 0},
        {"", 10, PV_HTTP_RANGE_NONE, 0, 0},
        {"bytes=", 10, PV_HTTP_RANGE_NONE, 0, 0},
        {"bytes=-", 10, PV_HTTP_RANGE_NONE, 0, 0},
        {"bytes=5-2", 10, PV_HTTP_RANGE_NONE, 0, 0},
        {"bytes=a-b", 10, PV_HTTP_RANGE_NONE, 0, 0},
        {"bytes=1", 10, PV_HTTP_RANGE_NONE, 0, 0},
        {"bytes=1-2x", 10, PV_HTTP_RANGE_NONE, 0, 0},
        {"bytes = 1-2", 10, PV_HTTP_RANGE_NONE, 0, 0},
        {"bytes=+1-2", 10, PV_HTTP_RANGE_NONE, 0, 0},
        {"bytes=--1", 10, PV_HTTP_RANGE_NONE, 0, 0},
        {"items=0-1", 10, PV_HTTP_RANGE_NONE, 0, 0},
        {"bytes0-1", 10, PV_HTTP_RANGE_NONE, 0, 0},
    };
    size_t i;

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        uint64_t a = 0, b = 0;
        pv_http_range_t got =
            pv_http_range_parse(cases[i].value, cases[i].length, &a, &b);

        if (got != cases[i].want ||
            (got == PV_HTTP_RANGE_PARTIAL &&
             (a != cases[i].first || b != cases[i].last)))
            fprintf(stderr, "\n  range(\"%s\", %llu): %d %llu-%llu\n",
                    cases[i].value ? cases[i].value : "(null)",
                    (unsigned long long)cases[i].length, (int)got,
                    (unsigned long long)a, (unsigned long long)b);
        CU_ASSERT_EQUAL(got, cases[i].want);
        if (got == PV_HTTP_RANGE_PARTIAL) {
            CU_ASSERT_EQUAL(a, cases[i].first);
            CU_ASSERT_EQUAL(b, cases[i].last);
        }
    }
}

/* Parses one request head for the handshake checks. */
typedef struct {
    int status;
    const char *key;
    char key_copy[64];
} ws_res_t;

static int
ws_headers(void *ud, const pv_http_request_t *req)
{
    ws_res_t *w = ud;

    w->key = NULL;
    w->status = pv_http_ws_check(req, &w->key);
    if (w->key)
        snprintf(w->key_copy, sizeof(w->key_copy), "%s", w->key);
    return 0;
}

#define WSKEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

static void
test_ws_handshake(void)
{
    static const struct {
        const char *in;
        int status;
    } cases[] = {
        /* RFC 6455 §1.2 */
        {"GET /chat HTTP/1.1\r\nHost: server.example.com\r\n"
         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Origin: http://example.com\r\n"
         "Sec-WebSocket-Protocol: chat, superchat\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n",
         101},
        {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\n"
         "Connection: keep-alive, upgrade\r\n"
         "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n",
         101},
        {"POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\n" WSKEY "Sec-WebSocket-Version: 13\r\n\r\n",
         400},
        {"GET / HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\n" WSKEY "Sec-WebSocket-Version: 13\r\n\r\n",
         400},
        {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n"
         "Connection: Upgrade\r\n" WSKEY "Sec-WebSocket-Version: 13\r\n\r\n",
         400},
        {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
         "Connection: keep-alive\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n",
         400},
        {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\n" WSKEY "Sec-WebSocket-Version: 8\r\n\r\n",
         426},
        {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\n" WSKEY "\r\n",
         400},
        {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
         400},
        {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n",
         400},
        {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q==\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n",
         400},
        {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==dGhl\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n",
         400},
    };
    pv_http_cb_t cb = {ws_headers, NULL, NULL};
    size_t i;

    for (i = 0; i < PV_COUNTOF(cases); i++) {
        ws_res_t w = {0, NULL, ""};
        pv_http_parser_t *p = pv_http_parser_new(&cb, &w, NULL);

        CU_ASSERT_EQUAL(
            pv_http_parser_feed(p, cases[i].in, strlen(cases[i].in), NULL),
            PV_OK);
        if (w.status != cases[i].status)
            fprintf(stderr, "\n  ws_check case %zu: %d\n", i, w.status);
        CU_ASSERT_EQUAL(w.status, cases[i].status);
        CU_ASSERT_EQUAL(w.key != NULL, cases[i].status == 101);
        if (i == 0)
            CU_ASSERT_STRING_EQUAL(w.key_copy, "dGhlIHNhbXBsZSBub25jZQ==");
        pv_http_parser_free(p);
    }
}

static void
test_ws_accept(void)
{
    char out[PV_HTTP_WS_ACCEPT_LEN + 1];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";

    /* RFC 6455 §1.3 */
    CU_ASSERT_EQUAL(pv_http_ws_accept(key, strlen(key), out), PV_OK);
    CU_ASSERT_STRING_EQUAL(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CU_ASSERT_EQUAL(strlen(out), PV_HTTP_WS_ACCEPT_LEN);
    /* RFC 6455 §4.2.2 example key of 16 bytes 0x01..0x10 */
    key = "AQIDBAUGBwgJCgsMDQ4PEA==";
    CU_ASSERT_EQUAL(pv_http_ws_accept(key, strlen(key), out), PV_OK);
    CU_ASSERT_EQUAL(strlen(out), PV_HTTP_WS_ACCEPT_LEN);
    CU_ASSERT(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0);
}

void test_suite_http(void);

void
test_suite_http(void)
{
    CU_pSuite s = CU_add_suite("http", NULL, NULL);

    CU_add_test(s, "valid requests, every split", test_valid_requests);
    CU_add_test(s, "hostile requests, every split", test_bad_requests);
    CU_add_test(s, "chunked body limit", test_chunked_limit);
    CU_add_test(s, "request limits", test_limits);
    CU_add_test(s, "streaming 20 MiB upload", test_streaming_upload);
    CU_add_test(s, "pause, pipelining, upgrade", test_pause_and_upgrade);
    CU_add_test(s, "header lookup", test_headers_lookup);
    CU_add_test(s, "path decoding", test_path_decode);
    CU_add_test(s, "query strings", test_query);
    CU_add_test(s, "Range", test_range);
    CU_add_test(s, "WebSocket handshake check", test_ws_handshake);
    CU_add_test(s, "Sec-WebSocket-Accept", test_ws_accept);
}
