/* modules/muc_room.h: mod_muc's internal types shared by its files:
 * the per-host service, rooms, occupants, affiliations, the room
 * configuration and the history ring. mod_muc.c owns the protocol
 * (presence, messages, IQ dispatch, fan-out); muc_admin.c roles,
 * affiliations, configuration and disco; muc_archive.c the LMDB rows
 * (rooms, affiliations, archive, vCards), MUC MAM and moderation.
 * Not a public API: nothing outside mod_muc includes it. */
#ifndef PALAVER_MUC_ROOM_H
#define PALAVER_MUC_ROOM_H

#include <stddef.h>
#include <stdint.h>

#include <palaver/datetime.h>
#include <palaver/module.h>

#define NS_MUC "http://jabber.org/protocol/muc"
#define NS_MUC_USER NS_MUC "#user"
#define NS_MUC_ADMIN NS_MUC "#admin"
#define NS_MUC_OWNER NS_MUC "#owner"
#define NS_DATA "jabber:x:data"
#define NS_DELAY "urn:xmpp:delay"
#define NS_SID "urn:xmpp:sid:0"
#define NS_OID "urn:xmpp:occupant-id:0"
#define NS_MAM "urn:xmpp:mam:2"
#define NS_RSM "http://jabber.org/protocol/rsm"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_MOD0 "urn:xmpp:message-moderate:0"
#define NS_MOD1 "urn:xmpp:message-moderate:1"
#define NS_RETRACT0 "urn:xmpp:message-retract:0"
#define NS_RETRACT1 "urn:xmpp:message-retract:1"
#define NS_FASTEN "urn:xmpp:fasten:0"
#define NS_VCARD "vcard-temp"
#define NS_PING "urn:xmpp:ping"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

/* Affiliations and roles, ordered so that a larger value outranks. */
enum { AFF_OUTCAST, AFF_NONE, AFF_MEMBER, AFF_ADMIN, AFF_OWNER };
enum { ROLE_NONE, ROLE_VISITOR, ROLE_PARTICIPANT, ROLE_MODERATOR };
/* muc#roomconfig_allowpm */
enum { PM_ANYONE, PM_PARTICIPANTS, PM_MODERATORS, PM_NONE };

#define MUC_ID_LEN 16
#define MUC_SECRET_LEN 32

typedef struct {
    long long history_default;  /* historylength of a new room */
    long long history_max;      /* upper bound of historylength */
    long long max_page;         /* MAM page size cap */
    int creation;               /* 0 anyone, 1 local users only */
    pv_duration_t ghost_check;  /* sweep of vanished local occupants */
    char *domain;               /* muc_domain (read by the core) */
} muc_conf_t;

typedef struct {
    char *name, *desc, *password;
    int is_persistent, is_public, is_members_only, is_moderated;
    int is_password, is_whois_anyone, allow_invites, change_subject;
    int allow_pm;               /* PM_* */
    unsigned member_list_roles; /* bit (1 << ROLE_*) may get members */
    long long max_users;        /* 0: no limit */
    long long history_length;
} muc_config_t;

typedef struct muc_aff_s {
    char *jid;                  /* bare JID (or a domain) */
    int aff;
    struct muc_aff_s *next;
} muc_aff_t;

typedef struct muc_occ_s {
    char *nick;
    pv_jid_t real;              /* real full JID, own block */
    int role;
    char oid[48];               /* XEP-0421 occupant id */
    pv_stanza_t *pres;          /* last presence payload (our copy) */
    struct muc_occ_s *next;
} muc_occ_t;

/* One message as the history ring and the archive keep it. */
typedef struct {
    pv_stanza_t *st;            /* as broadcast, without 'to' */
    uint64_t ts_us;
    char id[MUC_ID_LEN + 1];
} muc_hist_t;

typedef struct muc_host_s muc_host_t;

typedef struct muc_room_s {
    muc_host_t *mh;
    char *node;                 /* room localpart */
    char *jid;                  /* node@service */
    muc_config_t cfg;
    char *subject;              /* NULL: never set */
    char *subject_nick;
    int is_locked;              /* created, waiting for the owner's form */
    uint8_t secret[MUC_SECRET_LEN];
    muc_occ_t *occ;
    size_t n_occ;
    muc_aff_t *affs;
    muc_hist_t *hist;           /* ring of cfg.history_length */
    size_t hist_cap, hist_n, hist_head;
    pv_node_t *vcard;           /* in vcard_arena; NULL: none */
    pv_arena_t *vcard_arena;
    char avatar_hash[41];       /* XEP-0486 SHA-1 of the PHOTO, or "" */
    struct muc_room_s *next;
} muc_room_t;

struct muc_host_s {
    unsigned refs;
    int is_dead;                /* host gone: pending callbacks no-op */
    pv_module_t *m;
    pv_host_t *h;
    pv_store_t *rooms, *affs, *archive, *vcards;
    muc_room_t *list;
    uint64_t last_ts;
};

muc_host_t *muc_host_ref(muc_host_t *mh);
void muc_host_unref(muc_host_t *mh);
const muc_conf_t *muc_conf(muc_host_t *mh);

/* --- mod_muc.c helpers used by the other files ---------------------- */
extern const char *const muc_aff_names[];   /* by AFF_* */
extern const char *const muc_role_names[];  /* by ROLE_* */
extern const char *const muc_pm_names[];    /* by PM_* */

/* What an occupant's presence broadcast carries besides the item. */
typedef struct {
    int is_unavailable;
    int codes[6];
    int n_codes;
    const char *new_nick;     /* 303 */
    const char *actor;        /* nick of the moderator who acted */
    const char *reason;
    int is_destroy;
    const char *alt_venue;
} pres_opts_t;

int muc_name_index(const char *const *names, size_t n, const char *s);
int muc_default_role(const muc_room_t *r, int aff);
void muc_config_free(muc_config_t *c);
muc_room_t *muc_room_new(muc_host_t *mh, const char *node);
/* Unlinks and frees r; forget_rows also removes its rows. */
void muc_room_destroy(muc_room_t *r, int forget_rows);
muc_occ_t *muc_occ_by_real(muc_room_t *r, const char *full);
muc_occ_t *muc_occ_by_nick(muc_room_t *r, const char *nick);
int muc_aff_of(const muc_room_t *r, const pv_jid_t *j);
void muc_aff_set_mem(muc_room_t *r, const char *jid, int aff);
/* o's presence as one recipient sees it (new stanza, refs 1). */
pv_stanza_t *muc_occ_presence(muc_room_t *r, muc_occ_t *o, int aff,
                              const pres_opts_t *po, int show_jid,
                              int self);
/* o's presence to every occupant, self-presence last when
 * include_self. */
void muc_broadcast_presence(muc_room_t *r, muc_occ_t *o,
                            const pres_opts_t *po, int include_self);
/* Unavailable presence to everyone, then o is unlinked and freed. */
void muc_occ_remove(muc_room_t *r, muc_occ_t *o, const pres_opts_t *po);
/* One session leaves: as muc_occ_remove, but while another session of
 * the same account holds the nick only o itself is told. */
void muc_occ_leave(muc_room_t *r, muc_occ_t *o, const pres_opts_t *po);
/* Every session under nick leaves (kick, ban). */
void muc_occ_remove_nick(muc_room_t *r, const char *nick,
                         const pres_opts_t *po);
/* Sends a copy of tmpl (without 'to') to one recipient. Borrows tmpl. */
void muc_send_to(muc_host_t *mh, pv_stanza_t *tmpl, const pv_jid_t *to);
/* Sends st (a template without 'to') to every occupant. Borrows st. */
void muc_broadcast(muc_room_t *r, pv_stanza_t *st);
void muc_send_status(muc_room_t *r, int code);
/* New stanza name from the room (nick NULL) or room/nick, refs 1. */
pv_stanza_t *muc_room_stanza(const muc_room_t *r, const char *name,
                             const char *nick);
void muc_send_subject(muc_room_t *r, const pv_jid_t *to);
void muc_add_text(pv_arena_t *a, pv_node_t *parent, const char *name,
                  const char *text);
void muc_hist_push(muc_room_t *r, pv_stanza_t *st, uint64_t ts,
                   const char *id);
void muc_hist_resize(muc_room_t *r);

/* --- muc_admin.c ----------------------------------------------------- */
/* IQ handlers; each answers ev (result or error). */
void muc_admin_list(pv_event_t *ev, muc_room_t *r, muc_occ_t *me,
                    int my_aff, const pv_node_t *item);
void muc_admin_set(pv_event_t *ev, muc_room_t *r, muc_occ_t *me,
                   int my_aff);
void muc_owner_iq(pv_event_t *ev, muc_room_t *r, int my_aff);
void muc_room_info(pv_event_t *ev, muc_room_t *r);
void muc_service_info(pv_event_t *ev);
void muc_service_items(pv_event_t *ev, muc_host_t *mh);
/* vcard-temp get (anyone) and set (owners) on the room JID. */
void muc_vcard_iq(pv_event_t *ev, muc_room_t *r, int my_aff);
/* Recomputes r->avatar_hash from r->vcard (XEP-0486). */
void muc_avatar_update(muc_room_t *r);

/* --- muc_archive.c --------------------------------------------------- */
/* Random URL-safe id of MUC_ID_LEN characters (NUL-terminated). */
void muc_make_id(char *out);
uint64_t muc_now_us(void);
/* Writes the room row (config, subject, secret) when persistent; cb runs
 * after the commit (also at once with PV_OK when nothing is written). */
void muc_store_room(muc_room_t *r, pv_store_done_t *cb, void *arg);
void muc_store_aff(muc_room_t *r, const char *jid, int aff);
/* Removes every row of the room (destroy or last occupant left). */
void muc_store_forget(muc_room_t *r, pv_store_done_t *cb, void *arg);
void muc_store_vcard(muc_room_t *r, pv_store_done_t *cb, void *arg);
/* Loads every persistent room of the service. */
void muc_store_load(muc_host_t *mh);
/* Appends a broadcast message to the archive and the history ring;
 * fills id with the stanza-id already placed in st. */
void muc_archive_add(muc_room_t *r, pv_stanza_t *st, const char *id);
/* IQ handlers (ev on a room bare JID, r the room). */
void muc_mam_query(pv_event_t *ev, muc_room_t *r);
void muc_mam_form(pv_event_t *ev);
void muc_moderate(pv_event_t *ev, muc_room_t *r, muc_occ_t *mod);
/* An IQ answer sent once every write so far is committed. Takes st. */
void muc_reply_after_commit(muc_host_t *mh, pv_stanza_t *st);

#endif
