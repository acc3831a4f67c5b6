/* src/event.c: hook tables per host and priority dispatch. Lists are built
 * once when a host is activated (from the modules' declared hooks) and are
 * read-only afterwards, so dispatch does no allocation. */
#include <stdlib.h>
#include <string.h>

#include "palaver.h"

static void
hlist_add(pv_hlist_t *l, const pv_hook_t *hook, pv_module_t *m)
{
    size_t i;

    l->v = pv_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    /* stable insertion by priority: equal priorities keep module order */
    for (i = l->n; i > 0 && l->v[i - 1].hook->priority > hook->priority; i--)
        l->v[i] = l->v[i - 1];
    l->v[i].hook = hook;
    l->v[i].module = m;
    l->n++;
}

void
pv_event_build(pv_host_t *h)
{
    size_t i;

    for (i = 0; i < h->n_mods; i++) {
        pv_module_t *m = h->mods[i].module;
        const pv_hook_t *hk;

        if (!h->mods[i].active || m->def->hooks == NULL)
            continue;
        for (hk = m->def->hooks; hk->kind != PV_EV_NONE; hk++) {
            if (hk->flags & PV_HOOK_PREAUTH) {
                hlist_add(&h->preauth_hooks[hk->kind], hk, m);
            } else if (hk->flags & PV_HOOK_PRE) {
                hlist_add(&h->pre_hooks[hk->kind], hk, m);
            } else if (hk->to == PV_TO_ANY) {
                int a;
                for (a = PV_TO_HOST; a <= PV_TO_FULL; a++)
                    hlist_add(&h->hooks[hk->kind][a], hk, m);
                hlist_add(&h->hooks[hk->kind][PV_TO_ANY], hk, m);
            } else {
                hlist_add(&h->hooks[hk->kind][hk->to], hk, m);
            }
        }
    }
}

void
pv_event_clear(pv_host_t *h)
{
    size_t k, a;

    for (k = 0; k < PV_EV_COUNT_; k++) {
        for (a = 0; a < 4; a++) {
            free(h->hooks[k][a].v);
            h->hooks[k][a].v = NULL;
            h->hooks[k][a].n = 0;
        }
        free(h->pre_hooks[k].v);
        h->pre_hooks[k].v = NULL;
        h->pre_hooks[k].n = 0;
        free(h->preauth_hooks[k].v);
        h->preauth_hooks[k].v = NULL;
        h->preauth_hooks[k].n = 0;
    }
}

/* Does the stanza carry what the hook filters on? For IQs the payload is
 * the first child element; for messages and presence any child counts. */
static int
hook_matches(const pv_hook_t *hk, const pv_event_t *ev)
{
    const pv_node_t *c;

    if (hk->xmlns == NULL && hk->name == NULL)
        return 1;
    if (ev->stanza == NULL)
        return 0;
    if (ev->kind >= PV_IQ_GET && ev->kind <= PV_IQ_ERROR) {
        c = ev->payload;
        return c != NULL && (hk->xmlns == NULL ||
                             strcmp(c->xmlns, hk->xmlns) == 0) &&
               (hk->name == NULL || strcmp(c->name, hk->name) == 0);
    }
    for (c = ev->stanza->root->children; c != NULL; c = c->next) {
        if (c->name == NULL)
            continue;
        if ((hk->xmlns == NULL || strcmp(c->xmlns, hk->xmlns) == 0) &&
            (hk->name == NULL || strcmp(c->name, hk->name) == 0))
            return 1;
    }
    return 0;
}

static pv_rc_t
dispatch(const pv_hlist_t *l, pv_event_t *ev)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        if (!hook_matches(l->v[i].hook, ev))
            continue;
        ev->module = l->v[i].module;
        if (l->v[i].hook->handler(ev) == PV_HANDLED)
            return PV_HANDLED;
    }
    ev->module = NULL;
    return PV_PASS;
}

pv_rc_t
pv_event_stanza(pv_event_t *ev, int stage)
{
    if (stage == 2)
        return dispatch(&ev->host->preauth_hooks[ev->kind], ev);
    if (stage == 1)
        return dispatch(&ev->host->pre_hooks[ev->kind], ev);
    return dispatch(&ev->host->hooks[ev->kind][ev->addr], ev);
}

pv_rc_t
pv_event_fire(pv_event_t *ev)
{
    if (ev->host == NULL || ev->kind <= PV_EV_NONE || ev->kind >= PV_EV_COUNT_)
        return PV_PASS;
    if (ev->server == NULL)
        ev->server = ev->host->server;
    return dispatch(&ev->host->hooks[ev->kind][PV_TO_ANY], ev);
}

void
pv_event_reply(pv_event_t *ev, pv_stanza_t *st)
{
    if (ev->origin == NULL && ev->stream != NULL) {
        pv_c2s_send(ev->stream, st);
        pv_stanza_unref(st);
        return;
    }
    if (ev->origin == NULL && ev->host != NULL) {
        /* a remote (s2s) or server-internal sender: route by address */
        pv_host_route(ev->host, st);
        pv_stanza_unref(st);
        return;
    }
    pv_send(ev->origin, st);
}

void
pv_event_result(pv_event_t *ev, const pv_node_t *payload)
{
    pv_stanza_t *st = pv_iq_result(ev->stanza);

    if (payload != NULL)
        pv_node_append(st->root, pv_node_copy(st->arena, payload));
    pv_event_reply(ev, st);
}

void
pv_event_error(pv_event_t *ev, pv_err_type_t type, const char *condition,
               const char *text)
{
    pv_stanza_t *st = pv_stanza_error(ev->stanza, type, condition, text);

    if (st != NULL)
        pv_event_reply(ev, st);
}

const char *
pv_event_peer_ip(const pv_event_t *ev)
{
    if (ev->stream != NULL)
        return pv_c2s_peer_ip(ev->stream);
    if (ev->origin != NULL && ev->origin->c2s != NULL)
        return pv_c2s_peer_ip(ev->origin->c2s);
    return NULL;
}

/* A deferred reply pins the client stream (not its connection): once the
 * stream is closed pv_c2s_send() is a no-op, and the last reference
 * frees it. */
struct pv_reply_s {
    pv_c2s_t *c;
};

pv_reply_t *
pv_event_defer(pv_event_t *ev)
{
    pv_reply_t *r;

    if (ev->stream == NULL)
        return NULL;
    r = pv_xmalloc(sizeof(*r));
    r->c = pv_c2s_ref(ev->stream);
    return r;
}

void
pv_reply_send(pv_reply_t *r, pv_stanza_t *st)
{
    if (r != NULL && st != NULL)
        pv_c2s_send(r->c, st);
    pv_stanza_unref(st);
    if (r != NULL) {
        pv_c2s_unref(r->c);
        free(r);
    }
}
