/* modules/mod_carbons.c: XEP-0280 Message Carbons (urn:xmpp:carbons:2).
 * Owns the per-session enabled flag (IQ <enable/>/<disable/>, XEP-0386
 * inline enable), received carbons for the recipient's other resources
 * (destination side, after mod_mam stamped its stanza-id) and sent
 * carbons for the sender's other resources (pre-routing side), honouring
 * <private/> and the XEP-0334 <no-copy/> hint. */
#include <stddef.h>
#include <string.h>

#include <palaver/module.h>

#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_HINTS "urn:xmpp:hints"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"
#define NS_RECEIPTS "urn:xmpp:receipts"
#define NS_MARKERS "urn:xmpp:chat-markers:0"

typedef struct {
    int enabled;
} carbons_session_t;

static int
type_is(const pv_stanza_t *st, const char *type)
{
    return strcmp(st->type ? st->type : "normal", type) == 0;
}

static int
has_child_ns(const pv_node_t *root, const char *xmlns)
{
    return pv_node_child(root, NULL, xmlns) != NULL;
}

/* XEP-0280 §6 leaves the rules to the server; these follow its
 * suggestions: chat, and normal messages used for IM (a body, or a chat
 * state / receipt / marker, which later revisions count as IM payloads).
 * Groupchat, headline and error are never copied (errors would need
 * correlation with the original). Inbound messages from a MUC (they carry
 * muc#user) are not copied either, §6 last rule. A carbon is never copied
 * again (that would loop), nor anything marked private or no-copy
 * (§7, XEP-0334 §4). */
static int
carbons_eligible(const pv_stanza_t *st, int inbound)
{
    const pv_node_t *r = st->root;

    if (st->kind != PV_STANZA_MESSAGE)
        return 0;
    if (pv_node_child(r, "received", NS_CARBONS) != NULL ||
        pv_node_child(r, "sent", NS_CARBONS) != NULL ||
        pv_node_child(r, "private", NS_CARBONS) != NULL ||
        pv_node_child(r, "no-copy", NS_HINTS) != NULL)
        return 0;
    if (inbound && has_child_ns(r, NS_MUC_USER))
        return 0;
    if (type_is(st, "chat"))
        return 1;
    if (!type_is(st, "normal"))
        return 0;
    return pv_node_child(r, "body", PV_NS_CLIENT) != NULL ||
           pv_node_child(r, "body", PV_NS_SERVER) != NULL ||
           has_child_ns(r, NS_CHATSTATES) || has_child_ns(r, NS_RECEIPTS) ||
           has_child_ns(r, NS_MARKERS) ||
           /* XEP-0353 §3.2: other devices stop ringing on the proceed */
           has_child_ns(r, "urn:xmpp:jingle-message:0");
}

/* <message from=bare to=full type=same><wrapper><forwarded>original...
 * (XEP-0280 §7/§8: the wrapper comes from the user's bare JID). */
static pv_stanza_t *
carbon_build(const pv_stanza_t *orig, const char *wrapper, const char *bare,
             const char *to)
{
    pv_stanza_t *c = pv_stanza_build("message");
    pv_node_t *w, *f;

    if (orig->type != NULL)
        pv_node_set_attr(c->arena, c->root, "type", orig->type);
    pv_node_set_attr(c->arena, c->root, "from", bare);
    pv_node_set_attr(c->arena, c->root, "to", to);
    w = pv_node_new(c->arena, wrapper, NS_CARBONS, c->root);
    f = pv_node_new(c->arena, "forwarded", NS_FORWARD, w);
    pv_node_append(f, pv_node_copy(c->arena, orig->root));
    pv_stanza_touch(c);
    return c;
}

/* --- enabling ------------------------------------------------------- */

static void
carbons_refuse(pv_event_t *ev, pv_err_type_t type, const char *cond)
{
    pv_stanza_t *e;

    if (ev->origin != NULL) {
        pv_event_error(ev, type, cond, NULL);
        return;
    }
    /* not from a local client: answer by address */
    e = pv_stanza_error(ev->stanza, type, cond, NULL);
    if (e != NULL) {
        pv_host_route(ev->host, e);
        pv_stanza_unref(e);
    }
}

static pv_rc_t
carbons_iq(pv_event_t *ev)
{
    const char *name = ev->payload->name;
    carbons_session_t *cs;

    /* XEP-0280 §4.1/§5.1: only a client of the account itself, and only
     * for itself (the core addressed a to-less IQ to the own bare JID) */
    if (ev->origin == NULL ||
        strcmp(ev->to->bare, pv_session_jid(ev->origin)->bare) != 0) {
        carbons_refuse(ev, PV_ERR_CANCEL, "not-allowed");
        return PV_HANDLED;
    }
    cs = pv_session_data(ev->origin, ev->module);
    if (cs == NULL) {
        carbons_refuse(ev, PV_ERR_CANCEL, "service-unavailable");
        return PV_HANDLED;
    }
    if (strcmp(name, "enable") == 0) {
        cs->enabled = 1;       /* repeated enables are fine, §9.1 */
    } else if (strcmp(name, "disable") == 0) {
        cs->enabled = 0;
    } else {
        carbons_refuse(ev, PV_ERR_CANCEL, "feature-not-implemented");
        return PV_HANDLED;
    }
    pv_event_result(ev, NULL);
    return PV_HANDLED;
}

/* XEP-0386 §3: <enable xmlns='urn:xmpp:carbons:2'/> inside <bind/>. */
static pv_rc_t
carbons_bind2(pv_event_t *ev)
{
    pv_inline_t *in = ev->data;
    carbons_session_t *cs;

    if (in == NULL || in->request == NULL || ev->session == NULL ||
        pv_node_child(in->request, "enable", NS_CARBONS) == NULL)
        return PV_PASS;
    cs = pv_session_data(ev->session, ev->module);
    if (cs != NULL)
        cs->enabled = 1;
    return PV_PASS;
}

static pv_rc_t
carbons_bind2_features(pv_event_t *ev)
{
    pv_inline_t *in = ev->data;
    pv_node_t *f;

    if (in == NULL || in->node == NULL)
        return PV_PASS;
    f = pv_node_new(in->arena, "feature", NULL, in->node);
    pv_node_set_attr(in->arena, f, "var", NS_CARBONS);
    return PV_PASS;
}

/* --- received carbons (XEP-0280 §7) --------------------------------- */

typedef struct {
    pv_module_t *m;
    const pv_stanza_t *st;
    pv_session_t *origin;      /* a sending resource of the same account */
    const char *bare;
    const char *wrapper;
} carbons_fan_t;

static void
fan_send(void *arg, pv_session_t *s)
{
    carbons_fan_t *f = arg;
    carbons_session_t *cs = pv_session_data(s, f->m);
    pv_stanza_t *c;

    if (cs == NULL || !cs->enabled || s == f->origin)
        return;
    if (f->wrapper[0] == 'r' && pv_message_reaches(s, f->st))
        return;     /* §7: they get the original itself */
    c = carbon_build(f->st, f->wrapper, f->bare, pv_session_jid(s)->full);
    pv_session_send(s, c);
    pv_stanza_unref(c);
}

static pv_rc_t
carbons_received(pv_event_t *ev)
{
    pv_stanza_t *st = ev->stanza;
    pv_node_t *priv;
    carbons_fan_t f;

    if (ev->to->node == NULL)
        return PV_PASS;
    if (!carbons_eligible(st, 1)) {
        /* §7: the receiving server SHOULD remove <private/> before
         * delivering; only possible while nobody else holds the stanza */
        priv = pv_node_child(st->root, "private", NS_CARBONS);
        if (priv != NULL && st->refs == 1) {
            pv_node_remove(priv);
            pv_stanza_touch(st);
        }
        return PV_PASS;
    }
    memset(&f, 0, sizeof(f));
    f.m = ev->module;
    f.st = st;
    f.bare = ev->to->bare;
    f.wrapper = "received";
    /* a user writing to their own account: the sending resource gets a
     * sent carbon's worth of information already (it wrote it) */
    if (ev->origin != NULL &&
        strcmp(pv_session_jid(ev->origin)->bare, ev->to->bare) == 0)
        f.origin = ev->origin;
    pv_host_each_session(ev->host, ev->to->node, fan_send, &f);
    return PV_PASS;
}

/* --- sent carbons (XEP-0280 §8) ------------------------------------- */

static pv_rc_t
carbons_sent(pv_event_t *ev)
{
    const pv_jid_t *me;
    carbons_fan_t f;

    if (ev->origin == NULL || !carbons_eligible(ev->stanza, 0))
        return PV_PASS;
    me = pv_session_jid(ev->origin);
    /* to the own account: the receiving side copies it (received
     * carbons), a sent carbon as well would be a duplicate */
    if (ev->to != NULL && strcmp(ev->to->bare, me->bare) == 0)
        return PV_PASS;
    memset(&f, 0, sizeof(f));
    f.m = ev->module;
    f.st = ev->stanza;
    f.bare = me->bare;
    f.wrapper = "sent";
    f.origin = ev->origin;   /* §8: excluding the sending client */
    pv_host_each_session(pv_session_host(ev->origin), me->node, fan_send,
                         &f);
    return PV_PASS;
}

static const pv_hook_t carbons_hooks[] = {
    { PV_IQ_SET, PV_TO_BARE, NS_CARBONS, NULL, carbons_iq, 0, 0 },
    { PV_MESSAGE, PV_TO_BARE, NULL, NULL, carbons_received, 60, 0 },
    { PV_MESSAGE, PV_TO_FULL, NULL, NULL, carbons_received, 60, 0 },
    { PV_MESSAGE, PV_TO_ANY, NULL, NULL, carbons_sent, 60, PV_HOOK_PRE },
    { PV_EV_BIND2, PV_TO_ANY, NULL, NULL, carbons_bind2, 0, 0 },
    { PV_EV_BIND2_FEATURES, PV_TO_ANY, NULL, NULL, carbons_bind2_features,
      0, 0 },
    PV_HOOKS_END
};

PV_MODULE(carbons) = {
    .abi = PV_MODULE_ABI,
    .name = "carbons",
    .features = (const char *const[]){ NS_CARBONS, NULL },
    .hooks = carbons_hooks,
    .session_data_size = sizeof(carbons_session_t),
};
