/* src/router.c: pv_route(). Classifies the destination (host, bare, full;
 * local or remote), fires the pre- and main events on the destination
 * host, and applies RFC 6121 §8.5 to what no module handled. The router
 * writes the default errors; modules never do that for it. */
#include <string.h>

#include "palaver.h"

static pv_event_kind_t
stanza_event_kind(const pv_stanza_t *st)
{
    switch (st->kind) {
    case PV_STANZA_MESSAGE:
        return PV_MESSAGE;
    case PV_STANZA_PRESENCE:
        return PV_PRESENCE;
    case PV_STANZA_IQ:
        if (st->type == NULL)
            return PV_EV_NONE;
        if (strcmp(st->type, "get") == 0)
            return PV_IQ_GET;
        if (strcmp(st->type, "set") == 0)
            return PV_IQ_SET;
        if (strcmp(st->type, "result") == 0)
            return PV_IQ_RESULT;
        if (strcmp(st->type, "error") == 0)
            return PV_IQ_ERROR;
        return PV_EV_NONE;
    default:
        return PV_EV_NONE;
    }
}

static int
type_is(const pv_stanza_t *st, const char *type)
{
    const char *t = st->type ? st->type : "";

    return strcmp(t, type) == 0;
}

/* XEP-0353 call invitations ring every device: a <propose/> (and its
 * <retract/>) reaches all non-negative resources, not only those of the
 * highest priority, so that a phone and a desktop both ring. */
static int
rings_all(const pv_stanza_t *st)
{
    static const char ns[] = "urn:xmpp:jingle-message:0";

    return st->kind == PV_STANZA_MESSAGE &&
           (pv_node_child(st->root, "propose", ns) != NULL ||
            pv_node_child(st->root, "retract", ns) != NULL);
}

static int
best_priority(const pv_user_t *u)
{
    const pv_session_t *s;
    int best = -1;

    for (s = u->sessions; s != NULL; s = s->next_res)
        if (s->available && s->priority >= 0 && s->priority > best)
            best = s->priority;
    return best;
}

/* Message to a bare JID (RFC 6121 §8.5.2.1.1): the available resources
 * with the highest non-negative priority get it; chat messages go to all
 * of those, headline (and call invitations) to every non-negative one. */
static int
bare_gets(const pv_session_t *s, const pv_stanza_t *st, int best, int all)
{
    if (best < 0 || !s->available || s->priority < 0)
        return 0;
    return all || s->priority == best;
}

/* Returns the count of resources that got st. */
static int
deliver_to_bare(pv_server_t *srv, pv_stanza_t *st)
{
    pv_user_t *u = pv_user_find(srv, st->to->bare);
    pv_session_t *s;
    int best, n = 0, all;

    if (u == NULL || (best = best_priority(u)) < 0)
        return 0;
    all = type_is(st, "headline") || rings_all(st);
    for (s = u->sessions; s != NULL; s = s->next_res) {
        if (!bare_gets(s, st, best, all))
            continue;
        pv_session_send(s, st);
        n++;
    }
    return n;
}

int
pv_message_reaches(const pv_session_t *s, const pv_stanza_t *st)
{
    pv_session_t *direct;

    if (st->to == NULL || s->user == NULL)
        return 0;
    if (st->to->resource != NULL &&
        (direct = pv_session_find(s->server, st->to)) != NULL)
        return direct == s;
    return bare_gets(s, st, best_priority(s->user),
                     type_is(st, "headline") || rings_all(st));
}

static void
presence_to_bare(pv_server_t *srv, pv_stanza_t *st)
{
    pv_user_t *u = pv_user_find(srv, st->to->bare);
    pv_session_t *s;

    for (s = u ? u->sessions : NULL; s != NULL; s = s->next_res)
        if (s->available)
            pv_session_send(s, st);
}

/* An error reply to st. A stanza from a remote server has no origin
 * session (s2s.c delivers with from = NULL): its errors are routed back
 * through the host, which sends them over s2s. */
static void
reply_error(pv_host_t *h, pv_session_t *from, const pv_stanza_t *st,
            pv_err_type_t type, const char *cond)
{
    pv_stanza_t *err;

    if (from != NULL) {
        pv_send_error(from, st, type, cond, NULL);
        return;
    }
    if (st->from == NULL || pv_server_host(h->server, st->from->domain))
        return;     /* local server-generated stanzas get no bounce */
    err = pv_stanza_error(st, type, cond, NULL);
    if (err != NULL) {
        pv_host_route(h, err);
        pv_stanza_unref(err);
    }
}

/* What no module handled, per RFC 6121 §8.5. */
static void
route_default(pv_host_t *h, pv_session_t *from, pv_stanza_t *st,
              pv_addr_t addr)
{
    pv_server_t *srv = h->server;
    int is_error = type_is(st, "error");
    pv_session_t *target;

    if (addr == PV_TO_FULL) {
        target = pv_session_find(srv, st->to);
        if (target != NULL) {
            pv_session_send(target, st);
            return;
        }
    }
    switch (st->kind) {
    case PV_STANZA_MESSAGE:
        if (addr == PV_TO_HOST) {
            /* messages to the server itself: nothing to do with them */
            if (!is_error)
                reply_error(h, from, st, PV_ERR_CANCEL,
                            "service-unavailable");
            return;
        }
        /* §8.5.3.2.1: to an unavailable full JID, normal and chat are
         * treated as if sent to the bare JID; groupchat gets an error,
         * headline is dropped */
        if (addr == PV_TO_FULL) {
            if (type_is(st, "groupchat")) {
                reply_error(h, from, st, PV_ERR_CANCEL,
                            "service-unavailable");
                return;
            }
            if (type_is(st, "headline") || is_error)
                return;
        }
        if (deliver_to_bare(srv, st) > 0)
            return;
        /* no available resource and no offline storage took it */
        if (!is_error && !type_is(st, "headline") &&
            !type_is(st, "groupchat"))
            reply_error(h, from, st, PV_ERR_CANCEL, "service-unavailable");
        return;
    case PV_STANZA_PRESENCE:
        if (addr == PV_TO_BARE)
            presence_to_bare(srv, st);
        /* presence to an unavailable resource or to the host: dropped
         * (§8.5.3.2.3, §8.5.1) */
        return;
    case PV_STANZA_IQ:
        if (type_is(st, "get") || type_is(st, "set"))
            reply_error(h, from, st, PV_ERR_CANCEL, "service-unavailable");
        /* results and errors nobody waits for are dropped */
        return;
    default:
        return;
    }
}

void
pv_route_local(pv_host_t *h, pv_session_t *from, pv_stanza_t *st)
{
    pv_event_t ev;
    const pv_jid_t *to = st->to;

    memset(&ev, 0, sizeof(ev));
    ev.kind = stanza_event_kind(st);
    ev.server = h->server;
    ev.host = h;
    ev.origin = from;
    ev.stanza = st;
    ev.to = to;
    ev.from = st->from;
    if (to->node == NULL)
        ev.addr = PV_TO_HOST;
    else if (to->resource == NULL)
        ev.addr = PV_TO_BARE;
    else
        ev.addr = PV_TO_FULL;
    if (st->kind == PV_STANZA_IQ)
        ev.payload = pv_node_first_element(st->root);
    if (ev.kind == PV_EV_NONE) {
        if (st->kind == PV_STANZA_IQ)
            reply_error(h, from, st, PV_ERR_MODIFY, "bad-request");
        return;
    }
    /* IQ get/set must carry exactly one payload (RFC 6120 §8.2.3) */
    if ((ev.kind == PV_IQ_GET || ev.kind == PV_IQ_SET) && ev.payload == NULL) {
        reply_error(h, from, st, PV_ERR_MODIFY, "bad-request");
        return;
    }
    /* unknown local user: service-unavailable for everything that would
     * expect an answer (RFC 6121 §8.5.1) — unless a module claims it */
    if (pv_event_stanza(&ev, 0) == PV_HANDLED)
        return;
    route_default(h, from, st, ev.addr);
}

static void
route(pv_server_t *srv, pv_session_t *from, pv_stanza_t *st)
{
    pv_host_t *h;

    if (st->to == NULL) {
        pv_log(PV_LOG_DEBUG, "router", "dropping stanza without address");
        return;
    }
    /* pre- hooks see what a local client sends, wherever it goes */
    if (from != NULL && from->kind == PV_SESSION_C2S && from->c2s) {
        pv_event_t ev;

        memset(&ev, 0, sizeof(ev));
        ev.kind = stanza_event_kind(st);
        ev.server = srv;
        ev.host = from->host;
        ev.origin = from;
        ev.stanza = st;
        ev.to = st->to;
        ev.from = st->from;
        if (st->kind == PV_STANZA_IQ)
            ev.payload = pv_node_first_element(st->root);
        if (ev.kind != PV_EV_NONE && pv_event_stanza(&ev, 1) == PV_HANDLED)
            return;
    }
    h = pv_server_host(srv, st->to->domain);
    if (h != NULL) {
        pv_route_local(h, from, st);
        return;
    }
    /* a remote domain: federation (s2s.c queues, sends or bounces) */
    pv_s2s_route(srv, st);
}

void
pv_route(pv_session_t *from, pv_stanza_t *st)
{
    if (from == NULL) {
        pv_log(PV_LOG_ERROR, "router", "pv_route without a sender: use "
               "pv_host_route");
        return;
    }
    route(from->server, from, st);
}

void
pv_host_route(pv_host_t *h, pv_stanza_t *st)
{
    if (st->to == NULL && pv_stanza_parse_addrs(st, NULL) != PV_OK)
        return;
    route(h->server, NULL, st);
}

void
pv_send(pv_session_t *origin, pv_stanza_t *st)
{
    /* replies to the origin itself skip the routing tables */
    if (origin != NULL && st->to != NULL && !origin->closing &&
        pv_jid_equal(st->to, &origin->jid))
        pv_session_send(origin, st);
    else if (origin != NULL)
        pv_route(origin, st);
    pv_stanza_unref(st);
}
