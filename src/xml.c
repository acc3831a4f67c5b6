/* src/xml.c: the pv_node tree (builder, queries, copy, equality), its
 * serializer, and the stanza lifecycle (refcount, cached wire form).
 * Everything is allocated in caller-supplied arenas; parsing lives in
 * src/xmlstream.c, reply/error helpers in src/stanza.c. */
#include <stdlib.h>
#include <string.h>

#include <palaver/stanza.h>
#include <palaver/xml.h>

/* --- building ------------------------------------------------------- */

static const char *
node_ns_for(pv_arena_t *arena, const char *xmlns, const pv_node_t *parent)
{
    /* Children share the parent's namespace string when equal: most of a
     * stanza is in one namespace, so this saves a copy per element. */
    if (xmlns == NULL)
        return parent != NULL ? parent->xmlns : "";
    if (parent != NULL && strcmp(parent->xmlns, xmlns) == 0)
        return parent->xmlns;
    if (xmlns[0] == '\0')
        return "";
    return pv_arena_strdup(arena, xmlns);
}

void
pv_node_append(pv_node_t *parent, pv_node_t *child)
{
    child->parent = parent;
    child->next = NULL;
    if (parent->last_child != NULL)
        parent->last_child->next = child;
    else
        parent->children = child;
    parent->last_child = child;
}

pv_node_t *
pv_node_new(pv_arena_t *arena, const char *name, const char *xmlns,
            pv_node_t *parent)
{
    pv_node_t *n = pv_arena_calloc(arena, sizeof(*n));

    n->name = pv_arena_strdup(arena, name);
    n->xmlns = node_ns_for(arena, xmlns, parent);
    if (parent != NULL)
        pv_node_append(parent, n);
    return n;
}

static int
ns_eq(const char *a, const char *b)
{
    if (a == NULL || a[0] == '\0')
        return b == NULL || b[0] == '\0';
    return b != NULL && strcmp(a, b) == 0;
}

/* Splits "xml:lang" into {PV_NS_XML}lang; other names are unqualified. */
static const char *
attr_split(const char *name, const char **ns)
{
    if (strncmp(name, "xml:", 4) == 0) {
        *ns = PV_NS_XML;
        return name + 4;
    }
    *ns = NULL;
    return name;
}

static pv_attr_t **
attr_find(pv_node_t *node, const char *ns, const char *name)
{
    pv_attr_t **ap;

    for (ap = &node->attrs; *ap != NULL; ap = &(*ap)->next)
        if (strcmp((*ap)->name, name) == 0 && ns_eq((*ap)->ns, ns))
            return ap;
    return NULL;
}

void
pv_node_set_attr_ns(pv_arena_t *arena, pv_node_t *node, const char *ns,
                    const char *name, const char *value)
{
    pv_attr_t **ap = attr_find(node, ns, name);
    pv_attr_t *a;

    if (value == NULL) {
        if (ap != NULL)
            *ap = (*ap)->next;
        return;
    }
    if (ap != NULL) {
        (*ap)->value = pv_arena_strdup(arena, value);
        return;
    }
    a = pv_arena_calloc(arena, sizeof(*a));
    a->name = pv_arena_strdup(arena, name);
    if (ns == NULL || ns[0] == '\0')
        a->ns = NULL;
    else if (strcmp(ns, PV_NS_XML) == 0)
        a->ns = PV_NS_XML;          /* immutable literal: no copy needed */
    else
        a->ns = pv_arena_strdup(arena, ns);
    a->value = pv_arena_strdup(arena, value);
    /* keep document order: serialisation stays stable and readable */
    for (ap = &node->attrs; *ap != NULL; ap = &(*ap)->next)
        ;
    *ap = a;
}

void
pv_node_set_attr(pv_arena_t *arena, pv_node_t *node, const char *name,
                 const char *value)
{
    const char *ns;
    const char *local = attr_split(name, &ns);

    pv_node_set_attr_ns(arena, node, ns, local, value);
}

const char *
pv_node_attr_ns(const pv_node_t *node, const char *ns, const char *name)
{
    const pv_attr_t *a;

    for (a = node->attrs; a != NULL; a = a->next)
        if (strcmp(a->name, name) == 0 && ns_eq(a->ns, ns))
            return a->value;
    return NULL;
}

const char *
pv_node_attr(const pv_node_t *node, const char *name)
{
    const char *ns;
    const char *local = attr_split(name, &ns);

    return pv_node_attr_ns(node, ns, local);
}

int
pv_node_remove_attr(pv_node_t *node, const char *name)
{
    const char *ns;
    const char *local = attr_split(name, &ns);
    pv_attr_t **ap = attr_find(node, ns, local);

    if (ap == NULL)
        return PV_NOTFOUND;
    *ap = (*ap)->next;
    return PV_OK;
}

pv_node_t *
pv_node_add_text(pv_arena_t *arena, pv_node_t *node, const char *text,
                 size_t len)
{
    pv_node_t *last = node->last_child;
    pv_node_t *t;
    char *s;

    if (last != NULL && last->name == NULL) {
        /* Merging copies: fine for builders, which add text once or twice;
         * the stream parser collects a text run before adding it. */
        s = pv_arena_alloc(arena, last->text_len + len + 1);
        memcpy(s, last->text, last->text_len);
        memcpy(s + last->text_len, text, len);
        s[last->text_len + len] = '\0';
        last->text = s;
        last->text_len += len;
        return last;
    }
    t = pv_arena_calloc(arena, sizeof(*t));
    t->text = pv_arena_strndup(arena, text, len);
    t->text_len = len;
    pv_node_append(node, t);
    return t;
}

/* --- queries -------------------------------------------------------- */

static int
node_matches(const pv_node_t *n, const char *name, const char *xmlns)
{
    return n->name != NULL
        && (name == NULL || strcmp(n->name, name) == 0)
        && (xmlns == NULL || strcmp(n->xmlns, xmlns) == 0);
}

pv_node_t *
pv_node_next_child(const pv_node_t *node, const pv_node_t *after,
                   const char *name, const char *xmlns)
{
    pv_node_t *c = after != NULL ? after->next : node->children;

    for (; c != NULL; c = c->next)
        if (node_matches(c, name, xmlns))
            return c;
    return NULL;
}

pv_node_t *
pv_node_child(const pv_node_t *node, const char *name, const char *xmlns)
{
    return pv_node_next_child(node, NULL, name, xmlns);
}

pv_node_t *
pv_node_first_element(const pv_node_t *node)
{
    return pv_node_next_child(node, NULL, NULL, NULL);
}

const char *
pv_node_text(const pv_node_t *node, pv_arena_t *arena)
{
    const pv_node_t *c, *only = NULL;
    size_t len = 0, n_text = 0;
    char *s, *p;

    for (c = node->children; c != NULL; c = c->next)
        if (c->name == NULL) {
            only = c;
            len += c->text_len;
            n_text++;
        }
    if (n_text == 0)
        return "";
    if (n_text == 1)
        return only->text;
    p = s = pv_arena_alloc(arena, len + 1);
    for (c = node->children; c != NULL; c = c->next)
        if (c->name == NULL) {
            memcpy(p, c->text, c->text_len);
            p += c->text_len;
        }
    *p = '\0';
    return s;
}

static int
attrs_subset(const pv_node_t *a, const pv_node_t *b)
{
    const pv_attr_t *x;
    const char *v;

    for (x = a->attrs; x != NULL; x = x->next) {
        v = pv_node_attr_ns(b, x->ns, x->name);
        if (v == NULL || strcmp(v, x->value) != 0)
            return 0;
    }
    return 1;
}

/* Collects the text run starting at *c into buf and advances *c past it. */
static void
text_run(const pv_node_t **c, pv_buf_t *buf)
{
    pv_buf_reset(buf);
    while (*c != NULL && (*c)->name == NULL) {
        pv_buf_append(buf, (*c)->text, (*c)->text_len);
        *c = (*c)->next;
    }
}

int
pv_node_equal(const pv_node_t *a, const pv_node_t *b)
{
    const pv_node_t *ca, *cb;
    pv_buf_t ta = {0}, tb = {0};
    int eq = 1;

    if ((a->name == NULL) != (b->name == NULL))
        return 0;
    if (a->name == NULL)
        return a->text_len == b->text_len
            && memcmp(a->text, b->text, a->text_len) == 0;
    if (strcmp(a->name, b->name) != 0 || strcmp(a->xmlns, b->xmlns) != 0
        || !attrs_subset(a, b) || !attrs_subset(b, a))
        return 0;
    ca = a->children;
    cb = b->children;
    while (eq && (ca != NULL || cb != NULL)) {
        if (ca == NULL || cb == NULL) {
            eq = 0;
        } else if (ca->name == NULL || cb->name == NULL) {
            text_run(&ca, &ta);
            text_run(&cb, &tb);
            eq = ta.len == tb.len && memcmp(ta.data, tb.data, ta.len) == 0;
        } else {
            eq = pv_node_equal(ca, cb);
            ca = ca->next;
            cb = cb->next;
        }
    }
    pv_buf_free(&ta);
    pv_buf_free(&tb);
    return eq;
}

/* --- moving and copying -------------------------------------------- */

static pv_node_t *
node_copy(pv_arena_t *arena, const pv_node_t *src, pv_node_t *parent)
{
    pv_node_t *n = pv_arena_calloc(arena, sizeof(*n));
    const pv_attr_t *a;
    const pv_node_t *c;
    pv_attr_t **tail = &n->attrs, *na;

    if (src->name == NULL) {
        n->text = pv_arena_strndup(arena, src->text, src->text_len);
        n->text_len = src->text_len;
    } else {
        n->name = pv_arena_strdup(arena, src->name);
        n->xmlns = node_ns_for(arena, src->xmlns, parent);
        for (a = src->attrs; a != NULL; a = a->next) {
            na = pv_arena_calloc(arena, sizeof(*na));
            na->name = pv_arena_strdup(arena, a->name);
            if (a->ns != NULL)
                na->ns = strcmp(a->ns, PV_NS_XML) == 0
                    ? PV_NS_XML : pv_arena_strdup(arena, a->ns);
            na->value = pv_arena_strdup(arena, a->value);
            *tail = na;
            tail = &na->next;
        }
    }
    if (parent != NULL)
        pv_node_append(parent, n);
    /* recursion depth is bounded by the parser's max_depth for parsed
     * trees and by the code that built the others */
    for (c = src->children; c != NULL; c = c->next)
        node_copy(arena, c, n);
    return n;
}

pv_node_t *
pv_node_copy(pv_arena_t *arena, const pv_node_t *node)
{
    return node_copy(arena, node, NULL);
}

void
pv_node_remove(pv_node_t *node)
{
    pv_node_t *p = node->parent, *prev = NULL, *c;

    if (p == NULL)
        return;
    for (c = p->children; c != NULL && c != node; c = c->next)
        prev = c;
    if (c == NULL)
        return;
    if (prev != NULL)
        prev->next = node->next;
    else
        p->children = node->next;
    if (p->last_child == node)
        p->last_child = prev;
    node->parent = NULL;
    node->next = NULL;
}

/* --- serialising ---------------------------------------------------- */

static int
is_content_ns(const char *ns)
{
    return strcmp(ns, PV_NS_CLIENT) == 0 || strcmp(ns, PV_NS_SERVER) == 0;
}

/* RFC 6120 §4.8.3: jabber:client and jabber:server carry the same
 * stanzas; treating them as one lets a stanza cross between c2s and s2s
 * without rewriting. */
static int
ns_same(const char *a, const char *b)
{
    if (a == b || strcmp(a, b) == 0)
        return 1;
    return is_content_ns(a) && is_content_ns(b);
}

/* pv_buf_append_escaped plus what it leaves alone: TAB/LF in attribute
 * values and CR anywhere would be normalised away by the reader (XML 1.0
 * §2.11, §3.3.3), so write them as character references; other C0
 * controls cannot appear in XML 1.0 at all and are dropped. */
static void
escape(pv_buf_t *out, const char *s, size_t len, int in_attr)
{
    size_t i, start = 0;
    unsigned char c;
    const char *rep;

    for (i = 0; i < len; i++) {
        c = (unsigned char)s[i];
        if (c >= 0x20)
            continue;
        if (c == '\t')
            rep = in_attr ? "&#9;" : NULL;
        else if (c == '\n')
            rep = in_attr ? "&#10;" : NULL;
        else if (c == '\r')
            rep = "&#13;";
        else
            rep = "";
        if (rep == NULL)
            continue;
        pv_buf_append_escaped(out, s + start, i - start, in_attr);
        pv_buf_puts(out, rep);
        start = i + 1;
    }
    pv_buf_append_escaped(out, s + start, len - start, in_attr);
}

/* Index of the generated prefix for namespace ns among the qualified
 * (non-xml) attributes of n: one prefix per distinct namespace. */
static unsigned
attr_prefix_index(const pv_node_t *n, const char *ns)
{
    const pv_attr_t *a, *b;
    unsigned idx = 0;

    for (a = n->attrs; a != NULL; a = a->next) {
        if (a->ns == NULL || strcmp(a->ns, PV_NS_XML) == 0)
            continue;
        for (b = n->attrs; b != a; b = b->next)
            if (b->ns != NULL && strcmp(b->ns, a->ns) == 0)
                break;
        if (b != a)
            continue;               /* not the first of its namespace */
        if (strcmp(a->ns, ns) == 0)
            return idx;
        idx++;
    }
    return idx;
}

static void
serialize_attrs(const pv_node_t *n, pv_buf_t *out)
{
    const pv_attr_t *a, *b;
    unsigned idx;

    for (a = n->attrs; a != NULL; a = a->next) {
        pv_buf_puts(out, " ");
        if (a->ns == NULL) {
            pv_buf_puts(out, a->name);
        } else if (strcmp(a->ns, PV_NS_XML) == 0) {
            pv_buf_puts(out, "xml:");
            pv_buf_puts(out, a->name);
        } else {
            idx = attr_prefix_index(n, a->ns);
            /* declare the prefix before its first use on this element */
            for (b = n->attrs; b != a; b = b->next)
                if (b->ns != NULL && strcmp(b->ns, a->ns) == 0)
                    break;
            if (b == a) {
                pv_buf_printf(out, "xmlns:ns%u='", idx);
                escape(out, a->ns, strlen(a->ns), 1);
                pv_buf_puts(out, "' ");
            }
            pv_buf_printf(out, "ns%u:%s", idx, a->name);
        }
        pv_buf_puts(out, "='");
        escape(out, a->value, strlen(a->value), 1);
        pv_buf_puts(out, "'");
    }
}

static void
serialize(const pv_node_t *n, pv_buf_t *out, const char *parent_ns)
{
    const pv_node_t *c;

    if (n->name == NULL) {
        escape(out, n->text, n->text_len, 0);
        return;
    }
    pv_buf_puts(out, "<");
    pv_buf_puts(out, n->name);
    if (!ns_same(n->xmlns, parent_ns)) {
        pv_buf_puts(out, " xmlns='");
        escape(out, n->xmlns, strlen(n->xmlns), 1);
        pv_buf_puts(out, "'");
    }
    serialize_attrs(n, out);
    if (n->children == NULL) {
        pv_buf_puts(out, "/>");
        return;
    }
    pv_buf_puts(out, ">");
    for (c = n->children; c != NULL; c = c->next)
        serialize(c, out, n->xmlns);
    pv_buf_puts(out, "</");
    pv_buf_puts(out, n->name);
    pv_buf_puts(out, ">");
}

void
pv_node_serialize(const pv_node_t *n, pv_buf_t *out, const char *stream_ns)
{
    serialize(n, out, stream_ns != NULL ? stream_ns : "");
}

/* --- stanza lifecycle ------------------------------------------------ */

static void
stanza_scan(pv_stanza_t *st)
{
    const pv_node_t *r = st->root;

    st->kind = PV_STANZA_OTHER;
    if (r->name != NULL && is_content_ns(r->xmlns)) {
        if (strcmp(r->name, "message") == 0)
            st->kind = PV_STANZA_MESSAGE;
        else if (strcmp(r->name, "presence") == 0)
            st->kind = PV_STANZA_PRESENCE;
        else if (strcmp(r->name, "iq") == 0)
            st->kind = PV_STANZA_IQ;
    }
    st->type = pv_node_attr(r, "type");
    st->id = pv_node_attr(r, "id");
}

pv_stanza_t *
pv_stanza_new(pv_arena_t *arena, pv_node_t *root)
{
    pv_stanza_t *st = pv_arena_calloc(arena, sizeof(*st));

    st->refs = 1;
    st->arena = arena;
    st->root = root;
    stanza_scan(st);
    return st;
}

pv_stanza_t *
pv_stanza_build(const char *name)
{
    pv_arena_t *arena = pv_arena_new(1024);

    return pv_stanza_new(arena, pv_node_new(arena, name, PV_NS_CLIENT,
                                            NULL));
}

pv_stanza_t *
pv_stanza_ref(pv_stanza_t *st)
{
    st->refs++;
    return st;
}

void
pv_stanza_unref(pv_stanza_t *st)
{
    if (st == NULL || --st->refs > 0)
        return;
    free(st->wire);
    /* st lives in its arena: nothing may touch it after this */
    pv_arena_free(st->arena);
}

pv_stanza_t *
pv_stanza_copy(const pv_stanza_t *st)
{
    pv_arena_t *arena = pv_arena_new(pv_arena_size(st->arena));
    size_t need;

    /* copies are often kept (last presence, offline queue): size the
     * arena to the tree, not to the parser's growth of the original */
    pv_node_copy(arena, st->root);
    need = pv_arena_used(arena) + sizeof(pv_stanza_t) + 64;
    pv_arena_free(arena);
    arena = pv_arena_new(need);
    return pv_stanza_new(arena, pv_node_copy(arena, st->root));
}

const char *
pv_stanza_wire(pv_stanza_t *st, size_t *len)
{
    pv_buf_t b = {0};

    if (st->wire == NULL) {
        pv_node_serialize(st->root, &b, PV_NS_CLIENT);
        st->wire = pv_buf_steal(&b, &st->wire_len);
    }
    if (len != NULL)
        *len = st->wire_len;
    return st->wire;
}

void
pv_stanza_touch(pv_stanza_t *st)
{
    free(st->wire);
    st->wire = NULL;
    st->wire_len = 0;
    stanza_scan(st);
}

/* --- packed form ---------------------------------------------------------
 * For modules that store XML (the module API has no parser): a pre-order
 * walk, 'E' name NUL xmlns NUL, then per attribute 'A' ns NUL
 * name NUL value NUL (ns "" when unqualified), children ('E'... or 'T'
 * u32-BE length and bytes), then 'e'. Names and values never hold NUL
 * (XML forbids it), so the terminators are unambiguous. */

static void
node_pack_into(pv_buf_t *b, const pv_node_t *n)
{
    const pv_attr_t *a;
    const pv_node_t *c;

    if (n->name == NULL) {
        uint8_t len[4] = { (uint8_t)(n->text_len >> 24),
                           (uint8_t)(n->text_len >> 16),
                           (uint8_t)(n->text_len >> 8),
                           (uint8_t)n->text_len };
        pv_buf_append(b, "T", 1);
        pv_buf_append(b, len, 4);
        pv_buf_append(b, n->text, n->text_len);
        return;
    }
    pv_buf_append(b, "E", 1);
    pv_buf_append(b, n->name, strlen(n->name) + 1);
    pv_buf_append(b, n->xmlns, strlen(n->xmlns) + 1);
    for (a = n->attrs; a != NULL; a = a->next) {
        const char *ns = a->ns != NULL ? a->ns : "";
        pv_buf_append(b, "A", 1);
        pv_buf_append(b, ns, strlen(ns) + 1);
        pv_buf_append(b, a->name, strlen(a->name) + 1);
        pv_buf_append(b, a->value, strlen(a->value) + 1);
    }
    for (c = n->children; c != NULL; c = c->next)
        node_pack_into(b, c);
    pv_buf_append(b, "e", 1);
}

typedef struct {
    const char *p, *end;
} node_reader_t;

static const char *
node_read_str(node_reader_t *r)
{
    const char *s = r->p;
    const char *nul = memchr(r->p, '\0', (size_t)(r->end - r->p));

    if (nul == NULL)
        return NULL;
    r->p = nul + 1;
    return s;
}

/* Rebuilds one element below parent; NULL when the bytes are not what
 * node_pack_into() writes (a damaged row must not crash the server). */
static pv_node_t *
node_unpack(pv_arena_t *arena, node_reader_t *r, pv_node_t *parent,
             int depth)
{
    const char *name, *xmlns;
    pv_node_t *n;

    if (depth > PV_NODE_PACK_MAX_DEPTH || r->p >= r->end || *r->p != 'E')
        return NULL;
    r->p++;
    if ((name = node_read_str(r)) == NULL || *name == '\0' ||
        (xmlns = node_read_str(r)) == NULL)
        return NULL;
    n = pv_node_new(arena, name, xmlns, parent);
    while (r->p < r->end) {
        const char *ns, *an, *av;
        size_t len;

        switch (*r->p) {
        case 'A':
            r->p++;
            if ((ns = node_read_str(r)) == NULL ||
                (an = node_read_str(r)) == NULL || *an == '\0' ||
                (av = node_read_str(r)) == NULL)
                return NULL;
            pv_node_set_attr_ns(arena, n, *ns ? ns : NULL, an, av);
            break;
        case 'T':
            if (r->end - r->p < 5)
                return NULL;
            len = (size_t)(uint8_t)r->p[1] << 24 |
                  (size_t)(uint8_t)r->p[2] << 16 |
                  (size_t)(uint8_t)r->p[3] << 8 | (size_t)(uint8_t)r->p[4];
            r->p += 5;
            if (len > (size_t)(r->end - r->p))
                return NULL;
            pv_node_add_text(arena, n, r->p, len);
            r->p += len;
            break;
        case 'E':
            if (node_unpack(arena, r, n, depth + 1) == NULL)
                return NULL;
            break;
        case 'e':
            r->p++;
            return n;
        default:
            return NULL;
        }
    }
    return NULL;
}

void
pv_node_pack(const pv_node_t *n, pv_buf_t *b)
{
    node_pack_into(b, n);
}

pv_node_t *
pv_node_unpack(pv_arena_t *arena, const void *data, size_t len,
               pv_node_t *parent)
{
    node_reader_t r = { data, (const char *)data + len };
    pv_node_t *n = node_unpack(arena, &r, parent, 0);

    return n != NULL && r.p == r.end ? n : NULL;
}
