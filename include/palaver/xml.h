/* include/palaver/xml.h: the XML element tree every stanza is made of, its
 * builder, queries and serializer. Every node, attribute and string lives in
 * a pv_arena_t passed by the caller (normally the stanza's arena); nothing
 * here frees memory. Parsing a stream is src/xmlstream.c's job; stanza
 * lifetime (refcounts, cached wire form) is stanza.h's. */
#ifndef PALAVER_XML_H
#define PALAVER_XML_H

#include <stddef.h>

#include <palaver/defs.h>
#include <palaver/mem.h>

#define PV_NS_XML "http://www.w3.org/XML/1998/namespace"
#define PV_NS_CLIENT "jabber:client"
#define PV_NS_SERVER "jabber:server"
#define PV_NS_STREAMS "http://etherx.jabber.org/streams"

typedef struct pv_attr_s {
    const char *name;          /* local name */
    const char *ns;            /* NULL for unqualified; PV_NS_XML for
                                * xml:lang */
    const char *value;
    struct pv_attr_s *next;
} pv_attr_t;

/* An element (name != NULL) or a text node (name == NULL). An element's
 * xmlns is never NULL: "" means "no namespace". Text is NUL-terminated as
 * well as counted. Children are a singly linked list in document order. */
typedef struct pv_node_s {
    const char *name;          /* local name; NULL for a text node */
    const char *xmlns;         /* resolved namespace URI of the element */
    const char *text;          /* text nodes only */
    size_t text_len;
    pv_attr_t *attrs;
    struct pv_node_s *parent, *children, *last_child, *next;
} pv_node_t;

/* --- building ------------------------------------------------------- */

/* New element named name in namespace xmlns (NULL: the parent's, or ""
 * without a parent), appended as the last child of parent when parent is
 * not NULL. name and xmlns are copied into arena. Never returns NULL
 * (aborts on OOM like every arena allocation). */
pv_node_t *pv_node_new(pv_arena_t *arena, const char *name, const char *xmlns,
                       pv_node_t *parent);

/* Sets attribute name to value (both copied into arena), replacing an
 * existing one. Names starting with "xml:" (xml:lang) map to PV_NS_XML;
 * any other name is unqualified and must be a plain XML name without a
 * prefix. value NULL removes the attribute. */
void pv_node_set_attr(pv_arena_t *arena, pv_node_t *node, const char *name,
                      const char *value);
/* As pv_node_set_attr for the attribute {ns}name; ns NULL = unqualified.
 * The serializer declares a prefix for it. */
void pv_node_set_attr_ns(pv_arena_t *arena, pv_node_t *node, const char *ns,
                         const char *name, const char *value);
/* Value of attribute name ("xml:lang" looks up {PV_NS_XML}lang), or NULL.
 * Borrowed: valid as long as the node's arena. */
const char *pv_node_attr(const pv_node_t *node, const char *name);
const char *pv_node_attr_ns(const pv_node_t *node, const char *ns,
                            const char *name);
/* Unlinks the attribute; PV_OK, or PV_NOTFOUND when it was not there. */
int pv_node_remove_attr(pv_node_t *node, const char *name);

/* Appends len bytes of text (copied into arena; need not be
 * NUL-terminated). When the last child already is a text node the two are
 * merged, so the tree never holds two adjacent text nodes from this call.
 * Returns the text node. text must be UTF-8. */
pv_node_t *pv_node_add_text(pv_arena_t *arena, pv_node_t *node,
                            const char *text, size_t len);

/* --- queries -------------------------------------------------------- */

/* First element child matching name and xmlns (NULL matches any), or
 * NULL. */
pv_node_t *pv_node_child(const pv_node_t *node, const char *name,
                         const char *xmlns);
/* Next matching element child after the child after (NULL: from the
 * start), or NULL. */
pv_node_t *pv_node_next_child(const pv_node_t *node, const pv_node_t *after,
                              const char *name, const char *xmlns);
/* First element child, or NULL (IQ payloads). */
pv_node_t *pv_node_first_element(const pv_node_t *node);
/* Concatenated direct text children of node; "" when there is none.
 * Borrowed from the tree when there is one text child, else allocated in
 * arena. */
const char *pv_node_text(const pv_node_t *node, pv_arena_t *arena);
/* Structural equality: names, namespaces, attribute sets (order does not
 * matter) and children, with adjacent text children compared as one.
 * Returns 1 when equal. */
int pv_node_equal(const pv_node_t *a, const pv_node_t *b);

/* --- moving and copying -------------------------------------------- */

/* Deep copy of node and everything below into arena; the copy has no
 * parent and no siblings. */
pv_node_t *pv_node_copy(pv_arena_t *arena, const pv_node_t *node);
/* Unlinks node from its parent (its memory stays in its arena). */
void pv_node_remove(pv_node_t *node);
/* Appends an unlinked child as the last child of parent. The child's
 * memory must live at least as long as parent's arena (the same arena, or
 * copy it first with pv_node_copy). */
void pv_node_append(pv_node_t *parent, pv_node_t *child);

/* --- serialising ---------------------------------------------------- */

/* Appends node n as XML to out. An element gets an xmlns='...' attribute
 * only where its namespace differs from its parent's, or for n itself from
 * stream_ns (NULL: no namespace in scope). jabber:client and jabber:server
 * count as the same namespace here (RFC 6120 §4.8.3), so a stanza parsed
 * on a c2s stream is written unchanged onto an s2s stream and back.
 * xml:lang is written as xml:lang; other namespaced attributes get a
 * generated prefix declared on their element. Text and attribute values are
 * escaped (tab, CR and LF as character references where needed so that the
 * output re-parses to the same tree); control characters that XML 1.0
 * cannot carry are dropped. Empty elements are self-closing. */
void pv_node_serialize(const pv_node_t *n, pv_buf_t *out,
                       const char *stream_ns);

/* A compact binary form of an element tree for modules that keep XML in
 * the store (the module API has no parser). pv_node_pack appends n's
 * tree to b. pv_node_unpack rebuilds it in arena below parent (NULL: a
 * new root) and returns it; NULL when data is not exactly one packed
 * element, or nests deeper than PV_NODE_PACK_MAX_DEPTH (damaged rows
 * must not crash the server). */
/* deeper than any stanza the parser accepts (xml_max_depth) plus what a
 * module adds (a delay stamp) */
#define PV_NODE_PACK_MAX_DEPTH 128
void pv_node_pack(const pv_node_t *n, pv_buf_t *b);
pv_node_t *pv_node_unpack(pv_arena_t *arena, const void *data, size_t len,
                          pv_node_t *parent);

#endif
