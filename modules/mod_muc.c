/* modules/mod_muc.c: XEP-0045 multi-user chat on the component domain
 * (conference.<vhost>): rooms and occupants, presence and status codes,
 * the fan-out, groupchat and private messages, subject, history on join,
 * mediated invitations, IQ dispatch and relaying, XEP-0410 self-ping,
 * XEP-0421 occupant ids, the room vCard and the module declaration.
 * Administration (roles, affiliations, configuration, disco) lives in
 * muc_admin.c; rows, MUC MAM and moderation in muc_archive.c. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "muc_room.h"

#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

const char *const muc_aff_names[] = { "outcast", "none", "member",
                                         "admin", "owner" };
const char *const muc_role_names[] = { "none", "visitor", "participant",
                                          "moderator" };
const char *const muc_pm_names[] = { "anyone", "participants",
                                        "moderators", "none" };
static const char *const creation_names[] = { "anyone", "local", NULL };

int
muc_name_index(const char *const *names, size_t n, const char *s)
{
    size_t i;

    for (i = 0; s != NULL && i < n; i++)
        if (strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

/* --- service and rooms ---------------------------------------------- */

muc_host_t *
muc_host_ref(muc_host_t *mh)
{
    mh->refs++;
    return mh;
}

void
muc_host_unref(muc_host_t *mh)
{
    if (--mh->refs == 0)
        free(mh);
}

const muc_conf_t *
muc_conf(muc_host_t *mh)
{
    return pv_module_conf(mh->m, mh->h);
}

static void
config_defaults(muc_host_t *mh, muc_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->is_public = 1;
    c->allow_invites = 0;
    c->change_subject = 0;
    c->allow_pm = PM_ANYONE;
    c->member_list_roles = 1u << ROLE_MODERATOR | 1u << ROLE_PARTICIPANT;
    c->history_length = muc_conf(mh)->history_default;
    if (c->history_length > muc_conf(mh)->history_max)
        c->history_length = muc_conf(mh)->history_max;
}

muc_room_t *
muc_room_new(muc_host_t *mh, const char *node)
{
    muc_room_t *r = pv_xcalloc(1, sizeof(*r));
    size_t got = 0;

    r->mh = mh;
    r->node = pv_xstrdup(node);
    r->jid = pv_xasprintf("%s@%s", node, pv_host_name(mh->h));
    config_defaults(mh, &r->cfg);
    while (got < sizeof(r->secret)) {
        ssize_t n = getrandom(r->secret + got, sizeof(r->secret) - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    muc_hist_resize(r);
    r->next = mh->list;
    mh->list = r;
    return r;
}

void
muc_config_free(muc_config_t *c)
{
    free(c->name);
    free(c->desc);
    free(c->password);
}

static void
occ_free(muc_occ_t *o)
{
    free(o->nick);
    pv_jid_clear(&o->real);
    pv_stanza_unref(o->pres);
    free(o);
}

static void
room_free(muc_room_t *r)
{
    muc_occ_t *o;
    muc_aff_t *a;
    size_t i;

    while ((o = r->occ) != NULL) {
        r->occ = o->next;
        occ_free(o);
    }
    while ((a = r->affs) != NULL) {
        r->affs = a->next;
        free(a->jid);
        free(a);
    }
    for (i = 0; i < r->hist_n; i++)
        pv_stanza_unref(r->hist[(r->hist_head + i) % r->hist_cap].st);
    free(r->hist);
    if (r->vcard_arena != NULL)
        pv_arena_free(r->vcard_arena);
    muc_config_free(&r->cfg);
    free(r->subject);
    free(r->subject_nick);
    free(r->node);
    free(r->jid);
    free(r);
}

static muc_room_t *
room_find(muc_host_t *mh, const char *node)
{
    muc_room_t *r;

    for (r = mh->list; r != NULL; r = r->next)
        if (strcmp(r->node, node) == 0)
            return r;
    return NULL;
}

static void
room_unlink(muc_room_t *r)
{
    muc_room_t **pp;

    for (pp = &r->mh->list; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            return;
        }
    }
}

/* --- history ring --------------------------------------------------- */

void
muc_hist_resize(muc_room_t *r)
{
    size_t cap = r->cfg.history_length > 0 ?
                 (size_t)r->cfg.history_length : 0;
    muc_hist_t *h;
    size_t i, keep, skip;

    if (cap == r->hist_cap)
        return;
    h = cap ? pv_xcalloc(cap, sizeof(*h)) : NULL;
    keep = r->hist_n < cap ? r->hist_n : cap;
    skip = r->hist_n - keep;
    for (i = 0; i < r->hist_n; i++) {
        muc_hist_t *e = &r->hist[(r->hist_head + i) % r->hist_cap];
        if (i < skip)
            pv_stanza_unref(e->st);
        else
            h[i - skip] = *e;
    }
    free(r->hist);
    r->hist = h;
    r->hist_cap = cap;
    r->hist_n = keep;
    r->hist_head = 0;
}

void
muc_hist_push(muc_room_t *r, pv_stanza_t *st, uint64_t ts, const char *id)
{
    muc_hist_t *e;

    if (r->hist_cap == 0)
        return;
    if (r->hist_n == r->hist_cap) {
        e = &r->hist[r->hist_head];
        pv_stanza_unref(e->st);
        r->hist_head = (r->hist_head + 1) % r->hist_cap;
        r->hist_n--;
    }
    e = &r->hist[(r->hist_head + r->hist_n) % r->hist_cap];
    e->st = pv_stanza_ref(st);
    e->ts_us = ts;
    snprintf(e->id, sizeof(e->id), "%s", id);
    r->hist_n++;
}

/* --- occupants and affiliations ------------------------------------- */

muc_occ_t *
muc_occ_by_real(muc_room_t *r, const char *full)
{
    muc_occ_t *o;

    for (o = r->occ; o != NULL; o = o->next)
        if (strcmp(o->real.full, full) == 0)
            return o;
    return NULL;
}

muc_occ_t *
muc_occ_by_nick(muc_room_t *r, const char *nick)
{
    muc_occ_t *o;

    for (o = r->occ; o != NULL; o = o->next)
        if (strcmp(o->nick, nick) == 0)
            return o;
    return NULL;
}

static muc_aff_t *
aff_find(const muc_room_t *r, const char *jid)
{
    muc_aff_t *a;

    for (a = r->affs; a != NULL; a = a->next)
        if (strcmp(a->jid, jid) == 0)
            return a;
    return NULL;
}

/* The affiliation of a JID: its bare JID's entry, else its domain's
 * (XEP-0045 §9.1 bans whole servers that way), else none. */
int
muc_aff_of(const muc_room_t *r, const pv_jid_t *j)
{
    muc_aff_t *a = aff_find(r, j->bare);

    if (a == NULL && j->node != NULL)
        a = aff_find(r, j->domain);
    return a ? a->aff : AFF_NONE;
}

void
muc_aff_set_mem(muc_room_t *r, const char *jid, int aff)
{
    muc_aff_t *a = aff_find(r, jid), **pp;

    if (aff == AFF_NONE) {
        for (pp = &r->affs; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == a) {
                *pp = a->next;
                free(a->jid);
                free(a);
                return;
            }
        }
        return;
    }
    if (a == NULL) {
        a = pv_xcalloc(1, sizeof(*a));
        a->jid = pv_xstrdup(jid);
        a->next = r->affs;
        r->affs = a;
    }
    a->aff = aff;
}

int
muc_default_role(const muc_room_t *r, int aff)
{
    if (aff >= AFF_ADMIN)
        return ROLE_MODERATOR;
    if (r->cfg.is_moderated && aff < AFF_MEMBER)
        return ROLE_VISITOR;
    return ROLE_PARTICIPANT;
}

/* XEP-0421: stable per real bare JID and room, unlinkable across rooms:
 * HMAC-SHA-256 of the bare JID under the room's secret. */
static void
occupant_id(const muc_room_t *r, const char *bare, char *out, size_t len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    unsigned char b64[64];
    int n;

    HMAC(EVP_sha256(), r->secret, sizeof(r->secret),
         (const unsigned char *)bare, strlen(bare), mac, &mac_len);
    n = EVP_EncodeBlock(b64, mac, 24);
    snprintf(out, len, "%.*s", n, (const char *)b64);
}

/* --- sending -------------------------------------------------------- */

/* The template's parsed 'from', kept in its own arena: parsed once per
 * fan-out instead of once per recipient (PRECIS preparation is not
 * cheap). Only the pointer is set; the tree is not touched. */
static const pv_jid_t *
tmpl_from(pv_stanza_t *tmpl)
{
    const char *from;
    pv_jid_t *j;

    if (tmpl->from != NULL)
        return tmpl->from;
    from = pv_node_attr(tmpl->root, "from");
    if (from == NULL)
        return NULL;
    j = pv_arena_calloc(tmpl->arena, sizeof(*j));
    if (pv_jid_parse(from, strlen(from), j, tmpl->arena) != PV_OK)
        return NULL;
    tmpl->from = j;
    return j;
}

/* The per-recipient stanza of a fan-out: one tree copy in an arena sized
 * for it, 'to' set, both addresses copied already prepared so that the
 * router parses nothing. The template itself is shared (refcounted) and
 * never modified. The module API cannot send one tree with N different
 * 'to' attributes, so the tree is copied; see the report for the core
 * helper that would remove this copy. extra, when not NULL, is appended
 * (a history <delay/>). */
static pv_stanza_t *
copy_for(pv_stanza_t *tmpl, const pv_jid_t *to, const pv_node_t *extra)
{
    const pv_jid_t *from = tmpl_from(tmpl);
    pv_arena_t *a = pv_arena_new(pv_arena_used(tmpl->arena) +
                                 3 * strlen(to->full) + 256);
    pv_node_t *root = pv_node_copy(a, tmpl->root);
    pv_stanza_t *c;

    if (extra != NULL)
        pv_node_append(root, pv_node_copy(a, extra));
    pv_node_set_attr(a, root, "to", to->full);
    c = pv_stanza_new(a, root);
    c->to = pv_arena_calloc(a, sizeof(pv_jid_t));
    pv_jid_copy(to, c->to, a);
    if (from != NULL) {
        c->from = pv_arena_calloc(a, sizeof(pv_jid_t));
        pv_jid_copy(from, c->from, a);
    }
    return c;
}

void
muc_send_to(muc_host_t *mh, pv_stanza_t *tmpl, const pv_jid_t *to)
{
    pv_session_t *s;
    pv_stanza_t *c;

    /* A groupchat message to a local occupant is the one shared stanza,
     * addressed as it is written (DESIGN.md §3: fan-out without copies);
     * remote occupants and everything else get their own copy, routed. */
    if (tmpl->kind == PV_STANZA_MESSAGE && tmpl->type != NULL &&
        strcmp(tmpl->type, "groupchat") == 0 &&
        pv_node_attr(tmpl->root, "to") == NULL &&
        (s = pv_session_lookup(pv_host_server(mh->h), to)) != NULL) {
        pv_session_fanout(s, tmpl);
        return;
    }
    c = copy_for(tmpl, to, NULL);
    pv_host_route(mh->h, c);
    pv_stanza_unref(c);
}

void
muc_broadcast(muc_room_t *r, pv_stanza_t *st)
{
    muc_occ_t *o;

    for (o = r->occ; o != NULL; o = o->next)
        muc_send_to(r->mh, st, &o->real);
}

pv_stanza_t *
muc_room_stanza(const muc_room_t *r, const char *name, const char *nick)
{
    pv_stanza_t *st = pv_stanza_build(name);

    if (nick != NULL) {
        char *from = pv_xasprintf("%s/%s", r->jid, nick);
        pv_node_set_attr(st->arena, st->root, "from", from);
        free(from);
    } else {
        pv_node_set_attr(st->arena, st->root, "from", r->jid);
    }
    return st;
}

void
muc_add_text(pv_arena_t *a, pv_node_t *parent, const char *name,
               const char *text)
{
    pv_node_t *n = pv_node_new(a, name, NULL, parent);

    if (text != NULL)
        pv_node_add_text(a, n, text, strlen(text));
}

static void
add_status(pv_arena_t *a, pv_node_t *x, int code)
{
    char buf[8];
    pv_node_t *s = pv_node_new(a, "status", NULL, x);

    snprintf(buf, sizeof(buf), "%d", code);
    pv_node_set_attr(a, s, "code", buf);
}

/* Presence of occupant o as a recipient sees it: with the real JID when
 * show_jid, with 110 when self. */
pv_stanza_t *
muc_occ_presence(muc_room_t *r, muc_occ_t *o, int aff, const pres_opts_t *po,
             int show_jid, int self)
{
    pv_stanza_t *st = muc_room_stanza(r, "presence", o->nick);
    pv_arena_t *a = st->arena;
    pv_node_t *x, *item, *c;
    int i;

    if (po->is_unavailable) {
        pv_node_set_attr(a, st->root, "type", "unavailable");
    } else if (o->pres != NULL) {
        /* what the occupant said (show, status, caps), minus what the
         * room itself owns */
        for (c = o->pres->root->children; c != NULL; c = c->next) {
            if (c->name == NULL)
                continue;
            if (strcmp(c->xmlns, NS_MUC) == 0 ||
                strcmp(c->xmlns, NS_MUC_USER) == 0 ||
                strcmp(c->xmlns, NS_OID) == 0)
                continue;
            pv_node_append(st->root, pv_node_copy(a, c));
        }
    }
    x = pv_node_new(a, "x", NS_MUC_USER, st->root);
    item = pv_node_new(a, "item", NULL, x);
    pv_node_set_attr(a, item, "affiliation", muc_aff_names[aff]);
    pv_node_set_attr(a, item, "role", po->is_unavailable ? "none"
                     : muc_role_names[o->role]);
    if (show_jid)
        pv_node_set_attr(a, item, "jid", o->real.full);
    if (po->new_nick != NULL)
        pv_node_set_attr(a, item, "nick", po->new_nick);
    if (po->actor != NULL) {
        c = pv_node_new(a, "actor", NULL, item);
        pv_node_set_attr(a, c, "nick", po->actor);
    }
    if (po->reason != NULL)
        muc_add_text(a, item, "reason", po->reason);
    if (po->is_destroy) {
        c = pv_node_new(a, "destroy", NULL, x);
        if (po->alt_venue != NULL)
            pv_node_set_attr(a, c, "jid", po->alt_venue);
        if (po->reason != NULL)
            muc_add_text(a, c, "reason", po->reason);
    }
    if (self) {
        if (r->cfg.is_whois_anyone)
            add_status(a, x, 100);
        add_status(a, x, 110);
    }
    for (i = 0; i < po->n_codes; i++)
        add_status(a, x, po->codes[i]);
    c = pv_node_new(a, "occupant-id", NS_OID, st->root);
    pv_node_set_attr(a, c, "id", o->oid);
    pv_stanza_touch(st);
    return st;
}

/* Sends o's presence to every occupant; o itself (when still listed or
 * passed as extra_self) gets its self-presence last. */
void
muc_broadcast_presence(muc_room_t *r, muc_occ_t *o, const pres_opts_t *po,
                   int include_self)
{
    int aff = muc_aff_of(r, &o->real);
    pv_stanza_t *with_jid = NULL, *without = NULL, *self = NULL;
    muc_occ_t *v;

    for (v = r->occ; v != NULL; v = v->next) {
        int show = r->cfg.is_whois_anyone || v->role == ROLE_MODERATOR;
        pv_stanza_t **t = show ? &with_jid : &without;

        if (v == o)
            continue;
        if (strcmp(v->nick, o->nick) == 0) {
            /* another session of the same occupant: its own nick */
            if (self == NULL)
                self = muc_occ_presence(r, o, aff, po, 1, 1);
            muc_send_to(r->mh, self, &v->real);
            continue;
        }
        if (*t == NULL)
            *t = muc_occ_presence(r, o, aff, po, show, 0);
        muc_send_to(r->mh, *t, &v->real);
    }
    if (include_self) {
        if (self == NULL)
            self = muc_occ_presence(r, o, aff, po, 1, 1);
        muc_send_to(r->mh, self, &o->real);
    }
    pv_stanza_unref(self);
    pv_stanza_unref(with_jid);
    pv_stanza_unref(without);
}

static void
occ_unlink(muc_room_t *r, muc_occ_t *o)
{
    muc_occ_t **pp;

    for (pp = &r->occ; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            r->n_occ--;
            return;
        }
    }
}

void
muc_room_destroy(muc_room_t *r, int forget_rows)
{
    room_unlink(r);
    if (forget_rows)
        muc_store_forget(r, NULL, NULL);
    room_free(r);
}

/* A temporary room ends with its last occupant (XEP-0045 §10.1.3); a
 * room still locked ends when its creator leaves. */
static void
room_maybe_vanish(muc_room_t *r)
{
    if (r->occ == NULL && (!r->cfg.is_persistent || r->is_locked))
        muc_room_destroy(r, 1);
}

/* Removes o with an unavailable presence to everyone (itself included). */
void
muc_occ_remove(muc_room_t *r, muc_occ_t *o, const pres_opts_t *po)
{
    muc_broadcast_presence(r, o, po, 1);
    occ_unlink(r, o);
    occ_free(o);
}

/* Another session under o's nick (one account joined from several
 * clients with the same nick), or NULL. */
static muc_occ_t *
occ_sibling(muc_room_t *r, const muc_occ_t *o)
{
    muc_occ_t *v;

    for (v = r->occ; v != NULL; v = v->next)
        if (v != o && strcmp(v->nick, o->nick) == 0)
            return v;
    return NULL;
}

void
muc_occ_leave(muc_room_t *r, muc_occ_t *o, const pres_opts_t *po)
{
    pv_stanza_t *self;

    if (occ_sibling(r, o) == NULL) {
        muc_occ_remove(r, o, po);
        return;
    }
    /* the nick stays in the room: only the leaving session hears */
    self = muc_occ_presence(r, o, muc_aff_of(r, &o->real), po, 1, 1);
    muc_send_to(r->mh, self, &o->real);
    pv_stanza_unref(self);
    occ_unlink(r, o);
    occ_free(o);
}

void
muc_occ_remove_nick(muc_room_t *r, const char *nick, const pres_opts_t *po)
{
    char *copy = pv_xstrdup(nick);
    muc_occ_t *o;

    while ((o = muc_occ_by_nick(r, copy)) != NULL)
        muc_occ_leave(r, o, po);
    free(copy);
}

/* --- presence ------------------------------------------------------- */

void
muc_send_subject(muc_room_t *r, const pv_jid_t *to)
{
    pv_stanza_t *st = muc_room_stanza(r, "message", r->subject_nick);

    pv_node_set_attr(st->arena, st->root, "type", "groupchat");
    muc_add_text(st->arena, st->root, "subject", r->subject);
    pv_stanza_touch(st);
    muc_send_to(r->mh, st, to);
    pv_stanza_unref(st);
}

/* XEP-0045 §7.2.14: history limited by the client's <history/>. */
static void
send_history(muc_room_t *r, const pv_node_t *hist_req, const pv_jid_t *to,
             pv_arena_t *a)
{
    long long maxstanzas = -1, maxchars = -1;
    uint64_t since = 0, now = muc_now_us();
    size_t i, first, chars = 0;
    const char *v;

    if (hist_req != NULL) {
        if ((v = pv_node_attr(hist_req, "maxstanzas")) != NULL)
            maxstanzas = atoll(v);
        if ((v = pv_node_attr(hist_req, "maxchars")) != NULL)
            maxchars = atoll(v);
        if ((v = pv_node_attr(hist_req, "seconds")) != NULL) {
            long long s = atoll(v);
            uint64_t lim = s > 0 ? (uint64_t)s * 1000000u : 0;
            since = now > lim ? now - lim : 0;
            if (s <= 0)
                since = now + 1;
        }
        if ((v = pv_node_attr(hist_req, "since")) != NULL) {
            uint64_t t;
            if (pv_datetime_parse(v, &t) == PV_OK && t > since)
                since = t;
        }
    }
    if (maxstanzas == 0 || maxchars == 0)
        return;
    /* newest first to apply the limits, then sent oldest first */
    first = r->hist_n;
    for (i = r->hist_n; i-- > 0;) {
        muc_hist_t *e = &r->hist[(r->hist_head + i) % r->hist_cap];
        size_t len;

        if (e->ts_us < since)
            break;
        if (maxstanzas >= 0 && (long long)(r->hist_n - i) > maxstanzas)
            break;
        pv_stanza_wire(e->st, &len);
        if (maxchars >= 0 && (long long)(chars + len) > maxchars)
            break;
        chars += len;
        first = i;
    }
    for (i = first; i < r->hist_n; i++) {
        muc_hist_t *e = &r->hist[(r->hist_head + i) % r->hist_cap];
        pv_node_t *d = pv_node_new(a, "delay", NS_DELAY, NULL);
        pv_stanza_t *c;
        char stamp[48];

        pv_datetime_format(e->ts_us, 6, stamp, sizeof(stamp));
        pv_node_set_attr(a, d, "stamp", stamp);
        pv_node_set_attr(a, d, "from", r->jid);
        c = copy_for(e->st, to, d);
        pv_host_route(r->mh->h, c);
        pv_stanza_unref(c);
    }
}

static pv_stanza_t *
pres_copy(const pv_stanza_t *st)
{
    pv_stanza_t *c = pv_stanza_copy(st);

    return c;
}

static int
may_create(muc_host_t *mh, const pv_jid_t *from)
{
    if (muc_conf(mh)->creation == 0)
        return 1;
    return pv_host_is_local(pv_host_server(mh->h), from->domain);
}

/* XEP-0045 §7.2: entering a room (creating it when absent, §10.1). */
static void
occ_join(pv_event_t *ev, muc_host_t *mh, muc_room_t *r)
{
    const pv_jid_t *from = ev->from;
    const char *nick = ev->to->resource;
    const pv_node_t *x = pv_node_child(ev->stanza->root, "x", NS_MUC);
    const char *raw_to = pv_node_attr(ev->stanza->root, "to");
    int created = 0, aff, codes = 0;
    muc_occ_t *o, *v;
    pres_opts_t po;

    if (r == NULL) {
        if (!may_create(mh, from)) {
            pv_event_error(ev, PV_ERR_CANCEL, "not-allowed", NULL);
            return;
        }
        r = muc_room_new(mh, ev->to->node);
        /* a client speaking XEP-0045 gets a locked room it must
         * configure (or accept as instant); a legacy groupchat 1.0 join
         * gets an instant room at once */
        r->is_locked = x != NULL;
        muc_aff_set_mem(r, from->bare, AFF_OWNER);
        created = 1;
    }
    aff = muc_aff_of(r, from);
    if (r->is_locked && aff != AFF_OWNER) {
        pv_event_error(ev, PV_ERR_CANCEL, "item-not-found", NULL);
        return;
    }
    if (aff == AFF_OUTCAST) {
        pv_event_error(ev, PV_ERR_AUTH, "forbidden", NULL);
        return;
    }
    if (r->cfg.is_members_only && aff < AFF_MEMBER) {
        pv_event_error(ev, PV_ERR_AUTH, "registration-required", NULL);
        return;
    }
    if ((v = muc_occ_by_nick(r, nick)) != NULL &&
        strcmp(v->real.bare, from->bare) != 0) {
        pv_event_error(ev, PV_ERR_CANCEL, "conflict", NULL);
        return;
    }
    if (r->cfg.is_password && aff < AFF_ADMIN) {
        const pv_node_t *pw = x ? pv_node_child(x, "password", NULL) : NULL;
        const char *got = pw ? pv_node_text(pw, ev->stanza->arena) : NULL;

        if (got == NULL || r->cfg.password == NULL ||
            strcmp(got, r->cfg.password) != 0) {
            pv_event_error(ev, PV_ERR_AUTH, "not-authorized", NULL);
            return;
        }
    }
    if (r->cfg.max_users > 0 && (long long)r->n_occ >= r->cfg.max_users &&
        aff < AFF_ADMIN) {
        pv_event_error(ev, PV_ERR_WAIT, "service-unavailable", NULL);
        return;
    }
    o = pv_xcalloc(1, sizeof(*o));
    o->nick = pv_xstrdup(nick);
    pv_jid_copy(from, &o->real, NULL);
    o->role = muc_default_role(r, aff);
    o->pres = pres_copy(ev->stanza);
    occupant_id(r, from->bare, o->oid, sizeof(o->oid));
    /* existing occupants to the newcomer first (§7.2.3) */
    memset(&po, 0, sizeof(po));
    for (v = r->occ; v != NULL; v = v->next) {
        int show = r->cfg.is_whois_anyone || o->role == ROLE_MODERATOR;
        pv_stanza_t *p;

        /* the account's other sessions under this nick: the newcomer's
         * own self-presence stands for them */
        if (strcmp(v->nick, nick) == 0)
            continue;
        p = muc_occ_presence(r, v, muc_aff_of(r, &v->real), &po, show, 0);
        muc_send_to(mh, p, from);
        pv_stanza_unref(p);
    }
    o->next = r->occ;
    r->occ = o;
    r->n_occ++;
    /* then the newcomer to everyone, self-presence last */
    if (created)
        po.codes[codes++] = 201;
    if (raw_to != NULL) {
        const char *slash = strchr(raw_to, '/');
        if (slash != NULL && strcmp(slash + 1, nick) != 0)
            po.codes[codes++] = 210;
    }
    po.codes[codes++] = 170;    /* every room is archived (MUC MAM) */
    po.n_codes = codes;
    muc_broadcast_presence(r, o, &po, 1);
    if (!r->is_locked) {
        send_history(r, x ? pv_node_child(x, "history", NULL) : NULL,
                     from, ev->stanza->arena);
        muc_send_subject(r, from);
    }
}

static void
occ_nick_change(pv_event_t *ev, muc_room_t *r, muc_occ_t *o)
{
    const char *nick = ev->to->resource;
    pres_opts_t po;

    if (muc_occ_by_nick(r, nick) != NULL) {
        pv_event_error(ev, PV_ERR_CANCEL, "conflict", NULL);
        return;
    }
    memset(&po, 0, sizeof(po));
    po.is_unavailable = 1;
    po.new_nick = nick;
    po.codes[po.n_codes++] = 303;
    muc_broadcast_presence(r, o, &po, 1);
    free(o->nick);
    o->nick = pv_xstrdup(nick);
    pv_stanza_unref(o->pres);
    o->pres = pres_copy(ev->stanza);
    memset(&po, 0, sizeof(po));
    muc_broadcast_presence(r, o, &po, 1);
}

static pv_rc_t
muc_presence(pv_event_t *ev)
{
    muc_host_t *mh = pv_module_host_data(ev->module, ev->host);
    const char *type = ev->stanza->type;
    muc_room_t *r;
    muc_occ_t *o;

    if (mh == NULL || ev->from == NULL)
        return PV_HANDLED;
    if (ev->addr == PV_TO_HOST)
        return PV_HANDLED;
    r = room_find(mh, ev->to->node);
    o = r ? muc_occ_by_real(r, ev->from->full) : NULL;
    if (type != NULL && strcmp(type, "unavailable") == 0) {
        pres_opts_t po;

        if (o == NULL)
            return PV_HANDLED;
        memset(&po, 0, sizeof(po));
        po.is_unavailable = 1;
        muc_occ_leave(r, o, &po);
        room_maybe_vanish(r);
        return PV_HANDLED;
    }
    if (type != NULL && strcmp(type, "error") == 0) {
        /* §7.2.21-style: an occupant whose client bounces presence is
         * gone; remove it quietly */
        if (o != NULL) {
            pres_opts_t po;

            memset(&po, 0, sizeof(po));
            po.is_unavailable = 1;
            po.codes[po.n_codes++] = 333;
            muc_occ_leave(r, o, &po);
            room_maybe_vanish(r);
        }
        return PV_HANDLED;
    }
    if (type != NULL)
        return PV_HANDLED;      /* probes, subscriptions: nothing */
    if (ev->addr != PV_TO_FULL) {
        pv_event_error(ev, PV_ERR_MODIFY, "jid-malformed", NULL);
        return PV_HANDLED;
    }
    if (o == NULL) {
        occ_join(ev, mh, r);
    } else if (strcmp(o->nick, ev->to->resource) != 0) {
        occ_nick_change(ev, r, o);
    } else {
        pres_opts_t po;

        memset(&po, 0, sizeof(po));
        pv_stanza_unref(o->pres);
        o->pres = pres_copy(ev->stanza);
        muc_broadcast_presence(r, o, &po, 1);
    }
    return PV_HANDLED;
}

/* --- messages ------------------------------------------------------- */

/* The room's copy of an occupant's message: from room/nick, our own
 * stanza-id and occupant-id (any the sender put in are dropped so that
 * they cannot be spoofed, XEP-0359 §3 and XEP-0421 §4). */
static pv_stanza_t *
reflect(muc_room_t *r, muc_occ_t *o, const pv_stanza_t *in, char *id_out)
{
    pv_stanza_t *st = muc_room_stanza(r, "message", o->nick);
    pv_arena_t *a = st->arena;
    pv_node_t *c, *n;

    pv_node_set_attr(a, st->root, "type", "groupchat");
    if (in != NULL && in->id != NULL)
        pv_node_set_attr(a, st->root, "id", in->id);
    for (c = in ? in->root->children : NULL; c != NULL; c = c->next) {
        if (c->name == NULL)
            continue;
        if (strcmp(c->xmlns, NS_OID) == 0)
            continue;
        if (strcmp(c->xmlns, NS_SID) == 0 &&
            strcmp(c->name, "stanza-id") == 0) {
            const char *by = pv_node_attr(c, "by");
            if (by != NULL && strcmp(by, r->jid) == 0)
                continue;
        }
        pv_node_append(st->root, pv_node_copy(a, c));
    }
    muc_make_id(id_out);
    n = pv_node_new(a, "stanza-id", NS_SID, st->root);
    pv_node_set_attr(a, n, "id", id_out);
    pv_node_set_attr(a, n, "by", r->jid);
    n = pv_node_new(a, "occupant-id", NS_OID, st->root);
    pv_node_set_attr(a, n, "id", o->oid);
    pv_stanza_touch(st);
    return st;
}

void
muc_send_status(muc_room_t *r, int code)
{
    pv_stanza_t *st = muc_room_stanza(r, "message", NULL);
    pv_node_t *x;

    pv_node_set_attr(st->arena, st->root, "type", "groupchat");
    x = pv_node_new(st->arena, "x", NS_MUC_USER, st->root);
    add_status(st->arena, x, code);
    pv_stanza_touch(st);
    muc_broadcast(r, st);
    pv_stanza_unref(st);
}

/* XEP-0045 §7.8.2: a mediated invitation (and §7.8.3 decline). */
static void
handle_invite(pv_event_t *ev, muc_room_t *r, muc_occ_t *o,
              const pv_node_t *x)
{
    muc_host_t *mh = r->mh;
    pv_arena_t *a = ev->stanza->arena;
    const pv_node_t *inv, *dec, *reason;
    int aff;

    dec = pv_node_child(x, "decline", NULL);
    if (dec != NULL) {
        const char *to = pv_node_attr(dec, "to");
        pv_stanza_t *st;
        pv_node_t *nx, *nd;

        if (to == NULL)
            return;
        st = muc_room_stanza(r, "message", NULL);
        nx = pv_node_new(st->arena, "x", NS_MUC_USER, st->root);
        nd = pv_node_new(st->arena, "decline", NULL, nx);
        pv_node_set_attr(st->arena, nd, "from", ev->from->bare);
        reason = pv_node_child(dec, "reason", NULL);
        if (reason != NULL)
            muc_add_text(st->arena, nd, "reason", pv_node_text(reason, a));
        pv_node_set_attr(st->arena, st->root, "to", to);
        pv_host_route(mh->h, st);
        pv_stanza_unref(st);
        return;
    }
    if (o == NULL) {
        pv_event_error(ev, PV_ERR_CANCEL, "not-acceptable", NULL);
        return;
    }
    aff = muc_aff_of(r, &o->real);
    if (r->cfg.is_members_only && !r->cfg.allow_invites &&
        aff < AFF_ADMIN) {
        pv_event_error(ev, PV_ERR_AUTH, "forbidden", NULL);
        return;
    }
    for (inv = pv_node_child(x, "invite", NULL); inv != NULL;
         inv = pv_node_next_child(x, inv, "invite", NULL)) {
        const char *to = pv_node_attr(inv, "to");
        pv_jid_t tj;
        pv_stanza_t *st;
        pv_node_t *nx, *ni;
        char *body;

        if (to == NULL || pv_jid_parse(to, strlen(to), &tj, a) != PV_OK) {
            pv_event_error(ev, PV_ERR_MODIFY, "jid-malformed", NULL);
            return;
        }
        if (muc_aff_of(r, &tj) == AFF_OUTCAST) {
            pv_event_error(ev, PV_ERR_AUTH, "forbidden", NULL);
            return;
        }
        /* §9.3: in a members-only room the invitation makes the invitee
         * a member, so that the invitation can be used */
        if (r->cfg.is_members_only && muc_aff_of(r, &tj) < AFF_MEMBER) {
            muc_aff_set_mem(r, tj.bare, AFF_MEMBER);
            muc_store_aff(r, tj.bare, AFF_MEMBER);
        }
        st = muc_room_stanza(r, "message", NULL);
        pv_node_set_attr(st->arena, st->root, "to", tj.full);
        if (ev->stanza->id != NULL)
            pv_node_set_attr(st->arena, st->root, "id", ev->stanza->id);
        nx = pv_node_new(st->arena, "x", NS_MUC_USER, st->root);
        ni = pv_node_new(st->arena, "invite", NULL, nx);
        pv_node_set_attr(st->arena, ni, "from", ev->from->bare);
        reason = pv_node_child(inv, "reason", NULL);
        if (reason != NULL)
            muc_add_text(st->arena, ni, "reason",
                           pv_node_text(reason, a));
        if (r->cfg.is_password && r->cfg.password != NULL)
            muc_add_text(st->arena, nx, "password", r->cfg.password);
        body = pv_xasprintf("%s invites you to the room %s",
                            ev->from->bare, r->jid);
        muc_add_text(st->arena, st->root, "body", body);
        free(body);
        pv_stanza_touch(st);
        pv_host_route(mh->h, st);
        pv_stanza_unref(st);
    }
}

static void
groupchat(pv_event_t *ev, muc_room_t *r, muc_occ_t *o)
{
    const pv_node_t *subj = pv_node_child(ev->stanza->root, "subject",
                                          NULL);
    const pv_node_t *body = pv_node_child(ev->stanza->root, "body", NULL);
    char id[MUC_ID_LEN + 1];
    pv_stanza_t *st;

    if (o == NULL) {
        pv_event_error(ev, PV_ERR_MODIFY, "not-acceptable", NULL);
        return;
    }
    if (o->role < ROLE_PARTICIPANT) {
        pv_event_error(ev, PV_ERR_AUTH, "forbidden", NULL);
        return;
    }
    if (subj != NULL && body == NULL) {
        /* §8.1: subject change */
        if (!r->cfg.change_subject && o->role != ROLE_MODERATOR) {
            pv_event_error(ev, PV_ERR_AUTH, "forbidden", NULL);
            return;
        }
        free(r->subject);
        free(r->subject_nick);
        r->subject = pv_xstrdup(pv_node_text(subj, ev->stanza->arena));
        r->subject_nick = pv_xstrdup(o->nick);
        muc_store_room(r, NULL, NULL);
    }
    st = reflect(r, o, ev->stanza, id);
    /* archive before fan-out: the row is queued in this loop turn, so
     * it commits with the group before any XEP-0198 ack to the sender */
    if (body != NULL || subj != NULL)
        muc_archive_add(r, st, id);
    muc_broadcast(r, st);
    pv_stanza_unref(st);
}

static void
private_message(pv_event_t *ev, muc_room_t *r, muc_occ_t *o)
{
    muc_occ_t *t;
    pv_stanza_t *st;
    pv_node_t *c;

    if (ev->stanza->type != NULL &&
        strcmp(ev->stanza->type, "groupchat") == 0) {
        pv_event_error(ev, PV_ERR_MODIFY, "bad-request", NULL);
        return;
    }
    if (ev->stanza->type != NULL && strcmp(ev->stanza->type, "error") == 0)
        return;
    if (o == NULL) {
        pv_event_error(ev, PV_ERR_MODIFY, "not-acceptable", NULL);
        return;
    }
    if (o->role != ROLE_MODERATOR &&
        (r->cfg.allow_pm == PM_NONE ||
         (r->cfg.allow_pm == PM_MODERATORS) ||
         (r->cfg.allow_pm == PM_PARTICIPANTS &&
          o->role < ROLE_PARTICIPANT))) {
        pv_event_error(ev, PV_ERR_CANCEL, "forbidden", NULL);
        return;
    }
    t = muc_occ_by_nick(r, ev->to->resource);
    if (t == NULL) {
        pv_event_error(ev, PV_ERR_CANCEL, "item-not-found", NULL);
        return;
    }
    st = muc_room_stanza(r, "message", o->nick);
    if (ev->stanza->type != NULL)
        pv_node_set_attr(st->arena, st->root, "type", ev->stanza->type);
    if (ev->stanza->id != NULL)
        pv_node_set_attr(st->arena, st->root, "id", ev->stanza->id);
    for (c = ev->stanza->root->children; c != NULL; c = c->next)
        if (c->name != NULL && strcmp(c->xmlns, NS_OID) != 0)
            pv_node_append(st->root, pv_node_copy(st->arena, c));
    if (pv_node_child(st->root, "x", NS_MUC_USER) == NULL)
        pv_node_new(st->arena, "x", NS_MUC_USER, st->root);
    c = pv_node_new(st->arena, "occupant-id", NS_OID, st->root);
    pv_node_set_attr(st->arena, c, "id", o->oid);
    pv_stanza_touch(st);
    /* every session under the nick */
    for (; t != NULL; t = t->next)
        if (strcmp(t->nick, ev->to->resource) == 0)
            muc_send_to(r->mh, st, &t->real);
    pv_stanza_unref(st);
}

static pv_rc_t
muc_message(pv_event_t *ev)
{
    muc_host_t *mh = pv_module_host_data(ev->module, ev->host);
    const char *type = ev->stanza->type ? ev->stanza->type : "normal";
    const pv_node_t *x;
    muc_room_t *r;
    muc_occ_t *o;

    if (mh == NULL || ev->from == NULL)
        return PV_HANDLED;
    if (ev->addr == PV_TO_HOST)
        return PV_PASS;
    r = room_find(mh, ev->to->node);
    if (r == NULL || (r->is_locked &&
                      muc_aff_of(r, ev->from) != AFF_OWNER)) {
        if (strcmp(type, "error") != 0)
            pv_event_error(ev, PV_ERR_CANCEL, "item-not-found", NULL);
        return PV_HANDLED;
    }
    o = muc_occ_by_real(r, ev->from->full);
    if (ev->addr == PV_TO_FULL) {
        private_message(ev, r, o);
        return PV_HANDLED;
    }
    if (strcmp(type, "error") == 0)
        return PV_HANDLED;
    if (strcmp(type, "groupchat") == 0) {
        groupchat(ev, r, o);
        return PV_HANDLED;
    }
    x = pv_node_child(ev->stanza->root, "x", NS_MUC_USER);
    if (x != NULL && (pv_node_child(x, "invite", NULL) != NULL ||
                      pv_node_child(x, "decline", NULL) != NULL)) {
        handle_invite(ev, r, o, x);
        return PV_HANDLED;
    }
    /* chat/normal messages to the room itself: nothing to do */
    pv_event_error(ev, PV_ERR_MODIFY, "bad-request", NULL);
    return PV_HANDLED;
}

/* --- IQ dispatch ---------------------------------------------------- */

/* The first occupant whose real bare JID is bare, or NULL. */
static muc_occ_t *
occ_by_bare(muc_room_t *r, const char *bare)
{
    muc_occ_t *o;

    for (o = r->occ; o != NULL; o = o->next)
        if (strcmp(o->real.bare, bare) == 0)
            return o;
    return NULL;
}

/* A copy of an IQ between occupants: from the sender's occupant JID to
 * the target's real JID, same id and payload. */
static void
relay_iq(muc_room_t *r, const pv_stanza_t *in, const char *from_nick,
         const pv_jid_t *to, const char *to_bare)
{
    pv_stanza_t *st = muc_room_stanza(r, "iq", from_nick);
    pv_node_t *c;

    if (in->type != NULL)
        pv_node_set_attr(st->arena, st->root, "type", in->type);
    if (in->id != NULL)
        pv_node_set_attr(st->arena, st->root, "id", in->id);
    for (c = in->root->children; c != NULL; c = c->next)
        if (c->name != NULL)
            pv_node_append(st->root, pv_node_copy(st->arena, c));
    pv_stanza_touch(st);
    if (to_bare != NULL) {
        pv_node_set_attr(st->arena, st->root, "to", to_bare);
        pv_stanza_touch(st);
        pv_host_route(r->mh->h, st);
    } else {
        muc_send_to(r->mh, st, to);
    }
    pv_stanza_unref(st);
}

/* XEP-0045 §7.7 (IQs to occupants): a request to room/nick goes to that
 * occupant's real JID from the sender's occupant JID, so real JIDs stay
 * hidden; vCard requests go to the account (its server answers them). */
static void
forward_iq(pv_event_t *ev, muc_room_t *r, muc_occ_t *me)
{
    muc_occ_t *t = muc_occ_by_nick(r, ev->to->resource);
    const pv_node_t *p = ev->payload;

    if (t == NULL) {
        pv_event_error(ev, PV_ERR_CANCEL, "item-not-found", NULL);
        return;
    }
    if (strcmp(p->xmlns, NS_VCARD) == 0 && ev->kind == PV_IQ_GET)
        relay_iq(r, ev->stanza, me->nick, NULL, t->real.bare);
    else
        relay_iq(r, ev->stanza, me->nick, &t->real, NULL);
}

/* Answers to forwarded IQs: from an occupant's real JID (or its bare
 * JID, for vCards) to room/nick, relayed to that nick's sessions. */
static pv_rc_t
muc_iq_answer(pv_event_t *ev)
{
    muc_host_t *mh = pv_module_host_data(ev->module, ev->host);
    muc_room_t *r;
    muc_occ_t *from, *t;

    if (mh == NULL || ev->from == NULL || ev->addr != PV_TO_FULL)
        return PV_HANDLED;
    r = room_find(mh, ev->to->node);
    if (r == NULL)
        return PV_HANDLED;
    from = muc_occ_by_real(r, ev->from->full);
    if (from == NULL && ev->from->resource == NULL)
        from = occ_by_bare(r, ev->from->bare);
    if (from == NULL)
        return PV_HANDLED;
    for (t = r->occ; t != NULL; t = t->next)
        if (strcmp(t->nick, ev->to->resource) == 0)
            relay_iq(r, ev->stanza, from->nick, &t->real, NULL);
    return PV_HANDLED;
}

static pv_rc_t
muc_iq(pv_event_t *ev)
{
    muc_host_t *mh = pv_module_host_data(ev->module, ev->host);
    const pv_node_t *p = ev->payload;
    const char *ns = p->xmlns;
    muc_room_t *r;
    muc_occ_t *me;
    int my_aff;

    if (mh == NULL || ev->from == NULL)
        return PV_PASS;
    if (ev->addr == PV_TO_HOST) {
        if (ev->kind == PV_IQ_GET && strcmp(ns, NS_DISCO_INFO) == 0 &&
            pv_node_attr(p, "node") == NULL) {
            muc_service_info(ev);
            return PV_HANDLED;
        }
        if (ev->kind == PV_IQ_GET && strcmp(ns, NS_DISCO_ITEMS) == 0) {
            muc_service_items(ev, mh);
            return PV_HANDLED;
        }
        if (ev->kind == PV_IQ_GET && strcmp(ns, NS_PING) == 0) {
            pv_event_result(ev, NULL);
            return PV_HANDLED;
        }
        return PV_PASS;
    }
    r = room_find(mh, ev->to->node);
    if (r != NULL && r->is_locked && muc_aff_of(r, ev->from) != AFF_OWNER)
        r = NULL;
    if (r == NULL) {
        pv_event_error(ev, PV_ERR_CANCEL, "item-not-found", NULL);
        return PV_HANDLED;
    }
    me = muc_occ_by_real(r, ev->from->full);
    my_aff = muc_aff_of(r, ev->from);
    if (ev->addr == PV_TO_FULL) {
        /* XEP-0410: a ping to one's own occupant JID is answered by the
         * room; anyone else gets not-acceptable when not joined */
        if (me == NULL) {
            pv_event_error(ev, PV_ERR_CANCEL, "not-acceptable", NULL);
            return PV_HANDLED;
        }
        if (strcmp(ns, NS_PING) == 0 &&
            strcmp(me->nick, ev->to->resource) == 0) {
            pv_event_result(ev, NULL);
            return PV_HANDLED;
        }
        forward_iq(ev, r, me);
        return PV_HANDLED;
    }
    if (ev->kind == PV_IQ_GET && strcmp(ns, NS_DISCO_INFO) == 0) {
        muc_room_info(ev, r);
    } else if (ev->kind == PV_IQ_GET && strcmp(ns, NS_DISCO_ITEMS) == 0) {
        pv_stanza_t *st = pv_iq_result(ev->stanza);
        pv_node_new(st->arena, "query", NS_DISCO_ITEMS, st->root);
        pv_event_reply(ev, st);
    } else if (strcmp(ns, NS_MUC_OWNER) == 0 &&
               strcmp(p->name, "query") == 0) {
        muc_owner_iq(ev, r, my_aff);
    } else if (strcmp(ns, NS_MUC_ADMIN) == 0 &&
               strcmp(p->name, "query") == 0) {
        if (ev->kind == PV_IQ_GET) {
            const pv_node_t *item = pv_node_child(p, "item", NULL);
            if (item == NULL)
                pv_event_error(ev, PV_ERR_MODIFY, "bad-request", NULL);
            else
                muc_admin_list(ev, r, me, my_aff, item);
        } else {
            muc_admin_set(ev, r, me, my_aff);
        }
    } else if (strcmp(ns, NS_MAM) == 0 && strcmp(p->name, "query") == 0) {
        int may = r->cfg.is_members_only ? my_aff >= AFF_MEMBER
                                         : my_aff != AFF_OUTCAST;
        if (!may && me == NULL) {
            pv_event_error(ev, PV_ERR_AUTH, "forbidden", NULL);
        } else if (ev->kind == PV_IQ_GET) {
            muc_mam_form(ev);
        } else {
            muc_mam_query(ev, r);
        }
    } else if (ev->kind == PV_IQ_SET &&
               ((strcmp(ns, NS_MOD1) == 0 &&
                 strcmp(p->name, "moderate") == 0) ||
                (strcmp(ns, NS_FASTEN) == 0 &&
                 strcmp(p->name, "apply-to") == 0))) {
        muc_moderate(ev, r, me);
    } else if (strcmp(ns, NS_VCARD) == 0 && strcmp(p->name, "vCard") == 0) {
        muc_vcard_iq(ev, r, my_aff);
    } else if (ev->kind == PV_IQ_GET && strcmp(ns, NS_PING) == 0) {
        pv_event_result(ev, NULL);
    } else {
        pv_event_error(ev, PV_ERR_CANCEL, "service-unavailable", NULL);
    }
    return PV_HANDLED;
}

/* --- accounts ------------------------------------------------------- */

/* An account removed on the parent vhost loses its affiliations here
 * (ev->data: the vhost's name, ev->user: the localpart). */
static pv_rc_t
muc_user_deleted(pv_event_t *ev)
{
    muc_host_t *mh = pv_module_host_data(ev->module, ev->host);
    const char *vhost = ev->data;
    muc_room_t *r;
    char *bare;

    if (mh == NULL || vhost == NULL || ev->user == NULL)
        return PV_PASS;
    bare = pv_xasprintf("%s@%s", ev->user, vhost);
    for (r = mh->list; r != NULL; r = r->next) {
        if (aff_find(r, bare) == NULL)
            continue;
        muc_aff_set_mem(r, bare, AFF_NONE);
        muc_store_aff(r, bare, AFF_NONE);
    }
    free(bare);
    return PV_PASS;
}

/* --- occupants that vanished ------------------------------------------ */

typedef struct {
    const char *full;
    int found;
} find_t;

static void
find_session(void *arg, pv_session_t *s)
{
    find_t *f = arg;

    if (strcmp(pv_session_jid(s)->full, f->full) == 0)
        f->found = 1;
}

/* A local occupant whose session ended without telling the room (a
 * client that joined without initial presence gets no unavailable from
 * mod_presence, RFC 6121 §4.6.3) would stay forever: errors to local
 * server-generated stanzas are not bounced. Local occupants without a
 * session are removed (333), remote ones rely on bounces and XEP-0410. */
static void
ghost_sweep(void *arg)
{
    muc_host_t *mh = arg;
    pv_server_t *srv = pv_host_server(mh->h);
    muc_room_t *r, *rnext;

    for (r = mh->list; r != NULL; r = rnext) {
        muc_occ_t *o, *next;

        rnext = r->next;
        for (o = r->occ; o != NULL; o = next) {
            pv_host_t *uh = pv_host_find(srv, o->real.domain);
            find_t f = { o->real.full, 0 };
            pres_opts_t po;

            next = o->next;
            if (uh == NULL || o->real.node == NULL || uh == mh->h)
                continue;
            pv_host_each_session(uh, o->real.node, find_session, &f);
            if (f.found)
                continue;
            memset(&po, 0, sizeof(po));
            po.is_unavailable = 1;
            po.codes[po.n_codes++] = 333;
            muc_occ_leave(r, o, &po);
        }
        room_maybe_vanish(r);
    }
}

/* --- host lifecycle ------------------------------------------------- */

static int
muc_host_init(pv_module_t *m, pv_host_t *h)
{
    muc_host_t *mh = pv_xcalloc(1, sizeof(*mh));

    mh->refs = 1;
    mh->m = m;
    mh->h = h;
    mh->rooms = pv_store_open(h, m, "rooms", PV_STORE_KEYVAL);
    mh->affs = pv_store_open(h, m, "affiliations", PV_STORE_MAP);
    mh->archive = pv_store_open(h, m, "history", PV_STORE_ARCHIVE);
    mh->vcards = pv_store_open(h, m, "vcards", PV_STORE_KEYVAL);
    if (mh->rooms == NULL || mh->affs == NULL || mh->archive == NULL ||
        mh->vcards == NULL) {
        pv_log(PV_LOG_ERROR, pv_host_name(h), "mod_muc: cannot open its "
               "stores");
        free(mh);
        return PV_ERROR;
    }
    pv_module_set_host_data(m, h, mh);
    muc_store_load(mh);
    if (muc_conf(mh)->ghost_check != PV_DURATION_OFF &&
        muc_conf(mh)->ghost_check > 0)
        pv_module_timer(m, h, muc_conf(mh)->ghost_check,
                        muc_conf(mh)->ghost_check, ghost_sweep, mh);
    return PV_OK;
}

static void
muc_host_fini(pv_module_t *m, pv_host_t *h)
{
    muc_host_t *mh = pv_module_host_data(m, h);
    muc_room_t *r;
    int is_retired;

    if (mh == NULL)
        return;
    /* XEP-0045 status 332: on a reload (or when muc is disabled) the
     * occupants learn that they must rejoin the new generation, whose
     * routing works. At shutdown (our own name still maps to us) the
     * other hosts are being freed: nothing may be routed, and every
     * stream gets <system-shutdown/> anyway. */
    is_retired = pv_host_find(pv_host_server(h), pv_host_name(h)) != h;
    while ((r = mh->list) != NULL) {
        muc_occ_t *o;
        pres_opts_t po;

        memset(&po, 0, sizeof(po));
        po.is_unavailable = 1;
        po.codes[po.n_codes++] = 332;
        for (o = is_retired ? r->occ : NULL; o != NULL; o = o->next) {
            pv_stanza_t *p = muc_occ_presence(r, o, muc_aff_of(r, &o->real),
                                              &po, 1, 1);
            muc_send_to(mh, p, &o->real);
            pv_stanza_unref(p);
        }
        mh->list = r->next;
        room_free(r);
    }
    mh->is_dead = 1;
    pv_module_set_host_data(m, h, NULL);
    muc_host_unref(mh);
}

static const pv_hook_t muc_hooks[] = {
    { PV_PRESENCE, PV_TO_ANY, NULL, NULL, muc_presence, 0, 0 },
    { PV_MESSAGE, PV_TO_ANY, NULL, NULL, muc_message, 0, 0 },
    { PV_IQ_GET, PV_TO_ANY, NULL, NULL, muc_iq, 0, 0 },
    { PV_IQ_SET, PV_TO_ANY, NULL, NULL, muc_iq, 0, 0 },
    { PV_IQ_RESULT, PV_TO_ANY, NULL, NULL, muc_iq_answer, 0, 0 },
    { PV_IQ_ERROR, PV_TO_ANY, NULL, NULL, muc_iq_answer, 0, 0 },
    { PV_EV_USER_DELETED, PV_TO_ANY, NULL, NULL, muc_user_deleted, 0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t muc_directives[] = {
    { "muc_domain", PV_CTX_ANY, pv_conf_string,
      offsetof(muc_conf_t, domain), "", 0, 0, NULL },
    { "muc_history_default", PV_CTX_ANY, pv_conf_int,
      offsetof(muc_conf_t, history_default), "20", 0, 1000, NULL },
    { "muc_history_max", PV_CTX_ANY, pv_conf_int,
      offsetof(muc_conf_t, history_max), "100", 0, 1000, NULL },
    { "muc_mam_max_page", PV_CTX_ANY, pv_conf_int,
      offsetof(muc_conf_t, max_page), "100", 1, 1000, NULL },
    { "muc_ghost_check", PV_CTX_ANY, pv_conf_duration,
      offsetof(muc_conf_t, ghost_check), "30s", 0, 0, NULL },
    { "muc_room_creation", PV_CTX_ANY, pv_conf_enum,
      offsetof(muc_conf_t, creation), "local", 0, 0, creation_names },
    PV_DIRECTIVES_END
};

static const pv_identity_t muc_identities[] = {
    { "conference", "text", "Chatrooms" },
    PV_IDENTITIES_END
};

PV_MODULE(muc) = {
    .abi = PV_MODULE_ABI,
    .name = "muc",
    .features = (const char *const[]){ NS_MUC, NULL },
    .identities = muc_identities,
    .hooks = muc_hooks,
    .directives = muc_directives,
    .conf_size = sizeof(muc_conf_t),
    .host_init = muc_host_init,
    .host_fini = muc_host_fini,
    .component = "conference",
};
