/* src/session.c: the registry of bound c2s sessions (bare JID -> user ->
 * resources), resource binding with conflict handling (RFC 6120 §7.7.2.2:
 * the newer session wins) and the session accessors of the module API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "palaver.h"

pv_user_t *
pv_user_find(pv_server_t *srv, const char *bare)
{
    return pv_map_get(&srv->users, bare);
}

pv_session_t *
pv_session_find(pv_server_t *srv, const pv_jid_t *full)
{
    pv_user_t *u;
    pv_session_t *s;

    if (full->resource == NULL)
        return NULL;
    u = pv_map_get(&srv->users, full->bare);
    for (s = u ? u->sessions : NULL; s != NULL; s = s->next_res)
        if (strcmp(s->jid.resource, full->resource) == 0)
            return s;
    return NULL;
}

static void
random_resource(char *out, size_t len)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[16];
    size_t i;

    RAND_bytes(r, sizeof(r));
    for (i = 0; i + 1 < len && i < sizeof(r); i++)
        out[i] = alphabet[r[i] % (sizeof(alphabet) - 1)];
    out[i] = '\0';
}

static void
session_unlink(pv_session_t *s)
{
    pv_user_t *u = s->user;
    pv_session_t **pp;

    if (u == NULL)
        return;
    for (pp = &u->sessions; *pp != NULL; pp = &(*pp)->next_res) {
        if (*pp == s) {
            *pp = s->next_res;
            break;
        }
    }
    s->user = NULL;
    if (u->sessions == NULL) {
        pv_map_del(&s->server->users, u->bare);
        free(u->bare);
        free(u);
    }
}

pv_session_t *
pv_session_bind(pv_c2s_t *c2s, pv_host_t *h, const char *user,
                const char *resource, const char **cond)
{
    pv_server_t *srv = h->server;
    char generated[20];
    pv_session_t *s, *old;
    pv_user_t *u;
    pv_event_t ev;

    if (resource == NULL || *resource == '\0') {
        random_resource(generated, sizeof(generated));
        resource = generated;
    }
    s = pv_xcalloc(1, sizeof(*s));
    if (pv_jid_make(user, h->name, resource, &s->jid, NULL) != PV_OK) {
        free(s);
        *cond = "bad-request";
        return NULL;
    }
    old = pv_session_find(srv, &s->jid);
    if (old != NULL) {
        /* RFC 6120 §7.7.2.2: terminate the old session */
        if (old->c2s != NULL)
            pv_c2s_close(old->c2s, "conflict");
        pv_session_destroy(old);
    }
    s->kind = PV_SESSION_C2S;
    s->server = srv;
    s->host = pv_host_ref(h);
    s->c2s = c2s;
    s->id = ++srv->next_id;
    if (h->session_data_size)
        s->mod_data = pv_xcalloc(1, h->session_data_size);
    u = pv_map_get(&srv->users, s->jid.bare);
    if (u == NULL) {
        u = pv_xcalloc(1, sizeof(*u));
        u->bare = pv_xstrdup(s->jid.bare);
        pv_map_put(&srv->users, u->bare, u);
    }
    s->user = u;
    s->next_res = u->sessions;
    u->sessions = s;
    memset(&ev, 0, sizeof(ev));
    ev.kind = PV_EV_SESSION_BOUND;
    ev.host = h;
    ev.session = s;
    ev.user = s->jid.node;
    pv_event_fire(&ev);
    return s;
}

void
pv_session_destroy(pv_session_t *s)
{
    pv_event_t ev;
    size_t i;

    if (s->closing)
        return;
    s->closing = 1;
    memset(&ev, 0, sizeof(ev));
    ev.kind = PV_EV_SESSION_CLOSED;
    ev.host = s->host;
    ev.session = s;
    ev.user = s->jid.node;
    pv_event_fire(&ev);
    session_unlink(s);
    if (s->c2s != NULL) {
        pv_c2s_detach(s->c2s);
        s->c2s = NULL;
    }
    for (i = 0; s->mod_data && i < s->host->n_mods; i++) {
        pv_modinst_t *mi = &s->host->mods[i];
        if (mi->module->def->session_fini != NULL &&
            mi->module->def->session_data_size)
            mi->module->def->session_fini(mi->module, s,
                                          s->mod_data + mi->slot_offset);
    }
    free(s->mod_data);
    pv_jid_clear(&s->jid);
    pv_host_unref(s->host);
    free(s);
}

void
pv_session_set_presence(pv_session_t *s, int available, int priority)
{
    pv_event_t ev;

    s->available = available ? 1 : 0;
    s->priority = priority;
    memset(&ev, 0, sizeof(ev));
    ev.kind = PV_EV_PRESENCE_CHANGED;
    ev.host = s->host;
    ev.session = s;
    ev.user = s->jid.node;
    pv_event_fire(&ev);
}

const pv_jid_t *
pv_session_jid(const pv_session_t *s)
{
    return &s->jid;
}

pv_host_t *
pv_session_host(const pv_session_t *s)
{
    return s->host;
}

int
pv_session_priority(const pv_session_t *s)
{
    return s->priority;
}

int
pv_session_is_available(const pv_session_t *s)
{
    return s->available;
}

uint64_t
pv_session_last_active(const pv_session_t *s)
{
    return s->c2s ? pv_c2s_last_active(s->c2s) : 0;
}

void
pv_session_send(pv_session_t *s, pv_stanza_t *st)
{
    if (s->closing)
        return;
    /* modules may hold (CSI) or queue (XEP-0198) what goes out */
    if (s->host->hooks[PV_EV_SESSION_SEND][PV_TO_ANY].n > 0) {
        pv_event_t ev;

        memset(&ev, 0, sizeof(ev));
        ev.kind = PV_EV_SESSION_SEND;
        ev.host = s->host;
        ev.session = s;
        ev.stanza = st;
        ev.user = s->jid.node;
        if (pv_event_fire(&ev) == PV_HANDLED)
            return;
    }
    if (s->c2s != NULL)
        pv_c2s_send(s->c2s, st);
}

void
pv_session_write(pv_session_t *s, pv_stanza_t *st)
{
    if (s->c2s != NULL && !s->closing)
        pv_c2s_send(s->c2s, st);
}

void
pv_session_close(pv_session_t *s, const char *condition)
{
    /* the stream's close destroys the session; without one, do it now */
    if (s->c2s != NULL)
        pv_c2s_close(s->c2s, condition);
    else
        pv_session_destroy(s);
}

void
pv_session_end(pv_session_t *s)
{
    if (s->c2s != NULL)
        pv_c2s_close(s->c2s, NULL);
    pv_session_destroy(s);
}

int
pv_session_is_connected(const pv_session_t *s)
{
    return s->c2s != NULL;
}

pv_session_t *
pv_session_lookup(pv_server_t *srv, const pv_jid_t *full)
{
    pv_session_t *s = pv_session_find(srv, full);

    return s != NULL && !s->closing ? s : NULL;
}

void
pv_session_fanout(pv_session_t *s, pv_stanza_t *st)
{
    if (pv_node_attr(st->root, "to") != NULL) {
        pv_log(PV_LOG_ERROR, "session", "pv_session_fanout: a stanza "
               "with a to attribute; not sent");
        return;
    }
    st->readdress = 1;
    pv_session_send(s, st);
}

size_t
pv_session_send_room(const pv_session_t *s)
{
    size_t room = s->c2s != NULL ? pv_c2s_send_room(s->c2s) : SIZE_MAX;

    if (s->closing)
        return 0;
    if (room > 0 && s->host->hooks[PV_EV_SESSION_ROOM][PV_TO_ANY].n > 0) {
        pv_event_t ev;

        memset(&ev, 0, sizeof(ev));
        ev.kind = PV_EV_SESSION_ROOM;
        ev.host = s->host;
        ev.session = (pv_session_t *)s;
        ev.user = s->jid.node;
        ev.data = &room;
        pv_event_fire(&ev);
    }
    return room;
}

uint32_t
pv_session_stanzas_in(const pv_session_t *s)
{
    return s->stanzas_in;
}

pv_stream_t *
pv_session_stream(const pv_session_t *s)
{
    return s->c2s;
}

typedef struct {
    pv_session_t **v;
    size_t n;
} detached_t;

static void
collect_detached(void *arg, const char *key, void *value)
{
    detached_t *d = arg;
    pv_user_t *u = value;
    pv_session_t *s;

    (void)key;
    for (s = u->sessions; s != NULL; s = s->next_res) {
        if (s->c2s == NULL) {
            d->v = pv_xrealloc(d->v, (d->n + 1) * sizeof(*d->v));
            d->v[d->n++] = s;
        }
    }
}

void
pv_session_end_detached(pv_server_t *srv)
{
    detached_t d = { NULL, 0 };
    size_t i;

    /* collect first: destroying changes the user map */
    pv_map_each(&srv->users, collect_detached, &d);
    for (i = 0; i < d.n; i++)
        pv_session_destroy(d.v[i]);
    free(d.v);
}
