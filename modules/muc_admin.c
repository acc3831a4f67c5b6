/* modules/muc_admin.c: mod_muc's room administration: roles and
 * affiliations with the permission rules of XEP-0045 §8-§10 (muc#admin),
 * the muc#roomconfig form and destruction (muc#owner), disco of the
 * service and of rooms (muc#roominfo), and the room vCard with its
 * XEP-0486 avatar hash. Presence and messages are
 * mod_muc.c's; rows are muc_archive.c's. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <palaver/dataform.h>

#include "muc_room.h"

static int
n_owners(const muc_room_t *r)
{
    const muc_aff_t *a;
    int n = 0;

    for (a = r->affs; a != NULL; a = a->next)
        n += a->aff == AFF_OWNER;
    return n;
}

/* --- roles and affiliations (XEP-0045 §8, §9, §10) ------------------ */

/* Removes the real JID's occupants after an affiliation change. */
static void
apply_aff_to_occupants(muc_room_t *r, const char *bare, int aff,
                       const char *actor, const char *reason)
{
    muc_occ_t *o, *next;

    for (o = r->occ; o != NULL; o = next) {
        pres_opts_t po;

        next = o->next;
        if (strcmp(o->real.bare, bare) != 0)
            continue;
        memset(&po, 0, sizeof(po));
        po.actor = actor;
        po.reason = reason;
        if (aff == AFF_OUTCAST || (aff < AFF_MEMBER &&
                                   r->cfg.is_members_only)) {
            po.is_unavailable = 1;
            po.codes[po.n_codes++] = aff == AFF_OUTCAST ? 301 : 321;
            muc_occ_leave(r, o, &po);
            continue;
        }
        o->role = muc_default_role(r, aff);
        muc_broadcast_presence(r, o, &po, 1);
    }
}

void
muc_admin_list(pv_event_t *ev, muc_room_t *r, muc_occ_t *me, int my_aff,
           const pv_node_t *item)
{
    const char *aff_s = pv_node_attr(item, "affiliation");
    const char *role_s = pv_node_attr(item, "role");
    pv_stanza_t *st;
    pv_node_t *q, *n;

    if (aff_s != NULL) {
        int aff = muc_name_index(muc_aff_names, 5, aff_s);
        const muc_aff_t *a;
        int ok;

        if (aff < 0 || aff == AFF_NONE) {
            pv_event_error(ev, PV_ERR_MODIFY, "bad-request", NULL);
            return;
        }
        ok = my_aff >= AFF_ADMIN;
        if (aff == AFF_MEMBER && me != NULL &&
            (r->cfg.member_list_roles & (1u << me->role)))
            ok = 1;
        if (aff == AFF_MEMBER && !ok && my_aff >= AFF_MEMBER &&
            (r->cfg.member_list_roles & (1u << ROLE_PARTICIPANT)))
            ok = 1;
        if (!ok) {
            pv_event_error(ev, PV_ERR_AUTH, "forbidden", NULL);
            return;
        }
        st = pv_iq_result(ev->stanza);
        q = pv_node_new(st->arena, "query", NS_MUC_ADMIN, st->root);
        for (a = r->affs; a != NULL; a = a->next) {
            if (a->aff != aff)
                continue;
            n = pv_node_new(st->arena, "item", NULL, q);
            pv_node_set_attr(st->arena, n, "affiliation", muc_aff_names[aff]);
            pv_node_set_attr(st->arena, n, "jid", a->jid);
        }
        pv_event_reply(ev, st);
        return;
    }
    if (role_s != NULL) {
        int role = muc_name_index(muc_role_names, 4, role_s);
        muc_occ_t *o;

        if (role <= ROLE_NONE) {
            pv_event_error(ev, PV_ERR_MODIFY, "bad-request", NULL);
            return;
        }
        if (me == NULL || me->role != ROLE_MODERATOR) {
            pv_event_error(ev, PV_ERR_AUTH, "forbidden", NULL);
            return;
        }
        st = pv_iq_result(ev->stanza);
        q = pv_node_new(st->arena, "query", NS_MUC_ADMIN, st->root);
        for (o = r->occ; o != NULL; o = o->next) {
            if (o->role != role)
                continue;
            n = pv_node_new(st->arena, "item", NULL, q);
            pv_node_set_attr(st->arena, n, "role", muc_role_names[role]);
            pv_node_set_attr(st->arena, n, "nick", o->nick);
            pv_node_set_attr(st->arena, n, "affiliation",
                             muc_aff_names[muc_aff_of(r, &o->real)]);
            pv_node_set_attr(st->arena, n, "jid", o->real.full);
        }
        pv_event_reply(ev, st);
        return;
    }
    pv_event_error(ev, PV_ERR_MODIFY, "bad-request", NULL);
}

/* One role change (§8.2-§8.5, §9.6-§9.7 for moderators). Returns NULL or
 * the error condition (and its type). */
static const char *
set_role(muc_room_t *r, muc_occ_t *me, int my_aff, const char *nick,
         int role, const char *reason, pv_err_type_t *et)
{
    muc_occ_t *t = muc_occ_by_nick(r, nick);
    int t_aff;
    pres_opts_t po;

    *et = PV_ERR_CANCEL;
    if (me == NULL || me->role != ROLE_MODERATOR) {
        *et = PV_ERR_AUTH;
        return "forbidden";
    }
    if (t == NULL)
        return "item-not-found";
    t_aff = muc_aff_of(r, &t->real);
    /* granting or taking moderator needs an admin (§9.6, §9.7) */
    if ((role == ROLE_MODERATOR || t->role == ROLE_MODERATOR) &&
        my_aff < AFF_ADMIN) {
        *et = PV_ERR_AUTH;
        return "forbidden";
    }
    /* nobody kicks, mutes or demotes an admin or owner, nor someone
     * above themselves (§8.2, §8.4) */
    if (role < ROLE_MODERATOR && (t_aff >= AFF_ADMIN || t_aff > my_aff))
        return "not-allowed";
    memset(&po, 0, sizeof(po));
    po.actor = me->nick;
    po.reason = reason;
    if (role == ROLE_NONE) {
        po.is_unavailable = 1;
        po.codes[po.n_codes++] = 307;
        muc_occ_remove_nick(r, nick, &po);
        return NULL;
    }
    /* every session under the nick is the same occupant */
    for (t = r->occ; t != NULL; t = t->next) {
        if (strcmp(t->nick, nick) != 0)
            continue;
        t->role = role;
        muc_broadcast_presence(r, t, &po, 1);
    }
    return NULL;
}

static const char *
set_aff(muc_room_t *r, int my_aff, const char *actor, const char *jid_s,
        int aff, const char *reason, pv_arena_t *a, pv_err_type_t *et)
{
    pv_jid_t j;
    int cur;

    *et = PV_ERR_CANCEL;
    if (my_aff < AFF_ADMIN) {
        *et = PV_ERR_AUTH;
        return "forbidden";
    }
    if (pv_jid_parse(jid_s, strlen(jid_s), &j, a) != PV_OK) {
        *et = PV_ERR_MODIFY;
        return "jid-malformed";
    }
    cur = muc_aff_of(r, &j);
    /* only owners touch owners and admins (§10.3-§10.7) */
    if ((aff >= AFF_ADMIN || cur >= AFF_ADMIN) && my_aff < AFF_OWNER) {
        *et = PV_ERR_AUTH;
        return "forbidden";
    }
    if (cur == AFF_OWNER && aff != AFF_OWNER && n_owners(r) <= 1)
        return "conflict";
    muc_aff_set_mem(r, j.bare, aff);
    muc_store_aff(r, j.bare, aff);
    apply_aff_to_occupants(r, j.bare, aff, actor, reason);
    return NULL;
}

void
muc_admin_set(pv_event_t *ev, muc_room_t *r, muc_occ_t *me, int my_aff)
{
    const pv_node_t *q = ev->payload, *item;
    pv_arena_t *a = ev->stanza->arena;
    pv_err_type_t et = PV_ERR_CANCEL;
    const char *err = NULL;
    int n = 0;

    for (item = pv_node_child(q, "item", NULL); item != NULL && !err;
         item = pv_node_next_child(q, item, "item", NULL)) {
        const char *nick = pv_node_attr(item, "nick");
        const char *jid = pv_node_attr(item, "jid");
        const char *role_s = pv_node_attr(item, "role");
        const char *aff_s = pv_node_attr(item, "affiliation");
        const pv_node_t *rn = pv_node_child(item, "reason", NULL);
        const char *reason = rn ? pv_node_text(rn, a) : NULL;

        n++;
        if (role_s != NULL && nick != NULL) {
            int role = muc_name_index(muc_role_names, 4, role_s);
            if (role < 0) {
                et = PV_ERR_MODIFY;
                err = "bad-request";
            } else {
                err = set_role(r, me, my_aff, nick, role, reason, &et);
            }
        } else if (aff_s != NULL && jid != NULL) {
            int aff = muc_name_index(muc_aff_names, 5, aff_s);
            if (aff < 0) {
                et = PV_ERR_MODIFY;
                err = "bad-request";
            } else {
                err = set_aff(r, my_aff, me ? me->nick : NULL, jid, aff,
                              reason, a, &et);
            }
        } else {
            et = PV_ERR_MODIFY;
            err = "bad-request";
        }
    }
    if (n == 0) {
        et = PV_ERR_MODIFY;
        err = "bad-request";
    }
    if (err != NULL) {
        pv_event_error(ev, et, err, NULL);
        return;
    }
    /* affiliations are durable before the owner hears "done" */
    muc_reply_after_commit(r->mh, pv_iq_result(ev->stanza));
    /* a ban from outside may have emptied a temporary room */
    if (r->occ == NULL && !r->cfg.is_persistent)
        muc_room_destroy(r, 1);
}

/* --- configuration (XEP-0045 §10.2) --------------------------------- */

static void
form_option(pv_arena_t *a, pv_node_t *x, const char *value)
{
    pv_node_t *f = x->last_child, *o = pv_node_new(a, "option", NULL, f);

    muc_add_text(a, o, "value", value);
}

static void
form_bool(pv_arena_t *a, pv_node_t *x, const char *var, const char *label,
          int v)
{
    pv_form_add_field(a, x, var, "boolean", label, v ? "1" : "0");
}

static void
config_form(muc_room_t *r, pv_arena_t *a, pv_node_t *q)
{
    pv_node_t *x = pv_node_new(a, "x", NS_DATA, q), *f;
    const muc_config_t *c = &r->cfg;
    char num[24];
    int i;

    pv_node_set_attr(a, x, "type", "form");
    muc_add_text(a, x, "title", "Room configuration");
    pv_form_add_field(a, x, "FORM_TYPE", "hidden", NULL,
                      NS_MUC "#roomconfig");
    pv_form_add_field(a, x, "muc#roomconfig_roomname", "text-single",
                      "Name", c->name);
    pv_form_add_field(a, x, "muc#roomconfig_roomdesc", "text-single",
                      "Description", c->desc);
    form_bool(a, x, "muc#roomconfig_persistentroom", "Persistent",
              c->is_persistent);
    form_bool(a, x, "muc#roomconfig_publicroom", "Listed", c->is_public);
    form_bool(a, x, "muc#roomconfig_membersonly", "Members only",
              c->is_members_only);
    form_bool(a, x, "muc#roomconfig_moderatedroom", "Moderated",
              c->is_moderated);
    form_bool(a, x, "muc#roomconfig_passwordprotectedroom",
              "Password protected", c->is_password);
    pv_form_add_field(a, x, "muc#roomconfig_roomsecret", "text-private",
                      "Password", c->password);
    snprintf(num, sizeof(num), "%lld", c->max_users);
    pv_form_add_field(a, x, "muc#roomconfig_maxusers", "list-single",
                      "Maximum occupants (0: no limit)", num);
    form_option(a, x, "0");
    form_option(a, x, "10");
    form_option(a, x, "50");
    form_option(a, x, "100");
    form_option(a, x, "500");
    pv_form_add_field(a, x, "muc#roomconfig_whois", "list-single",
                      "Who may see real JIDs",
                      c->is_whois_anyone ? "anyone" : "moderators");
    form_option(a, x, "moderators");
    form_option(a, x, "anyone");
    snprintf(num, sizeof(num), "%lld", c->history_length);
    pv_form_add_field(a, x, "muc#roomconfig_historylength", "text-single",
                      "History length", num);
    form_bool(a, x, "muc#roomconfig_allowinvites",
              "Occupants may invite", c->allow_invites);
    form_bool(a, x, "muc#roomconfig_changesubject",
              "Occupants may change the subject", c->change_subject);
    pv_form_add_field(a, x, "muc#roomconfig_allowpm", "list-single",
                      "Who may send private messages",
                      muc_pm_names[c->allow_pm]);
    for (i = 0; i < 4; i++)
        form_option(a, x, muc_pm_names[i]);
    f = pv_node_new(a, "field", NULL, x);
    pv_node_set_attr(a, f, "var", "muc#roomconfig_getmemberlist");
    pv_node_set_attr(a, f, "type", "list-multi");
    pv_node_set_attr(a, f, "label", "Roles that may see the member list");
    for (i = ROLE_VISITOR; i <= ROLE_MODERATOR; i++)
        if (c->member_list_roles & (1u << i))
            muc_add_text(a, f, "value", muc_role_names[i]);
    for (i = ROLE_VISITOR; i <= ROLE_MODERATOR; i++)
        form_option(a, x, muc_role_names[i]);
}

static int
parse_bool(const char *v, int *out)
{
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
        *out = 1;
    else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
        *out = 0;
    else
        return PV_ERROR;
    return PV_OK;
}

static int
parse_count(const char *v, long long max, long long *out)
{
    char *end;
    long long n = strtoll(v, &end, 10);

    if (*v == '\0' || *end != '\0' || n < 0)
        return PV_ERROR;
    *out = n > max ? max : n;
    return PV_OK;
}

static char *
dup_or_null(const char *v)
{
    return v != NULL && *v != '\0' ? pv_xstrdup(v) : NULL;
}

/* Applies a submitted muc#roomconfig form to a copy of the config;
 * PV_ERROR (nothing applied) on a bad value. */
static pv_rc_t
config_apply(muc_room_t *r, const pv_node_t *x, pv_arena_t *a)
{
    muc_config_t c = r->cfg;
    const pv_node_t *f, *v;
    long long hmax = muc_conf(r->mh)->history_max;

    c.name = dup_or_null(r->cfg.name);
    c.desc = dup_or_null(r->cfg.desc);
    c.password = dup_or_null(r->cfg.password);
    for (f = pv_node_child(x, "field", NULL); f != NULL;
         f = pv_node_next_child(x, f, "field", NULL)) {
        const char *var = pv_node_attr(f, "var");
        const char *val;
        int rc = PV_OK;

        v = pv_node_child(f, "value", NULL);
        val = v ? pv_node_text(v, a) : "";
        if (var == NULL)
            continue;
        if (strcmp(var, "muc#roomconfig_roomname") == 0) {
            free(c.name);
            c.name = dup_or_null(val);
        } else if (strcmp(var, "muc#roomconfig_roomdesc") == 0) {
            free(c.desc);
            c.desc = dup_or_null(val);
        } else if (strcmp(var, "muc#roomconfig_roomsecret") == 0) {
            free(c.password);
            c.password = dup_or_null(val);
        } else if (strcmp(var, "muc#roomconfig_persistentroom") == 0) {
            rc = parse_bool(val, &c.is_persistent);
        } else if (strcmp(var, "muc#roomconfig_publicroom") == 0) {
            rc = parse_bool(val, &c.is_public);
        } else if (strcmp(var, "muc#roomconfig_membersonly") == 0) {
            rc = parse_bool(val, &c.is_members_only);
        } else if (strcmp(var, "muc#roomconfig_moderatedroom") == 0) {
            rc = parse_bool(val, &c.is_moderated);
        } else if (strcmp(var,
                          "muc#roomconfig_passwordprotectedroom") == 0) {
            rc = parse_bool(val, &c.is_password);
        } else if (strcmp(var, "muc#roomconfig_allowinvites") == 0) {
            rc = parse_bool(val, &c.allow_invites);
        } else if (strcmp(var, "muc#roomconfig_changesubject") == 0) {
            rc = parse_bool(val, &c.change_subject);
        } else if (strcmp(var, "muc#roomconfig_maxusers") == 0) {
            rc = *val == '\0' || strcmp(val, "none") == 0
                 ? (c.max_users = 0, PV_OK)
                 : parse_count(val, 1000000, &c.max_users);
        } else if (strcmp(var, "muc#roomconfig_historylength") == 0) {
            rc = parse_count(val, hmax, &c.history_length);
        } else if (strcmp(var, "muc#roomconfig_whois") == 0) {
            if (strcmp(val, "anyone") == 0)
                c.is_whois_anyone = 1;
            else if (strcmp(val, "moderators") == 0)
                c.is_whois_anyone = 0;
            else
                rc = PV_ERROR;
        } else if (strcmp(var, "muc#roomconfig_allowpm") == 0) {
            int pm = muc_name_index(muc_pm_names, 4, val);
            if (pm < 0)
                rc = PV_ERROR;
            else
                c.allow_pm = pm;
        } else if (strcmp(var, "muc#roomconfig_getmemberlist") == 0) {
            c.member_list_roles = 0;
            for (v = pv_node_child(f, "value", NULL); v != NULL;
                 v = pv_node_next_child(f, v, "value", NULL)) {
                int role = muc_name_index(muc_role_names, 4,
                                          pv_node_text(v, a));
                if (role > ROLE_NONE)
                    c.member_list_roles |= 1u << role;
            }
        }
        /* unknown fields (FORM_TYPE, other servers' extensions) are
         * ignored, as XEP-0004 lets a form processor do */
        if (rc != PV_OK) {
            muc_config_free(&c);
            return PV_ERROR;
        }
    }
    if (c.is_password && c.password == NULL)
        c.is_password = 0;
    muc_config_free(&r->cfg);
    r->cfg = c;
    return PV_OK;
}

/* §9.2/§10.2: a room turned members-only loses its non-members (322). */
static void
enforce_members_only(muc_room_t *r)
{
    muc_occ_t *o, *next;

    if (!r->cfg.is_members_only)
        return;
    for (o = r->occ; o != NULL; o = next) {
        next = o->next;
        if (muc_aff_of(r, &o->real) < AFF_MEMBER) {
            pres_opts_t po;

            memset(&po, 0, sizeof(po));
            po.is_unavailable = 1;
            po.codes[po.n_codes++] = 322;
            muc_occ_leave(r, o, &po);
        }
    }
}

static void
destroy_room(pv_event_t *ev, muc_room_t *r, const pv_node_t *d)
{
    const pv_node_t *rn = pv_node_child(d, "reason", NULL);
    pv_arena_t *a = ev->stanza->arena;
    muc_host_t *mh = r->mh;
    pres_opts_t po;
    muc_occ_t *o;

    memset(&po, 0, sizeof(po));
    po.is_unavailable = 1;
    po.is_destroy = 1;
    po.alt_venue = pv_node_attr(d, "jid");
    po.reason = rn ? pv_node_text(rn, a) : NULL;
    /* §10.9: each occupant hears only of itself leaving */
    for (o = r->occ; o != NULL; o = o->next) {
        pv_stanza_t *p = muc_occ_presence(r, o, muc_aff_of(r, &o->real), &po,
                                      1, 1);
        muc_send_to(r->mh, p, &o->real);
        pv_stanza_unref(p);
    }
    muc_room_destroy(r, 1);
    muc_reply_after_commit(mh, pv_iq_result(ev->stanza));
}

void
muc_owner_iq(pv_event_t *ev, muc_room_t *r, int my_aff)
{
    const pv_node_t *q = ev->payload, *x, *d;

    if (my_aff != AFF_OWNER) {
        pv_event_error(ev, PV_ERR_AUTH, "forbidden", NULL);
        return;
    }
    if (ev->kind == PV_IQ_GET) {
        pv_stanza_t *st = pv_iq_result(ev->stanza);
        pv_node_t *nq = pv_node_new(st->arena, "query", NS_MUC_OWNER,
                                    st->root);

        config_form(r, st->arena, nq);
        pv_event_reply(ev, st);
        return;
    }
    d = pv_node_child(q, "destroy", NULL);
    if (d != NULL) {
        destroy_room(ev, r, d);
        return;
    }
    x = pv_node_child(q, "x", NS_DATA);
    if (x == NULL) {
        pv_event_error(ev, PV_ERR_MODIFY, "bad-request", NULL);
        return;
    }
    if (pv_node_attr(x, "type") != NULL &&
        strcmp(pv_node_attr(x, "type"), "cancel") == 0) {
        /* §10.1.3: cancelling the initial form destroys the room */
        if (r->is_locked) {
            pres_opts_t po;
            muc_occ_t *o;

            memset(&po, 0, sizeof(po));
            po.is_unavailable = 1;
            while ((o = r->occ) != NULL)
                muc_occ_leave(r, o, &po);
            muc_room_destroy(r, 1);
        }
        pv_event_result(ev, NULL);
        return;
    }
    if (config_apply(r, x, ev->stanza->arena) != PV_OK) {
        pv_event_error(ev, PV_ERR_MODIFY, "not-acceptable", NULL);
        return;
    }
    muc_hist_resize(r);
    if (!r->is_locked)
        muc_send_status(r, 104);
    if (r->is_locked) {
        muc_occ_t *o;

        r->is_locked = 0;
        /* the creator now gets what a normal join gives */
        for (o = r->occ; o != NULL; o = o->next)
            muc_send_subject(r, &o->real);
    }
    enforce_members_only(r);
    /* the rows are queued now; the owner hears "done" once they are
     * committed (DESIGN.md §1) */
    muc_store_room(r, NULL, NULL);
    muc_reply_after_commit(r->mh, pv_iq_result(ev->stanza));
}

/* --- disco of rooms and of the service ------------------------------ */

static void
add_feature(pv_arena_t *a, pv_node_t *q, const char *var)
{
    pv_node_t *f = pv_node_new(a, "feature", NULL, q);

    pv_node_set_attr(a, f, "var", var);
}

void
muc_room_info(pv_event_t *ev, muc_room_t *r)
{
    pv_stanza_t *st = pv_iq_result(ev->stanza);
    pv_arena_t *a = st->arena;
    pv_node_t *q = pv_node_new(a, "query", NS_DISCO_INFO, st->root), *n, *x;
    const muc_config_t *c = &r->cfg;
    const char *node = pv_node_attr(ev->payload, "node");
    char num[24];

    if (node != NULL)
        pv_node_set_attr(a, q, "node", node);
    n = pv_node_new(a, "identity", NULL, q);
    pv_node_set_attr(a, n, "category", "conference");
    pv_node_set_attr(a, n, "type", "text");
    pv_node_set_attr(a, n, "name", c->name ? c->name : r->node);
    add_feature(a, q, NS_MUC);
    add_feature(a, q, NS_DISCO_INFO);
    add_feature(a, q, c->is_persistent ? "muc_persistent" : "muc_temporary");
    add_feature(a, q, c->is_public ? "muc_public" : "muc_hidden");
    add_feature(a, q, c->is_members_only ? "muc_membersonly" : "muc_open");
    add_feature(a, q, c->is_moderated ? "muc_moderated" : "muc_unmoderated");
    add_feature(a, q, c->is_whois_anyone ? "muc_nonanonymous"
                                         : "muc_semianonymous");
    add_feature(a, q, c->is_password ? "muc_passwordprotected"
                                     : "muc_unsecured");
    add_feature(a, q, NS_MAM);
    add_feature(a, q, NS_SID);
    add_feature(a, q, NS_OID);
    add_feature(a, q, NS_MOD0);
    add_feature(a, q, NS_MOD1);
    add_feature(a, q, NS_VCARD);
    add_feature(a, q, "http://jabber.org/protocol/muc#self-ping-optimization");
    x = pv_node_new(a, "x", NS_DATA, q);
    pv_node_set_attr(a, x, "type", "result");
    pv_form_add_field(a, x, "FORM_TYPE", "hidden", NULL, NS_MUC "#roominfo");
    pv_form_add_field(a, x, "muc#roominfo_description", NULL, "Description",
                      c->desc ? c->desc : "");
    pv_form_add_field(a, x, "muc#roominfo_subject", NULL, "Subject",
                      r->subject ? r->subject : "");
    snprintf(num, sizeof(num), "%zu", r->n_occ);
    pv_form_add_field(a, x, "muc#roominfo_occupants", NULL, "Occupants", num);
    pv_form_add_field(a, x, "muc#roomconfig_roomname", NULL, "Name",
                      c->name ? c->name : "");
    pv_form_add_field(a, x, "muc#roominfo_changesubject", NULL, NULL,
                      c->change_subject ? "1" : "0");
    snprintf(num, sizeof(num), "%lld", c->max_users);
    pv_form_add_field(a, x, "muc#roomconfig_maxusers", NULL, NULL, num);
    pv_form_add_field(a, x, "muc#roomconfig_allowinvites", NULL, NULL,
                      c->allow_invites ? "1" : "0");
    pv_form_add_field(a, x, "muc#roomconfig_allowpm", NULL, NULL,
                      muc_pm_names[c->allow_pm]);
    if (r->avatar_hash[0] != '\0')
        pv_form_add_field(a, x, "muc#roominfo_avatarhash", "text-multi", NULL,
                          r->avatar_hash);
    pv_event_reply(ev, st);
}

void
muc_service_info(pv_event_t *ev)
{
    pv_stanza_t *st = pv_iq_result(ev->stanza);
    pv_arena_t *a = st->arena;
    pv_node_t *q = pv_node_new(a, "query", NS_DISCO_INFO, st->root), *n;

    n = pv_node_new(a, "identity", NULL, q);
    pv_node_set_attr(a, n, "category", "conference");
    pv_node_set_attr(a, n, "type", "text");
    pv_node_set_attr(a, n, "name", "Chatrooms");
    add_feature(a, q, NS_MUC);
    add_feature(a, q, NS_DISCO_INFO);
    add_feature(a, q, NS_DISCO_ITEMS);
    add_feature(a, q, NS_OID);
    add_feature(a, q, NS_VCARD);
    pv_event_reply(ev, st);
}

void
muc_service_items(pv_event_t *ev, muc_host_t *mh)
{
    pv_stanza_t *st = pv_iq_result(ev->stanza);
    pv_arena_t *a = st->arena;
    pv_node_t *q = pv_node_new(a, "query", NS_DISCO_ITEMS, st->root), *n;
    muc_room_t *r;

    for (r = mh->list; r != NULL; r = r->next) {
        if (!r->cfg.is_public || r->is_locked)
            continue;
        n = pv_node_new(a, "item", NULL, q);
        pv_node_set_attr(a, n, "jid", r->jid);
        pv_node_set_attr(a, n, "name", r->cfg.name ? r->cfg.name : r->node);
    }
    pv_event_reply(ev, st);
}

/* --- the room vCard (avatar, XEP-0486) ------------------------------- */

void
muc_avatar_update(muc_room_t *r)
{
    const pv_node_t *photo, *bin;
    unsigned char md[EVP_MAX_MD_SIZE], *raw;
    unsigned int md_len = 0, i;
    const char *b64;
    char *clean;
    size_t n = 0, j, pad = 0;
    int len;

    r->avatar_hash[0] = '\0';
    photo = r->vcard ? pv_node_child(r->vcard, "PHOTO", NULL) : NULL;
    bin = photo ? pv_node_child(photo, "BINVAL", NULL) : NULL;
    if (bin == NULL)
        return;
    b64 = pv_node_text(bin, r->vcard_arena);
    clean = pv_xmalloc(strlen(b64) + 1);
    for (j = 0; b64[j] != '\0'; j++)
        if (b64[j] != ' ' && b64[j] != '\n' && b64[j] != '\r' &&
            b64[j] != '\t')
            clean[n++] = b64[j];
    clean[n] = '\0';
    if (n == 0 || n % 4 != 0) {
        free(clean);
        return;
    }
    pad = (clean[n - 1] == '=') + (clean[n - 2] == '=');
    raw = pv_xmalloc(n);
    len = EVP_DecodeBlock(raw, (const unsigned char *)clean, (int)n);
    if (len >= (int)pad &&
        EVP_Digest(raw, (size_t)len - pad, md, &md_len, EVP_sha1(),
                   NULL) == 1) {
        for (i = 0; i < md_len && 2 * i + 2 < sizeof(r->avatar_hash); i++)
            snprintf(r->avatar_hash + 2 * i, 3, "%02x", md[i]);
    }
    free(raw);
    free(clean);
}

void
muc_vcard_iq(pv_event_t *ev, muc_room_t *r, int my_aff)
{
    pv_stanza_t *st;
    pv_node_t *x;

    if (ev->kind == PV_IQ_GET) {
        st = pv_iq_result(ev->stanza);
        if (r->vcard != NULL)
            pv_node_append(st->root, pv_node_copy(st->arena, r->vcard));
        else
            pv_node_new(st->arena, "vCard", NS_VCARD, st->root);
        pv_event_reply(ev, st);
        return;
    }
    if (my_aff != AFF_OWNER) {
        pv_event_error(ev, PV_ERR_AUTH, "forbidden", NULL);
        return;
    }
    if (r->vcard_arena != NULL)
        pv_arena_free(r->vcard_arena);
    r->vcard_arena = pv_arena_new(1024);
    r->vcard = pv_node_copy(r->vcard_arena, ev->payload);
    muc_avatar_update(r);
    muc_store_vcard(r, NULL, NULL);
    muc_reply_after_commit(r->mh, pv_iq_result(ev->stanza));
    /* XEP-0045 §10.2.1 status 104: the room's look changed; XEP-0486:
     * the new avatar hash in presence from the room itself */
    muc_send_status(r, 104);
    st = muc_room_stanza(r, "presence", NULL);
    x = pv_node_new(st->arena, "x", "vcard-temp:x:update", st->root);
    muc_add_text(st->arena, x, "photo", r->avatar_hash);
    pv_stanza_touch(st);
    muc_broadcast(r, st);
    pv_stanza_unref(st);
}
