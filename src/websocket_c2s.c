/* src/websocket_c2s.c: XMPP over WebSocket (RFC 7395) at /xmpp-websocket:
 * the opening handshake (subprotocol "xmpp"), RFC 6455 frames in and out
 * (websocket.c does the framing rules), and the transport that runs a
 * c2s.c stream over it: each text message is one element, <open/> and
 * <close/> frame the stream. Auth, limits and modules are c2s.c's. */
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#include "http.h"
#include "palaver.h"
#include "websocket.h"

#define WS_PATH "/xmpp-websocket"
#define NS_FRAMING "urn:ietf:params:xml:ns:xmpp-framing"
#define NS_XML "http://www.w3.org/XML/1998/namespace"
/* an <open/> or <close/> is short; anything longer is not one */
#define WS_MAX_FRAMING 2048

typedef struct ws_s {
    pv_server_t *srv;
    pv_conn_t *conn;
    pv_c2s_t *c2s;
    pv_ws_decoder_t *dec;
    pv_buf_t out;             /* server XML not yet a whole element */
    unsigned closing : 1;
} ws_t;

static void ws_on_data(pv_conn_t *conn, const char *data, size_t len);
static void ws_on_close(pv_conn_t *conn, const char *reason);

static const pv_conn_handler_t ws_handler = {
    .on_data = ws_on_data,
    .on_close = ws_on_close,
};

/* --- frames out -------------------------------------------------------- */

static int
ws_send_frame(ws_t *w, pv_ws_opcode_t op, const void *data, size_t len)
{
    pv_buf_t b = {0};
    int rc;

    if (pv_ws_encode(&b, op, data, len) != PV_OK) {
        pv_buf_free(&b);
        return PV_ERROR;
    }
    rc = pv_conn_write(w->conn, b.data, b.len);
    pv_buf_free(&b);
    return rc;
}

static void
ws_fail(ws_t *w, unsigned code, const char *reason)
{
    pv_buf_t b = {0};

    if (w->closing)
        return;
    w->closing = 1;
    if (pv_ws_encode_close(&b, code, reason, reason ? strlen(reason) : 0)
        == PV_OK)
        pv_conn_write(w->conn, b.data, b.len);
    pv_buf_free(&b);
    pv_conn_close(w->conn);
}

static int
ws_emit(void *arg, const char *el, size_t len)
{
    ws_t *w = arg;
    pv_buf_t b = {0};
    int rc;

    pv_c2s_qualify(&b, el, len);
    rc = ws_send_frame(w, PV_WS_OP_TEXT, b.data, b.len);
    pv_buf_free(&b);
    return rc;
}

/* RFC 7395 §3.3.1: one message per top-level element */
static int
ws_transport_write(void *arg, const char *data, size_t len)
{
    ws_t *w = arg;

    if (w->closing)
        return PV_ERROR;
    return pv_c2s_split(&w->out, data, len, ws_emit, w);
}

static void
ws_transport_close(void *arg)
{
    ws_t *w = arg;

    ws_fail(w, PV_WS_CLOSE_NORMAL, NULL);
}

static const pv_c2s_transport_t ws_transport = {
    .write = ws_transport_write,
    .close = ws_transport_close,
};

/* --- messages in ------------------------------------------------------- */

typedef struct framing_s {
    int seen;
    int is_open, is_close;
    char *to, *from, *version, *lang;
    int bad;
} framing_t;

static void XMLCALL
framing_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    framing_t *f = ud;
    size_t i;

    if (f->seen++) {
        f->bad = 1;
        return;
    }
    if (strcmp(name, NS_FRAMING " open") == 0)
        f->is_open = 1;
    else if (strcmp(name, NS_FRAMING " close") == 0)
        f->is_close = 1;
    for (i = 0; attrs[i] != NULL; i += 2) {
        char **slot = NULL;

        if (strcmp(attrs[i], "to") == 0)
            slot = &f->to;
        else if (strcmp(attrs[i], "from") == 0)
            slot = &f->from;
        else if (strcmp(attrs[i], "version") == 0)
            slot = &f->version;
        else if (strcmp(attrs[i], NS_XML " lang") == 0)
            slot = &f->lang;
        if (slot != NULL && *slot == NULL)
            *slot = pv_xstrdup(attrs[i + 1]);
    }
}

static void XMLCALL
framing_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                const XML_Char *pubid, int has_internal)
{
    framing_t *f = ud;

    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal;
    f->bad = 1;
}

static void
framing_free(framing_t *f)
{
    free(f->to);
    free(f->from);
    free(f->version);
    free(f->lang);
}

/* Parses a short message that starts like <open or <close. Returns 0
 * when it is well-formed XML (f says which element), -1 when not. */
static int
framing_parse(const char *data, size_t len, framing_t *f)
{
    XML_Parser xp = XML_ParserCreateNS("UTF-8", ' ');
    int ok;

    memset(f, 0, sizeof(*f));
    if (xp == NULL)
        return -1;
    XML_SetUserData(xp, f);
    XML_SetStartElementHandler(xp, framing_start);
    XML_SetStartDoctypeDeclHandler(xp, framing_doctype);
    ok = XML_Parse(xp, data, (int)len, 1) == XML_STATUS_OK;
    XML_ParserFree(xp);
    return ok && !f->bad ? 0 : -1;
}

static int
starts_with_tag(const char *p, size_t len, const char *tag)
{
    size_t n = strlen(tag);

    return len > n && memcmp(p, tag, n) == 0 &&
           strchr(" \t\r\n/>", p[n]) != NULL;
}

static void
ws_message(ws_t *w, const char *data, size_t len)
{
    const char *p = data;
    size_t n = len;
    framing_t f;

    while (n > 0 && strchr(" \t\r\n", *p) != NULL) {
        p++;
        n--;
    }
    if (n == 0)
        return; /* whitespace keepalive */
    if (n <= WS_MAX_FRAMING && (starts_with_tag(p, n, "<open") ||
                                starts_with_tag(p, n, "<close"))) {
        if (framing_parse(p, n, &f) != 0) {
            framing_free(&f);
            pv_c2s_close(w->c2s, "not-well-formed");
            return;
        }
        if (f.is_open)
            pv_c2s_framed_open(w->c2s, f.to, f.from, f.version, f.lang);
        else if (f.is_close)
            pv_c2s_close(w->c2s, NULL);
        else
            pv_c2s_close(w->c2s, "invalid-namespace");
        framing_free(&f);
        return;
    }
    pv_c2s_framed_element(w->c2s, p, n);
}

static void
ws_on_data(pv_conn_t *conn, const char *data, size_t len)
{
    ws_t *w = pv_conn_data(conn);
    pv_ws_event_t ev;

    while (len > 0 && !w->closing) {
        size_t n = pv_ws_decoder_feed(w->dec, data, len, &ev);

        data += n;
        len -= n;
        switch (ev.type) {
        case PV_WS_EV_NONE:
            len = 0;
            break;
        case PV_WS_EV_TEXT:
            ws_message(w, (const char *)ev.data, ev.len);
            break;
        case PV_WS_EV_BINARY:
            /* RFC 7395 §3.2: XMPP goes in text messages only */
            ws_fail(w, 1003, "binary messages are not xmpp");
            break;
        case PV_WS_EV_PING:
            ws_send_frame(w, PV_WS_OP_PONG, ev.data, ev.len);
            break;
        case PV_WS_EV_PONG:
            break;
        case PV_WS_EV_CLOSE:
            /* RFC 6455 §5.5.1: echo the code, then close */
            ws_fail(w, ev.code == PV_WS_CLOSE_NO_STATUS ? 0 : ev.code,
                    NULL);
            break;
        case PV_WS_EV_ERROR:
            pv_log(PV_LOG_INFO, "websocket", "%s: %s (%u)",
                   pv_conn_peer_ip(conn), ev.error, (unsigned)ev.code);
            ws_fail(w, ev.code, ev.error);
            break;
        }
    }
    pv_ws_decoder_trim(w->dec);
}

static void
ws_on_close(pv_conn_t *conn, const char *reason)
{
    ws_t *w = pv_conn_data(conn);

    if (w->c2s != NULL)
        pv_c2s_transport_closed(w->c2s, reason);
    pv_ws_decoder_free(w->dec);
    pv_buf_free(&w->out);
    free(w);
}

/* --- the handshake ----------------------------------------------------- */

static int
is_loopback(const char *ip)
{
    return strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0 ||
           strncmp(ip, "::ffff:127.", 11) == 0;
}

static void
ws_http(void *arg, pv_http_req_t *r)
{
    pv_http_t *h = arg;
    pv_server_t *srv = pv_http_req_server(r);
    const pv_http_request_t *q = pv_http_req_head(r);
    const char *key = NULL;
    char accept[PV_HTTP_WS_ACCEPT_LEN + 1];
    int status = pv_http_ws_check(q, &key);
    ws_t *w;
    size_t max;

    (void)h;
    if (srv->shutting_down) {
        pv_http_respond_status(r, 503);
        return;
    }
    if (status == 426)
        pv_http_add_header(r, "Sec-WebSocket-Version", "13");
    if (status != 101) {
        pv_http_respond_status(r, status);
        return;
    }
    /* RFC 7395 §3.1: the subprotocol is "xmpp", and nothing else */
    if (!pv_http_header_has_token(q, "Sec-WebSocket-Protocol", "xmpp")) {
        static const char msg[] = "the subprotocol 'xmpp' is required\n";
        pv_http_respond(r, 400, "text/plain; charset=utf-8", msg,
                        sizeof(msg) - 1);
        return;
    }
    if (pv_http_ws_accept(key, strlen(key), accept) != PV_OK) {
        pv_http_respond_status(r, 500);
        return;
    }
    pv_http_add_header(r, "Upgrade", "websocket");
    pv_http_add_header(r, "Connection", "Upgrade");
    pv_http_add_header(r, "Sec-WebSocket-Accept", accept);
    pv_http_add_header(r, "Sec-WebSocket-Protocol", "xmpp");
    max = PV_GLOBAL(srv)->websocket_max_message;
    w = pv_xcalloc(1, sizeof(*w));
    w->srv = srv;
    w->dec = pv_ws_decoder_new(max == PV_SIZE_OFF ? 0 : max);
    w->conn = pv_http_upgrade(r, &ws_handler, w);
    w->c2s = pv_c2s_new_framed(srv, w->conn, &ws_transport, w,
                               pv_http_req_is_tls(r) ||
                                   is_loopback(pv_http_req_peer_ip(r)));
}

void
pv_websocket_c2s_register(pv_http_t *h)
{
    pv_http_route(h, WS_PATH, "GET", PV_HTTP_EXACT, ws_http, h);
}
