/* src/stanza.c: replies and errors built from a request stanza, and the
 * parsing of a stanza's addresses. The tree and the refcounting live in
 * xml.c; routing decisions live in router.c. */
#include <string.h>

#include "palaver.h"

#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

static const char *const err_type_names[] = {
    [PV_ERR_AUTH] = "auth",
    [PV_ERR_CANCEL] = "cancel",
    [PV_ERR_CONTINUE] = "continue",
    [PV_ERR_MODIFY] = "modify",
    [PV_ERR_WAIT] = "wait",
};

int
pv_stanza_parse_addrs(pv_stanza_t *st, const pv_jid_t *def_to)
{
    const char *to = pv_node_attr(st->root, "to");
    const char *from = pv_node_attr(st->root, "from");
    pv_jid_t *j;

    st->to = st->from = NULL;
    if (to != NULL) {
        j = pv_arena_calloc(st->arena, sizeof(*j));
        if (pv_jid_parse(to, strlen(to), j, st->arena) != PV_OK)
            return PV_ERROR;
        st->to = j;
    } else if (def_to != NULL) {
        j = pv_arena_calloc(st->arena, sizeof(*j));
        if (pv_jid_copy(def_to, j, st->arena) != PV_OK)
            return PV_ERROR;
        st->to = j;
    }
    if (from != NULL) {
        j = pv_arena_calloc(st->arena, sizeof(*j));
        if (pv_jid_parse(from, strlen(from), j, st->arena) != PV_OK)
            return PV_ERROR;
        st->from = j;
    }
    return PV_OK;
}

/* A new stanza of the same kind as req, addressed back to its sender. */
static pv_stanza_t *
stanza_reply(const pv_stanza_t *req, const char *type)
{
    pv_stanza_t *st = pv_stanza_build(req->root->name);
    const char *to = pv_node_attr(req->root, "to");
    const char *from = pv_node_attr(req->root, "from");

    if (req->id != NULL)
        pv_node_set_attr(st->arena, st->root, "id", req->id);
    if (from != NULL)
        pv_node_set_attr(st->arena, st->root, "to", from);
    if (to != NULL)
        pv_node_set_attr(st->arena, st->root, "from", to);
    if (type != NULL)
        pv_node_set_attr(st->arena, st->root, "type", type);
    st->type = pv_node_attr(st->root, "type");
    st->id = pv_node_attr(st->root, "id");
    if (req->from != NULL) {
        st->to = pv_arena_calloc(st->arena, sizeof(pv_jid_t));
        pv_jid_copy(req->from, st->to, st->arena);
    }
    if (req->to != NULL) {
        st->from = pv_arena_calloc(st->arena, sizeof(pv_jid_t));
        pv_jid_copy(req->to, st->from, st->arena);
    }
    return st;
}

pv_stanza_t *
pv_iq_result(const pv_stanza_t *req)
{
    return stanza_reply(req, "result");
}

void
pv_send_result(pv_session_t *origin, const pv_stanza_t *req,
               const pv_node_t *payload)
{
    pv_stanza_t *st = pv_iq_result(req);

    if (payload != NULL)
        pv_node_append(st->root, pv_node_copy(st->arena, payload));
    pv_send(origin, st);
}

pv_stanza_t *
pv_stanza_error(const pv_stanza_t *req, pv_err_type_t type,
                const char *condition, const char *text)
{
    pv_stanza_t *st;
    pv_node_t *err, *child;

    if (req->type != NULL && strcmp(req->type, "error") == 0)
        return NULL;
    st = stanza_reply(req, "error");
    /* RFC 6120 §8.3.1: an error reply may include the original payload;
     * we include it for messages and presence (clients correlate by it)
     * but not for IQs, whose payloads may be large. */
    if (req->kind != PV_STANZA_IQ) {
        for (child = req->root->children; child; child = child->next)
            if (child->name != NULL)
                pv_node_append(st->root, pv_node_copy(st->arena, child));
    }
    err = pv_node_new(st->arena, "error", NULL, st->root);
    pv_node_set_attr(st->arena, err, "type", err_type_names[type]);
    pv_node_new(st->arena, condition, NS_STANZAS, err);
    if (text != NULL) {
        pv_node_t *t = pv_node_new(st->arena, "text", NS_STANZAS, err);
        pv_node_add_text(st->arena, t, text, strlen(text));
    }
    return st;
}

void
pv_send_error(pv_session_t *origin, const pv_stanza_t *req,
              pv_err_type_t type, const char *condition, const char *text)
{
    pv_stanza_t *st = pv_stanza_error(req, type, condition, text);

    if (st != NULL)
        pv_send(origin, st);
}
