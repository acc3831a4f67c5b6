/* modules/mod_csi.c: XEP-0352 Client State Indication (urn:xmpp:csi:0).
 * Owns the per-session active/inactive state and, while a client is
 * inactive, the queue of stanzas that can wait (presence updates,
 * coalesced per sender; chat states, receipts, markers, PEP events).
 * Anything a phone must not miss flushes the queue, in order, and goes
 * out at once. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/module.h>

#define NS_CSI "urn:xmpp:csi:0"
#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"
#define NS_CONFERENCE "jabber:x:conference"
#define NS_JMI "urn:xmpp:jingle-message:0"
#define NS_MAM "urn:xmpp:mam:2"

typedef struct {
    long long queue_max;        /* PV_COUNT_OFF: no cap */
} csi_conf_t;

/* The slot is zeroed at bind: active, nothing allocated. held exists
 * only while the client is inactive and something waits. */
typedef struct {
    unsigned inactive : 1;
    unsigned flushing : 1;      /* our own pv_session_send calls */
    pv_stanza_t **held;         /* each with our reference, in order */
    size_t n, cap;
} csi_session_t;

typedef enum {
    CSI_PASS,                   /* not ours to judge: written as usual */
    CSI_HOLD,
    CSI_HOLD_PRESENCE,          /* held, replacing the sender's older one */
    CSI_IMPORTANT               /* flush, then written */
} csi_class_t;

/* Does this message matter to a user who is not looking? Bodies, end-to-
 * end encrypted payloads (OMEMO, OpenPGP), invitations and call
 * proposals (XEP-0353) do; chat states (XEP-0085), receipts (XEP-0184),
 * markers (XEP-0333) and PEP events do not. A carbon is judged by the
 * message it carries. */
static int
message_important(const pv_node_t *m, int depth)
{
    const pv_node_t *c, *x;
    const char *type = pv_node_attr(m, "type");

    if (type != NULL && strcmp(type, "error") == 0)
        return 1;               /* a bounce of what the user sent */
    for (c = m->children; c != NULL; c = c->next) {
        if (c->name == NULL)
            continue;
        if (strcmp(c->name, "body") == 0 &&
            (strcmp(c->xmlns, PV_NS_CLIENT) == 0 ||
             strcmp(c->xmlns, PV_NS_SERVER) == 0))
            return 1;
        if (strcmp(c->name, "encrypted") == 0 &&
            (strcmp(c->xmlns, "eu.siacs.conversations.axolotl") == 0 ||
             strcmp(c->xmlns, "urn:xmpp:omemo:2") == 0))
            return 1;
        if (strcmp(c->xmlns, "urn:xmpp:openpgp:0") == 0 ||
            strcmp(c->xmlns, "jabber:x:encrypted") == 0)
            return 1;
        if (strcmp(c->xmlns, NS_CONFERENCE) == 0 ||
            (strcmp(c->xmlns, NS_MUC_USER) == 0 &&
             pv_node_child(c, "invite", NS_MUC_USER) != NULL))
            return 1;
        /* a ringing call and its end must not wait */
        if (strcmp(c->xmlns, NS_JMI) == 0 &&
            (strcmp(c->name, "propose") == 0 ||
             strcmp(c->name, "retract") == 0))
            return 1;
        /* MAM results are answers the client is waiting for */
        if (strcmp(c->xmlns, NS_MAM) == 0 && strcmp(c->name, "result") == 0)
            return 1;
        if (depth == 0 && strcmp(c->xmlns, NS_CARBONS) == 0 &&
            (strcmp(c->name, "received") == 0 ||
             strcmp(c->name, "sent") == 0)) {
            x = pv_node_child(c, "forwarded", NS_FORWARD);
            x = x ? pv_node_child(x, "message", NULL) : NULL;
            if (x != NULL && message_important(x, 1))
                return 1;
        }
    }
    return 0;
}

static csi_class_t
csi_classify(const pv_stanza_t *st)
{
    switch (st->kind) {
    case PV_STANZA_IQ:
        return CSI_IMPORTANT;   /* requests and answers must flow */
    case PV_STANZA_PRESENCE:
        /* availability updates can wait and only the latest matters;
         * subscription handling and errors need the user */
        if (st->type == NULL || strcmp(st->type, "unavailable") == 0)
            return CSI_HOLD_PRESENCE;
        return CSI_IMPORTANT;
    case PV_STANZA_MESSAGE:
        return message_important(st->root, 0) ? CSI_IMPORTANT : CSI_HOLD;
    default:
        return CSI_PASS;
    }
}

/* Writes everything held, in order. Each stanza goes through
 * pv_session_send again so later handlers (XEP-0198 counting and
 * queueing) see it; the flushing flag lets it past our own handler. */
static void
csi_flush(pv_session_t *s, csi_session_t *cs)
{
    pv_stanza_t **v = cs->held;
    size_t n = cs->n, i;

    if (v == NULL)
        return;
    /* detach first: sending may re-enter this module */
    cs->held = NULL;
    cs->n = cs->cap = 0;
    cs->flushing = 1;
    for (i = 0; i < n; i++) {
        pv_session_send(s, v[i]);
        pv_stanza_unref(v[i]);
    }
    cs->flushing = 0;
    free(v);
}

static void
csi_drop_presence_from(csi_session_t *cs, const char *from)
{
    size_t i;

    for (i = 0; i < cs->n; i++) {
        pv_stanza_t *h = cs->held[i];
        const char *hf;

        if (h->kind != PV_STANZA_PRESENCE ||
            csi_classify(h) != CSI_HOLD_PRESENCE)
            continue;
        hf = pv_node_attr(h->root, "from");
        if (strcmp(hf ? hf : "", from) != 0)
            continue;
        pv_stanza_unref(h);
        memmove(&cs->held[i], &cs->held[i + 1],
                (cs->n - i - 1) * sizeof(*cs->held));
        cs->n--;
        return;     /* at most one per sender is ever held */
    }
}

static void
csi_hold(csi_session_t *cs, pv_stanza_t *st, csi_class_t cls)
{
    if (cls == CSI_HOLD_PRESENCE) {
        const char *from = pv_node_attr(st->root, "from");

        /* the latest presence of a sender replaces the older one and
         * takes its place in time */
        csi_drop_presence_from(cs, from ? from : "");
    }
    if (cs->n == cs->cap) {
        cs->cap = cs->cap ? cs->cap * 2 : 16;
        cs->held = pv_xrealloc(cs->held, cs->cap * sizeof(*cs->held));
    }
    cs->held[cs->n++] = pv_stanza_ref(st);
}

static pv_rc_t
csi_session_send(pv_event_t *ev)
{
    csi_session_t *cs;
    const csi_conf_t *conf;
    csi_class_t cls;

    if (ev->session == NULL || ev->stanza == NULL)
        return PV_PASS;
    cs = pv_session_data(ev->session, ev->module);
    if (cs == NULL || !cs->inactive || cs->flushing)
        return PV_PASS;
    cls = csi_classify(ev->stanza);
    if (cls == CSI_PASS)
        return PV_PASS;
    if (cls == CSI_IMPORTANT) {
        csi_flush(ev->session, cs);     /* what waited comes first */
        return PV_PASS;
    }
    csi_hold(cs, ev->stanza, cls);
    conf = pv_module_conf(ev->module, ev->host);
    if (conf != NULL && conf->queue_max != PV_COUNT_OFF &&
        (long long)cs->n > conf->queue_max)
        csi_flush(ev->session, cs);     /* bounded memory per session */
    return PV_HANDLED;
}

/* The stream is gone: hand what waits to the modules after us (XEP-0198
 * keeps it for resumption). A resumed stream starts active again
 * (XEP-0352 §4.2: "A stream always begins in 'active' state"). */
static pv_rc_t
csi_disconnected(pv_event_t *ev)
{
    csi_session_t *cs;

    if (ev->session == NULL)
        return PV_PASS;
    cs = pv_session_data(ev->session, ev->module);
    if (cs == NULL)
        return PV_PASS;
    cs->inactive = 0;
    csi_flush(ev->session, cs);
    return PV_PASS;
}

static void
csi_set_state(pv_session_t *s, csi_session_t *cs, int inactive)
{
    cs->inactive = inactive ? 1 : 0;
    if (!inactive)
        csi_flush(s, cs);
}

/* <active/> and <inactive/> nonzas; no reply (XEP-0352 §3.2). Flushing
 * happens before the next input is processed (§4.1 in-order). */
static pv_rc_t
csi_stream_element(pv_event_t *ev)
{
    const pv_node_t *n = ev->data;
    csi_session_t *cs;
    int inactive;

    if (n == NULL || strcmp(n->xmlns, NS_CSI) != 0)
        return PV_PASS;
    if (strcmp(n->name, "active") == 0)
        inactive = 0;
    else if (strcmp(n->name, "inactive") == 0)
        inactive = 1;
    else
        return PV_PASS;
    /* before bind there is no session whose traffic could be held */
    if (ev->session == NULL)
        return PV_HANDLED;
    cs = pv_session_data(ev->session, ev->module);
    if (cs != NULL)
        csi_set_state(ev->session, cs, inactive);
    return PV_HANDLED;
}

static pv_rc_t
csi_features(pv_event_t *ev)
{
    pv_node_t *f = ev->data;

    /* XEP-0352 §3.1: advertised after authentication */
    if (ev->user == NULL || f == NULL || ev->stanza == NULL)
        return PV_PASS;
    pv_node_new(ev->stanza->arena, "csi", NS_CSI, f);
    return PV_PASS;
}

/* XEP-0386 §3: <inactive xmlns='urn:xmpp:csi:0'/> inside <bind/>. */
static pv_rc_t
csi_bind2(pv_event_t *ev)
{
    pv_inline_t *in = ev->data;
    csi_session_t *cs;

    if (in == NULL || in->request == NULL || ev->session == NULL)
        return PV_PASS;
    cs = pv_session_data(ev->session, ev->module);
    if (cs == NULL)
        return PV_PASS;
    if (pv_node_child(in->request, "inactive", NS_CSI) != NULL)
        csi_set_state(ev->session, cs, 1);
    else if (pv_node_child(in->request, "active", NS_CSI) != NULL)
        csi_set_state(ev->session, cs, 0);
    return PV_PASS;
}

static pv_rc_t
csi_bind2_features(pv_event_t *ev)
{
    pv_inline_t *in = ev->data;
    pv_node_t *f;

    if (in == NULL || in->node == NULL)
        return PV_PASS;
    f = pv_node_new(in->arena, "feature", NULL, in->node);
    pv_node_set_attr(in->arena, f, "var", NS_CSI);
    return PV_PASS;
}

static void
csi_session_fini(pv_module_t *m, pv_session_t *s, void *data)
{
    csi_session_t *cs = data;
    size_t i;

    (void)m;
    (void)s;
    /* a clean end or a destroyed hibernated session: nothing left to
     * deliver to */
    for (i = 0; i < cs->n; i++)
        pv_stanza_unref(cs->held[i]);
    free(cs->held);
    cs->held = NULL;
    cs->n = cs->cap = 0;
}

static const pv_hook_t csi_hooks[] = {
    { PV_EV_SESSION_SEND, PV_TO_ANY, NULL, NULL, csi_session_send, 10, 0 },
    { PV_EV_SESSION_DISCONNECTED, PV_TO_ANY, NULL, NULL, csi_disconnected,
      10, 0 },
    { PV_EV_STREAM_ELEMENT, PV_TO_ANY, NULL, NULL, csi_stream_element, 0,
      0 },
    { PV_EV_STREAM_FEATURES, PV_TO_ANY, NULL, NULL, csi_features, 0, 0 },
    { PV_EV_BIND2, PV_TO_ANY, NULL, NULL, csi_bind2, 0, 0 },
    { PV_EV_BIND2_FEATURES, PV_TO_ANY, NULL, NULL, csi_bind2_features, 0,
      0 },
    PV_HOOKS_END
};

static const pv_directive_t csi_directives[] = {
    { "csi_queue_max", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(csi_conf_t, queue_max), "100", 0, 1000000, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(csi) = {
    .abi = PV_MODULE_ABI,
    .name = "csi",
    .hooks = csi_hooks,
    .directives = csi_directives,
    .conf_size = sizeof(csi_conf_t),
    .session_data_size = sizeof(csi_session_t),
    .session_fini = csi_session_fini,
};
