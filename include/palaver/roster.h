/* include/palaver/roster.h: the roster item as mod_roster keeps it (RFC
 * 6121 §2.1, with the server-side subscription states of RFC 6121
 * Appendix A) and the payloads of the roster events (event.h) through
 * which other modules (mod_presence, later blocking and s2s) read and
 * change subscription state. mod_roster owns the data and the store; it
 * answers these events, nobody calls it directly. */
#ifndef PALAVER_ROSTER_H
#define PALAVER_ROSTER_H

#include <string.h>

#include <palaver/defs.h>
#include <palaver/event.h>

#define PV_NS_ROSTER "jabber:iq:roster"

/* Subscription state bits of an item. TO: the user receives the
 * contact's presence; FROM: the contact receives the user's. The rest are
 * server-side states (RFC 6121 Appendix A): ASK = "pending out" (the
 * user asked, ask='subscribe'), PENDING_IN = the contact asked and the
 * request is stored until the user answers, APPROVED = pre-approved
 * (RFC 6121 §3.4). */
#define PV_SUB_TO 0x01u
#define PV_SUB_FROM 0x02u
#define PV_SUB_ASK 0x04u
#define PV_SUB_PENDING_IN 0x08u
#define PV_SUB_APPROVED 0x10u
#define PV_SUB_MASK 0x1fu

/* One roster item; every pointer is borrowed for the duration of the
 * callback or event it is handed to. */
typedef struct pv_roster_item_s {
    const char *jid;            /* prepared bare JID of the contact */
    const char *name;           /* NULL: none */
    const char *const *groups;  /* NULL-terminated, never NULL */
    unsigned state;             /* PV_SUB_* bits */
    int is_listed;              /* 0: not in the user's roster, only a
                                 * record of a stored inbound request
                                 * (PENDING_IN) */
} pv_roster_item_t;

/* PV_EV_ROSTER_GET (ev->user: the roster's owner, ev->host: its host).
 * With contact set, cb gets that item if it exists (listed or not);
 * with contact NULL, cb gets every item. n_found counts the calls.
 * mod_roster returns PV_HANDLED; PV_PASS means no roster module: treat
 * the roster as empty. */
typedef struct pv_roster_get_s {
    const char *contact;        /* prepared bare JID or NULL */
    void (*cb)(void *arg, const pv_roster_item_t *item);
    void *arg;
    size_t n_found;             /* out */
} pv_roster_get_t;

/* PV_EV_ROSTER_SET_STATE (ev->user, ev->host as above): sets the
 * PV_SUB_* state of the user's item for contact. An item is created when
 * needed: listed when state has TO, FROM, ASK or APPROVED, unlisted when
 * it is only PENDING_IN; an unlisted item whose state becomes 0 is
 * deleted; a listed one stays (subscription 'none'). Listed changes bump
 * the roster version and are pushed to the interested resources. rc
 * (out): PV_OK, PV_AGAIN when a new item would exceed roster_max_items
 * (nothing changed), PV_ERROR. */
typedef struct pv_roster_state_s {
    const char *contact;        /* prepared bare JID */
    unsigned state;
    int rc;                     /* out */
} pv_roster_state_t;

/* PV_EV_ROSTER_CHANGED, fired by mod_roster (ev->user, ev->host as
 * above) after an item changed, once the change is in memory (its commit
 * may follow). is_removed: the item is gone; by_client: the user removed
 * it with a roster set (RFC 6121 §2.5: the presence side must then
 * cancel the subscriptions in both directions). */
typedef struct pv_roster_change_s {
    const char *contact;
    unsigned old_state;
    unsigned new_state;
    int is_removed;
    int by_client;
} pv_roster_change_t;

/* Fires PV_EV_ROSTER_GET for user's roster on h: cb gets contact's item
 * (contact a prepared bare JID) or every item (contact NULL). Returns the
 * number of items cb got; 0 also when no roster module answers. */
static inline size_t
pv_roster_get(pv_host_t *h, const char *user, const char *contact,
              void (*cb)(void *arg, const pv_roster_item_t *item), void *arg)
{
    pv_roster_get_t q = { contact, cb, arg, 0 };
    pv_event_t ev;

    memset(&ev, 0, sizeof(ev));
    ev.kind = PV_EV_ROSTER_GET;
    ev.host = h;
    ev.user = user;
    ev.data = &q;
    return pv_event_fire(&ev) == PV_HANDLED ? q.n_found : 0;
}

static inline void
pv_roster_state_cb_(void *arg, const pv_roster_item_t *item)
{
    *(unsigned *)arg = item->state;
}

/* The PV_SUB_* state of contact in user's roster on h; 0 when it has no
 * item or there is no roster module. */
static inline unsigned
pv_roster_state(pv_host_t *h, const char *user, const char *contact)
{
    unsigned state = 0;

    if (pv_roster_get(h, user, contact, pv_roster_state_cb_, &state) == 0)
        return 0;
    return state;
}

#endif
