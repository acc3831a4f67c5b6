/* src/http_parse.c: incremental HTTP/1.1 request parsing (RFC 9112) and
 * the pure request helpers declared in http_parse.h. The request head is
 * gathered into one bounded buffer and parsed in place when its empty line
 * arrives; bodies stream through to the caller and are never buffered.
 * Strict on purpose: whatever a lenient front proxy might read differently
 * (bare LF, obs-fold, CL with TE, odd chunk lines) is refused. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include <palaver/mem.h>

#include "http_parse.h"

#define DEF_MAX_REQUEST_LINE 8192
#define DEF_MAX_HEADER_BYTES 16384
#define DEF_MAX_HEADERS 100
#define DEF_MAX_BODY (1024 * 1024)
/* A chunk-size line with its extensions; they are ignored, so there is no
 * reason to read much of them (RFC 9112 §7.1.1). */
#define MAX_CHUNK_LINE 4096

typedef enum {
    ST_START,      /* before a request; empty lines are skipped */
    ST_START_LF,   /* CR of an empty line seen */
    ST_HEAD,       /* request line and header section */
    ST_BODY_CL,    /* Content-Length body */
    ST_CHUNK_SIZE, /* hex digits */
    ST_CHUNK_BWS,  /* whitespace after the size: ';' must follow */
    ST_CHUNK_EXT,  /* extensions, ignored up to CR */
    ST_CHUNK_SIZE_LF,
    ST_CHUNK_DATA,
    ST_CHUNK_DATA_CR,
    ST_CHUNK_DATA_LF,
    ST_TRAILER,        /* at the start of a trailer line */
    ST_TRAILER_LINE,   /* inside one */
    ST_TRAILER_END_LF, /* CR of the final empty line seen */
    ST_DONE,           /* complete() is due */
    ST_ERROR
} http_state_t;

struct pv_http_parser_s {
    pv_http_cb_t cb;
    void *ud;
    pv_http_limits_t lim;
    http_state_t state;
    int status;
    const char *error;

    /* the head: request line + headers, parsed in place */
    char *head;
    size_t head_len, head_cap, head_max;
    size_t rl_end;     /* end of the request line (after its LF) */
    size_t line_start; /* start of the line being read */
    unsigned n_lines;  /* header lines so far */
    pv_http_header_t *hdrs;
    size_t hdrs_cap;
    pv_http_request_t req;

    /* the body */
    uint64_t max_body;
    uint64_t remaining;  /* of the CL body or of the current chunk */
    uint64_t body_total; /* chunked: data bytes so far */
    size_t line_len;     /* chunk-size line or trailer section bytes */
    int n_digits;
    int prev_cr;       /* trailer line: last byte was CR */
    int need_cl_check; /* Content-Length vs max_body still due */
};

static int
fail(pv_http_parser_t *p, int status, const char *why)
{
    p->state = ST_ERROR;
    p->status = status;
    p->error = why;
    return PV_ERROR;
}

/* RFC 9110 §5.6.2 tchar */
static int
is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int
lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int
eq_nocase_n(const char *a, size_t a_len, const char *b)
{
    size_t i;

    for (i = 0; i < a_len; i++)
        if (b[i] == '\0' ||
            lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return b[a_len] == '\0';
}

static int
eq_nocase(const char *a, const char *b)
{
    return eq_nocase_n(a, strlen(a), b);
}

pv_http_parser_t *
pv_http_parser_new(const pv_http_cb_t *cb, void *ud,
                   const pv_http_limits_t *lim)
{
    pv_http_parser_t *p = pv_xcalloc(1, sizeof(*p));

    if (cb != NULL)
        p->cb = *cb;
    p->ud = ud;
    if (lim != NULL)
        p->lim = *lim;
    if (p->lim.max_request_line == 0)
        p->lim.max_request_line = DEF_MAX_REQUEST_LINE;
    if (p->lim.max_header_bytes == 0)
        p->lim.max_header_bytes = DEF_MAX_HEADER_BYTES;
    if (p->lim.max_headers == 0)
        p->lim.max_headers = DEF_MAX_HEADERS;
    if (p->lim.max_body == 0)
        p->lim.max_body = DEF_MAX_BODY;
    /* + 2: the limit counts the request line without its CRLF */
    p->head_max = p->lim.max_request_line + 2 + p->lim.max_header_bytes;
    p->state = ST_START;
    return p;
}

void
pv_http_parser_free(pv_http_parser_t *p)
{
    if (p == NULL)
        return;
    free(p->head);
    free(p->hdrs);
    free(p);
}

static void
begin_request(pv_http_parser_t *p)
{
    p->head_len = 0;
    p->rl_end = 0;
    p->line_start = 0;
    p->n_lines = 0;
    memset(&p->req, 0, sizeof(p->req));
    p->max_body = p->lim.max_body;
    p->remaining = 0;
    p->body_total = 0;
    p->line_len = 0;
    p->n_digits = 0;
    p->prev_cr = 0;
    p->need_cl_check = 0;
}

void
pv_http_parser_reset(pv_http_parser_t *p)
{
    begin_request(p);
    p->state = ST_START;
    p->status = 0;
    p->error = NULL;
}

int
pv_http_parser_status(const pv_http_parser_t *p)
{
    return p->state == ST_ERROR ? p->status : 0;
}

const char *
pv_http_parser_error(const pv_http_parser_t *p)
{
    return p->state == ST_ERROR && p->error ? p->error : "";
}

void
pv_http_parser_set_max_body(pv_http_parser_t *p, uint64_t max_body)
{
    p->max_body = max_body;
}

int
pv_http_parser_is_idle(const pv_http_parser_t *p)
{
    return p->state == ST_START || p->state == ST_START_LF;
}

const char *
pv_http_request_header(const pv_http_request_t *req, const char *name)
{
    size_t i;

    for (i = 0; i < req->n_headers; i++)
        if (eq_nocase(req->headers[i].name, name))
            return req->headers[i].value;
    return NULL;
}

/* Calls fn on each element of a comma-separated list (RFC 9110 §5.6.1)
 * with OWS trimmed; empty elements are passed too (length 0). Stops and
 * returns fn's value when it is non-zero. */
static int
each_element(const char *v, int (*fn)(const char *, size_t, void *), void *arg)
{
    for (;;) {
        const char *e = strchr(v, ',');
        const char *end = e ? e : v + strlen(v);
        int rc;

        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        rc = fn(v, (size_t)(end - v), arg);
        if (rc != 0 || e == NULL)
            return rc;
        v = e + 1;
    }
}

static int
token_match(const char *s, size_t len, void *arg)
{
    return len > 0 && eq_nocase_n(s, len, arg);
}

int
pv_http_header_has_token(const pv_http_request_t *req, const char *name,
                         const char *token)
{
    size_t i;

    for (i = 0; i < req->n_headers; i++)
        if (eq_nocase(req->headers[i].name, name) &&
            each_element(req->headers[i].value, token_match, (void *)token))
            return 1;
    return 0;
}

/* --- the head ------------------------------------------------------- */

static int
parse_request_line(pv_http_parser_t *p)
{
    char *s = p->head;
    size_t end = p->rl_end - 2, i = 0, t, te;
    const char *v;

    while (i < end && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i == end || s[i] != ' ')
        return fail(p, 400, "malformed request method");
    s[i++] = '\0';
    t = i;
    /* RFC 9112 §3.2: no whitespace or controls; '#' never belongs to a
     * request-target */
    while (i < end && s[i] > 0x20 && s[i] < 0x7f && s[i] != '#')
        i++;
    if (i == t || i == end || s[i] != ' ')
        return fail(p, 400, "malformed request-target");
    te = i;
    s[i++] = '\0';
    v = s + i;
    if (end - i != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' ||
        v[5] > '9' || v[6] != '.' || v[7] < '0' || v[7] > '9')
        return fail(p, 400, "malformed HTTP version");
    /* RFC 9110 §2.5: a higher minor version is handled as the highest
     * one we implement */
    if (v[5] != '1')
        return fail(p, 505, "unsupported HTTP version");
    p->req.version_minor = v[7] == '0' ? 0 : 1;
    s[end] = '\0';

    p->req.method = s;
    p->req.target = s + t;
    if (s[t] == '/') {
        char *q = strchr(s + t, '?');

        p->req.path_len = q ? (size_t)(q - (s + t)) : te - t;
        p->req.query = q ? q + 1 : NULL;
    } else if (strcmp(s + t, "*") == 0 && strcmp(s, "OPTIONS") == 0) {
        /* RFC 9112 §3.2.4 asterisk-form */
        p->req.path_len = 1;
    } else {
        /* absolute-form and authority-form are for proxies, which we
         * are not */
        return fail(p, 400, "request-target is not in origin-form");
    }
    return PV_OK;
}

/* Splits one header line [s, e) (e after its CRLF) in place. */
static int
parse_header_line(pv_http_parser_t *p, size_t s, size_t e)
{
    char *h = p->head;
    size_t i = s, v, ve;
    pv_http_header_t *hd;

    /* RFC 9112 §5.2: obs-fold is refused, not unfolded */
    if (h[s] == ' ' || h[s] == '\t')
        return fail(p, 400, "obsolete line folding");
    while (is_tchar((unsigned char)h[i]))
        i++;
    /* RFC 9112 §5.1: no whitespace between name and colon */
    if (i == s || h[i] != ':')
        return fail(p, 400, "malformed header field name");
    v = i + 1;
    ve = e - 2;
    while (v < ve && (h[v] == ' ' || h[v] == '\t'))
        v++;
    while (ve > v && (h[ve - 1] == ' ' || h[ve - 1] == '\t'))
        ve--;
    for (size_t k = v; k < ve; k++) {
        unsigned char c = (unsigned char)h[k];

        /* RFC 9110 §5.5: field-vchar, SP, HTAB, obs-text; NUL, CR, LF and
         * the other controls are refused */
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(p, 400, "invalid byte in header field value");
    }
    h[i] = '\0';
    h[ve] = '\0';
    hd = &p->hdrs[p->req.n_headers++];
    hd->name = h + s;
    hd->value = h + v;
    return PV_OK;
}

static int
parse_length(const char *s, size_t len, void *arg)
{
    uint64_t *out = arg, n = 0;
    size_t i;

    if (len == 0)
        return 1;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 1;
        if (n > (UINT64_MAX - 9) / 10)
            return 1;
        n = n * 10 + (uint64_t)(s[i] - '0');
    }
    /* RFC 9110 §8.6: a list of identical values may be accepted */
    if (*out != UINT64_MAX && *out != n)
        return 1;
    *out = n;
    return 0;
}

typedef struct {
    unsigned n_chunked, n_other, n_empty;
} te_scan_t;

static int
scan_coding(const char *s, size_t len, void *arg)
{
    te_scan_t *t = arg;

    if (len == 0)
        t->n_empty++;
    else if (eq_nocase_n(s, len, "chunked"))
        t->n_chunked++;
    else
        t->n_other++;
    return 0;
}

static int
conn_option(const char *s, size_t len, void *arg)
{
    unsigned *f = arg;

    if (eq_nocase_n(s, len, "close"))
        *f |= 1;
    else if (eq_nocase_n(s, len, "keep-alive"))
        *f |= 2;
    else if (eq_nocase_n(s, len, "upgrade"))
        *f |= 4;
    return 0;
}

static int
parse_head(pv_http_parser_t *p)
{
    pv_http_request_t *r = &p->req;
    size_t s, e, i;
    unsigned n_host = 0, conn = 0;
    uint64_t cl = UINT64_MAX;
    int has_cl = 0, has_te = 0, has_upgrade = 0;
    te_scan_t te = {0, 0, 0};

    if (parse_request_line(p) != PV_OK)
        return PV_ERROR;
    if (p->hdrs_cap < p->n_lines) {
        p->hdrs = pv_xrealloc(p->hdrs, p->n_lines * sizeof(*p->hdrs));
        p->hdrs_cap = p->n_lines;
    }
    r->headers = p->hdrs;
    for (s = p->rl_end; s < p->head_len - 2; s = e) {
        e = (size_t)((char *)memchr(p->head + s, '\n', p->head_len - s) -
                     p->head) +
            1;
        if (parse_header_line(p, s, e) != PV_OK)
            return PV_ERROR;
    }

    for (i = 0; i < r->n_headers; i++) {
        const char *n = r->headers[i].name, *v = r->headers[i].value;

        if (eq_nocase(n, "host")) {
            n_host++;
        } else if (eq_nocase(n, "content-length")) {
            has_cl = 1;
            if (each_element(v, parse_length, &cl) != 0)
                return fail(p, 400, "invalid Content-Length");
        } else if (eq_nocase(n, "transfer-encoding")) {
            has_te = 1;
            each_element(v, scan_coding, &te);
        } else if (eq_nocase(n, "connection")) {
            each_element(v, conn_option, &conn);
        } else if (eq_nocase(n, "upgrade")) {
            has_upgrade = 1;
        } else if (eq_nocase(n, "expect")) {
            if (eq_nocase(v, "100-continue") && r->version_minor >= 1)
                r->expect_continue = 1;
        }
    }
    /* RFC 9112 §3.2: exactly one Host in HTTP/1.1, never two */
    if (n_host > 1 || (n_host == 0 && r->version_minor >= 1))
        return fail(p, 400, "missing or repeated Host");
    if (has_te) {
        /* RFC 9112 §6.1: both framings at once is a smuggling attempt;
         * TE in HTTP/1.0 means faulty framing */
        if (has_cl)
            return fail(p, 400, "both Content-Length and Transfer-Encoding");
        if (r->version_minor == 0)
            return fail(p, 400, "Transfer-Encoding in HTTP/1.0");
        if (te.n_empty > 0 || te.n_chunked + te.n_other == 0)
            return fail(p, 400, "malformed Transfer-Encoding");
        if (te.n_other > 0)
            return fail(p, 501, "unsupported transfer coding");
        if (te.n_chunked > 1)
            return fail(p, 400, "chunked applied twice");
        r->is_chunked = 1;
    } else if (has_cl) {
        r->content_length = cl;
    }
    if (r->version_minor >= 1)
        r->keep_alive = !(conn & 1);
    else
        r->keep_alive = (conn & 2) && !(conn & 1);
    r->is_upgrade = has_upgrade && (conn & 4);

    if (r->is_chunked) {
        p->state = ST_CHUNK_SIZE;
    } else if (r->content_length > 0) {
        p->state = ST_BODY_CL;
        p->remaining = r->content_length;
        p->need_cl_check = 1;
    } else {
        /* RFC 9112 §6.3 rule 6: no framing means no body */
        p->state = ST_DONE;
    }
    return PV_OK;
}

/* Refusal status for a request line that grew past its limit: 414 only
 * when it looks like a request whose target is too long, that is a method
 * and SP. The line so far is head[0..head_len) then buf[0..n); only the
 * bytes within the limit are judged, so the answer does not depend on how
 * the stream was split. */
static int
long_line_status(const pv_http_parser_t *p, const char *buf, size_t n)
{
    size_t i, end = p->lim.max_request_line + 2;

    if (end > p->head_len + n) /* not when called on overflow; defensive */
        end = p->head_len + n;
    for (i = 0; i < end; i++) {
        unsigned char c =
            (unsigned char)(i < p->head_len ? p->head[i]
                                            : buf[i - p->head_len]);

        if (!is_tchar(c))
            return i > 0 && c == ' ' ? 414 : 400;
    }
    return 400;
}

/* Adds buf[0..n) to the head; a complete line (ending in LF) is checked.
 * Returns PV_OK, PV_AGAIN when the head is complete, or PV_ERROR. */
static int
head_add(pv_http_parser_t *p, const char *buf, size_t n, int has_lf)
{
    size_t need = p->head_len + n, line;

    if (p->rl_end == 0) {
        if (need > p->lim.max_request_line + 2)
            return fail(p, long_line_status(p, buf, n),
                        "request line too long");
    } else if (need - p->rl_end > p->lim.max_header_bytes) {
        return fail(p, 431, "header section too large");
    }
    if (need > p->head_cap) {
        size_t cap = p->head_cap ? p->head_cap : 512;

        while (cap < need)
            cap *= 2;
        if (cap > p->head_max)
            cap = p->head_max;
        p->head = pv_xrealloc(p->head, cap + 1);
        p->head_cap = cap;
    }
    memcpy(p->head + p->head_len, buf, n);
    p->head_len = need;
    if (!has_lf)
        return PV_OK;

    line = p->head_len - p->line_start;
    /* RFC 9112 §2.2 allows a bare LF; we do not, as a front proxy might
     * see the line boundaries differently */
    if (line < 2 || p->head[p->head_len - 2] != '\r')
        return fail(p, 400, "line not terminated by CRLF");
    if (p->rl_end == 0) {
        p->rl_end = p->head_len;
    } else if (line == 2) {
        p->head[p->head_len] = '\0';
        return parse_head(p) == PV_OK ? PV_AGAIN : PV_ERROR;
    } else if (++p->n_lines > p->lim.max_headers) {
        return fail(p, 431, "too many header fields");
    }
    p->line_start = p->head_len;
    return PV_OK;
}

/* --- the body -------------------------------------------------------- */

/* One byte of a chunk-size line, RFC 9112 §7.1:
 * chunk-size [ chunk-ext ] CRLF, chunk-ext = *( BWS ";" BWS ext ) */
static int
chunk_line_byte(pv_http_parser_t *p, unsigned char c)
{
    int h;

    if (++p->line_len > MAX_CHUNK_LINE)
        return fail(p, 400, "chunk line too long");
    switch (p->state) {
    case ST_CHUNK_SIZE:
        h = hexval(c);
        if (h >= 0) {
            if (p->remaining > (UINT64_MAX >> 4))
                return fail(p, 400, "chunk size overflow");
            p->remaining = (p->remaining << 4) | (uint64_t)h;
            p->n_digits++;
            return PV_OK;
        }
        if (p->n_digits == 0)
            return fail(p, 400, "malformed chunk size");
        if (c == '\r')
            p->state = ST_CHUNK_SIZE_LF;
        else if (c == ';')
            p->state = ST_CHUNK_EXT;
        else if (c == ' ' || c == '\t')
            p->state = ST_CHUNK_BWS;
        else
            return fail(p, 400, "malformed chunk size");
        return PV_OK;
    case ST_CHUNK_BWS:
        if (c == ';')
            p->state = ST_CHUNK_EXT;
        else if (c != ' ' && c != '\t')
            return fail(p, 400, "malformed chunk extension");
        return PV_OK;
    case ST_CHUNK_EXT:
        if (c == '\r')
            p->state = ST_CHUNK_SIZE_LF;
        else if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(p, 400, "malformed chunk extension");
        return PV_OK;
    default:
        if (c != '\n')
            return fail(p, 400, "chunk line not terminated by CRLF");
        if (p->body_total > p->max_body ||
            p->remaining > p->max_body - p->body_total)
            return fail(p, 413, "body too large");
        p->line_len = 0;
        p->n_digits = 0;
        if (p->remaining == 0) {
            p->state = ST_TRAILER;
        } else {
            p->body_total += p->remaining;
            p->state = ST_CHUNK_DATA;
        }
        return PV_OK;
    }
}

/* One byte of the trailer section (RFC 9112 §7.1.2); trailers are read
 * for syntax and size only, then dropped. */
static int
trailer_byte(pv_http_parser_t *p, unsigned char c)
{
    if (++p->line_len > p->lim.max_header_bytes)
        return fail(p, 431, "trailer section too large");
    switch (p->state) {
    case ST_TRAILER:
        if (c == '\r') {
            p->state = ST_TRAILER_END_LF;
            return PV_OK;
        }
        if (!is_tchar(c))
            return fail(p, 400, "malformed trailer field");
        p->state = ST_TRAILER_LINE;
        p->prev_cr = 0;
        return PV_OK;
    case ST_TRAILER_LINE:
        if (c == '\n') {
            if (!p->prev_cr)
                return fail(p, 400, "line not terminated by CRLF");
            p->state = ST_TRAILER;
        } else if (p->prev_cr || c == '\0') {
            return fail(p, 400, "invalid byte in trailer field");
        }
        p->prev_cr = c == '\r';
        return PV_OK;
    default:
        if (c != '\n')
            return fail(p, 400, "line not terminated by CRLF");
        p->state = ST_DONE;
        return PV_OK;
    }
}

int
pv_http_parser_feed(pv_http_parser_t *p, const char *buf, size_t len,
                    size_t *consumed)
{
    size_t i = 0;
    int rc = PV_OK;

    for (;;) {
        /* events that need no more input */
        if (p->state == ST_ERROR) {
            rc = PV_ERROR;
            break;
        }
        if (p->state == ST_DONE) {
            p->state = ST_START;
            if (p->cb.complete && p->cb.complete(p->ud, &p->req) != 0) {
                rc = PV_AGAIN;
                break;
            }
            continue;
        }
        if (p->state == ST_BODY_CL && p->need_cl_check) {
            p->need_cl_check = 0;
            if (p->req.content_length > p->max_body) {
                rc = fail(p, 413, "body too large");
                break;
            }
        }
        if (i == len)
            break;

        switch (p->state) {
        case ST_START:
            if (buf[i] == '\r') {
                p->state = ST_START_LF;
                i++;
            } else if (buf[i] == '\n') {
                rc = fail(p, 400, "line not terminated by CRLF");
            } else {
                begin_request(p);
                p->state = ST_HEAD;
            }
            break;
        case ST_START_LF:
            /* RFC 9112 §2.2: empty lines before a request are ignored */
            if (buf[i] != '\n')
                rc = fail(p, 400, "line not terminated by CRLF");
            else
                p->state = ST_START;
            i++;
            break;
        case ST_HEAD: {
            const char *lf = memchr(buf + i, '\n', len - i);
            size_t n = lf ? (size_t)(lf - (buf + i)) + 1 : len - i;

            rc = head_add(p, buf + i, n, lf != NULL);
            i += n;
            if (rc == PV_AGAIN) {
                rc = PV_OK;
                if (p->cb.headers && p->cb.headers(p->ud, &p->req) != 0)
                    rc = PV_AGAIN;
            }
            break;
        }
        case ST_BODY_CL:
        case ST_CHUNK_DATA: {
            size_t n = len - i;

            if ((uint64_t)n > p->remaining)
                n = (size_t)p->remaining;
            p->remaining -= n;
            if (p->remaining == 0)
                p->state = p->state == ST_BODY_CL ? ST_DONE : ST_CHUNK_DATA_CR;
            i += n;
            if (p->cb.body && p->cb.body(p->ud, buf + i - n, n) != 0)
                rc = PV_AGAIN;
            break;
        }
        case ST_CHUNK_DATA_CR:
        case ST_CHUNK_DATA_LF:
            if (buf[i] != (p->state == ST_CHUNK_DATA_CR ? '\r' : '\n')) {
                rc = fail(p, 400, "chunk data not followed by CRLF");
            } else {
                p->state = p->state == ST_CHUNK_DATA_CR ? ST_CHUNK_DATA_LF
                                                        : ST_CHUNK_SIZE;
                p->remaining = 0;
            }
            i++;
            break;
        case ST_CHUNK_SIZE:
        case ST_CHUNK_BWS:
        case ST_CHUNK_EXT:
        case ST_CHUNK_SIZE_LF:
            rc = chunk_line_byte(p, (unsigned char)buf[i++]);
            break;
        case ST_TRAILER:
        case ST_TRAILER_LINE:
        case ST_TRAILER_END_LF:
            rc = trailer_byte(p, (unsigned char)buf[i++]);
            break;
        default: rc = fail(p, 400, "internal parser state"); break;
        }
        if (rc != PV_OK)
            break;
    }
    if (consumed != NULL)
        *consumed = i;
    return rc;
}

/* --- helpers ---------------------------------------------------------- */

const char *
pv_http_status_reason(int status)
{
    static const struct {
        int status;
        const char *reason;
    } reasons[] = {
        {100, "Continue"},
        {101, "Switching Protocols"},
        {200, "OK"},
        {201, "Created"},
        {204, "No Content"},
        {206, "Partial Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {416, "Range Not Satisfiable"},
        {417, "Expectation Failed"},
        {426, "Upgrade Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {503, "Service Unavailable"},
        {505, "HTTP Version Not Supported"},
    };
    size_t i;

    for (i = 0; i < PV_COUNTOF(reasons); i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    return "Unknown";
}

static int
is_dot_segment(const char *seg, size_t len)
{
    return (len == 1 && seg[0] == '.') ||
           (len == 2 && seg[0] == '.' && seg[1] == '.');
}

int
pv_http_path_decode(const char *path, size_t len, char *out, size_t *out_len)
{
    size_t i, o = 0, seg = 1;

    if (len == 0 || path[0] != '/')
        return PV_ERROR;
    out[o++] = '/';
    for (i = 1; i < len; i++) {
        int c = (unsigned char)path[i];

        if (c == '%') {
            int hi, lo;

            if (len - i < 3 || (hi = hexval((unsigned char)path[i + 1])) < 0 ||
                (lo = hexval((unsigned char)path[i + 2])) < 0)
                return PV_ERROR;
            c = hi * 16 + lo;
            i += 2;
            /* an encoded '/' would hide a segment boundary from us */
            if (c == '/' || c == '\0' || c == '\\')
                return PV_ERROR;
            out[o++] = (char)c;
        } else if (c == '\0' || c == '\\') {
            return PV_ERROR;
        } else if (c == '/') {
            if (is_dot_segment(out + seg, o - seg))
                return PV_ERROR;
            out[o++] = '/';
            seg = o;
        } else {
            out[o++] = (char)c;
        }
    }
    if (is_dot_segment(out + seg, o - seg))
        return PV_ERROR;
    out[o] = '\0';
    if (out_len != NULL)
        *out_len = o;
    return PV_OK;
}

int
pv_http_query_next(const char **pos, pv_http_param_t *param)
{
    const char *s = *pos, *e, *eq;

    if (s == NULL)
        return 0;
    while (*s == '&')
        s++;
    if (*s == '\0') {
        *pos = s;
        return 0;
    }
    e = s + strcspn(s, "&");
    eq = memchr(s, '=', (size_t)(e - s));
    param->key = s;
    param->key_len = eq ? (size_t)(eq - s) : (size_t)(e - s);
    param->value = eq ? eq + 1 : e;
    param->value_len = eq ? (size_t)(e - eq - 1) : 0;
    *pos = e;
    return 1;
}

/* Decodes s[0..len) into out (out_size bytes with the NUL). */
static int
form_decode(const char *s, size_t len, char *out, size_t out_size,
            size_t *out_len)
{
    size_t i, o = 0;

    for (i = 0; i < len; i++) {
        int c = (unsigned char)s[i];

        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi, lo;

            if (len - i < 3 || (hi = hexval((unsigned char)s[i + 1])) < 0 ||
                (lo = hexval((unsigned char)s[i + 2])) < 0)
                return PV_ERROR;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == '\0' || o + 1 >= out_size)
            return PV_ERROR;
        out[o++] = (char)c;
    }
    if (out_size == 0)
        return PV_ERROR;
    out[o] = '\0';
    if (out_len != NULL)
        *out_len = o;
    return PV_OK;
}

int
pv_http_query_decode(const char *s, size_t len, char *out, size_t *out_len)
{
    return form_decode(s, len, out, len + 1, out_len);
}

/* Compares an encoded key with a plain name without decoding into a
 * buffer. */
static int
key_equals(const char *s, size_t len, const char *name)
{
    size_t i, n = 0;

    for (i = 0; i < len; i++, n++) {
        int c = (unsigned char)s[i], hi, lo;

        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (len - i < 3 || (hi = hexval((unsigned char)s[i + 1])) < 0 ||
                (lo = hexval((unsigned char)s[i + 2])) < 0)
                return 0;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == '\0' || name[n] != (char)c)
            return 0;
    }
    return name[n] == '\0';
}

int
pv_http_query_get(const char *query, const char *name, char *out,
                  size_t out_size)
{
    pv_http_param_t prm;

    while (pv_http_query_next(&query, &prm))
        if (key_equals(prm.key, prm.key_len, name))
            return form_decode(prm.value, prm.value_len, out, out_size, NULL);
    return PV_NOTFOUND;
}

/* Reads 1*DIGIT, saturating at UINT64_MAX (a huge last-pos is still a
 * valid, clamped range). Returns the digit count. */
static size_t
read_pos(const char **s, uint64_t *v)
{
    const char *p = *s;
    uint64_t n = 0;

    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');

        n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
        p++;
    }
    *v = n;
    n = (uint64_t)(p - *s);
    *s = p;
    return (size_t)n;
}

pv_http_range_t
pv_http_range_parse(const char *value, uint64_t length, uint64_t *first,
                    uint64_t *last)
{
    const char *s = value;
    uint64_t a = 0, b = 0;
    int is_suffix = 0, has_last = 0;

    if (s == NULL)
        return PV_HTTP_RANGE_NONE;
    /* RFC 9110 §14.1.2: the unit is case-insensitive, no space around
     * '='; the range-set is a list, so OWS may surround its members */
    if (strncasecmp(s, "bytes=", 6) != 0)
        return PV_HTTP_RANGE_NONE;
    s += 6;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '-') {
        s++;
        is_suffix = 1;
        if (read_pos(&s, &b) == 0)
            return PV_HTTP_RANGE_NONE;
    } else {
        if (read_pos(&s, &a) == 0 || *s++ != '-')
            return PV_HTTP_RANGE_NONE;
        has_last = read_pos(&s, &b) > 0;
    }
    while (*s == ' ' || *s == '\t')
        s++;
    /* a second range (or any other trailing byte): serve it whole */
    if (*s != '\0')
        return PV_HTTP_RANGE_NONE;

    if (is_suffix) {
        /* §14.1.1: a suffix range needs a non-empty representation and
         * a non-zero suffix-length */
        if (b == 0 || length == 0)
            return PV_HTTP_RANGE_UNSATISFIABLE;
        *first = b >= length ? 0 : length - b;
        *last = length - 1;
        return PV_HTTP_RANGE_PARTIAL;
    }
    if (has_last && b < a)
        return PV_HTTP_RANGE_NONE; /* invalid range-spec */
    if (a >= length)
        return PV_HTTP_RANGE_UNSATISFIABLE;
    *first = a;
    *last = !has_last || b >= length ? length - 1 : b;
    return PV_HTTP_RANGE_PARTIAL;
}

static int
is_b64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int
pv_http_ws_check(const pv_http_request_t *req, const char **key)
{
    const char *k, *ver;
    size_t i;

    /* RFC 6455 §4.2.1 items 1-4 */
    if (strcmp(req->method, "GET") != 0 || req->version_minor < 1 ||
        pv_http_request_header(req, "host") == NULL ||
        !pv_http_header_has_token(req, "upgrade", "websocket") ||
        !pv_http_header_has_token(req, "connection", "upgrade"))
        return 400;
    /* item 6, checked before the key: another version may differ there;
     * §4.4 asks for 426 and the versions we speak */
    ver = pv_http_request_header(req, "sec-websocket-version");
    if (ver == NULL)
        return 400;
    if (strcmp(ver, "13") != 0)
        return 426;
    /* item 5: base64 of 16 bytes is 22 characters and "==" */
    k = pv_http_request_header(req, "sec-websocket-key");
    if (k == NULL || strlen(k) != 24 || k[22] != '=' || k[23] != '=')
        return 400;
    for (i = 0; i < 22; i++)
        if (!is_b64((unsigned char)k[i]))
            return 400;
    if (key != NULL)
        *key = k;
    return 101;
}

int
pv_http_ws_accept(const char *key, size_t key_len,
                  char out[PV_HTTP_WS_ACCEPT_LEN + 1])
{
    /* RFC 6455 §1.3 */
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;

    ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, key, key_len) == 1 &&
         EVP_DigestUpdate(ctx, guid, sizeof(guid) - 1) == 1 &&
         EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == 20;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return PV_ERROR;
    EVP_EncodeBlock((unsigned char *)out, md, 20);
    return PV_OK;
}
