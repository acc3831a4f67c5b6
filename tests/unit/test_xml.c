/* tests/unit/test_xml.c: the pv_node tree (builder, queries, copy,
 * equality), the serializer (escaping, namespaces, the jabber:client /
 * jabber:server equivalence, generated prefixes, round trips through the
 * stream parser) and the stanza lifecycle. */
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include <palaver/stanza.h>
#include <palaver/xml.h>

#include "xmlstream.h"

static char *
ser(const pv_node_t *n, const char *stream_ns)
{
    pv_buf_t b = {0};

    pv_node_serialize(n, &b, stream_ns);
    return pv_buf_steal(&b, NULL);
}

#define CHECK_SER(node, ns, expect)                                       \
    do {                                                                  \
        char *s_ = ser((node), (ns));                                     \
        CU_ASSERT_STRING_EQUAL(s_, (expect));                             \
        free(s_);                                                         \
    } while (0)

static void
test_build_attrs(void)
{
    pv_arena_t *a = pv_arena_new(0);
    pv_node_t *m = pv_node_new(a, "message", PV_NS_CLIENT, NULL);

    pv_node_set_attr(a, m, "to", "juliet@example.com");
    pv_node_set_attr(a, m, "type", "chat");
    pv_node_set_attr(a, m, "xml:lang", "en");
    CU_ASSERT_STRING_EQUAL(pv_node_attr(m, "to"), "juliet@example.com");
    CU_ASSERT_STRING_EQUAL(pv_node_attr(m, "xml:lang"), "en");
    CU_ASSERT_STRING_EQUAL(pv_node_attr_ns(m, PV_NS_XML, "lang"), "en");
    CU_ASSERT_PTR_NULL(pv_node_attr(m, "lang"));   /* not unqualified */
    CU_ASSERT_PTR_NULL(pv_node_attr(m, "from"));

    pv_node_set_attr(a, m, "type", "normal");      /* replaces */
    CU_ASSERT_STRING_EQUAL(pv_node_attr(m, "type"), "normal");
    CU_ASSERT_PTR_NULL(m->attrs->next->next->next);

    CU_ASSERT_EQUAL(pv_node_remove_attr(m, "to"), PV_OK);
    CU_ASSERT_EQUAL(pv_node_remove_attr(m, "to"), PV_NOTFOUND);
    CU_ASSERT_PTR_NULL(pv_node_attr(m, "to"));
    pv_node_set_attr(a, m, "type", NULL);          /* NULL removes */
    CU_ASSERT_PTR_NULL(pv_node_attr(m, "type"));
    CU_ASSERT_STRING_EQUAL(m->attrs->name, "lang");
    CU_ASSERT_PTR_NULL(m->attrs->next);

    pv_node_set_attr_ns(a, m, "urn:x", "foo", "1");
    CU_ASSERT_STRING_EQUAL(pv_node_attr_ns(m, "urn:x", "foo"), "1");
    CU_ASSERT_PTR_NULL(pv_node_attr(m, "foo"));
    pv_arena_free(a);
}

static void
test_children(void)
{
    pv_arena_t *a = pv_arena_new(0);
    pv_node_t *iq = pv_node_new(a, "iq", PV_NS_CLIENT, NULL);
    pv_node_t *q = pv_node_new(a, "query", "jabber:iq:roster", iq);
    pv_node_t *i1 = pv_node_new(a, "item", NULL, q);
    pv_node_t *i2, *i3, *b;

    pv_node_add_text(a, q, "  ", 2);
    i2 = pv_node_new(a, "item", NULL, q);
    i3 = pv_node_new(a, "group", NULL, q);

    CU_ASSERT_STRING_EQUAL(i1->xmlns, "jabber:iq:roster");  /* inherited */
    CU_ASSERT_PTR_EQUAL(i1->xmlns, q->xmlns);               /* shared */
    CU_ASSERT_PTR_EQUAL(pv_node_first_element(iq), q);
    CU_ASSERT_PTR_EQUAL(pv_node_child(iq, "query", "jabber:iq:roster"), q);
    CU_ASSERT_PTR_NULL(pv_node_child(iq, "query", PV_NS_CLIENT));
    CU_ASSERT_PTR_EQUAL(pv_node_child(iq, NULL, NULL), q);
    CU_ASSERT_PTR_EQUAL(pv_node_child(q, "item", NULL), i1);
    CU_ASSERT_PTR_EQUAL(pv_node_next_child(q, i1, "item", NULL), i2);
    CU_ASSERT_PTR_NULL(pv_node_next_child(q, i2, "item", NULL));
    CU_ASSERT_PTR_EQUAL(pv_node_next_child(q, i2, NULL, NULL), i3);

    /* text: merged runs, concatenation across elements */
    b = pv_node_new(a, "body", NULL, iq);
    CU_ASSERT_STRING_EQUAL(pv_node_text(b, a), "");
    pv_node_add_text(a, b, "Hello", 5);
    CU_ASSERT_PTR_EQUAL(pv_node_add_text(a, b, ", world!", 6), b->children);
    CU_ASSERT_STRING_EQUAL(pv_node_text(b, a), "Hello, worl");
    pv_node_new(a, "x", NULL, b);
    pv_node_add_text(a, b, "d", 1);
    CU_ASSERT_STRING_EQUAL(pv_node_text(b, a), "Hello, world");

    /* remove and append */
    pv_node_remove(i2);
    CU_ASSERT_PTR_NULL(i2->parent);
    CU_ASSERT_PTR_EQUAL(pv_node_next_child(q, i1, NULL, NULL), i3);
    pv_node_remove(i3);
    CU_ASSERT_PTR_EQUAL(q->last_child, q->children->next);  /* the text */
    pv_node_append(q, i3);
    CU_ASSERT_PTR_EQUAL(q->last_child, i3);
    CU_ASSERT_PTR_EQUAL(i3->parent, q);
    pv_node_remove(i1);
    pv_node_remove(q->children);                            /* the text */
    CU_ASSERT_PTR_EQUAL(q->children, i3);
    CU_ASSERT_PTR_EQUAL(q->last_child, i3);
    pv_arena_free(a);
}

static void
test_serialize_table(void)
{
    pv_arena_t *a = pv_arena_new(0);
    pv_node_t *m, *n, *x;

    /* escaping of text and attribute values */
    m = pv_node_new(a, "message", PV_NS_CLIENT, NULL);
    pv_node_set_attr(a, m, "to", "a'b\"c<d>&e");
    n = pv_node_new(a, "body", NULL, m);
    pv_node_add_text(a, n, "1 < 2 & 3 > 'q' \"d\"", 19);
    CHECK_SER(m, PV_NS_CLIENT,
              "<message to='a&apos;b&quot;c&lt;d&gt;&amp;e'>"
              "<body>1 &lt; 2 &amp; 3 &gt; 'q' \"d\"</body></message>");
    /* no namespace in scope: the top element declares its own */
    CHECK_SER(m, NULL,
              "<message xmlns='jabber:client' to='a&apos;b&quot;c&lt;d&gt;"
              "&amp;e'><body>1 &lt; 2 &amp; 3 &gt; 'q' \"d\"</body>"
              "</message>");
    /* jabber:client and jabber:server are interchangeable */
    CHECK_SER(n, PV_NS_SERVER, "<body>1 &lt; 2 &amp; 3 &gt; 'q' \"d\"</body>");
    CHECK_SER(m, "urn:other",
              "<message xmlns='jabber:client' to='a&apos;b&quot;c&lt;d&gt;"
              "&amp;e'><body>1 &lt; 2 &amp; 3 &gt; 'q' \"d\"</body>"
              "</message>");

    /* nested namespaces: declared where they change, and back */
    m = pv_node_new(a, "iq", PV_NS_SERVER, NULL);
    pv_node_set_attr(a, m, "type", "result");
    n = pv_node_new(a, "query", "jabber:iq:roster", m);
    x = pv_node_new(a, "item", NULL, n);
    pv_node_set_attr(a, x, "jid", "romeo@example.net");
    pv_node_new(a, "group", NULL, x);
    pv_node_new(a, "forwarded", PV_NS_CLIENT, n);
    CHECK_SER(m, PV_NS_CLIENT,
              "<iq type='result'><query xmlns='jabber:iq:roster'>"
              "<item jid='romeo@example.net'><group/></item>"
              "<forwarded xmlns='jabber:client'/></query></iq>");

    /* xml:lang, generated prefixes, empty namespace */
    m = pv_node_new(a, "presence", PV_NS_CLIENT, NULL);
    pv_node_set_attr(a, m, "xml:lang", "de");
    pv_node_set_attr_ns(a, m, "urn:a", "x", "1");
    pv_node_set_attr(a, m, "id", "p1");
    pv_node_set_attr_ns(a, m, "urn:b", "y", "2");
    pv_node_set_attr_ns(a, m, "urn:a", "z", "3");
    pv_node_new(a, "nons", "", m);
    CHECK_SER(m, PV_NS_CLIENT,
              "<presence xml:lang='de' xmlns:ns0='urn:a' ns0:x='1' id='p1' "
              "xmlns:ns1='urn:b' ns1:y='2' ns0:z='3'><nons xmlns=''/>"
              "</presence>");

    /* whitespace that the reader would normalise, controls dropped */
    m = pv_node_new(a, "body", PV_NS_CLIENT, NULL);
    pv_node_set_attr(a, m, "a", "t\tn\nr\rc\001.");
    pv_node_add_text(a, m, "t\tn\nr\rc\002.", 9);
    CHECK_SER(m, PV_NS_CLIENT,
              "<body a='t&#9;n&#10;r&#13;c.'>t\tn\nr&#13;c.</body>");
    pv_arena_free(a);
}

static void
test_copy_equal(void)
{
    pv_arena_t *a = pv_arena_new(0), *b = pv_arena_new(0);
    pv_node_t *m = pv_node_new(a, "message", PV_NS_CLIENT, NULL);
    pv_node_t *body, *c, *d;

    pv_node_set_attr(a, m, "to", "x@y");
    pv_node_set_attr_ns(a, m, "urn:a", "q", "v");
    body = pv_node_new(a, "body", NULL, m);
    pv_node_add_text(a, body, "hi", 2);
    pv_node_new(a, "active", "http://jabber.org/protocol/chatstates", m);
    c = pv_node_copy(b, m);
    pv_arena_free(a);           /* the copy must not depend on it */
    CU_ASSERT_PTR_NULL(c->parent);
    CU_ASSERT_STRING_EQUAL(pv_node_attr(c, "to"), "x@y");
    CU_ASSERT_STRING_EQUAL(pv_node_attr_ns(c, "urn:a", "q"), "v");
    CU_ASSERT_STRING_EQUAL(pv_node_text(pv_node_child(c, "body", NULL), b),
                           "hi");
    CHECK_SER(c, PV_NS_CLIENT,
              "<message to='x@y' xmlns:ns0='urn:a' ns0:q='v'><body>hi</body>"
              "<active xmlns='http://jabber.org/protocol/chatstates'/>"
              "</message>");

    d = pv_node_copy(b, c);
    CU_ASSERT_TRUE(pv_node_equal(c, d));
    /* attribute order does not matter, values do */
    pv_node_set_attr(b, d, "to", NULL);
    pv_node_set_attr(b, d, "to", "x@y");
    CU_ASSERT_TRUE(pv_node_equal(c, d));
    pv_node_set_attr(b, d, "to", "x@z");
    CU_ASSERT_FALSE(pv_node_equal(c, d));
    pv_node_set_attr(b, d, "to", "x@y");
    /* adjacent text compares as one run */
    body = pv_node_child(d, "body", NULL);
    pv_node_remove(body->children);
    pv_node_add_text(b, body, "h", 1);
    pv_node_add_text(b, body, "i", 1);
    CU_ASSERT_TRUE(pv_node_equal(c, d));
    pv_node_add_text(b, body, "!", 1);
    CU_ASSERT_FALSE(pv_node_equal(c, d));
    pv_node_remove(body);
    CU_ASSERT_FALSE(pv_node_equal(c, d));
    pv_arena_free(b);
}

/* --- round trips through the stream parser --------------------------- */

typedef struct {
    pv_stanza_t *st[4];
    int n;
    int errors;
} collect_t;

static void
col_stanza(void *ud, pv_stanza_t *st)
{
    collect_t *c = ud;

    if (c->n < 4)
        c->st[c->n++] = st;
    else
        pv_stanza_unref(st);
}

static void
col_error(void *ud, const char *cond, const char *text)
{
    (void)cond;
    (void)text;
    ((collect_t *)ud)->errors++;
}

static const pv_xmlstream_cb_t col_cb = {
    .stanza = col_stanza,
    .error = col_error,
};

/* Parses body inside a stream with default namespace ns. */
static void
parse_in_stream(collect_t *c, const char *ns, const char *body, size_t len)
{
    pv_xmlstream_t *xs = pv_xmlstream_new(&col_cb, c, NULL);
    pv_buf_t b = {0};

    pv_buf_printf(&b, "<stream:stream xmlns='%s' xmlns:stream='"
                  PV_NS_STREAMS "'>", ns);
    pv_buf_append(&b, body, len);
    CU_ASSERT_EQUAL(pv_xmlstream_feed(xs, b.data, b.len, NULL), PV_OK);
    pv_buf_free(&b);
    pv_xmlstream_free(xs);
}

static void
test_round_trip(void)
{
    static const char *const stanzas[] = {
        "<message to='romeo@example.net' type='chat' xml:lang='en'>"
        "<body>O &amp; &lt;Romeo&gt; &#x263A; 'x' \"y\"</body>"
        "<html xmlns='http://jabber.org/protocol/xhtml-im'>"
        "<body xmlns='http://www.w3.org/1999/xhtml'><p style='a:b'>x<br/>"
        "y</p></body></html></message>",
        "<iq type='set' id='1'><pubsub xmlns='http://jabber.org/protocol/"
        "pubsub'><publish node='n'><item id='i'><entry xmlns='urn:e' "
        "xmlns:p='urn:p' p:a='1&#9;2&#10;3&#13;' b='&apos;&quot;'>"
        "<![CDATA[<not a tag> & ]]>t&#13;u\r\nv</entry></item></publish>"
        "</pubsub></iq>",
        ("<db:result xmlns:db='jabber:server:dialback' from='a' to='b'>"
         "key</db:result>"),
        "<presence><x xmlns=''><y/></x></presence>",
    };
    size_t i;

    for (i = 0; i < PV_COUNTOF(stanzas); i++) {
        collect_t c1 = {0}, c2 = {0}, c3 = {0};
        const char *w;
        size_t len;

        parse_in_stream(&c1, PV_NS_CLIENT, stanzas[i], strlen(stanzas[i]));
        CU_ASSERT_EQUAL_FATAL(c1.n, 1);
        w = pv_stanza_wire(c1.st[0], &len);
        /* re-parsed on a c2s and on an s2s stream */
        parse_in_stream(&c2, PV_NS_CLIENT, w, len);
        parse_in_stream(&c3, PV_NS_SERVER, w, len);
        CU_ASSERT_EQUAL_FATAL(c2.n, 1);
        CU_ASSERT_EQUAL_FATAL(c3.n, 1);
        CU_ASSERT_EQUAL(c1.errors + c2.errors + c3.errors, 0);
        CU_ASSERT_TRUE(pv_node_equal(c1.st[0]->root, c2.st[0]->root));
        /* on s2s only the content namespace differs */
        CU_ASSERT_EQUAL(c1.st[0]->kind, c3.st[0]->kind);
        {
            char *s1 = ser(c1.st[0]->root, PV_NS_CLIENT);
            char *s3 = ser(c3.st[0]->root, PV_NS_SERVER);
            CU_ASSERT_STRING_EQUAL(s1, s3);
            free(s1);
            free(s3);
        }
        pv_stanza_unref(c1.st[0]);
        pv_stanza_unref(c2.st[0]);
        pv_stanza_unref(c3.st[0]);
    }
}

static void
test_round_trip_built(void)
{
    pv_stanza_t *st = pv_stanza_build("message");
    pv_arena_t *a = st->arena;
    pv_node_t *n;
    collect_t c = {0};
    const char *w;
    size_t len;

    pv_node_set_attr(a, st->root, "to", "a@b/c d\te\nf");
    pv_node_set_attr(a, st->root, "xml:lang", "fr");
    pv_node_set_attr_ns(a, st->root, "urn:one", "k", "v<>&'\"");
    n = pv_node_new(a, "body", NULL, st->root);
    pv_node_add_text(a, n, "line1\r\nline2 ]]> & <", 20);
    n = pv_node_new(a, "x", "urn:x", st->root);
    pv_node_new(a, "y", PV_NS_CLIENT, n);
    pv_node_new(a, "z", "", n);
    w = pv_stanza_wire(st, &len);
    parse_in_stream(&c, PV_NS_CLIENT, w, len);
    CU_ASSERT_EQUAL_FATAL(c.n, 1);
    CU_ASSERT_TRUE(pv_node_equal(st->root, c.st[0]->root));
    pv_stanza_unref(c.st[0]);
    pv_stanza_unref(st);
}

/* --- stanza lifecycle ------------------------------------------------ */

static void
test_stanza_lifecycle(void)
{
    pv_stanza_t *st = pv_stanza_build("iq"), *cp;
    const char *w1, *w2;
    size_t len;

    CU_ASSERT_EQUAL(st->refs, 1);
    CU_ASSERT_EQUAL(st->kind, PV_STANZA_IQ);
    CU_ASSERT_PTR_NULL(st->type);
    CU_ASSERT_PTR_NULL(st->to);
    pv_node_set_attr(st->arena, st->root, "type", "get");
    pv_node_set_attr(st->arena, st->root, "id", "q1");
    pv_node_new(st->arena, "ping", "urn:xmpp:ping", st->root);
    pv_stanza_touch(st);
    CU_ASSERT_STRING_EQUAL(st->type, "get");
    CU_ASSERT_STRING_EQUAL(st->id, "q1");

    w1 = pv_stanza_wire(st, &len);
    CU_ASSERT_STRING_EQUAL(w1, "<iq type='get' id='q1'>"
                           "<ping xmlns='urn:xmpp:ping'/></iq>");
    CU_ASSERT_EQUAL(len, strlen(w1));
    w2 = pv_stanza_wire(st, NULL);
    CU_ASSERT_PTR_EQUAL(w1, w2);                /* cached */

    CU_ASSERT_PTR_EQUAL(pv_stanza_ref(st), st);
    CU_ASSERT_EQUAL(st->refs, 2);
    pv_stanza_unref(st);
    CU_ASSERT_EQUAL(st->refs, 1);

    cp = pv_stanza_copy(st);
    CU_ASSERT_PTR_NOT_EQUAL(cp->arena, st->arena);
    CU_ASSERT_EQUAL(cp->refs, 1);
    CU_ASSERT_PTR_NULL(cp->wire);
    CU_ASSERT_EQUAL(cp->kind, PV_STANZA_IQ);
    CU_ASSERT_STRING_EQUAL(cp->id, "q1");
    pv_node_set_attr(cp->arena, cp->root, "type", "result");
    pv_stanza_touch(cp);
    CU_ASSERT_STRING_EQUAL(cp->type, "result");
    CU_ASSERT_STRING_EQUAL(st->type, "get");
    pv_stanza_unref(st);        /* the copy outlives the original */
    CU_ASSERT_STRING_EQUAL(pv_stanza_wire(cp, NULL),
                           "<iq type='result' id='q1'>"
                           "<ping xmlns='urn:xmpp:ping'/></iq>");
    pv_stanza_unref(cp);
    pv_stanza_unref(NULL);

    st = pv_stanza_build("message");
    CU_ASSERT_EQUAL(st->kind, PV_STANZA_MESSAGE);
    pv_stanza_unref(st);
    st = pv_stanza_build("presence");
    CU_ASSERT_EQUAL(st->kind, PV_STANZA_PRESENCE);
    pv_stanza_unref(st);
    st = pv_stanza_build("starttls");
    CU_ASSERT_EQUAL(st->kind, PV_STANZA_OTHER);
    pv_stanza_unref(st);
}

/* pv_node_pack/pv_node_unpack: a tree survives the round trip, and no
 * truncation or corruption of its bytes makes unpack crash or accept. */
static void
test_pack_round_trip(void)
{
    pv_arena_t *a = pv_arena_new(0);
    pv_node_t *root = pv_node_new(a, "vCard", "vcard-temp", NULL);
    pv_node_t *n = pv_node_new(a, "FN", NULL, root), *back;
    pv_buf_t b = {0};
    size_t i;

    pv_node_add_text(a, n, "J\xc3\xbcliet & <Romeo>",
                     strlen("J\xc3\xbcliet & <Romeo>"));
    pv_node_set_attr(a, root, "xml:lang", "de");
    pv_node_set_attr(a, n, "kind", "it's");
    n = pv_node_new(a, "x", "urn:example:other", root);
    pv_node_set_attr_ns(a, n, "urn:example:attr", "flag", "1");
    pv_node_new(a, "empty", NULL, n);
    pv_node_pack(root, &b);
    back = pv_node_unpack(a, b.data, b.len, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    CU_ASSERT(pv_node_equal(root, back));
    /* below a parent */
    n = pv_node_new(a, "iq", "jabber:client", NULL);
    CU_ASSERT_PTR_EQUAL(pv_node_unpack(a, b.data, b.len, n)->parent, n);
    /* every truncation is refused */
    for (i = 0; i < b.len; i++)
        CU_ASSERT_PTR_NULL(pv_node_unpack(a, b.data, i, NULL));
    /* trailing bytes are refused */
    pv_buf_append(&b, "E", 1);
    CU_ASSERT_PTR_NULL(pv_node_unpack(a, b.data, b.len, NULL));
    /* flipping any byte never crashes (the result may still parse) */
    for (i = 0; i + 1 < b.len; i++) {
        char saved = b.data[i];
        b.data[i] ^= 0x5a;
        (void)pv_node_unpack(a, b.data, b.len - 1, NULL);
        b.data[i] = saved;
    }
    pv_buf_free(&b);
    pv_arena_free(a);
}

static void
test_pack_depth_limit(void)
{
    pv_arena_t *a = pv_arena_new(0);
    pv_node_t *root = pv_node_new(a, "a", "urn:x", NULL), *n = root;
    pv_buf_t b = {0};
    int i;

    for (i = 0; i < PV_NODE_PACK_MAX_DEPTH + 2; i++)
        n = pv_node_new(a, "a", NULL, n);
    pv_node_pack(root, &b);
    CU_ASSERT_PTR_NULL(pv_node_unpack(a, b.data, b.len, NULL));
    pv_buf_free(&b);
    pv_arena_free(a);
}

void
test_suite_xml(void)
{
    CU_pSuite s = CU_add_suite("xml", NULL, NULL);

    CU_add_test(s, "build and attributes", test_build_attrs);
    CU_add_test(s, "children and text", test_children);
    CU_add_test(s, "serializer cases", test_serialize_table);
    CU_add_test(s, "copy and equality", test_copy_equal);
    CU_add_test(s, "round trip of parsed stanzas", test_round_trip);
    CU_add_test(s, "round trip of built stanzas", test_round_trip_built);
    CU_add_test(s, "stanza lifecycle", test_stanza_lifecycle);
    CU_add_test(s, "pack round trip", test_pack_round_trip);
    CU_add_test(s, "pack depth limit", test_pack_depth_limit);
}
