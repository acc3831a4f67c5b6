/* src/xmlstream.h: the incremental XMPP stream parser (internal to the
 * core). Bytes in, stream header / stanzas / close / error callbacks out,
 * with RFC 6120 §11.1 restricted XML, size/depth/attribute limits, and the
 * idle release of the expat parser (DESIGN.md §3). Stream negotiation and
 * the stream error element itself belong to src/stream.c. */
#ifndef PALAVER_XMLSTREAM_H
#define PALAVER_XMLSTREAM_H

#include <stddef.h>

#include <palaver/defs.h>
#include <palaver/stanza.h>

typedef struct pv_xmlstream_s pv_xmlstream_t;

/* Borrowed strings, valid only during the stream_open callback; NULL when
 * the attribute is absent. content_ns is the default namespace declared
 * on the stream element (jabber:client, jabber:server, ...): checking it
 * is the caller's job (RFC 6120 §4.9.3.10). */
typedef struct pv_stream_header_s {
    const char *to, *from, *version, *lang, *id;
    const char *content_ns;
} pv_stream_header_t;

/* Any callback may call pv_xmlstream_restart() or pv_xmlstream_free() on
 * the parser that called it (see pv_xmlstream_feed for what happens);
 * none may call pv_xmlstream_feed() on it. */
typedef struct pv_xmlstream_cb_s {
    void (*stream_open)(void *ud, const pv_stream_header_t *h);
    /* a depth-1 element, delivered when its end tag has been parsed;
     * ownership (one reference) passes to the callee */
    void (*stanza)(void *ud, pv_stanza_t *st);
    /* </stream:stream> */
    void (*stream_close)(void *ud);
    /* called at most once per stream: condition is an RFC 6120 §4.9.3
     * stream error condition name ("not-well-formed", "restricted-xml",
     * "policy-violation", "invalid-namespace", "bad-format"), text a short
     * English explanation for logs or <text/> */
    void (*error)(void *ud, const char *condition, const char *text);
} pv_xmlstream_cb_t;

/* A field of 0 takes the default in brackets. max_stanza_bytes [262144]
 * bounds the bytes of one stanza counted from its start tag, and the bytes
 * of any single unfinished token (a giant attribute value, a stream header
 * that never ends); max_depth [32] bounds nesting inside a stanza (the
 * stanza element itself is depth 1); max_attrs [64] bounds attributes plus
 * namespace declarations on one element. */
typedef struct pv_xmlstream_limits_s {
    size_t max_stanza_bytes;
    unsigned max_depth;
    unsigned max_attrs;
} pv_xmlstream_limits_t;

/* New parser expecting a stream header. cb is copied; ud is passed to
 * every callback; lim NULL = defaults. Allocates no expat parser until the
 * first byte arrives. */
pv_xmlstream_t *pv_xmlstream_new(const pv_xmlstream_cb_t *cb, void *ud,
                                 const pv_xmlstream_limits_t *lim);

/* Parses len bytes of buf, calling the callbacks as events complete.
 * Returns:
 *   PV_OK     every byte was consumed (*consumed = len);
 *   PV_AGAIN  a callback called pv_xmlstream_restart() or
 *             pv_xmlstream_free(): parsing stopped right after the element
 *             (or header) whose callback did so, and *consumed is the
 *             number of bytes of buf up to and including its end tag. The
 *             rest of buf was not looked at: after a restart feed it again
 *             (SASL success) or hand it to the next layer (after STARTTLS
 *             <proceed/> it is TLS, RFC 6120 §5.4.3.3). After a free, xs is
 *             gone;
 *   PV_ERROR  error() was called, now or by an earlier feed; no more
 *             callbacks will come until pv_xmlstream_restart().
 * consumed may be NULL. Must not be called from one of xs's callbacks
 * (it returns PV_ERROR there without looking at buf).
 * When a feed ends at a stanza boundary (only whitespace after the last
 * complete depth-1 element or the stream header) the expat parser is
 * freed; the next feed that is not pure whitespace rebuilds it from the
 * saved namespace context. */
int pv_xmlstream_feed(pv_xmlstream_t *xs, const char *buf, size_t len,
                      size_t *consumed);

/* Forgets the current stream and expects a new stream header (after
 * STARTTLS or SASL success, RFC 6120 §5.4.3.3, §6.4.6), clearing an error
 * too. From inside a callback it stops the current feed (PV_AGAIN). */
void pv_xmlstream_restart(pv_xmlstream_t *xs);

/* Frees xs and any stanza under construction. From inside a callback the
 * free happens when the callback returns to the parser, and the feed
 * returns PV_AGAIN (or PV_ERROR from the error callback). NULL is
 * ignored. */
void pv_xmlstream_free(pv_xmlstream_t *xs);

/* Lazy release: with lazy set, a feed that ends between stanzas keeps the
 * expat parser (rebuilding it costs more than a busy stream's stanzas),
 * and pv_xmlstream_idle() releases it once the owner finds the stream
 * idle. Without lazy (the default) every such feed releases it. */
void pv_xmlstream_set_lazy(pv_xmlstream_t *xs, int lazy);
void pv_xmlstream_idle(pv_xmlstream_t *xs);

/* Bytes the parser currently holds: its own struct, the saved stream
 * context, the stanza under construction and pending text, plus
 * PV_XMLSTREAM_EXPAT_COST for a live expat parser (expat has no per-parser
 * accounting; the constant was measured with a counting allocator on
 * expat 2.5 after a stream header) and the bytes of an unfinished token
 * expat is buffering. For tests of the idle release. */
size_t pv_xmlstream_memory(const pv_xmlstream_t *xs);

#define PV_XMLSTREAM_EXPAT_COST 9500

#endif
