/* modules/mod_presence.c: presence and subscriptions (RFC 6121 §3, §4):
 * the Appendix A state machine for what local clients send and for what
 * reaches local users, stored requests redelivered on initial presence,
 * pre-approval, initial/unavailable broadcast, probes, directed presence.
 * The state lives in the roster, read and set through the roster events
 * (roster.h); this module owns no store. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/module.h>
#include <palaver/roster.h>

#define NS_PREAPPROVAL "urn:xmpp:features:pre-approval"

typedef struct {
    long long max_directed;     /* PV_COUNT_OFF: no limit */
} pres_conf_t;

typedef struct {
    pv_stanza_t *last;          /* own copy of the last available
                                 * broadcast presence, NULL when none */
    char **directed;            /* JIDs that got directed presence and
                                 * must hear of our logout (§4.6) */
    size_t n_directed;
    int is_available;           /* initial presence sent, not withdrawn */
} pres_session_t;

typedef struct {
    pv_stanza_t *plain;         /* a bare <presence/> shared by every
                                 * session whose last presence had nothing
                                 * in it: no copy per idle session */
} pres_host_t;

/* --- roster access through events ------------------------------------- */

typedef struct {
    char *jid;
    unsigned state;
} contact_t;

typedef struct {
    contact_t *v;
    size_t n;
} contacts_t;

static void
collect_item(void *arg, const pv_roster_item_t *it)
{
    contacts_t *c = arg;

    c->v = pv_xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
    c->v[c->n].jid = pv_xstrdup(it->jid);
    c->v[c->n].state = it->state;
    c->n++;
}

/* A snapshot of the user's items (contact NULL) or of one item, so that
 * what we route while acting on it cannot change it under us. */
static void
contacts_get(pv_host_t *h, const char *user, const char *contact,
             contacts_t *out)
{
    out->v = NULL;
    out->n = 0;
    pv_roster_get(h, user, contact, collect_item, out);
}

static void
contacts_free(contacts_t *c)
{
    size_t i;

    for (i = 0; i < c->n; i++)
        free(c->v[i].jid);
    free(c->v);
}

static unsigned
sub_state(pv_host_t *h, const char *user, const char *contact)
{
    contacts_t c;
    unsigned st = 0;

    contacts_get(h, user, contact, &c);
    if (c.n > 0)
        st = c.v[0].state;
    contacts_free(&c);
    return st;
}

static int
set_state(pv_host_t *h, const char *user, const char *contact,
          unsigned state)
{
    pv_roster_state_t q = { contact, state, PV_ERROR };
    pv_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = PV_EV_ROSTER_SET_STATE;
    ev.host = h;
    ev.user = user;
    ev.data = &q;
    if (pv_event_fire(&ev) != PV_HANDLED) {
        pv_log(PV_LOG_WARN, pv_host_name(h), "mod_presence: no roster "
               "module: subscription state of %s not kept", user);
        return PV_ERROR;
    }
    return q.rc;
}

/* --- sending ------------------------------------------------------------ */

static void
send_presence(pv_host_t *h, const char *from, const char *to,
              const char *type)
{
    pv_stanza_t *st = pv_stanza_build("presence");

    if (type != NULL)
        pv_node_set_attr(st->arena, st->root, "type", type);
    pv_node_set_attr(st->arena, st->root, "from", from);
    pv_node_set_attr(st->arena, st->root, "to", to);
    pv_stanza_touch(st);
    pv_host_route(h, st);
    pv_stanza_unref(st);
}

/* A presence with nothing but addresses (and an id): what the copy kept
 * per session would be worth nothing more than the shared template. */
static int
is_plain(const pv_stanza_t *st)
{
    const pv_attr_t *a;

    if (st->root->children != NULL)
        return 0;
    for (a = st->root->attrs; a != NULL; a = a->next)
        if (a->ns != NULL || (strcmp(a->name, "from") &&
                              strcmp(a->name, "to") && strcmp(a->name, "id")))
            return 0;
    return 1;
}

/* A copy of st from `from` (NULL: unchanged) to `to`. */
static pv_stanza_t *
copy_to(const pv_stanza_t *st, const char *from, const char *to)
{
    pv_stanza_t *c = pv_stanza_copy(st);

    if (from != NULL)
        pv_node_set_attr(c->arena, c->root, "from", from);
    pv_node_set_attr(c->arena, c->root, "to", to);
    pv_stanza_touch(c);
    return c;
}

static void
route_copy(pv_host_t *h, const pv_stanza_t *st, const char *from,
           const char *to)
{
    pv_stanza_t *c = copy_to(st, from, to);

    pv_host_route(h, c);
    pv_stanza_unref(c);
}

typedef struct {
    pv_module_t *m;
    pv_host_t *h;
    const char *to;
    pv_stanza_t *st;
    int n;
} each_ctx_t;

/* RFC 6121 §3.1.5: the presence of each available resource to a contact
 * that was just allowed to see it (and the probe answer, §4.3.2). */
static void
send_last_cb(void *arg, pv_session_t *s)
{
    each_ctx_t *c = arg;
    pres_session_t *ps = pv_session_data(s, c->m);

    if (ps == NULL || ps->last == NULL)
        return;
    route_copy(c->h, ps->last, pv_session_jid(s)->full, c->to);
    c->n++;
}

static int
send_current(pv_module_t *m, pv_host_t *h, const char *user,
             const char *to)
{
    each_ctx_t c = { m, h, to, NULL, 0 };

    pv_host_each_session(h, user, send_last_cb, &c);
    return c.n;
}

/* RFC 6121 §3.2.2, §3.3.3: unavailable from each available resource. */
static void
send_unavail_cb(void *arg, pv_session_t *s)
{
    each_ctx_t *c = arg;
    pres_session_t *ps = pv_session_data(s, c->m);

    if (ps == NULL || ps->last == NULL)
        return;
    send_presence(c->h, pv_session_jid(s)->full, c->to, "unavailable");
}

static void
send_unavailable(pv_module_t *m, pv_host_t *h, const char *user,
                 const char *to)
{
    each_ctx_t c = { m, h, to, NULL, 0 };

    pv_host_each_session(h, user, send_unavail_cb, &c);
}

/* Inbound subscription stanzas go to every available resource (RFC 6121
 * §3.1.3, §8.5.2.1); we deliver them ourselves so they never loop back
 * through this module. */
static void
deliver_cb(void *arg, pv_session_t *s)
{
    each_ctx_t *c = arg;

    if (!pv_session_is_available(s))
        return;
    pv_session_send(s, c->st);
    c->n++;
}

static int
deliver_available(pv_host_t *h, const char *user, pv_stanza_t *st)
{
    each_ctx_t c = { NULL, h, NULL, st, 0 };

    pv_host_each_session(h, user, deliver_cb, &c);
    return c.n;
}

/* --- session state ------------------------------------------------------ */

static void
directed_clear(pres_session_t *ps)
{
    size_t i;

    for (i = 0; i < ps->n_directed; i++)
        free(ps->directed[i]);
    free(ps->directed);
    ps->directed = NULL;
    ps->n_directed = 0;
}

static void
directed_add(pres_session_t *ps, const char *jid, long long max)
{
    size_t i;

    for (i = 0; i < ps->n_directed; i++)
        if (strcmp(ps->directed[i], jid) == 0)
            return;
    if (max != PV_COUNT_OFF && (long long)ps->n_directed >= max)
        return;     /* past the limit the target simply is not told */
    ps->directed = pv_xrealloc(ps->directed,
                               (ps->n_directed + 1) * sizeof(char *));
    ps->directed[ps->n_directed++] = pv_xstrdup(jid);
}

static void
directed_remove(pres_session_t *ps, const char *jid)
{
    size_t i;

    for (i = 0; i < ps->n_directed; i++) {
        if (strcmp(ps->directed[i], jid) == 0) {
            free(ps->directed[i]);
            ps->directed[i] = ps->directed[--ps->n_directed];
            return;
        }
    }
}

/* The resource goes offline (RFC 6121 §4.5.2, §4.6.3): unavailable to
 * every contact with a subscription from the user and to every target of
 * directed presence. st is the client's unavailable presence, or NULL to
 * build one (session closed). */
static void
go_unavailable(pv_host_t *h, pv_session_t *s, pres_session_t *ps,
               const pv_stanza_t *st)
{
    const pv_jid_t *me = pv_session_jid(s);
    pv_stanza_t *own = NULL;
    contacts_t c;
    size_t i;

    if (st == NULL) {
        own = pv_stanza_build("presence");
        pv_node_set_attr(own->arena, own->root, "type", "unavailable");
        pv_node_set_attr(own->arena, own->root, "from", me->full);
        pv_stanza_touch(own);
        st = own;
    }
    contacts_get(h, me->node, NULL, &c);
    for (i = 0; i < c.n; i++)
        if (c.v[i].state & PV_SUB_FROM)
            route_copy(h, st, me->full, c.v[i].jid);
    for (i = 0; i < ps->n_directed; i++) {
        int skip = 0;
        size_t k;

        for (k = 0; k < c.n && !skip; k++)
            skip = (c.v[k].state & PV_SUB_FROM) &&
                   strcmp(c.v[k].jid, ps->directed[i]) == 0;
        if (!skip)
            route_copy(h, st, me->full, ps->directed[i]);
    }
    contacts_free(&c);
    directed_clear(ps);
    pv_stanza_unref(ps->last);
    ps->last = NULL;
    ps->is_available = 0;
    pv_stanza_unref(own);
}

/* --- outbound: what a local client sends ------------------------------- */

typedef struct {
    pv_module_t *m;
    pv_session_t *me;
} newres_ctx_t;

/* RFC 6121 §4.2.2: the new resource learns about the user's other
 * available resources. */
static void
other_resources_cb(void *arg, pv_session_t *s)
{
    newres_ctx_t *c = arg;
    pres_session_t *ps = pv_session_data(s, c->m);
    pv_stanza_t *p;

    if (s == c->me || ps == NULL || ps->last == NULL)
        return;
    p = copy_to(ps->last, pv_session_jid(s)->full,
                pv_session_jid(c->me)->full);
    pv_session_send(c->me, p);
    pv_stanza_unref(p);
}

static void
initial_presence(pv_event_t *ev, pv_session_t *s)
{
    const pv_jid_t *me = pv_session_jid(s);
    newres_ctx_t nc = { ev->module, s };
    contacts_t c;
    size_t i;

    contacts_get(ev->host, me->node, NULL, &c);
    for (i = 0; i < c.n; i++) {
        /* RFC 6121 §4.2.2: probe whoever we are subscribed to */
        if (c.v[i].state & PV_SUB_TO)
            send_presence(ev->host, me->bare, c.v[i].jid, "probe");
        /* RFC 6121 §3.1.3: requests stored while nobody was online go to
         * each resource that becomes available until answered */
        if (c.v[i].state & PV_SUB_PENDING_IN) {
            pv_stanza_t *r = pv_stanza_build("presence");
            pv_node_set_attr(r->arena, r->root, "type", "subscribe");
            pv_node_set_attr(r->arena, r->root, "from", c.v[i].jid);
            pv_node_set_attr(r->arena, r->root, "to", me->bare);
            pv_stanza_touch(r);
            pv_session_send(s, r);
            pv_stanza_unref(r);
        }
    }
    contacts_free(&c);
    pv_host_each_session(ev->host, me->node, other_resources_cb, &nc);
}

/* Presence without 'to' (RFC 6121 §4.2, §4.4, §4.5). The core has
 * already recorded availability and priority; the original then goes on
 * to the user's own available resources through the router. */
static pv_rc_t
broadcast(pv_event_t *ev)
{
    pv_session_t *s = ev->origin;
    pres_session_t *ps = pv_session_data(s, ev->module);
    const pv_jid_t *me = pv_session_jid(s);
    const char *type = ev->stanza->type;
    int is_initial;
    contacts_t c;
    size_t i;

    if (ps == NULL)
        return PV_PASS;
    if (type != NULL && strcmp(type, "unavailable") == 0) {
        if (ps->is_available)
            go_unavailable(ev->host, s, ps, ev->stanza);
        return PV_PASS;
    }
    if (type != NULL)
        return PV_HANDLED;  /* a subscription or probe to nobody: drop */
    is_initial = !ps->is_available;
    pv_stanza_unref(ps->last);
    if (is_plain(ev->stanza)) {
        pres_host_t *ph = pv_module_host_data(ev->module, ev->host);
        ps->last = pv_stanza_ref(ph->plain);
    } else {
        ps->last = pv_stanza_copy(ev->stanza);
        pv_node_remove_attr(ps->last->root, "to");
        pv_stanza_touch(ps->last);
    }
    ps->is_available = 1;
    contacts_get(ev->host, me->node, NULL, &c);
    for (i = 0; i < c.n; i++)
        if (c.v[i].state & PV_SUB_FROM)
            route_copy(ev->host, ev->stanza, me->full, c.v[i].jid);
    contacts_free(&c);
    if (is_initial)
        initial_presence(ev, s);
    return PV_PASS;
}

/* A subscription stanza from a local client (RFC 6121 §3.1.2, §3.1.5,
 * §3.2.2, §3.3.2, §3.4.1; Appendix A.2). The server stamps the bare JIDs
 * and routes its own copy; local or remote contacts alike. */
static pv_rc_t
outbound_subscription(pv_event_t *ev, const char *type)
{
    pv_session_t *s = ev->origin;
    const pv_jid_t *me = pv_session_jid(s);
    const char *contact = ev->to->bare;
    unsigned state, nstate;
    int do_route = 1, share = 0, withdraw = 0;

    if (strcmp(contact, me->bare) == 0)
        return PV_HANDLED;  /* with oneself there is nothing to manage */
    state = sub_state(ev->host, me->node, contact);
    nstate = state;
    if (strcmp(type, "subscribe") == 0) {
        if (!(state & PV_SUB_TO))
            nstate |= PV_SUB_ASK;
    } else if (strcmp(type, "unsubscribe") == 0) {
        nstate &= ~(PV_SUB_TO | PV_SUB_ASK);
    } else if (strcmp(type, "subscribed") == 0) {
        if (state & PV_SUB_FROM) {
            do_route = 0;
        } else if (state & PV_SUB_PENDING_IN) {
            nstate = (state | PV_SUB_FROM) &
                     ~(PV_SUB_PENDING_IN | PV_SUB_APPROVED);
            share = 1;
        } else {
            /* RFC 6121 §3.4.1: approval before any request */
            nstate |= PV_SUB_APPROVED;
            do_route = 0;
        }
    } else {
        nstate &= ~(PV_SUB_FROM | PV_SUB_PENDING_IN | PV_SUB_APPROVED);
        withdraw = (state & PV_SUB_FROM) != 0;
    }
    if (nstate != state) {
        int rc = set_state(ev->host, me->node, contact, nstate);
        if (rc == PV_AGAIN) {
            pv_send_error(s, ev->stanza, PV_ERR_CANCEL, "not-acceptable",
                          "the roster is full");
            return PV_HANDLED;
        }
    }
    if (do_route)
        route_copy(ev->host, ev->stanza, me->bare, contact);
    if (share)
        send_current(ev->module, ev->host, me->node, contact);
    if (withdraw)
        send_unavailable(ev->module, ev->host, me->node, contact);
    return PV_HANDLED;
}

static pv_rc_t
pres_outbound(pv_event_t *ev)
{
    const char *type = ev->stanza->type;
    pres_session_t *ps;

    if (ev->origin == NULL || ev->to == NULL)
        return PV_PASS;
    if (pv_node_attr(ev->stanza->root, "to") == NULL)
        return broadcast(ev);
    if (type != NULL && (strcmp(type, "subscribe") == 0 ||
                         strcmp(type, "subscribed") == 0 ||
                         strcmp(type, "unsubscribe") == 0 ||
                         strcmp(type, "unsubscribed") == 0))
        return outbound_subscription(ev, type);
    if (type != NULL && strcmp(type, "probe") == 0) {
        /* RFC 6121 §4.3: probes are the server's business; a client's
         * is sent as the server would, from the bare JID */
        const pv_jid_t *me = pv_session_jid(ev->origin);
        if (strcmp(ev->to->bare, me->bare) != 0)
            route_copy(ev->host, ev->stanza, me->bare, ev->to->bare);
        return PV_HANDLED;
    }
    /* directed presence (RFC 6121 §4.6): remember who must hear of our
     * logout, unless the broadcast reaches them anyway */
    ps = pv_session_data(ev->origin, ev->module);
    if (ps != NULL && strcmp(ev->to->bare,
                             pv_session_jid(ev->origin)->bare) != 0) {
        if (type == NULL) {
            const pres_conf_t *conf = pv_module_conf(ev->module, ev->host);
            unsigned st = sub_state(ev->host,
                                    pv_session_jid(ev->origin)->node,
                                    ev->to->bare);
            if (!((st & PV_SUB_FROM) && ev->to->resource == NULL))
                directed_add(ps, ev->to->full, conf->max_directed);
        } else if (strcmp(type, "unavailable") == 0) {
            directed_remove(ps, ev->to->full);
        }
    }
    return PV_PASS;
}

/* --- inbound: what reaches a local user -------------------------------- */

/* RFC 6121 §4.3.2: only a contact with a subscription from the user
 * learns the user's presence; anyone else learns nothing (not even that
 * the probe arrived). */
static void
answer_probe(pv_event_t *ev, const char *user, unsigned state)
{
    const char *to = pv_node_attr(ev->stanza->root, "from");

    if (!(state & PV_SUB_FROM))
        return;
    if (send_current(ev->module, ev->host, user, to) == 0)
        send_presence(ev->host, ev->to->bare, to, "unavailable");
}

static pv_rc_t
pres_inbound(pv_event_t *ev)
{
    const char *type = ev->stanza->type;
    const char *user, *contact;
    unsigned state, nstate;
    int deliver = 0;

    if (type == NULL || strcmp(type, "unavailable") == 0 ||
        strcmp(type, "error") == 0)
        return PV_PASS;     /* ordinary presence: the router delivers */
    if (ev->to == NULL || ev->to->node == NULL || ev->from == NULL)
        return PV_PASS;
    user = ev->to->node;
    contact = ev->from->bare;
    if (strcmp(contact, ev->to->bare) == 0)
        return PV_HANDLED;
    if (!pv_user_exists(ev->host, user)) {
        /* RFC 6121 §8.5.1: no such account */
        if (strcmp(type, "subscribe") == 0 || strcmp(type, "probe") == 0)
            send_presence(ev->host, ev->to->bare, contact, "unsubscribed");
        return PV_HANDLED;
    }
    state = sub_state(ev->host, user, contact);
    nstate = state;
    if (strcmp(type, "probe") == 0) {
        answer_probe(ev, user, state);
        return PV_HANDLED;
    }
    if (strcmp(type, "subscribe") == 0) {
        /* RFC 6121 §3.1.3 */
        if (state & PV_SUB_FROM) {
            send_presence(ev->host, ev->to->bare, contact, "subscribed");
            return PV_HANDLED;
        }
        if (state & PV_SUB_APPROVED) {
            /* §3.4.2: pre-approved: answered for the user */
            nstate = (state | PV_SUB_FROM) &
                     ~(PV_SUB_APPROVED | PV_SUB_PENDING_IN);
            set_state(ev->host, user, contact, nstate);
            send_presence(ev->host, ev->to->bare, contact, "subscribed");
            send_current(ev->module, ev->host, user, contact);
            return PV_HANDLED;
        }
        nstate |= PV_SUB_PENDING_IN;
        if (nstate != state &&
            set_state(ev->host, user, contact, nstate) != PV_OK) {
            pv_log(PV_LOG_INFO, pv_host_name(ev->host), "subscription "
                   "request from %s to %s dropped: roster full", contact,
                   ev->to->bare);
            return PV_HANDLED;
        }
        /* stored above: resent on the next initial presence as well */
        deliver_available(ev->host, user, ev->stanza);
        return PV_HANDLED;
    }
    if (strcmp(type, "subscribed") == 0) {
        /* §3.1.6, A.3.3: only an answer to our own request counts */
        if (state & PV_SUB_ASK) {
            nstate = (state | PV_SUB_TO) & ~PV_SUB_ASK;
            deliver = 1;
        }
    } else if (strcmp(type, "unsubscribe") == 0) {
        /* §3.3.3, A.3.2 */
        if (state & (PV_SUB_FROM | PV_SUB_PENDING_IN)) {
            nstate = state & ~(PV_SUB_FROM | PV_SUB_PENDING_IN);
            deliver = 1;
        }
    } else if (strcmp(type, "unsubscribed") == 0) {
        /* §3.2.3, A.3.4 */
        if (state & (PV_SUB_TO | PV_SUB_ASK)) {
            nstate = state & ~(PV_SUB_TO | PV_SUB_ASK);
            deliver = 1;
        }
    }
    if (!deliver)
        return PV_HANDLED;  /* no state change: not delivered (A.3) */
    set_state(ev->host, user, contact, nstate);
    deliver_available(ev->host, user, ev->stanza);
    if (strcmp(type, "unsubscribe") == 0 && (state & PV_SUB_FROM))
        send_unavailable(ev->module, ev->host, user, contact);
    return PV_HANDLED;
}

/* --- lifecycle -------------------------------------------------------- */

static pv_rc_t
pres_session_closed(pv_event_t *ev)
{
    pres_session_t *ps;

    if (ev->session == NULL)
        return PV_PASS;
    ps = pv_session_data(ev->session, ev->module);
    if (ps != NULL && ps->is_available) {
        const pv_jid_t *me = pv_session_jid(ev->session);
        pv_stanza_t *st = pv_stanza_build("presence");
        /* RFC 6121 §4.5.2: also the user's other resources */
        pv_node_set_attr(st->arena, st->root, "type", "unavailable");
        pv_node_set_attr(st->arena, st->root, "from", me->full);
        pv_node_set_attr(st->arena, st->root, "to", me->bare);
        pv_stanza_touch(st);
        go_unavailable(ev->host, ev->session, ps, NULL);
        deliver_available(ev->host, me->node, st);
        pv_stanza_unref(st);
    }
    return PV_PASS;
}

static void
pres_session_fini(pv_module_t *m, pv_session_t *s, void *data)
{
    pres_session_t *ps = data;

    (void)m;
    (void)s;
    pv_stanza_unref(ps->last);
    ps->last = NULL;
    directed_clear(ps);
}

static void
deleting_cb(void *arg, pv_session_t *s)
{
    pv_event_t *ev = arg;
    pres_session_t *ps = pv_session_data(s, ev->module);

    if (ps != NULL && ps->is_available)
        go_unavailable(ev->host, s, ps, NULL);
}

/* Before mod_roster forgets the account's contacts: they see it go. */
static pv_rc_t
pres_user_deleting(pv_event_t *ev)
{
    if (ev->user != NULL)
        pv_host_each_session(ev->host, ev->user, deleting_cb, ev);
    return PV_PASS;
}

/* RFC 6121 §2.5.2: removing an item cancels both subscriptions. */
static pv_rc_t
pres_roster_changed(pv_event_t *ev)
{
    const pv_roster_change_t *ch = ev->data;
    char *me;

    if (ch == NULL || !ch->is_removed || !ch->by_client || ev->user == NULL)
        return PV_PASS;
    me = pv_xasprintf("%s@%s", ev->user, pv_host_name(ev->host));
    if (ch->old_state & PV_SUB_FROM)
        send_unavailable(ev->module, ev->host, ev->user, ch->contact);
    if (ch->old_state & (PV_SUB_TO | PV_SUB_ASK))
        send_presence(ev->host, me, ch->contact, "unsubscribe");
    if (ch->old_state & (PV_SUB_FROM | PV_SUB_PENDING_IN))
        send_presence(ev->host, me, ch->contact, "unsubscribed");
    free(me);
    return PV_PASS;
}

/* RFC 6121 §3.4: pre-approval is a stream feature. */
static pv_rc_t
pres_features(pv_event_t *ev)
{
    pres_host_t *ph = pv_module_host_data(ev->module, ev->host);
    pv_node_t *f = ev->data;

    if (ev->user == NULL || f == NULL || ph == NULL)
        return PV_PASS;
    pv_node_new(ev->stanza->arena, "sub", NS_PREAPPROVAL, f);
    return PV_PASS;
}

static int
pres_host_init(pv_module_t *m, pv_host_t *h)
{
    pres_host_t *ph = pv_xcalloc(1, sizeof(*ph));

    ph->plain = pv_stanza_build("presence");
    pv_module_set_host_data(m, h, ph);
    return PV_OK;
}

static void
pres_host_fini(pv_module_t *m, pv_host_t *h)
{
    pres_host_t *ph = pv_module_host_data(m, h);

    if (ph == NULL)
        return;
    pv_stanza_unref(ph->plain);
    free(ph);
    pv_module_set_host_data(m, h, NULL);
}

static const pv_hook_t pres_hooks[] = {
    { PV_PRESENCE, PV_TO_ANY, NULL, NULL, pres_outbound, 0, PV_HOOK_PRE },
    { PV_PRESENCE, PV_TO_ANY, NULL, NULL, pres_inbound, 0, 0 },
    { PV_EV_SESSION_CLOSED, PV_TO_ANY, NULL, NULL, pres_session_closed, 0,
      0 },
    /* before mod_roster (priority 0) drops the account's items */
    { PV_EV_USER_DELETING, PV_TO_ANY, NULL, NULL, pres_user_deleting, -10,
      0 },
    { PV_EV_ROSTER_CHANGED, PV_TO_ANY, NULL, NULL, pres_roster_changed, 0,
      0 },
    { PV_EV_STREAM_FEATURES, PV_TO_ANY, NULL, NULL, pres_features, 0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t pres_directives[] = {
    { "presence_max_directed", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(pres_conf_t, max_directed), "100", 0, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(presence) = {
    .abi = PV_MODULE_ABI,
    .name = "presence",
    .depends = (const char *const[]){ "roster", NULL },
    .hooks = pres_hooks,
    .directives = pres_directives,
    .conf_size = sizeof(pres_conf_t),
    .session_data_size = sizeof(pres_session_t),
    .host_init = pres_host_init,
    .host_fini = pres_host_fini,
    .session_fini = pres_session_fini,
};
