/* src/xmlstream.c: incremental XMPP stream parsing on expat. Turns bytes
 * into a stream header, one pv_stanza_t per depth-1 element, and a stream
 * close; refuses restricted XML (RFC 6120 §11.1) and oversized input before
 * allocating for it; frees the expat parser of an idle stream and rebuilds
 * it from a saved namespace context (DESIGN.md §3). What a stream error
 * does to the connection is src/stream.c's business. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#include <palaver/log.h>
#include <palaver/mem.h>
#include <palaver/xml.h>

#include "xmlstream.h"

/* Expat joins URI, local name and prefix with this byte. 0xFF never occurs
 * in UTF-8, and expat >= 2.4.5 refuses a URI containing the separator
 * (CVE-2022-25236), so splitting on it is unambiguous. */
#define NS_SEP '\xff'

/* Input is handed to expat in slices of this size so that the limits are
 * checked at least this often: an unfinished token can overshoot a limit
 * by at most one slice before it is refused. */
#define SLICE 4096

#define DEFAULT_MAX_STANZA (256 * 1024)
#define DEFAULT_MAX_DEPTH 32
#define DEFAULT_MAX_ATTRS 64

enum xs_state {
    XS_HEADER,      /* waiting for <stream:stream> */
    XS_OPEN,        /* header seen: stanzas flow */
    XS_CLOSED,      /* </stream:stream> seen */
    XS_FAILED       /* error() was called */
};

struct pv_xmlstream_s {
    pv_xmlstream_cb_t cb;
    void *ud;
    pv_xmlstream_limits_t lim;
    XML_Parser p;                /* NULL while idle-released */
    enum xs_state state;
    unsigned depth;              /* open elements; 1 = inside the stream */
    unsigned n_decls;            /* xmlns declarations of the next tag */

    /* Byte positions in the input of the current expat instance (the
     * replayed header included); reset whenever the instance changes. */
    uint64_t fed;                /* bytes handed to expat */
    uint64_t event_end;          /* end of the last reported event */
    uint64_t stanza_start;       /* start tag of the open stanza */
    uint64_t boundary;           /* end of the header or last stanza */
    uint64_t buf_base;           /* position of this feed's first byte */
    uint64_t stop_pos;           /* end of the event that stopped us */

    char *replay;                /* "<stream:stream xmlns...>" to rebuild */
    size_t replay_len;
    pv_buf_t decls;              /* xmlns declarations of the header */
    char *content_ns;            /* default namespace of the header */

    pv_arena_t *arena;           /* the stanza under construction */
    pv_node_t *cur;              /* its innermost open element */
    pv_buf_t text;               /* character data not yet in the tree */

    unsigned busy : 1;           /* inside pv_xmlstream_feed */
    unsigned parsing : 1;        /* inside XML_Parse */
    unsigned replaying : 1;      /* rebuilding: callbacks suppressed */
    unsigned stopped : 1;        /* ignore further expat events */
    unsigned restart_pending : 1;
    unsigned free_pending : 1;
    unsigned is_lazy : 1;        /* release only on pv_xmlstream_idle() */
    unsigned at_boundary : 1;    /* the last feed ended between stanzas */
};

/* --- helpers ---------------------------------------------------------- */

static int
is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int
all_ws(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if (!is_ws(s[i]))
            return 0;
    return 1;
}

typedef struct qname_s {
    const char *uri, *local, *prefix;   /* prefix NULL when none */
    size_t uri_len, local_len, prefix_len;
} qname_t;

/* Splits expat's "uri<SEP>local[<SEP>prefix]" (or a bare "local"). */
static void
qname_split(const char *s, qname_t *q)
{
    const char *a = strchr(s, NS_SEP), *b;

    q->prefix = NULL;
    q->prefix_len = 0;
    if (a == NULL) {
        q->uri = "";
        q->uri_len = 0;
        q->local = s;
        q->local_len = strlen(s);
        return;
    }
    q->uri = s;
    q->uri_len = (size_t)(a - s);
    q->local = a + 1;
    b = strchr(q->local, NS_SEP);
    if (b == NULL) {
        q->local_len = strlen(q->local);
    } else {
        q->local_len = (size_t)(b - q->local);
        q->prefix = b + 1;
        q->prefix_len = strlen(q->prefix);
    }
}

static int
qname_is(const qname_t *q, const char *uri, const char *local)
{
    return q->uri_len == strlen(uri) && memcmp(q->uri, uri, q->uri_len) == 0
        && q->local_len == strlen(local)
        && memcmp(q->local, local, q->local_len) == 0;
}

/* Namespace strings that occur in almost every stanza point to literals
 * instead of being copied into each arena. */
static const char *
ns_intern(pv_arena_t *arena, const pv_node_t *parent, const char *uri,
          size_t len)
{
    static const char *const common[] = {
        PV_NS_CLIENT, PV_NS_SERVER, PV_NS_XML
    };
    size_t i;

    if (len == 0)
        return "";
    if (parent != NULL && strlen(parent->xmlns) == len
        && memcmp(parent->xmlns, uri, len) == 0)
        return parent->xmlns;
    for (i = 0; i < PV_COUNTOF(common); i++)
        if (strlen(common[i]) == len && memcmp(common[i], uri, len) == 0)
            return common[i];
    return pv_arena_strndup(arena, uri, len);
}

/* Attribute escaping for the replayed header. TAB, LF and CR go out as
 * character references: raw, attribute-value normalisation would turn
 * them into spaces and change the namespace URI. */
static void
append_attr_value(pv_buf_t *b, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\t' || *s == '\n' || *s == '\r')
            pv_buf_printf(b, "&#%d;", *s);
        else
            pv_buf_append_escaped(b, s, 1, 1);
    }
}

/* --- state changes ------------------------------------------------- */

static void
stop(pv_xmlstream_t *xs)
{
    xs->stopped = 1;
    /* XML_StopParser is only valid from inside XML_Parse */
    if (xs->parsing)
        XML_StopParser(xs->p, XML_FALSE);
}

static void
fail(pv_xmlstream_t *xs, const char *condition, const char *text)
{
    if (xs->state == XS_FAILED)
        return;
    xs->state = XS_FAILED;
    stop(xs);
    pv_log_debug_cat("xml", NULL, "stream error %s: %s", condition, text);
    if (xs->cb.error != NULL)
        xs->cb.error(xs->ud, condition, text);
}

static void
parser_release(pv_xmlstream_t *xs)
{
    if (xs->p != NULL)
        XML_ParserFree(xs->p);
    xs->p = NULL;
    pv_buf_free(&xs->text);
    xs->fed = xs->event_end = xs->stanza_start = 0;
    xs->boundary = xs->buf_base = xs->stop_pos = 0;
}

static void
reset(pv_xmlstream_t *xs)
{
    parser_release(xs);
    pv_arena_free(xs->arena);
    xs->arena = NULL;
    xs->cur = NULL;
    free(xs->replay);
    xs->replay = NULL;
    xs->replay_len = 0;
    free(xs->content_ns);
    xs->content_ns = NULL;
    pv_buf_free(&xs->decls);
    xs->state = XS_HEADER;
    xs->depth = 0;
    xs->n_decls = 0;
    xs->stopped = 0;
    xs->restart_pending = 0;
    xs->at_boundary = 0;
}

static void
destroy(pv_xmlstream_t *xs)
{
    reset(xs);
    free(xs);
}

/* Records the end of the event expat is reporting; false when the
 * stanza under construction has grown past its limit. */
static int
mark(pv_xmlstream_t *xs)
{
    uint64_t end = (uint64_t)XML_GetCurrentByteIndex(xs->p)
        + (uint64_t)XML_GetCurrentByteCount(xs->p);

    if (end > xs->event_end)
        xs->event_end = end;
    if (xs->arena != NULL
        && xs->event_end - xs->stanza_start > xs->lim.max_stanza_bytes) {
        fail(xs, "policy-violation", "stanza too large");
        return 0;
    }
    return 1;
}

static void
flush_text(pv_xmlstream_t *xs)
{
    if (xs->text.len == 0)
        return;
    pv_node_add_text(xs->arena, xs->cur, xs->text.data, xs->text.len);
    pv_buf_reset(&xs->text);
}

/* --- expat handlers ------------------------------------------------- */

static void XMLCALL
on_ns_decl(void *ud, const XML_Char *prefix, const XML_Char *uri)
{
    pv_xmlstream_t *xs = ud;

    if (xs->stopped)
        return;
    if (++xs->n_decls > xs->lim.max_attrs) {
        fail(xs, "policy-violation", "too many attributes");
        return;
    }
    if (xs->depth != 0 || xs->replaying)
        return;
    /* Declarations on the stream element are the context every stanza is
     * parsed in: keep them to rebuild that context after a release. */
    pv_buf_puts(&xs->decls, prefix != NULL ? " xmlns:" : " xmlns");
    if (prefix != NULL)
        pv_buf_puts(&xs->decls, prefix);
    pv_buf_puts(&xs->decls, "='");
    append_attr_value(&xs->decls, uri != NULL ? uri : "");
    pv_buf_puts(&xs->decls, "'");
    if (prefix == NULL) {
        free(xs->content_ns);
        xs->content_ns = pv_xstrdup(uri != NULL ? uri : "");
    }
}

static void
stream_start(pv_xmlstream_t *xs, const qname_t *q, const XML_Char **atts)
{
    pv_stream_header_t h = {0};
    pv_buf_t b = {0};
    qname_t aq;
    size_t i;

    if (!qname_is(q, PV_NS_STREAMS, "stream")) {
        fail(xs, "invalid-namespace", "the root is not stream:stream in "
             PV_NS_STREAMS);
        return;
    }
    xs->depth = 1;
    xs->boundary = xs->event_end;
    if (xs->replaying)
        return;
    xs->state = XS_OPEN;

    pv_buf_puts(&b, "<");
    if (q->prefix != NULL) {
        pv_buf_append(&b, q->prefix, q->prefix_len);
        pv_buf_puts(&b, ":");
    }
    pv_buf_puts(&b, "stream");
    pv_buf_append(&b, xs->decls.data, xs->decls.len);
    pv_buf_puts(&b, ">");
    free(xs->replay);
    xs->replay = pv_buf_steal(&b, &xs->replay_len);
    /* kept for the stream's life: no slack from the buffer's growth */
    xs->replay = pv_xrealloc(xs->replay, xs->replay_len + 1);
    pv_buf_free(&xs->decls);

    for (i = 0; atts[i] != NULL; i += 2) {
        qname_split(atts[i], &aq);
        if (qname_is(&aq, PV_NS_XML, "lang"))
            h.lang = atts[i + 1];
        else if (aq.uri_len != 0)
            continue;
        else if (strcmp(atts[i], "to") == 0)
            h.to = atts[i + 1];
        else if (strcmp(atts[i], "from") == 0)
            h.from = atts[i + 1];
        else if (strcmp(atts[i], "version") == 0)
            h.version = atts[i + 1];
        else if (strcmp(atts[i], "id") == 0)
            h.id = atts[i + 1];
    }
    h.content_ns = xs->content_ns;
    if (xs->cb.stream_open != NULL)
        xs->cb.stream_open(xs->ud, &h);
    /* the callback may have stopped us; content_ns is only for it */
    free(xs->content_ns);
    xs->content_ns = NULL;
}

static void XMLCALL
on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    pv_xmlstream_t *xs = ud;
    unsigned n_decls = xs->n_decls, n_atts = 0;
    pv_node_t *n;
    pv_attr_t **tail;
    pv_attr_t *a;
    qname_t q;
    size_t i;

    if (xs->stopped)
        return;
    xs->n_decls = 0;
    if (xs->depth == 1)
        xs->stanza_start = (uint64_t)XML_GetCurrentByteIndex(xs->p);
    if (!mark(xs))
        return;
    for (i = 0; atts[i] != NULL; i += 2)
        n_atts++;
    if (n_atts + n_decls > xs->lim.max_attrs) {
        fail(xs, "policy-violation", "too many attributes");
        return;
    }
    qname_split(name, &q);
    if (xs->depth == 0) {
        stream_start(xs, &q, atts);
        return;
    }
    /* xs->depth is the level the new element gets inside its stanza */
    if (xs->depth > xs->lim.max_depth) {
        fail(xs, "policy-violation", "elements nested too deeply");
        return;
    }
    if (xs->depth == 1) {
        xs->arena = pv_arena_new(1024);
        xs->cur = NULL;
    } else {
        flush_text(xs);
    }
    n = pv_arena_calloc(xs->arena, sizeof(*n));
    n->name = pv_arena_strndup(xs->arena, q.local, q.local_len);
    n->xmlns = ns_intern(xs->arena, xs->cur, q.uri, q.uri_len);
    tail = &n->attrs;
    for (i = 0; atts[i] != NULL; i += 2) {
        qname_split(atts[i], &q);
        a = pv_arena_calloc(xs->arena, sizeof(*a));
        a->name = pv_arena_strndup(xs->arena, q.local, q.local_len);
        a->ns = q.uri_len != 0 ? ns_intern(xs->arena, NULL, q.uri, q.uri_len)
                               : NULL;
        a->value = pv_arena_strdup(xs->arena, atts[i + 1]);
        *tail = a;
        tail = &a->next;
    }
    if (xs->cur != NULL)
        pv_node_append(xs->cur, n);
    xs->cur = n;
    xs->depth++;
}

static void XMLCALL
on_end(void *ud, const XML_Char *name)
{
    pv_xmlstream_t *xs = ud;
    pv_node_t *done;
    pv_stanza_t *st;

    (void)name;     /* expat has already matched it with the start tag */
    if (xs->stopped || !mark(xs))
        return;
    if (xs->depth == 1) {
        xs->depth = 0;
        xs->state = XS_CLOSED;
        if (!xs->replaying && xs->cb.stream_close != NULL)
            xs->cb.stream_close(xs->ud);
        return;
    }
    flush_text(xs);
    done = xs->cur;
    xs->cur = done->parent;
    if (--xs->depth > 1)
        return;
    st = pv_stanza_new(xs->arena, done);
    xs->arena = NULL;
    xs->boundary = xs->event_end;
    if (xs->text.cap > 1024)
        pv_buf_free(&xs->text);   /* do not keep a big text buffer idle */
    if (xs->cb.stanza != NULL)
        xs->cb.stanza(xs->ud, st);
    else
        pv_stanza_unref(st);
}

static void XMLCALL
on_text(void *ud, const XML_Char *s, int len)
{
    pv_xmlstream_t *xs = ud;

    if (xs->stopped || !mark(xs))
        return;
    if (xs->depth == 1) {
        /* RFC 6120 §4.6.1: between stanzas only whitespace (keepalives) */
        if (!all_ws(s, (size_t)len))
            fail(xs, "bad-format", "text outside a stanza");
        return;
    }
    /* Collected in one buffer per text run: expat may report a run in
     * many pieces (one per byte when fed byte by byte), and merging the
     * pieces in the arena would cost quadratic memory. The stanza limit
     * checked in mark() bounds this buffer. */
    pv_buf_append(&xs->text, s, (size_t)len);
}

static void XMLCALL
on_xml_decl(void *ud, const XML_Char *version, const XML_Char *encoding,
            int standalone)
{
    pv_xmlstream_t *xs = ud;

    (void)version;
    (void)encoding;     /* the parser is fixed to UTF-8 (RFC 6120 §11.6) */
    (void)standalone;
    if (!xs->stopped)
        mark(xs);
}

/* RFC 6120 §11.1: no comments, processing instructions, internal or
 * external DTD subsets, or entity declarations. Refusing the DOCTYPE as it
 * starts also stops entity-expansion bombs before any entity exists. */
static void XMLCALL
on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
           const XML_Char *pubid, int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    fail(ud, "restricted-xml", "document type declaration");
}

static void XMLCALL
on_entity_decl(void *ud, const XML_Char *name, int is_param,
               const XML_Char *value, int value_len, const XML_Char *base,
               const XML_Char *sysid, const XML_Char *pubid,
               const XML_Char *notation)
{
    (void)name;
    (void)is_param;
    (void)value;
    (void)value_len;
    (void)base;
    (void)sysid;
    (void)pubid;
    (void)notation;
    fail(ud, "restricted-xml", "entity declaration");
}

static void XMLCALL
on_notation_decl(void *ud, const XML_Char *name, const XML_Char *base,
                 const XML_Char *sysid, const XML_Char *pubid)
{
    (void)name;
    (void)base;
    (void)sysid;
    (void)pubid;
    fail(ud, "restricted-xml", "notation declaration");
}

static void XMLCALL
on_pi(void *ud, const XML_Char *target, const XML_Char *data)
{
    (void)target;
    (void)data;
    fail(ud, "restricted-xml", "processing instruction");
}

static void XMLCALL
on_comment(void *ud, const XML_Char *data)
{
    (void)data;
    fail(ud, "restricted-xml", "comment");
}

static const char *
error_condition(enum XML_Error code)
{
    switch (code) {
    case XML_ERROR_UNKNOWN_ENCODING:
    case XML_ERROR_INCORRECT_ENCODING:
        return "unsupported-encoding";
    default:
        return "not-well-formed";
    }
}

/* --- feeding -------------------------------------------------------- */

static void
parser_open(pv_xmlstream_t *xs)
{
    enum XML_Status st;

    /* Fixing the encoding ignores the declaration's: RFC 6120 §11.6 */
    xs->p = XML_ParserCreateNS("UTF-8", NS_SEP);
    if (xs->p == NULL) {
        pv_log(PV_LOG_ERROR, NULL, "out of memory creating an XML parser");
        abort();
    }
    XML_SetReturnNSTriplet(xs->p, 1);
    XML_SetUserData(xs->p, xs);
    XML_SetElementHandler(xs->p, on_start, on_end);
    XML_SetCharacterDataHandler(xs->p, on_text);
    XML_SetStartNamespaceDeclHandler(xs->p, on_ns_decl);
    XML_SetXmlDeclHandler(xs->p, on_xml_decl);
    XML_SetStartDoctypeDeclHandler(xs->p, on_doctype);
    XML_SetEntityDeclHandler(xs->p, on_entity_decl);
    XML_SetNotationDeclHandler(xs->p, on_notation_decl);
    XML_SetProcessingInstructionHandler(xs->p, on_pi);
    XML_SetCommentHandler(xs->p, on_comment);
    XML_SetParamEntityParsing(xs->p, XML_PARAM_ENTITY_PARSING_NEVER);
#if defined(HAVE_XML_SETREPARSEDEFERRALENABLED)                            \
    || XML_MAJOR_VERSION > 2                                               \
    || (XML_MAJOR_VERSION == 2 && XML_MINOR_VERSION >= 6)
    /* Reparse deferral (expat 2.6, backported by Debian) holds back a
     * completed token until more input arrives: a stanza would sit in the
     * parser until the peer sends something else. */
    XML_SetReparseDeferralEnabled(xs->p, XML_FALSE);
#endif
    xs->fed = xs->event_end = xs->boundary = 0;
    if (xs->state != XS_OPEN)
        return;
    /* Rebuild the namespace context of the released parser: the replayed
     * root takes us from depth 0 back to 1. */
    xs->depth = 0;
    xs->replaying = 1;
    xs->parsing = 1;
    st = XML_Parse(xs->p, xs->replay, (int)xs->replay_len, XML_FALSE);
    xs->parsing = 0;
    xs->replaying = 0;
    xs->fed = xs->replay_len;
    if (st != XML_STATUS_OK || xs->depth != 1)
        fail(xs, "internal-server-error", "cannot rebuild the parser");
}

/* Inside the root element expat reports <!DOCTYPE ...> or <!ENTITY ...> as
 * a plain syntax error; RFC 6120 §11.1 wants restricted-xml for them. */
static int
at_markup_declaration(pv_xmlstream_t *xs)
{
    int offset = 0, size = 0, i;
    const char *ctx = XML_GetInputContext(xs->p, &offset, &size);

    if (ctx == NULL || offset < 0 || offset >= size)
        return 0;
    /* expat points at the '<', the '!' or the first letter after them */
    for (i = offset; i >= 0 && i >= offset - 2; i--) {
        if (ctx[i] == '<' && i + 1 < size && ctx[i + 1] == '!')
            return i + 2 < size && ctx[i + 2] >= 'A' && ctx[i + 2] <= 'Z';
    }
    return 0;
}

static void
parse_slice(pv_xmlstream_t *xs, const char *data, size_t len)
{
    enum XML_Status st;
    enum XML_Error code;
    size_t max = xs->lim.max_stanza_bytes;

    xs->parsing = 1;
    st = XML_Parse(xs->p, data, (int)len, XML_FALSE);
    xs->parsing = 0;
    xs->fed += len;
    if (xs->stopped)
        return;
    if (st != XML_STATUS_OK) {
        code = XML_GetErrorCode(xs->p);
        if (at_markup_declaration(xs))
            fail(xs, "restricted-xml", "markup declaration");
        else
            fail(xs, error_condition(code), XML_ErrorString(code));
        return;
    }
    /* Expat buffers an unfinished token (a start tag with a giant
     * attribute, text it cannot report yet) without telling us: bound the
     * bytes since the last event as well as the open stanza. */
    if (xs->arena != NULL && xs->fed - xs->stanza_start > max)
        fail(xs, "policy-violation", "stanza too large");
    else if (xs->fed - xs->event_end > max)
        fail(xs, "policy-violation", "element too large");
}

/* DESIGN.md §3: an idle stream keeps no expat parser. Released only when
 * everything after the last complete stanza (or the header) is whitespace,
 * so expat holds nothing we would lose. */
static void
maybe_release(pv_xmlstream_t *xs, const char *buf, size_t len)
{
    size_t from;

    xs->at_boundary = 0;
    if (xs->state != XS_OPEN || xs->depth != 1 || xs->p == NULL)
        return;
    if (xs->boundary < xs->buf_base)
        return;     /* the last boundary was in an earlier, unclean feed */
    from = (size_t)(xs->boundary - xs->buf_base);
    if (from > len || !all_ws(buf + from, len - from))
        return;
    xs->at_boundary = 1;
    if (!xs->is_lazy)
        parser_release(xs);
}

void
pv_xmlstream_set_lazy(pv_xmlstream_t *xs, int lazy)
{
    xs->is_lazy = lazy ? 1 : 0;
}

void
pv_xmlstream_idle(pv_xmlstream_t *xs)
{
    if (xs->at_boundary && !xs->busy && xs->p != NULL &&
        xs->state == XS_OPEN && xs->depth == 1)
        parser_release(xs);
}

int
pv_xmlstream_feed(pv_xmlstream_t *xs, const char *buf, size_t len,
                  size_t *consumed)
{
    size_t off = 0, n, dummy;
    int rc;

    if (consumed == NULL)
        consumed = &dummy;
    *consumed = 0;
    /* re-entering expat from one of its own callbacks is not possible */
    if (xs->state == XS_FAILED || xs->busy)
        return PV_ERROR;
    if (len == 0)
        return PV_OK;
    xs->busy = 1;
    if (xs->p == NULL) {
        /* whitespace keepalives do not wake an idle stream up */
        if (xs->state == XS_OPEN && xs->depth == 1 && all_ws(buf, len)) {
            xs->busy = 0;
            *consumed = len;
            return PV_OK;
        }
        parser_open(xs);
    }
    xs->buf_base = xs->fed;
    while (off < len && !xs->stopped) {
        n = len - off < SLICE ? len - off : SLICE;
        parse_slice(xs, buf + off, n);
        off += n;
    }
    xs->busy = 0;

    if (xs->free_pending) {
        rc = xs->state == XS_FAILED ? PV_ERROR : PV_AGAIN;
        destroy(xs);
        return rc;
    }
    if (xs->state == XS_FAILED) {
        *consumed = len;
        /* the connection is going away: give the memory back now */
        parser_release(xs);
        pv_arena_free(xs->arena);
        xs->arena = NULL;
        if (xs->restart_pending)
            reset(xs);
        return PV_ERROR;
    }
    if (xs->restart_pending) {
        if (xs->stop_pos > xs->buf_base)
            *consumed = (size_t)(xs->stop_pos - xs->buf_base);
        if (*consumed > len)
            *consumed = len;
        reset(xs);
        return PV_AGAIN;
    }
    *consumed = len;
    maybe_release(xs, buf, len);
    return PV_OK;
}

/* --- lifecycle ------------------------------------------------------ */

pv_xmlstream_t *
pv_xmlstream_new(const pv_xmlstream_cb_t *cb, void *ud,
                 const pv_xmlstream_limits_t *lim)
{
    pv_xmlstream_t *xs = pv_xcalloc(1, sizeof(*xs));

    xs->cb = *cb;
    xs->ud = ud;
    if (lim != NULL)
        xs->lim = *lim;
    if (xs->lim.max_stanza_bytes == 0)
        xs->lim.max_stanza_bytes = DEFAULT_MAX_STANZA;
    if (xs->lim.max_depth == 0)
        xs->lim.max_depth = DEFAULT_MAX_DEPTH;
    if (xs->lim.max_attrs == 0)
        xs->lim.max_attrs = DEFAULT_MAX_ATTRS;
    xs->state = XS_HEADER;
    return xs;
}

void
pv_xmlstream_restart(pv_xmlstream_t *xs)
{
    if (!xs->busy) {
        reset(xs);
        return;
    }
    /* Inside a callback: expat is on the stack, so stop it and let the
     * feed reset once XML_Parse has returned. */
    if (!xs->stopped)
        xs->stop_pos = xs->event_end;
    xs->restart_pending = 1;
    stop(xs);
}

void
pv_xmlstream_free(pv_xmlstream_t *xs)
{
    if (xs == NULL)
        return;
    if (xs->busy) {
        xs->free_pending = 1;
        stop(xs);
        return;
    }
    destroy(xs);
}

size_t
pv_xmlstream_memory(const pv_xmlstream_t *xs)
{
    size_t n = sizeof(*xs) + xs->decls.cap + xs->text.cap;

    if (xs->replay != NULL)
        n += xs->replay_len + 1;
    if (xs->content_ns != NULL)
        n += strlen(xs->content_ns) + 1;
    if (xs->arena != NULL)
        n += pv_arena_size(xs->arena);
    if (xs->p != NULL) {
        n += PV_XMLSTREAM_EXPAT_COST;
        /* inside a callback event_end can be ahead of fed */
        if (xs->fed > xs->event_end)
            n += (size_t)(xs->fed - xs->event_end);
    }
    return n;
}
