/* modules/mod_pep.c: the Personal Eventing Protocol service (XEP-0163) of
 * every account: the XEP-0060 subset PEP needs (publish with XEP-0223
 * publish-options, retract, items, create, configure, default, delete,
 * purge, member affiliations), access models open/presence/roster/
 * whitelist, notifications to the resources whose XEP-0115 caps say
 * NODE+notify, last items on available presence and on subscription
 * approval, node configs and items kept in LMDB, pubsub#item_expire
 * enforced by the server (an expiry index swept by a timer, retractions
 * sent as for a retract), status updates (XEP-0501 stories plus the text
 * posts of doc/status.md). Explicit XEP-0060 subscriptions and the
 * generic pubsub service are not this file's. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include <palaver/dataform.h>
#include <palaver/module.h>
#include <palaver/roster.h>

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_OWNER NS_PUBSUB "#owner"
#define NS_EVENT NS_PUBSUB "#event"
#define NS_ERRORS NS_PUBSUB "#errors"
#define NS_NODE_CONFIG NS_PUBSUB "#node_config"
#define NS_PUBLISH_OPTIONS NS_PUBSUB "#publish-options"
#define NS_CAPS "http://jabber.org/protocol/caps"
#define NS_DATA "jabber:x:data"
#define NS_INFO "http://jabber.org/protocol/disco#info"
#define NS_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_ROW "urn:palaver:pep:0"
#define NS_ATOM "http://www.w3.org/2005/Atom"
#define NS_STORIES "urn:xmpp:pubsub-social-feed:stories:0"
#define NS_STATUS "urn:palaver:status:0"   /* doc/status.md */

#define PEP_FORMAT 1          /* first byte of every row */
#define PEP_NODE_MAX 256      /* bytes of a node name (the key limit) */
#define PEP_ID_MAX 128        /* bytes of an item id */
#define PEP_CAPS_MAX 4096     /* cached caps hashes per host */
#define PEP_REMOTE_MAX 10000  /* remote full JIDs remembered per host */
#define PEP_CAPS_RETRY_MS 30000
#define PEP_SWEEP_BATCH 256   /* expired items handled per timer run */
#define PEP_SWEEP_MAX_MS 3600000u /* re-check at least hourly (clock) */

enum { ACC_OPEN, ACC_PRESENCE, ACC_ROSTER, ACC_WHITELIST };
enum { SEND_NEVER, SEND_ON_SUB, SEND_ON_SUB_AND_PRESENCE };
static const char *const access_names[] = { "open", "presence", "roster",
                                            "whitelist", NULL };
static const char *const send_names[] = { "never", "on_sub",
                                          "on_sub_and_presence", NULL };

typedef struct {
    size_t max_item_size;     /* PV_SIZE_OFF: no limit */
    long long max_items;      /* cap of max_items; PV_COUNT_OFF: none */
    long long max_nodes;      /* per account; PV_COUNT_OFF: none */
    pv_duration_t status_expire; /* default item_expire of the stories
                                  * node (ms); PV_DURATION_OFF: none */
    pv_duration_t expire_max; /* largest item_expire (ms); OFF: none */
} pep_conf_t;

/* --- string vectors ------------------------------------------------- */

typedef struct {
    char **v;
    size_t n;
} strv_t;

static void
strv_add(strv_t *s, const char *str)
{
    s->v = pv_xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
    s->v[s->n++] = pv_xstrdup(str);
}

static void
strv_free(strv_t *s)
{
    size_t i;

    for (i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static long
strv_find(const strv_t *s, const char *str)
{
    size_t i;

    for (i = 0; i < s->n; i++)
        if (strcmp(s->v[i], str) == 0)
            return (long)i;
    return -1;
}

/* Removes index i keeping the order (item ids are in publish order). */
static void
strv_remove_at(strv_t *s, size_t i)
{
    free(s->v[i]);
    memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(*s->v));
    s->n--;
}

static void
strv_copy(strv_t *dst, const strv_t *src)
{
    size_t i;

    memset(dst, 0, sizeof(*dst));
    for (i = 0; i < src->n; i++)
        strv_add(dst, src->v[i]);
}

static int
strv_equal_set(const strv_t *a, const strv_t *b)
{
    size_t i;

    if (a->n != b->n)
        return 0;
    for (i = 0; i < a->n; i++)
        if (strv_find(b, a->v[i]) < 0)
            return 0;
    return 1;
}

/* --- node configuration (XEP-0060 §16.4.3 pubsub#node_config) -------- */

typedef struct {
    int access;
    long long max_items;      /* -1: "max" (the pep_max_items cap) */
    int persist;
    int send_last;
    int notify_retract;
    int notify_delete;
    int deliver_payloads;
    long long item_expire;    /* seconds; 0: never */
    char *title;
    char *type;               /* pubsub#type (XEP-0472 profiles) */
    strv_t groups;            /* roster_groups_allowed */
} pep_cfg_t;

/* Which fields a form set: publish-options compare only those. */
#define F_ACCESS 0x001u
#define F_MAX 0x002u
#define F_PERSIST 0x004u
#define F_SEND_LAST 0x008u
#define F_NOTIFY_RETRACT 0x010u
#define F_NOTIFY_DELETE 0x020u
#define F_PAYLOADS 0x040u
#define F_EXPIRE 0x080u
#define F_TITLE 0x100u
#define F_GROUPS 0x200u
#define F_TYPE 0x400u

static void
cfg_default(pep_cfg_t *c)
{
    memset(c, 0, sizeof(*c));
    /* XEP-0163 §4.1.2: PEP nodes default to the presence access model */
    c->access = ACC_PRESENCE;
    c->max_items = 1;
    c->persist = 1;
    c->send_last = SEND_ON_SUB_AND_PRESENCE;
    c->notify_retract = 1;
    c->notify_delete = 1;
    c->deliver_payloads = 1;
}

static void
cfg_free(pep_cfg_t *c)
{
    free(c->title);
    c->title = NULL;
    free(c->type);
    c->type = NULL;
    strv_free(&c->groups);
}

static void
cfg_copy(pep_cfg_t *dst, const pep_cfg_t *src)
{
    *dst = *src;
    dst->title = src->title ? pv_xstrdup(src->title) : NULL;
    dst->type = src->type ? pv_xstrdup(src->type) : NULL;
    strv_copy(&dst->groups, &src->groups);
}

static int
is_stories(const char *node)
{
    return strcmp(node, NS_STORIES) == 0;
}

/* The stories node's default item_expire in seconds: pep_status_expire
 * capped by pep_item_expire_max; 0 when both are off. */
static long long
status_expire_s(const pep_conf_t *conf)
{
    pv_duration_t d = conf->status_expire;

    if (conf->expire_max != PV_DURATION_OFF &&
        (d == PV_DURATION_OFF || d > conf->expire_max))
        d = conf->expire_max;
    if (d == PV_DURATION_OFF)
        return 0;
    return d < 1000 ? 1 : (long long)(d / 1000);
}

/* The configuration a new node called name starts from: XEP-0501 §3
 * for the stories node (presence access, its pubsub#type, as many items
 * as pep_max_items allows, and the server's status expiry), the PEP
 * defaults for every other node. */
static void
cfg_default_for(pep_cfg_t *c, const char *name, const pep_conf_t *conf)
{
    cfg_default(c);
    if (name == NULL || !is_stories(name))
        return;
    c->max_items = -1;
    c->item_expire = status_expire_s(conf);
    c->type = pv_xstrdup(NS_STORIES);
}

/* Rules a node's whole configuration must follow whichever way it was
 * set (create, configure, publish-options): status updates expire when
 * the server has a status expiry at all (doc/status.md). */
static int
cfg_valid_for(const pep_cfg_t *c, const char *name, const pep_conf_t *conf)
{
    if (is_stories(name) && c->item_expire == 0 &&
        status_expire_s(conf) > 0)
        return 0;
    return 1;
}

static size_t
eff_max_items(const pep_conf_t *conf, long long max_items)
{
    if (max_items >= 0)
        return (size_t)max_items;
    return conf->max_items == PV_COUNT_OFF ? SIZE_MAX
                                            : (size_t)conf->max_items;
}

static int
parse_bool(const char *s, int *out)
{
    if (strcmp(s, "1") == 0 || strcmp(s, "true") == 0)
        *out = 1;
    else if (strcmp(s, "0") == 0 || strcmp(s, "false") == 0)
        *out = 0;
    else
        return PV_ERROR;
    return PV_OK;
}

static int
parse_choice(const char *s, const char *const *names, int *out)
{
    int i;

    for (i = 0; names[i] != NULL; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return PV_OK;
        }
    }
    return PV_ERROR;
}

static int
parse_count(const char *s, long long min, long long *out)
{
    char *end;
    long long v;

    if (*s == '\0' || *s == '-' || *s == '+')
        return PV_ERROR;
    v = strtoll(s, &end, 10);
    if (*end != '\0' || v < min)
        return PV_ERROR;
    *out = v;
    return PV_OK;
}

/* Applies a submitted pubsub#node_config (or publish-options) form to c.
 * Unknown fields are ignored (XEP-0223 §7 leaves them to the service);
 * known fields with values we cannot honour are PV_ERROR. */
static int
cfg_apply_form(pep_cfg_t *c, const pep_conf_t *conf, const pv_node_t *x,
               unsigned *mask, pv_arena_t *a)
{
    const pv_node_t *f, *v;

    *mask = 0;
    for (f = pv_node_child(x, "field", NS_DATA); f != NULL;
         f = pv_node_next_child(x, f, "field", NS_DATA)) {
        const char *var = pv_node_attr(f, "var");
        const pv_node_t *vn = pv_node_child(f, "value", NS_DATA);
        const char *val = vn ? pv_node_text(vn, a) : "";
        long long n;

        if (var == NULL)
            continue;
        if (strcmp(var, "pubsub#access_model") == 0) {
            if (parse_choice(val, access_names, &c->access) != PV_OK)
                return PV_ERROR;
            *mask |= F_ACCESS;
        } else if (strcmp(var, "pubsub#max_items") == 0) {
            if (strcmp(val, "max") == 0)
                n = -1;
            else if (parse_count(val, 1, &n) != PV_OK)
                return PV_ERROR;
            if (n > 0 && conf->max_items != PV_COUNT_OFF &&
                n > conf->max_items)
                return PV_ERROR;
            c->max_items = n;
            *mask |= F_MAX;
        } else if (strcmp(var, "pubsub#persist_items") == 0) {
            if (parse_bool(val, &c->persist) != PV_OK)
                return PV_ERROR;
            *mask |= F_PERSIST;
        } else if (strcmp(var, "pubsub#send_last_published_item") == 0) {
            if (parse_choice(val, send_names, &c->send_last) != PV_OK)
                return PV_ERROR;
            *mask |= F_SEND_LAST;
        } else if (strcmp(var, "pubsub#notify_retract") == 0) {
            if (parse_bool(val, &c->notify_retract) != PV_OK)
                return PV_ERROR;
            *mask |= F_NOTIFY_RETRACT;
        } else if (strcmp(var, "pubsub#notify_delete") == 0) {
            if (parse_bool(val, &c->notify_delete) != PV_OK)
                return PV_ERROR;
            *mask |= F_NOTIFY_DELETE;
        } else if (strcmp(var, "pubsub#deliver_payloads") == 0) {
            if (parse_bool(val, &c->deliver_payloads) != PV_OK)
                return PV_ERROR;
            *mask |= F_PAYLOADS;
        } else if (strcmp(var, "pubsub#item_expire") == 0) {
            if (*val == '\0')
                n = 0;
            else if (parse_count(val, 0, &n) != PV_OK)
                return PV_ERROR;
            /* larger than the server enforces: refused, not clamped, so
             * that publish-options fail visibly (XEP-0223 §4) */
            if (n > 1000000000LL || (conf->expire_max != PV_DURATION_OFF &&
                                    (uint64_t)n * 1000u > conf->expire_max))
                return PV_ERROR;
            c->item_expire = n;
            *mask |= F_EXPIRE;
        } else if (strcmp(var, "pubsub#title") == 0) {
            free(c->title);
            c->title = *val ? pv_xstrdup(val) : NULL;
            *mask |= F_TITLE;
        } else if (strcmp(var, "pubsub#type") == 0) {
            free(c->type);
            c->type = *val ? pv_xstrdup(val) : NULL;
            *mask |= F_TYPE;
        } else if (strcmp(var, "pubsub#roster_groups_allowed") == 0) {
            strv_free(&c->groups);
            for (v = pv_node_child(f, "value", NS_DATA); v != NULL;
                 v = pv_node_next_child(f, v, "value", NS_DATA))
                strv_add(&c->groups, pv_node_text(v, a));
            *mask |= F_GROUPS;
        } else if (strcmp(var, "pubsub#publish_model") == 0) {
            /* PEP: only the owner publishes */
            if (strcmp(val, "publishers") != 0)
                return PV_ERROR;
        } else if (strcmp(var, "pubsub#notification_type") == 0) {
            if (strcmp(val, "headline") != 0)
                return PV_ERROR;
        }
    }
    return PV_OK;
}

/* XEP-0223 §4: every option the publisher sent must hold on the node. */
static int
cfg_meets(const pep_cfg_t *node, const pep_cfg_t *want, unsigned mask,
          const pep_conf_t *conf)
{
    if ((mask & F_ACCESS) && node->access != want->access)
        return 0;
    if ((mask & F_MAX) && eff_max_items(conf, node->max_items) !=
                              eff_max_items(conf, want->max_items))
        return 0;
    if ((mask & F_PERSIST) && node->persist != want->persist)
        return 0;
    if ((mask & F_SEND_LAST) && node->send_last != want->send_last)
        return 0;
    if ((mask & F_NOTIFY_RETRACT) &&
        node->notify_retract != want->notify_retract)
        return 0;
    if ((mask & F_NOTIFY_DELETE) &&
        node->notify_delete != want->notify_delete)
        return 0;
    if ((mask & F_PAYLOADS) && node->deliver_payloads !=
                                   want->deliver_payloads)
        return 0;
    if ((mask & F_EXPIRE) && node->item_expire != want->item_expire)
        return 0;
    if ((mask & F_TITLE) && strcmp(node->title ? node->title : "",
                                   want->title ? want->title : ""))
        return 0;
    if ((mask & F_GROUPS) && !strv_equal_set(&node->groups, &want->groups))
        return 0;
    if ((mask & F_TYPE) && strcmp(node->type ? node->type : "",
                                  want->type ? want->type : ""))
        return 0;
    return 1;
}

static void
form_options(pv_arena_t *a, pv_node_t *x, const char *const *names)
{
    pv_node_t *f = x->last_child;

    for (; *names != NULL; names++) {
        pv_node_t *o = pv_node_new(a, "option", NULL, f);
        pv_node_add_text(a, pv_node_new(a, "value", NULL, o), *names,
                         strlen(*names));
    }
}

/* The pubsub#node_config form of c (XEP-0060 §8.2.1). */
static pv_node_t *
cfg_form(pv_arena_t *a, pv_node_t *parent, const pep_cfg_t *c)
{
    pv_node_t *x = pv_node_new(a, "x", NS_DATA, parent);
    pv_node_t *f;
    char num[32];
    size_t i;

    pv_node_set_attr(a, x, "type", "form");
    pv_form_add_field(a, x, "FORM_TYPE", "hidden", NULL, NS_NODE_CONFIG);
    pv_form_add_field(a, x, "pubsub#title", "text-single", "Title", c->title);
    pv_form_add_field(a, x, "pubsub#type", "text-single", "Payload type",
                      c->type);
    pv_form_add_field(a, x, "pubsub#access_model", "list-single",
                      "Access model", access_names[c->access]);
    form_options(a, x, access_names);
    f = pv_form_add_field(a, x, "pubsub#roster_groups_allowed", "list-multi",
                          "Roster groups allowed", NULL);
    for (i = 0; i < c->groups.n; i++)
        pv_node_add_text(a, pv_node_new(a, "value", NULL, f), c->groups.v[i],
                         strlen(c->groups.v[i]));
    if (c->max_items < 0)
        snprintf(num, sizeof(num), "max");
    else
        snprintf(num, sizeof(num), "%lld", c->max_items);
    pv_form_add_field(a, x, "pubsub#max_items", "text-single", "Max items",
                      num);
    pv_form_add_field(a, x, "pubsub#persist_items", "boolean", "Persist items",
                      c->persist ? "1" : "0");
    pv_form_add_field(a, x, "pubsub#send_last_published_item", "list-single",
                      "Send last published item", send_names[c->send_last]);
    form_options(a, x, send_names);
    pv_form_add_field(a, x, "pubsub#notify_retract", "boolean",
                      "Notify on retraction", c->notify_retract ? "1" : "0");
    pv_form_add_field(a, x, "pubsub#notify_delete", "boolean",
                      "Notify on deletion", c->notify_delete ? "1" : "0");
    pv_form_add_field(a, x, "pubsub#deliver_payloads", "boolean",
                      "Deliver payloads", c->deliver_payloads ? "1" : "0");
    snprintf(num, sizeof(num), "%lld", c->item_expire);
    pv_form_add_field(a, x, "pubsub#item_expire", "text-single",
                      "Seconds after which items expire (0: never)",
                      c->item_expire ? num : "");
    pv_form_add_field(a, x, "pubsub#publish_model", "list-single",
                      "Publish model", "publishers");
    pv_form_add_field(a, x, "pubsub#notification_type", "list-single",
                      "Notification type", "headline");
    return x;
}

/* --- accounts, nodes, host state ------------------------------------ */

typedef struct pep_node_s {
    char *name;
    pep_cfg_t cfg;
    strv_t members;           /* whitelist: affiliation 'member' */
    strv_t ids;               /* item ids, oldest first */
    struct pep_node_s *next;
} pep_node_t;

/* The nodes of one account, loaded from the store on first use and
 * authoritative from then on: writes are asynchronous, so the in-memory
 * state orders concurrent requests until their rows are committed. */
typedef struct pep_owner_s {
    char *user;
    pep_node_t *nodes;
    size_t n_nodes;
    struct pep_owner_s *next;
} pep_owner_t;

enum { CAPS_PENDING, CAPS_KNOWN };

typedef struct {
    char *full;
    char *owner;              /* remote presence to this local user;
                               * NULL: a local session */
} pep_waiter_t;

/* XEP-0115 §6.3: features per verification string, per host. */
typedef struct pep_caps_s {
    char *key;                /* "hash ver" */
    char *node;               /* the client's caps node */
    int state;
    strv_t features;
    char *query_id;
    uint64_t asked_ms;
    pep_waiter_t *waiters;
    size_t n_waiters;
    struct pep_caps_s *next;
} pep_caps_t;

/* A remote full JID that sent available presence to a local account:
 * the only way to know a remote contact's resources and caps. */
typedef struct pep_remote_s {
    char *full;
    char *bare;
    char *caps;
    struct pep_remote_s *next;
} pep_remote_t;

/* Per host. Refcounted because store callbacks may run after host_fini
 * (a reload): they then only free their context. */
typedef struct {
    unsigned refs;
    int is_dead;
    pv_module_t *m;
    pv_host_t *h;
    pv_store_t *nodes_st;
    pv_store_t *items_st;
    pv_store_t *expiry_st;    /* NULL: expiry only hides items */
    pv_mtimer_t *timer;       /* the next expiry sweep, or NULL */
    uint64_t timer_due_us;
    int is_sweep_full;        /* the last sweep left due rows behind */
    pep_owner_t *owners;
    pep_caps_t *caps;
    size_t n_caps;
    pep_remote_t *remotes;
    size_t n_remotes;
    unsigned long seq;
    uint64_t last_ts;
} pep_host_t;

typedef struct {
    char *caps;               /* "hash ver" of the last presence */
    int is_available;
} pep_session_t;

static pep_host_t *
ph_ref(pep_host_t *ph)
{
    ph->refs++;
    return ph;
}

static void
node_free(pep_node_t *n)
{
    free(n->name);
    cfg_free(&n->cfg);
    strv_free(&n->members);
    strv_free(&n->ids);
    free(n);
}

static void
owner_free(pep_owner_t *o)
{
    pep_node_t *n, *next;

    for (n = o->nodes; n != NULL; n = next) {
        next = n->next;
        node_free(n);
    }
    free(o->user);
    free(o);
}

static void
caps_free(pep_caps_t *c)
{
    size_t i;

    for (i = 0; i < c->n_waiters; i++) {
        free(c->waiters[i].full);
        free(c->waiters[i].owner);
    }
    free(c->waiters);
    strv_free(&c->features);
    free(c->key);
    free(c->node);
    free(c->query_id);
    free(c);
}

static void
remote_free(pep_remote_t *r)
{
    free(r->full);
    free(r->bare);
    free(r->caps);
    free(r);
}

static void
ph_unref(pep_host_t *ph)
{
    pep_owner_t *o, *on;
    pep_caps_t *c, *cn;
    pep_remote_t *r, *rn;

    if (--ph->refs > 0)
        return;
    for (o = ph->owners; o != NULL; o = on) {
        on = o->next;
        owner_free(o);
    }
    for (c = ph->caps; c != NULL; c = cn) {
        cn = c->next;
        caps_free(c);
    }
    for (r = ph->remotes; r != NULL; r = rn) {
        rn = r->next;
        remote_free(r);
    }
    free(ph);
}

static pep_node_t *
node_find(const pep_owner_t *o, const char *name)
{
    pep_node_t *n;

    for (n = o->nodes; n != NULL; n = n->next)
        if (strcmp(n->name, name) == 0)
            return n;
    return NULL;
}

static void
node_unlink(pep_owner_t *o, pep_node_t *n)
{
    pep_node_t **pp;

    for (pp = &o->nodes; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            o->n_nodes--;
            return;
        }
    }
}

static pep_node_t *
node_add(pep_owner_t *o, const char *name, const pep_cfg_t *cfg)
{
    pep_node_t *n = pv_xcalloc(1, sizeof(*n)), **pp;

    n->name = pv_xstrdup(name);
    cfg_copy(&n->cfg, cfg);
    /* keep insertion order: disco#items lists nodes as created */
    for (pp = &o->nodes; *pp != NULL; pp = &(*pp)->next)
        ;
    *pp = n;
    o->n_nodes++;
    return n;
}

/* --- rows -------------------------------------------------------------
 * pep.nodes (MAP, key: node name): PEP_FORMAT, then a packed
 *   <node xmlns='urn:palaver:pep:0' access=.. max=.. ...> with <group/>,
 *   <member/> and <i id=''/> children, the item ids oldest first.
 * pep.items (MAP, key: "<len>:<node><item id>", the node's byte length
 *   in decimal so that any node name and id stay unambiguous):
 *   PEP_FORMAT, then a packed <row ts='µs'><item id=..>payload</item>.
 * Publish order lives in the node row, so items of one node are read by
 * key, never by scanning the account's rows. */

static char *
item_key(const char *node, const char *id)
{
    return pv_xasprintf("%zu:%s%s", strlen(node), node, id);
}

static void
add_text_child(pv_arena_t *a, pv_node_t *parent, const char *name,
               const char *text)
{
    pv_node_add_text(a, pv_node_new(a, name, NULL, parent), text,
                     strlen(text));
}

static void
node_encode(const pep_node_t *n, pv_buf_t *b)
{
    pv_arena_t *a = pv_arena_new(1024);
    pv_node_t *r = pv_node_new(a, "node", NS_ROW, NULL);
    char num[32];
    size_t i;

    pv_node_set_attr(a, r, "access", access_names[n->cfg.access]);
    snprintf(num, sizeof(num), "%lld", n->cfg.max_items);
    pv_node_set_attr(a, r, "max", num);
    pv_node_set_attr(a, r, "persist", n->cfg.persist ? "1" : "0");
    pv_node_set_attr(a, r, "send_last", send_names[n->cfg.send_last]);
    pv_node_set_attr(a, r, "notify_retract",
                     n->cfg.notify_retract ? "1" : "0");
    pv_node_set_attr(a, r, "notify_delete", n->cfg.notify_delete ? "1" : "0");
    pv_node_set_attr(a, r, "payloads", n->cfg.deliver_payloads ? "1" : "0");
    snprintf(num, sizeof(num), "%lld", n->cfg.item_expire);
    pv_node_set_attr(a, r, "expire", num);
    if (n->cfg.title != NULL)
        pv_node_set_attr(a, r, "title", n->cfg.title);
    if (n->cfg.type != NULL)
        pv_node_set_attr(a, r, "type", n->cfg.type);
    for (i = 0; i < n->cfg.groups.n; i++)
        add_text_child(a, r, "group", n->cfg.groups.v[i]);
    for (i = 0; i < n->members.n; i++)
        add_text_child(a, r, "member", n->members.v[i]);
    for (i = 0; i < n->ids.n; i++)
        pv_node_set_attr(a, pv_node_new(a, "i", NULL, r), "id", n->ids.v[i]);
    pv_buf_append(b, (const uint8_t[]){ PEP_FORMAT }, 1);
    pv_node_pack(r, b);
    pv_arena_free(a);
}

static const char *
attr_or(const pv_node_t *n, const char *name, const char *def)
{
    const char *v = pv_node_attr(n, name);

    return v ? v : def;
}

/* The node of a stored row, or NULL when the row is damaged. */
static pep_node_t *
node_decode(const char *name, const void *val, size_t len)
{
    pv_arena_t *a;
    pv_node_t *r, *c;
    pep_node_t *n;
    long long v;

    if (len < 1 || *(const uint8_t *)val != PEP_FORMAT)
        return NULL;
    a = pv_arena_new(len + 512);
    r = pv_node_unpack(a, (const uint8_t *)val + 1, len - 1, NULL);
    if (r == NULL || strcmp(r->name, "node") != 0) {
        pv_arena_free(a);
        return NULL;
    }
    n = pv_xcalloc(1, sizeof(*n));
    n->name = pv_xstrdup(name);
    cfg_default(&n->cfg);
    parse_choice(attr_or(r, "access", "presence"), access_names,
                 &n->cfg.access);
    v = strtoll(attr_or(r, "max", "1"), NULL, 10);
    n->cfg.max_items = v < 0 ? -1 : v;
    parse_bool(attr_or(r, "persist", "1"), &n->cfg.persist);
    parse_choice(attr_or(r, "send_last", "on_sub_and_presence"), send_names,
                 &n->cfg.send_last);
    parse_bool(attr_or(r, "notify_retract", "1"), &n->cfg.notify_retract);
    parse_bool(attr_or(r, "notify_delete", "1"), &n->cfg.notify_delete);
    parse_bool(attr_or(r, "payloads", "1"), &n->cfg.deliver_payloads);
    n->cfg.item_expire = strtoll(attr_or(r, "expire", "0"), NULL, 10);
    if (pv_node_attr(r, "title") != NULL)
        n->cfg.title = pv_xstrdup(pv_node_attr(r, "title"));
    if (pv_node_attr(r, "type") != NULL)
        n->cfg.type = pv_xstrdup(pv_node_attr(r, "type"));
    for (c = r->children; c != NULL; c = c->next) {
        if (c->name == NULL)
            continue;
        if (strcmp(c->name, "group") == 0)
            strv_add(&n->cfg.groups, pv_node_text(c, a));
        else if (strcmp(c->name, "member") == 0)
            strv_add(&n->members, pv_node_text(c, a));
        else if (strcmp(c->name, "i") == 0 && pv_node_attr(c, "id"))
            strv_add(&n->ids, pv_node_attr(c, "id"));
    }
    pv_arena_free(a);
    return n;
}

typedef struct {
    pep_owner_t *o;
    const char *who;
} load_ctx_t;

static int
load_node(const char *key, size_t key_len, const void *val, size_t len,
          void *arg)
{
    load_ctx_t *lc = arg;
    pep_node_t *n = node_decode(key, val, len), **pp;

    (void)key_len;
    if (n == NULL) {
        pv_log(PV_LOG_ERROR, "mod_pep", "node %s of %s is damaged: ignored",
               key, lc->who);
        return 0;
    }
    for (pp = &lc->o->nodes; *pp != NULL; pp = &(*pp)->next)
        ;
    *pp = n;
    lc->o->n_nodes++;
    return 0;
}

/* The account's nodes, loaded on first use. Only for existing users. */
static pep_owner_t *
owner_get(pep_host_t *ph, const char *user)
{
    pep_owner_t *o;
    load_ctx_t lc;

    for (o = ph->owners; o != NULL; o = o->next)
        if (strcmp(o->user, user) == 0)
            return o;
    o = pv_xcalloc(1, sizeof(*o));
    o->user = pv_xstrdup(user);
    lc.o = o;
    lc.who = user;
    if (pv_store_map_each(ph->nodes_st, pv_host_name(ph->h), user, load_node,
                          &lc) != PV_OK)
        pv_log(PV_LOG_ERROR, "mod_pep", "reading the nodes of %s@%s failed",
               user, pv_host_name(ph->h));
    o->next = ph->owners;
    ph->owners = o;
    return o;
}

static void
owner_forget(pep_host_t *ph, const char *user)
{
    pep_owner_t **pp, *o;

    for (pp = &ph->owners; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->user, user) == 0) {
            o = *pp;
            *pp = o->next;
            owner_free(o);
            return;
        }
    }
}

static uint64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* When an item published at ts_us (µs) on n expires; 0: never. */
static uint64_t
item_due(const pep_node_t *n, uint64_t ts_us)
{
    if (n->cfg.item_expire <= 0)
        return 0;
    return ts_us + (uint64_t)n->cfg.item_expire * 1000000u;
}

/* A stored item: the <item/> element in arena with its publish time in
 * *ts, or NULL when absent (not committed yet, or damaged). Expired items
 * are returned too: item_read() is the reader for answers. */
static pv_node_t *
item_row(pep_host_t *ph, const char *user, const pep_node_t *n,
         const char *id, pv_arena_t *a, uint64_t *ts)
{
    char *key = item_key(n->name, id);
    void *val = NULL;
    size_t len = 0;
    pv_node_t *row, *item = NULL;

    *ts = 0;
    if (pv_store_get(ph->items_st, pv_host_name(ph->h), user, key, &val,
                     &len) == PV_OK && len > 1 &&
        *(uint8_t *)val == PEP_FORMAT) {
        row = pv_node_unpack(a, (uint8_t *)val + 1, len - 1, NULL);
        if (row != NULL)
            item = pv_node_child(row, "item", NULL);
        if (item != NULL) {
            *ts = strtoull(attr_or(row, "ts", "0"), NULL, 10);
            pv_node_remove(item);
        }
    }
    free(val);
    free(key);
    return item;
}

/* The publish time of a stored item, 0 when it cannot be read. */
static uint64_t
item_ts(pep_host_t *ph, const char *user, const pep_node_t *n,
        const char *id)
{
    pv_arena_t *a = pv_arena_new(1024);
    uint64_t ts = 0;

    item_row(ph, user, n, id, a, &ts);
    pv_arena_free(a);
    return ts;
}

/* A stored item for an answer or a notification: NULL also once it is
 * past its pubsub#item_expire, even before the sweep removed it, so an
 * expired status is never served. */
static pv_node_t *
item_read(pep_host_t *ph, const char *user, const pep_node_t *n,
          const char *id, pv_arena_t *a)
{
    uint64_t ts, due;
    pv_node_t *item = item_row(ph, user, n, id, a, &ts);

    due = item_due(n, ts);
    if (item != NULL && due != 0 && due <= now_us())
        return NULL;
    return item;
}

/* Is the item still to be shown (stored and not past its expiry)? */
static int
item_live(pep_host_t *ph, const char *user, const pep_node_t *n,
          const char *id)
{
    uint64_t ts;

    if (n->cfg.item_expire <= 0)
        return 1;
    ts = item_ts(ph, user, n, id);
    return ts != 0 && item_due(n, ts) > now_us();
}

/* --- pending writes ---------------------------------------------------
 * Durability: the answer to a request (and the notifications) leave once
 * every row the request changed is committed. */

typedef struct {
    pep_host_t *ph;
    unsigned n_left;
    int has_failed;
    pv_stanza_t *reply;       /* routed on success */
    pv_stanza_t *req;         /* for the error otherwise */
    char *user;
    char *node;               /* notifications: the node's name */
    pep_node_t *gone;         /* a deleted node, for its recipients */
    pv_stanza_t *event;       /* notification template, or NULL */
} pep_op_t;

static void op_finish(pep_op_t *op);

/* An operation for a request (ev) or, ev NULL, one the server does on
 * its own (an expiry): then there is nobody to answer. */
static pep_op_t *
op_new(pep_host_t *ph, pv_event_t *ev, const char *user)
{
    pep_op_t *op = pv_xcalloc(1, sizeof(*op));

    op->ph = ph_ref(ph);
    op->req = ev != NULL ? pv_stanza_ref(ev->stanza) : NULL;
    op->user = pv_xstrdup(user);
    return op;
}

static void
op_done(void *arg, int rc)
{
    pep_op_t *op = arg;

    if (rc == PV_ERROR)
        op->has_failed = 1;
    if (--op->n_left == 0)
        op_finish(op);
}

static void
op_put(pep_op_t *op, pv_store_t *st, const char *key, const void *val,
       size_t len)
{
    op->n_left++;
    if (pv_store_put(st, pv_host_name(op->ph->h), op->user, key, val, len,
                     op_done, op) != PV_OK) {
        op->n_left--;
        op->has_failed = 1;
    }
}

static void
op_delete(pep_op_t *op, pv_store_t *st, const char *key)
{
    op->n_left++;
    if (pv_store_delete(st, pv_host_name(op->ph->h), op->user, key, op_done,
                        op) != PV_OK) {
        op->n_left--;
        op->has_failed = 1;
    }
}

static void
op_save_node(pep_op_t *op, const pep_node_t *n)
{
    pv_buf_t b = { 0 };

    node_encode(n, &b);
    op_put(op, op->ph->nodes_st, n->name, b.data, b.len);
    pv_buf_free(&b);
}

static void
op_delete_item(pep_op_t *op, const char *node, const char *id)
{
    char *key = item_key(node, id);

    op_delete(op, op->ph->items_st, key);
    free(key);
}

/* --- expiry index -----------------------------------------------------
 * pep.expiry (ARCHIVE, host-level rows: user ""): one row per stored
 * item of a node with pubsub#item_expire, at the item's expiry time, so
 * that the sweep reads only the rows that are due and never scans items.
 * The row id is the SHA-256 (hex) of "owner\0node\0id": an item has one
 * row, found again without knowing its time. Value: "owner\0node\0id".
 * Rows outlive what they index only briefly (an account deleted, a row
 * damaged): the sweep drops such leftovers when they fall due. */

static void expiry_schedule(pep_host_t *ph, uint64_t due_us);

static void
expiry_id(const char *user, const char *node, const char *id, char *out)
{
    pv_buf_t b = { 0 };
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int len = 0, i;

    pv_buf_append(&b, user, strlen(user) + 1);
    pv_buf_append(&b, node, strlen(node) + 1);
    pv_buf_append(&b, id, strlen(id));
    EVP_Digest(b.data, b.len, dg, &len, EVP_sha256(), NULL);
    pv_buf_free(&b);
    for (i = 0; i < len && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", dg[i]);
    out[2 * i] = '\0';
}

static void
op_index_del(pep_op_t *op, const char *node, const char *id)
{
    char hid[65];

    if (op->ph->expiry_st == NULL)
        return;
    expiry_id(op->user, node, id, hid);
    op->n_left++;
    if (pv_store_archive_delete_id(op->ph->expiry_st,
                                   pv_host_name(op->ph->h), "", hid,
                                   op_done, op) != PV_OK)
        op->n_left--;     /* nothing indexed under a key that long */
}

/* Indexes an item due at due_us; an older row of the same item must have
 * been deleted first (op_index_del: writes commit in order). */
static void
op_index_add(pep_op_t *op, const char *node, const char *id,
             uint64_t due_us)
{
    char hid[65];
    pv_buf_t v = { 0 };

    if (op->ph->expiry_st == NULL)
        return;
    expiry_id(op->user, node, id, hid);
    pv_buf_append(&v, op->user, strlen(op->user) + 1);
    pv_buf_append(&v, node, strlen(node) + 1);
    pv_buf_append(&v, id, strlen(id));
    op->n_left++;
    if (pv_store_archive_append(op->ph->expiry_st, pv_host_name(op->ph->h),
                                "", due_us, hid, v.data, v.len, op_done,
                                op) != PV_OK) {
        op->n_left--;
        op->has_failed = 1;
    }
    pv_buf_free(&v);
    expiry_schedule(op->ph, due_us);
}

static void
op_after_commit(void *arg, int rc)
{
    op_done(arg, rc);
}

/* Submits nothing more: the op completes once its writes commit. */
static void
op_submit(pep_op_t *op)
{
    op->n_left++;
    /* a barrier behind the writes (also for requests that wrote none,
     * e.g. a publish to a node that does not persist items) */
    pv_host_after_commit(op->ph->h, op_after_commit, op);
}

/* --- XEP-0115 caps -------------------------------------------------- */

static pep_caps_t *
caps_find(pep_host_t *ph, const char *key)
{
    pep_caps_t *c;

    if (ph == NULL || key == NULL)
        return NULL;
    for (c = ph->caps; c != NULL; c = c->next)
        if (strcmp(c->key, key) == 0)
            return c;
    return NULL;
}

static int
caps_wants(pep_host_t *ph, const char *key, const char *node)
{
    pep_caps_t *c = caps_find(ph, key);
    char *want;
    int r;

    if (c == NULL || c->state != CAPS_KNOWN)
        return 0;
    want = pv_xasprintf("%s+notify", node);
    r = strv_find(&c->features, want) >= 0;
    free(want);
    return r;
}

/* Does this local session want notifications of node? (XEP-0163 §4.2) */
static int
session_wants(pv_module_t *m, pv_session_t *s, const char *node)
{
    pep_session_t *ps = pv_session_data(s, m);

    if (ps == NULL || ps->caps == NULL || !pv_session_is_available(s))
        return 0;
    return caps_wants(pv_module_host_data(m, pv_session_host(s)), ps->caps,
                      node);
}

static int
cmp_strp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct {
    const char *form_type;
    pv_buf_t s;
} caps_form_t;

static int
cmp_form(const void *a, const void *b)
{
    return strcmp(((const caps_form_t *)a)->form_type,
                  ((const caps_form_t *)b)->form_type);
}

/* The XEP-0115 §5.1 verification string of a disco#info answer, hashed
 * with md and base64-encoded; NULL when the answer breaks §5.4 (duplicate
 * identities, features or FORM_TYPEs). Also fills features. */
static char *
caps_compute(const pv_node_t *q, const EVP_MD *md, strv_t *features,
             pv_arena_t *a)
{
    strv_t ids = { 0 }, vars = { 0 };
    caps_form_t *forms = NULL;
    size_t n_forms = 0, i, j;
    const pv_node_t *c, *f, *v;
    pv_buf_t s = { 0 };
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dg_len = 0;
    char *out = NULL;
    int is_bad = 0;

    for (c = q->children; c != NULL; c = c->next) {
        if (c->name == NULL)
            continue;
        if (strcmp(c->name, "identity") == 0 &&
            strcmp(c->xmlns, NS_INFO) == 0) {
            char *id = pv_xasprintf("%s/%s/%s/%s",
                                    attr_or(c, "category", ""),
                                    attr_or(c, "type", ""),
                                    attr_or(c, "xml:lang", ""),
                                    attr_or(c, "name", ""));
            if (strv_find(&ids, id) >= 0)
                is_bad = 1;
            strv_add(&ids, id);
            free(id);
        } else if (strcmp(c->name, "feature") == 0 &&
                   strcmp(c->xmlns, NS_INFO) == 0) {
            const char *var = attr_or(c, "var", "");
            if (strv_find(&vars, var) >= 0)
                is_bad = 1;
            strv_add(&vars, var);
        } else if (strcmp(c->name, "x") == 0 &&
                   strcmp(c->xmlns, NS_DATA) == 0) {
            const char *ft = NULL;
            strv_t fvars = { 0 };

            for (f = pv_node_child(c, "field", NS_DATA); f != NULL;
                 f = pv_node_next_child(c, f, "field", NS_DATA))
                if (strcmp(attr_or(f, "var", ""), "FORM_TYPE") == 0 &&
                    (v = pv_node_child(f, "value", NS_DATA)) != NULL)
                    ft = pv_node_text(v, a);
            if (ft == NULL)
                continue;     /* §5.4: forms without FORM_TYPE are ignored */
            forms = pv_xrealloc(forms, (n_forms + 1) * sizeof(*forms));
            forms[n_forms].form_type = ft;
            memset(&forms[n_forms].s, 0, sizeof(pv_buf_t));
            pv_buf_printf(&forms[n_forms].s, "%s<", ft);
            for (f = pv_node_child(c, "field", NS_DATA); f != NULL;
                 f = pv_node_next_child(c, f, "field", NS_DATA)) {
                const char *var = attr_or(f, "var", "");
                if (strcmp(var, "FORM_TYPE") != 0)
                    strv_add(&fvars, var);
            }
            if (fvars.n > 1)
                qsort(fvars.v, fvars.n, sizeof(char *), cmp_strp);
            for (i = 0; i < fvars.n; i++) {
                strv_t vals = { 0 };
                for (f = pv_node_child(c, "field", NS_DATA); f != NULL;
                     f = pv_node_next_child(c, f, "field", NS_DATA)) {
                    if (strcmp(attr_or(f, "var", ""), fvars.v[i]) != 0)
                        continue;
                    for (v = pv_node_child(f, "value", NS_DATA); v != NULL;
                         v = pv_node_next_child(f, v, "value", NS_DATA))
                        strv_add(&vals, pv_node_text(v, a));
                }
                if (vals.n > 1)
                    qsort(vals.v, vals.n, sizeof(char *), cmp_strp);
                pv_buf_printf(&forms[n_forms].s, "%s<", fvars.v[i]);
                for (j = 0; j < vals.n; j++)
                    pv_buf_printf(&forms[n_forms].s, "%s<", vals.v[j]);
                strv_free(&vals);
            }
            strv_free(&fvars);
            n_forms++;
        }
    }
    /* qsort on an empty (NULL) array is undefined behaviour */
    if (ids.n > 1)
        qsort(ids.v, ids.n, sizeof(char *), cmp_strp);
    if (vars.n > 1)
        qsort(vars.v, vars.n, sizeof(char *), cmp_strp);
    if (n_forms > 1)
        qsort(forms, n_forms, sizeof(*forms), cmp_form);
    for (i = 0; i + 1 < n_forms; i++)
        if (strcmp(forms[i].form_type, forms[i + 1].form_type) == 0)
            is_bad = 1;
    for (i = 0; i < ids.n; i++)
        pv_buf_printf(&s, "%s<", ids.v[i]);
    for (i = 0; i < vars.n; i++)
        pv_buf_printf(&s, "%s<", vars.v[i]);
    for (i = 0; i < n_forms; i++) {
        pv_buf_append(&s, forms[i].s.data, forms[i].s.len);
        pv_buf_free(&forms[i].s);
    }
    free(forms);
    if (!is_bad && EVP_Digest(s.data ? s.data : "", s.len, dg, &dg_len, md,
                              NULL) == 1) {
        out = pv_xmalloc(4 * ((dg_len + 2) / 3) + 1);
        EVP_EncodeBlock((unsigned char *)out, dg, (int)dg_len);
    }
    pv_buf_free(&s);
    strv_free(&ids);
    *features = vars;
    return out;
}

static const EVP_MD *
caps_md(const char *hash)
{
    if (strcmp(hash, "sha-1") == 0)
        return EVP_sha1();
    if (strcmp(hash, "sha-256") == 0)
        return EVP_sha256();
    if (strcmp(hash, "sha-512") == 0)
        return EVP_sha512();
    return NULL;
}

/* The "hash ver" key of a presence's XEP-0115 element, malloc'd; NULL
 * without one (or with a legacy one, which cannot be verified). */
static char *
caps_key_of(const pv_stanza_t *st, const char **node)
{
    const pv_node_t *c = pv_node_child(st->root, "c", NS_CAPS);
    const char *hash, *ver;

    if (c == NULL)
        return NULL;
    hash = pv_node_attr(c, "hash");
    ver = pv_node_attr(c, "ver");
    *node = pv_node_attr(c, "node");
    if (hash == NULL || ver == NULL || *node == NULL ||
        caps_md(hash) == NULL || strchr(hash, ' ') != NULL)
        return NULL;
    return pv_xasprintf("%s %s", hash, ver);
}

/* Asks full for the features behind key (once per key, XEP-0115 §6.3),
 * remembering who waits for the answer. Returns the entry. */
static pep_caps_t *
caps_learn(pep_host_t *ph, const char *key, const char *cnode,
           const char *full, const char *owner)
{
    pep_caps_t *c = caps_find(ph, key);
    uint64_t now = pv_now_ms(pv_host_server(ph->h));
    pv_stanza_t *st;
    pv_node_t *q;
    size_t i;

    if (c != NULL && c->state == CAPS_KNOWN)
        return c;
    if (c == NULL) {
        if (ph->n_caps >= PEP_CAPS_MAX)
            return NULL;
        c = pv_xcalloc(1, sizeof(*c));
        c->key = pv_xstrdup(key);
        c->node = pv_xstrdup(cnode);
        c->state = CAPS_PENDING;
        c->next = ph->caps;
        ph->caps = c;
        ph->n_caps++;
    }
    for (i = 0; i < c->n_waiters; i++)
        if (strcmp(c->waiters[i].full, full) == 0)
            break;
    if (i == c->n_waiters && c->n_waiters < 64) {
        c->waiters = pv_xrealloc(c->waiters,
                                 (c->n_waiters + 1) * sizeof(*c->waiters));
        c->waiters[c->n_waiters].full = pv_xstrdup(full);
        c->waiters[c->n_waiters].owner = owner ? pv_xstrdup(owner) : NULL;
        c->n_waiters++;
    }
    if (c->query_id != NULL && now - c->asked_ms < PEP_CAPS_RETRY_MS)
        return c;
    free(c->query_id);
    c->query_id = pv_xasprintf("pepcaps-%lu", ++ph->seq);
    c->asked_ms = now;
    st = pv_stanza_build("iq");
    pv_node_set_attr(st->arena, st->root, "type", "get");
    pv_node_set_attr(st->arena, st->root, "id", c->query_id);
    pv_node_set_attr(st->arena, st->root, "from", pv_host_name(ph->h));
    pv_node_set_attr(st->arena, st->root, "to", full);
    q = pv_node_new(st->arena, "query", NS_INFO, st->root);
    pv_node_set_attr(st->arena, q, "node",
                     pv_arena_printf(st->arena, "%s#%s", cnode,
                                     strchr(key, ' ') + 1));
    pv_stanza_touch(st);
    pv_host_route(ph->h, st);
    pv_stanza_unref(st);
    return c;
}

static void
caps_drop(pep_host_t *ph, pep_caps_t *c)
{
    pep_caps_t **pp;

    for (pp = &ph->caps; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            ph->n_caps--;
            caps_free(c);
            return;
        }
    }
}

/* --- roster access ---------------------------------------------------- */

typedef struct {
    char *jid;
    unsigned state;
    int is_listed;
    strv_t groups;
} pep_contact_t;

typedef struct {
    pep_contact_t *v;
    size_t n;
} contacts_t;

static void
collect_contact(void *arg, const pv_roster_item_t *it)
{
    contacts_t *cs = arg;
    pep_contact_t *c;
    const char *const *g;

    cs->v = pv_xrealloc(cs->v, (cs->n + 1) * sizeof(*cs->v));
    c = &cs->v[cs->n++];
    memset(c, 0, sizeof(*c));
    c->jid = pv_xstrdup(it->jid);
    c->state = it->state;
    c->is_listed = it->is_listed;
    for (g = it->groups; g != NULL && *g != NULL; g++)
        strv_add(&c->groups, *g);
}

/* A snapshot of user's roster on h (contact NULL) or of one item. */
static void
contacts_get(pv_host_t *h, const char *user, const char *contact,
             contacts_t *out)
{
    out->v = NULL;
    out->n = 0;
    pv_roster_get(h, user, contact, collect_contact, out);
}

static void
contacts_free(contacts_t *cs)
{
    size_t i;

    for (i = 0; i < cs->n; i++) {
        free(cs->v[i].jid);
        strv_free(&cs->v[i].groups);
    }
    free(cs->v);
}

enum { ACCESS_OK, ACCESS_PRESENCE, ACCESS_ROSTER, ACCESS_WHITELIST };

/* XEP-0060 §4.5 access models, for requester (a bare JID) whose roster
 * item at the owner is c (NULL: none). */
static int
access_check(const pep_node_t *n, const char *owner_bare,
             const char *requester, const pep_contact_t *c)
{
    size_t i;

    if (requester != NULL && strcmp(requester, owner_bare) == 0)
        return ACCESS_OK;
    switch (n->cfg.access) {
    case ACC_OPEN:
        return ACCESS_OK;
    case ACC_PRESENCE:
        return c != NULL && (c->state & PV_SUB_FROM) ? ACCESS_OK
                                                      : ACCESS_PRESENCE;
    case ACC_ROSTER:
        if (c != NULL && c->is_listed)
            for (i = 0; i < c->groups.n; i++)
                if (strv_find(&n->cfg.groups, c->groups.v[i]) >= 0)
                    return ACCESS_OK;
        return ACCESS_ROSTER;
    default:
        return requester != NULL && strv_find(&n->members, requester) >= 0
                   ? ACCESS_OK
                   : ACCESS_WHITELIST;
    }
}

/* access_check for requester looked up in owner's roster. */
static int
access_for(pv_host_t *h, const char *user, const pep_node_t *n,
           const char *owner_bare, const char *requester)
{
    contacts_t cs;
    int r;

    if (requester == NULL)
        return access_check(n, owner_bare, requester, NULL);
    if (strcmp(requester, owner_bare) == 0 || n->cfg.access == ACC_OPEN ||
        n->cfg.access == ACC_WHITELIST)
        return access_check(n, owner_bare, requester, NULL);
    contacts_get(h, user, requester, &cs);
    r = access_check(n, owner_bare, requester, cs.n ? &cs.v[0] : NULL);
    contacts_free(&cs);
    return r;
}

/* --- replies ----------------------------------------------------------- */

/* Answers by the request's address: a local session, or (ev->origin
 * NULL) a remote contact over s2s (session3 core: pv_event_reply). */
static void
reply(pv_event_t *ev, pv_stanza_t *st)
{
    pv_event_reply(ev, st);
}

/* An error with an optional XEP-0060 pubsub#errors condition. */
static pv_stanza_t *
pep_error_stanza(const pv_stanza_t *req, pv_err_type_t type,
                 const char *cond, const char *app, const char *feature)
{
    pv_stanza_t *st = pv_stanza_error(req, type, cond, NULL);
    pv_node_t *err, *n;

    if (st == NULL || app == NULL)
        return st;
    err = pv_node_child(st->root, "error", NULL);
    n = pv_node_new(st->arena, app, NS_ERRORS, err);
    if (feature != NULL)
        pv_node_set_attr(st->arena, n, "feature", feature);
    return st;
}

static pv_rc_t
pep_error(pv_event_t *ev, pv_err_type_t type, const char *cond,
          const char *app, const char *feature)
{
    pv_stanza_t *st = pep_error_stanza(ev->stanza, type, cond, app, feature);

    if (st != NULL)
        reply(ev, st);
    return PV_HANDLED;
}

/* XEP-0060 §6.5.9 errors for a refused retrieval. */
static pv_rc_t
access_error(pv_event_t *ev, int why)
{
    switch (why) {
    case ACCESS_PRESENCE:
        return pep_error(ev, PV_ERR_AUTH, "not-authorized",
                         "presence-subscription-required", NULL);
    case ACCESS_ROSTER:
        return pep_error(ev, PV_ERR_AUTH, "not-authorized",
                         "not-in-roster-group", NULL);
    default:
        return pep_error(ev, PV_ERR_CANCEL, "not-allowed", "closed-node",
                         NULL);
    }
}

/* --- notifications (XEP-0163 §4.2, XEP-0060 §7.1.2) -------------------- */

typedef void pep_send_fn(void *arg, const char *full, pv_session_t *s);

typedef struct {
    pv_module_t *m;
    const char *node;
    pv_session_t **v;
    size_t n;
} sess_list_t;

static void
collect_wanting(void *arg, pv_session_t *s)
{
    sess_list_t *l = arg;

    if (!session_wants(l->m, s, l->node))
        return;
    l->v = pv_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = s;
}

static void
collect_available(void *arg, pv_session_t *s)
{
    sess_list_t *l = arg;

    if (!pv_session_is_available(s))
        return;
    l->v = pv_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = s;
}

/* Calls fn for each resource of contact (a bare JID) that is online and
 * wants node: local sessions, or remote full JIDs that sent us presence. */
static void
each_contact_resource(pep_host_t *ph, const char *contact, const char *node,
                      pep_send_fn *fn, void *arg)
{
    pv_jid_t j;
    pv_host_t *ch;
    pep_remote_t *r;

    if (pv_jid_parse(contact, strlen(contact), &j, NULL) != PV_OK)
        return;
    ch = pv_host_find(pv_host_server(ph->h), j.domain);
    if (ch != NULL) {
        if (j.node != NULL) {
            sess_list_t l = { ph->m, node, NULL, 0 };
            size_t i;

            pv_host_each_session(ch, j.node, collect_wanting, &l);
            for (i = 0; i < l.n; i++)
                fn(arg, pv_session_jid(l.v[i])->full, l.v[i]);
            free(l.v);
        }
    } else {
        for (r = ph->remotes; r != NULL; r = r->next)
            if (strcmp(r->bare, contact) == 0 &&
                caps_wants(ph, r->caps, node))
                fn(arg, r->full, NULL);
    }
    pv_jid_clear(&j);
}

/* Every resource entitled to and interested in notifications of node:
 * the owner's own, and those of contacts with a presence subscription
 * to the owner whom the access model lets in. */
static void
each_recipient(pep_host_t *ph, const char *user, const pep_node_t *n,
               pep_send_fn *fn, void *arg)
{
    char *bare = pv_xasprintf("%s@%s", user, pv_host_name(ph->h));
    contacts_t cs;
    size_t i;

    each_contact_resource(ph, bare, n->name, fn, arg);
    contacts_get(ph->h, user, NULL, &cs);
    for (i = 0; i < cs.n; i++) {
        if (!(cs.v[i].state & PV_SUB_FROM) ||
            strcmp(cs.v[i].jid, bare) == 0)
            continue;
        if (access_check(n, bare, cs.v[i].jid, &cs.v[i]) != ACCESS_OK)
            continue;
        each_contact_resource(ph, cs.v[i].jid, n->name, fn, arg);
    }
    contacts_free(&cs);
    free(bare);
}

typedef struct {
    pep_host_t *ph;
    pv_stanza_t *tpl;
} fanout_t;

/* One copy of the template per recipient: the stanza differs by 'to'. */
static void
send_copy(void *arg, const char *full, pv_session_t *s)
{
    fanout_t *fo = arg;
    pv_stanza_t *c = pv_stanza_copy(fo->tpl);

    pv_node_set_attr(c->arena, c->root, "to", full);
    pv_node_set_attr(c->arena, c->root, "id",
                     pv_arena_printf(c->arena, "pepn-%lu", ++fo->ph->seq));
    pv_stanza_touch(c);
    if (s != NULL)
        pv_session_send(s, c);
    else
        pv_host_route(fo->ph->h, c);   /* remote: s2s, or dropped */
    pv_stanza_unref(c);
}

/* A headline from the owner's bare JID carrying an <event/>; returns the
 * template and sets *ev to the event element. */
static pv_stanza_t *
event_new(pep_host_t *ph, const char *user, pv_node_t **ev)
{
    pv_stanza_t *st = pv_stanza_build("message");

    pv_node_set_attr(st->arena, st->root, "from",
                     pv_arena_printf(st->arena, "%s@%s", user,
                                     pv_host_name(ph->h)));
    pv_node_set_attr(st->arena, st->root, "type", "headline");
    *ev = pv_node_new(st->arena, "event", NS_EVENT, st->root);
    return st;
}

static void
notify(pep_host_t *ph, const char *user, const pep_node_t *n,
       pv_stanza_t *tpl)
{
    fanout_t fo = { ph, tpl };

    each_recipient(ph, user, n, send_copy, &fo);
}

/* The <item/> of a notification: in the event namespace (XEP-0060
 * §7.1.2.1), with the payload unless deliver_payloads is off. */
static void
event_item(pv_arena_t *a, pv_node_t *items, const pv_node_t *item,
           int with_payload)
{
    pv_node_t *e = pv_node_new(a, "item", NULL, items);
    const pv_node_t *c;

    pv_node_set_attr(a, e, "id", pv_node_attr(item, "id"));
    if (!with_payload)
        return;
    for (c = item->children; c != NULL; c = c->next)
        if (c->name != NULL)
            pv_node_append(e, pv_node_copy(a, c));
}

/* XEP-0060 §6.1.7: the last item of node to one
 * resource (no-op when the node has none). */
static void
send_last(pep_host_t *ph, const char *user, const pep_node_t *n,
          const char *full, pv_session_t *s)
{
    pv_stanza_t *tpl;
    pv_node_t *evn, *items, *item;
    fanout_t fo = { ph, NULL };

    if (n->ids.n == 0 || n->cfg.send_last == SEND_NEVER)
        return;
    tpl = event_new(ph, user, &evn);
    item = item_read(ph, user, n, n->ids.v[n->ids.n - 1], tpl->arena);
    if (item == NULL) {
        pv_stanza_unref(tpl);
        return;
    }
    items = pv_node_new(tpl->arena, "items", NULL, evn);
    pv_node_set_attr(tpl->arena, items, "node", n->name);
    event_item(tpl->arena, items, item, n->cfg.deliver_payloads);
    pv_stanza_touch(tpl);
    fo.tpl = tpl;
    send_copy(&fo, full, s);
    pv_stanza_unref(tpl);
}

/* The last items of every node of owner (user on ph) that requester
 * (bare) may see and full wants, for presence (is_sub 0) or for a new
 * subscription (is_sub 1). */
static void
send_owner_last(pep_host_t *ph, const char *user, const char *requester,
                const char *full, pv_session_t *s, const char *caps,
                pep_host_t *caps_ph, int is_sub)
{
    char *bare = pv_xasprintf("%s@%s", user, pv_host_name(ph->h));
    pep_owner_t *o = owner_get(ph, user);
    contacts_t cs = { NULL, 0 };
    pep_node_t *n;

    if (strcmp(requester, bare) != 0)
        contacts_get(ph->h, user, requester, &cs);
    if (strcmp(requester, bare) == 0 ||
        (cs.n > 0 && (cs.v[0].state & PV_SUB_FROM))) {
        for (n = o->nodes; n != NULL; n = n->next) {
            if (n->cfg.send_last == SEND_NEVER ||
                (!is_sub && n->cfg.send_last != SEND_ON_SUB_AND_PRESENCE))
                continue;
            if (access_check(n, bare, requester, cs.n ? &cs.v[0] : NULL) !=
                ACCESS_OK)
                continue;
            if (!caps_wants(caps_ph, caps, n->name))
                continue;
            send_last(ph, user, n, full, s);
        }
    }
    contacts_free(&cs);
    free(bare);
}

/* A local session became available (or changed caps): the last items of
 * its own account and of every local account it is subscribed to. */
static void
session_available(pep_host_t *ph, pv_session_t *s)
{
    pep_session_t *ps = pv_session_data(s, ph->m);
    const pv_jid_t *me = pv_session_jid(s);
    contacts_t cs;
    size_t i;

    if (ps == NULL || ps->caps == NULL)
        return;
    send_owner_last(ph, me->node, me->bare, me->full, s, ps->caps, ph, 0);
    contacts_get(ph->h, me->node, NULL, &cs);
    for (i = 0; i < cs.n; i++) {
        pv_jid_t j;
        pv_host_t *oh;
        pep_host_t *oph;

        if (!(cs.v[i].state & PV_SUB_TO) ||
            pv_jid_parse(cs.v[i].jid, strlen(cs.v[i].jid), &j, NULL) !=
                PV_OK)
            continue;
        oh = j.node ? pv_host_find(pv_host_server(ph->h), j.domain) : NULL;
        oph = oh ? pv_module_host_data(ph->m, oh) : NULL;
        if (oph != NULL && oph->nodes_st != NULL &&
            strcmp(j.bare, me->bare) != 0 && pv_user_exists(oh, j.node))
            send_owner_last(oph, j.node, me->bare, me->full, s, ps->caps, ph,
                            0);
        pv_jid_clear(&j);
    }
    contacts_free(&cs);
}

typedef struct {
    const char *full;
    pv_session_t *found;
} find_sess_t;

static void
find_session(void *arg, pv_session_t *s)
{
    find_sess_t *f = arg;

    if (strcmp(pv_session_jid(s)->full, f->full) == 0)
        f->found = s;
}

static pv_session_t *
local_session(pv_host_t *h, const char *full)
{
    find_sess_t f = { full, NULL };
    pv_jid_t j;

    if (pv_jid_parse(full, strlen(full), &j, NULL) != PV_OK)
        return NULL;
    if (j.node != NULL)
        pv_host_each_session(h, j.node, find_session, &f);
    pv_jid_clear(&j);
    return f.found;
}

/* Does the address belong to a remote entity we track? */
static pep_remote_t *
remote_find(pep_host_t *ph, const char *full)
{
    pep_remote_t *r;

    for (r = ph->remotes; r != NULL; r = r->next)
        if (strcmp(r->full, full) == 0)
            return r;
    return NULL;
}

static void
remote_forget(pep_host_t *ph, const char *full)
{
    pep_remote_t **pp, *r;

    for (pp = &ph->remotes; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->full, full) == 0) {
            r = *pp;
            *pp = r->next;
            ph->n_remotes--;
            remote_free(r);
            return;
        }
    }
}

/* --- stanza handlers: presence and caps ------------------------------- */

/* What a local client broadcasts (RFC 6121 §4.2): its caps, and when it
 * becomes available the last items it is entitled to. */
static pv_rc_t
pep_presence_out(pv_event_t *ev)
{
    pep_host_t *ph = pv_module_host_data(ev->module, ev->host);
    pep_session_t *ps;
    const char *type = ev->stanza->type, *cnode = NULL;
    char *key;
    int was_available, is_changed;

    if (ph == NULL || ev->origin == NULL || ev->to == NULL ||
        ev->to->resource != NULL ||
        strcmp(ev->to->bare, pv_session_jid(ev->origin)->bare) != 0)
        return PV_PASS;
    ps = pv_session_data(ev->origin, ev->module);
    if (ps == NULL)
        return PV_PASS;
    if (type != NULL) {
        if (strcmp(type, "unavailable") == 0)
            ps->is_available = 0;
        return PV_PASS;
    }
    key = caps_key_of(ev->stanza, &cnode);
    is_changed = (key == NULL) != (ps->caps == NULL) ||
                 (key != NULL && strcmp(key, ps->caps) != 0);
    free(ps->caps);
    ps->caps = key;
    was_available = ps->is_available;
    ps->is_available = 1;
    if (key == NULL || (was_available && !is_changed))
        return PV_PASS;
    if (caps_learn(ph, key, cnode, pv_session_jid(ev->origin)->full,
                   NULL) == NULL)
        return PV_PASS;
    if (caps_find(ph, key)->state == CAPS_KNOWN)
        session_available(ph, ev->origin);
    return PV_PASS;
}

/* Presence reaching an account from a remote entity: remember its caps
 * (local senders are tracked by pep_presence_out on their own host). */
static pv_rc_t
pep_presence_in(pv_event_t *ev)
{
    pep_host_t *ph = pv_module_host_data(ev->module, ev->host);
    const char *type = ev->stanza->type, *cnode = NULL;
    pep_remote_t *r;
    pep_caps_t *c;
    char *key;

    if (ph == NULL || ev->from == NULL || ev->from->resource == NULL ||
        ev->to->node == NULL ||
        pv_host_is_local(ev->server, ev->from->domain))
        return PV_PASS;
    if (type != NULL && strcmp(type, "unavailable") == 0) {
        remote_forget(ph, ev->from->full);
        return PV_PASS;
    }
    if (type != NULL || !pv_user_exists(ev->host, ev->to->node))
        return PV_PASS;
    key = caps_key_of(ev->stanza, &cnode);
    if (key == NULL)
        return PV_PASS;
    r = remote_find(ph, ev->from->full);
    if (r == NULL) {
        if (ph->n_remotes >= PEP_REMOTE_MAX) {
            free(key);
            return PV_PASS;
        }
        r = pv_xcalloc(1, sizeof(*r));
        r->full = pv_xstrdup(ev->from->full);
        r->bare = pv_xstrdup(ev->from->bare);
        r->next = ph->remotes;
        ph->remotes = r;
        ph->n_remotes++;
    }
    free(r->caps);
    r->caps = key;
    c = caps_learn(ph, key, cnode, r->full, ev->to->node);
    if (c != NULL && c->state == CAPS_KNOWN)
        send_owner_last(ph, ev->to->node, r->bare, r->full, NULL, key, ph, 0);
    return PV_PASS;
}

static pep_caps_t *
caps_by_query(pep_host_t *ph, const char *id)
{
    pep_caps_t *c;

    if (id == NULL)
        return NULL;
    for (c = ph->caps; c != NULL; c = c->next)
        if (c->query_id != NULL && strcmp(c->query_id, id) == 0)
            return c;
    return NULL;
}

/* The answer to our disco#info for a caps hash (XEP-0115 §5.4): accepted
 * only when the features hash to the advertised verification string. */
static pv_rc_t
pep_caps_result(pv_event_t *ev)
{
    pep_host_t *ph = pv_module_host_data(ev->module, ev->host);
    pep_caps_t *c;
    const pv_node_t *q = ev->payload;
    char *ver = NULL, *hash;
    strv_t features = { 0 };
    pep_waiter_t *w;
    size_t i, n;

    if (ph == NULL || (c = caps_by_query(ph, ev->stanza->id)) == NULL)
        return PV_PASS;
    if (ev->kind == PV_IQ_RESULT && q != NULL &&
        strcmp(q->xmlns, NS_INFO) == 0) {
        hash = pv_xstrndup(c->key, strcspn(c->key, " "));
        ver = caps_compute(q, caps_md(hash), &features, ev->stanza->arena);
        free(hash);
    }
    if (ver == NULL || strcmp(ver, strchr(c->key, ' ') + 1) != 0) {
        pv_log(PV_LOG_INFO, "mod_pep", "caps %s from %s: %s", c->key,
               ev->from ? ev->from->full : "?",
               ver ? "verification string mismatch" : "no usable answer");
        free(ver);
        strv_free(&features);
        caps_drop(ph, c);
        return PV_HANDLED;
    }
    free(ver);
    c->state = CAPS_KNOWN;
    c->features = features;
    free(c->query_id);
    c->query_id = NULL;
    w = c->waiters;
    n = c->n_waiters;
    c->waiters = NULL;
    c->n_waiters = 0;
    for (i = 0; i < n; i++) {
        if (w[i].owner == NULL) {
            pv_session_t *s = local_session(ph->h, w[i].full);
            pep_session_t *ps = s ? pv_session_data(s, ph->m) : NULL;
            if (ps != NULL && ps->caps != NULL &&
                strcmp(ps->caps, c->key) == 0 && pv_session_is_available(s))
                session_available(ph, s);
        } else {
            pep_remote_t *r = remote_find(ph, w[i].full);
            if (r != NULL && r->caps != NULL && strcmp(r->caps, c->key) == 0)
                send_owner_last(ph, w[i].owner, r->bare, r->full, NULL,
                                r->caps, ph, 0);
        }
        free(w[i].full);
        free(w[i].owner);
    }
    free(w);
    return PV_HANDLED;
}

/* Errors bounced by notifications to remote contacts (no s2s yet, or
 * gone): nothing to tell the owner. */
static pv_rc_t
pep_bounce(pv_event_t *ev)
{
    const char *id = ev->stanza->id;

    if (ev->stanza->type != NULL && strcmp(ev->stanza->type, "error") == 0 &&
        id != NULL && strncmp(id, "pepn-", 5) == 0 &&
        pv_node_child(ev->stanza->root, "event", NS_EVENT) != NULL)
        return PV_HANDLED;
    return PV_PASS;
}

/* --- publish, retract, items ------------------------------------------ */

static void
op_finish(pep_op_t *op)
{
    pep_host_t *ph = op->ph;

    if (!ph->is_dead) {
        if (op->has_failed) {
            pv_stanza_t *err = op->req == NULL ? NULL :
                pv_stanza_error(op->req, PV_ERR_WAIT,
                                "internal-server-error", NULL);
            pv_log(PV_LOG_ERROR, "mod_pep", "storing a change of %s@%s "
                   "failed", op->user, pv_host_name(ph->h));
            if (err != NULL) {
                pv_host_route(ph->h, err);
                pv_stanza_unref(err);
            }
        } else {
            if (op->reply != NULL)
                pv_host_route(ph->h, op->reply);
            if (op->event != NULL) {
                pep_node_t *n = op->gone;

                if (n == NULL && pv_user_exists(ph->h, op->user))
                    n = node_find(owner_get(ph, op->user), op->node);
                if (n != NULL)
                    notify(ph, op->user, n, op->event);
            }
        }
    }
    if (op->gone != NULL)
        node_free(op->gone);
    pv_stanza_unref(op->reply);
    pv_stanza_unref(op->req);
    pv_stanza_unref(op->event);
    free(op->user);
    free(op->node);
    ph_unref(ph);
    free(op);
}

/* --- expiry (pubsub#item_expire enforced by the server) ----------------
 * One one-shot timer per host, armed for the earliest due row of
 * pep.expiry. A sweep takes the due rows (at most PEP_SWEEP_BATCH), and
 * for each item still stored and really past its expiry does what a
 * retract by the owner does: row and id gone, node saved, and after the
 * commit a <retract/> to every resource that would get a notification of
 * the node now (same access rules, notify_retract). Once its writes are
 * committed it arms the timer for what is left; the first sweep runs at
 * host start, so items that expired while the server was down go then. */

typedef struct {
    char *user, *node, *id;
} due_t;

typedef struct {
    due_t *v;
    size_t n;
} due_list_t;

static int
collect_due(uint64_t ts_us, const char *id, const void *val, size_t len,
            void *arg)
{
    due_list_t *l = arg;
    const char *p = val, *end = p + len, *node, *item;
    due_t *d;

    (void)ts_us;
    (void)id;
    node = memchr(p, '\0', len);
    item = node ? memchr(node + 1, '\0', (size_t)(end - node - 1)) : NULL;
    if (item == NULL)
        return 0;     /* damaged: left for nobody; cannot be named */
    l->v = pv_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    d = &l->v[l->n++];
    d->user = pv_xstrdup(p);
    d->node = pv_xstrdup(node + 1);
    d->id = pv_xstrndup(item + 1, (size_t)(end - item - 1));
    return 0;
}

/* Is h still the host serving its domain? A reload replaces hosts and
 * cancels the old ones' timers: a retired host arms none. */
static int
host_current(const pep_host_t *ph)
{
    return pv_host_find(pv_host_server(ph->h), pv_host_name(ph->h)) ==
           ph->h;
}

static void expiry_sweep(void *arg);

static void
expiry_arm(pep_host_t *ph, uint64_t ms)
{
    if (ms > PEP_SWEEP_MAX_MS)
        ms = PEP_SWEEP_MAX_MS;
    ph->timer = pv_module_timer(ph->m, ph->h, ms, 0, expiry_sweep, ph);
    ph->timer_due_us = now_us() + ms * 1000u;
}

/* Makes sure a sweep runs by due_us (µs, wall clock). */
static void
expiry_schedule(pep_host_t *ph, uint64_t due_us)
{
    uint64_t now = now_us();

    if (ph->is_dead || ph->expiry_st == NULL)
        return;
    if (!host_current(ph)) {
        ph->timer = NULL;   /* freed by the core with the host's timers */
        return;
    }
    if (ph->timer != NULL && ph->timer_due_us <= due_us)
        return;
    if (ph->timer != NULL)
        pv_module_timer_cancel(ph->timer);
    /* +1 ms: a timer firing early would find the row not yet due */
    expiry_arm(ph, due_us > now ? (due_us - now) / 1000u + 1 : 0);
}

static int
first_due(uint64_t ts_us, const char *id, const void *val, size_t len,
          void *arg)
{
    (void)id;
    (void)val;
    (void)len;
    *(uint64_t *)arg = ts_us;
    return 1;
}

static void
sweep_committed(void *arg, int rc)
{
    pep_host_t *ph = arg;
    pv_archive_query_t q;
    uint64_t due = 0, now = now_us();

    (void)rc;
    if (!ph->is_dead && host_current(ph)) {
        memset(&q, 0, sizeof(q));
        q.limit = 1;
        pv_store_archive_query(ph->expiry_st, pv_host_name(ph->h), "", &q,
                               first_due, &due, NULL);
        /* rows still due: the next batch at once after a full sweep;
         * otherwise they could not be removed (or their item is not
         * committed yet): retry later, not in a busy loop */
        if (due != 0)
            expiry_schedule(ph, due > now ? due :
                                ph->is_sweep_full ? now : now + 1000000u);
    }
    ph_unref(ph);
}

/* The retraction of an expired item, as do_retract builds it. */
static pv_stanza_t *
retract_event(pep_host_t *ph, const char *user, const char *node,
              const char *id)
{
    pv_node_t *evn, *items;
    pv_stanza_t *st = event_new(ph, user, &evn);

    items = pv_node_new(st->arena, "items", NULL, evn);
    pv_node_set_attr(st->arena, items, "node", node);
    pv_node_set_attr(st->arena, pv_node_new(st->arena, "retract", NULL,
                                            items), "id", id);
    pv_stanza_touch(st);
    return st;
}

static void
expire_one(pep_host_t *ph, const due_t *d, uint64_t now)
{
    pep_op_t *op = op_new(ph, NULL, d->user);
    pep_node_t *n = NULL;
    uint64_t ts, due;
    long idx = -1;

    if (pv_user_exists(ph->h, d->user))
        n = node_find(owner_get(ph, d->user), d->node);
    if (n != NULL)
        idx = strv_find(&n->ids, d->id);
    if (n == NULL || idx < 0 || n->cfg.item_expire <= 0) {
        op_index_del(op, d->node, d->id);     /* a leftover row */
    } else if ((ts = item_ts(ph, d->user, n, d->id)) == 0) {
        /* listed but not readable: a publish not committed yet; the
         * next sweep sees it */
    } else if ((due = item_due(n, ts)) > now) {
        /* the row lags the item (republished, reconfigured): move it */
        op_index_del(op, d->node, d->id);
        op_index_add(op, d->node, d->id, due);
    } else {
        pv_log(PV_LOG_DEBUG, "mod_pep", "item %s of %s on %s@%s expired",
               d->id, d->node, d->user, pv_host_name(ph->h));
        op->node = pv_xstrdup(d->node);
        op_delete_item(op, d->node, d->id);
        op_index_del(op, d->node, d->id);
        strv_remove_at(&n->ids, (size_t)idx);
        op_save_node(op, n);
        if (n->cfg.notify_retract)
            op->event = retract_event(ph, d->user, d->node, d->id);
    }
    op_submit(op);
}

static void
expiry_sweep(void *arg)
{
    pep_host_t *ph = arg;
    pv_archive_query_t q;
    due_list_t l = { NULL, 0 };
    uint64_t now = now_us();
    size_t i;

    ph->timer = NULL;         /* one-shot: the core freed it */
    ph->timer_due_us = 0;
    if (ph->is_dead || ph->expiry_st == NULL || !host_current(ph))
        return;
    memset(&q, 0, sizeof(q));
    q.end_us = now;
    q.limit = PEP_SWEEP_BATCH;
    /* collect first: the store's read callbacks must not write */
    if (pv_store_archive_query(ph->expiry_st, pv_host_name(ph->h), "", &q,
                               collect_due, &l, NULL) != PV_OK)
        pv_log(PV_LOG_ERROR, "mod_pep", "%s: reading pep.expiry failed",
               pv_host_name(ph->h));
    ph->is_sweep_full = l.n >= PEP_SWEEP_BATCH;
    for (i = 0; i < l.n; i++) {
        expire_one(ph, &l.v[i], now);
        free(l.v[i].user);
        free(l.v[i].node);
        free(l.v[i].id);
    }
    free(l.v);
    pv_host_after_commit(ph->h, sweep_committed, ph_ref(ph));
}

/* Drops the oldest items beyond max_items (XEP-0060 §7.1: the oldest go
 * first when a node is full); has_index: their expiry rows too. */
static void
trim_items(pep_op_t *op, pep_node_t *n, const pep_conf_t *conf,
           int has_index)
{
    size_t max = eff_max_items(conf, n->cfg.max_items);

    if (!n->cfg.persist)
        max = 0;
    while (n->ids.n > max) {
        op_delete_item(op, n->name, n->ids.v[0]);
        if (has_index)
            op_index_del(op, n->name, n->ids.v[0]);
        strv_remove_at(&n->ids, 0);
    }
}

static int
is_hex_colour(const char *s)
{
    size_t i;

    if (s == NULL)
        return 1;
    if (s[0] != '#' || strlen(s) != 7)
        return 0;
    for (i = 1; i < 7; i++)
        if (strchr("0123456789abcdefABCDEF", s[i]) == NULL)
            return 0;
    return 1;
}

static int
has_prefix(const char *s, const char *prefix)
{
    return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0 &&
           s[strlen(prefix)] != '\0';
}

/* XEP-0501 §3 and doc/status.md: a status is an Atom entry with exactly
 * one media enclosure (a photo or video by its HTTP URL), or a text post:
 * no enclosure, a non-empty text <content/> and the Palaver <text-style/>
 * marker. Checked here so that every client can rely on the shape. */
static int
status_valid(const pv_node_t *entry, pv_arena_t *a)
{
    static const char *const fonts[] = { "sans-serif", "serif",
                                         "monospace", "cursive",
                                         "fantasy", NULL };
    const pv_node_t *l, *enc = NULL, *content, *style;
    const char *type, *font;
    size_t n_enc = 0;
    int i;

    if (strcmp(entry->name, "entry") != 0 ||
        strcmp(entry->xmlns, NS_ATOM) != 0)
        return 0;
    for (l = pv_node_child(entry, "link", NS_ATOM); l != NULL;
         l = pv_node_next_child(entry, l, "link", NS_ATOM)) {
        if (strcmp(attr_or(l, "rel", "alternate"), "enclosure") == 0) {
            enc = l;
            n_enc++;
        }
    }
    style = pv_node_child(entry, "text-style", NS_STATUS);
    if (n_enc == 1) {
        type = pv_node_attr(enc, "type");
        return style == NULL &&
               (has_prefix(pv_node_attr(enc, "href"), "https://") ||
                has_prefix(pv_node_attr(enc, "href"), "http://")) &&
               (has_prefix(type, "image/") || has_prefix(type, "video/"));
    }
    if (n_enc > 1 || style == NULL)
        return 0;
    content = pv_node_child(entry, "content", NS_ATOM);
    if (content == NULL ||
        pv_node_next_child(entry, content, "content", NS_ATOM) != NULL ||
        strcmp(attr_or(content, "type", "text"), "text") != 0 ||
        pv_node_first_element(content) != NULL ||
        strspn(pv_node_text(content, a), " \t\r\n") ==
            strlen(pv_node_text(content, a)))
        return 0;
    if (!is_hex_colour(pv_node_attr(style, "background")) ||
        !is_hex_colour(pv_node_attr(style, "color")))
        return 0;
    font = pv_node_attr(style, "font");
    if (font == NULL)
        return 1;
    for (i = 0; fonts[i] != NULL; i++)
        if (strcmp(font, fonts[i]) == 0)
            return 1;
    return 0;
}

static const pv_node_t *
form_of(const pv_node_t *parent)
{
    const pv_node_t *x = parent ? pv_node_child(parent, "x", NS_DATA) : NULL;
    const char *type = x ? pv_node_attr(x, "type") : NULL;

    if (x == NULL || (type != NULL && strcmp(type, "submit") != 0))
        return NULL;
    return x;
}

static size_t
element_count(const pv_node_t *n)
{
    const pv_node_t *c;
    size_t k = 0;

    for (c = n->children; c != NULL; c = c->next)
        if (c->name != NULL)
            k++;
    return k;
}

static int
valid_name(const char *s, size_t max)
{
    return s != NULL && *s != '\0' && strlen(s) <= max;
}

static int
may_add_node(const pep_conf_t *conf, const pep_owner_t *o)
{
    return conf->max_nodes == PV_COUNT_OFF ||
           o->n_nodes < (size_t)conf->max_nodes;
}

/* XEP-0060 §7.1, XEP-0163 §3, XEP-0223. */
static pv_rc_t
do_publish(pv_event_t *ev, pep_host_t *ph, pep_owner_t *o,
           const pv_node_t *pubsub, const pv_node_t *pub)
{
    const pep_conf_t *conf = pv_module_conf(ev->module, ev->host);
    const char *name = pv_node_attr(pub, "node");
    const pv_node_t *item = pv_node_child(pub, "item", NS_PUBSUB);
    const pv_node_t *opts = form_of(pv_node_child(pubsub, "publish-options",
                                                  NS_PUBSUB));
    pep_node_t *n;
    pep_cfg_t want;
    unsigned mask = 0;
    pv_arena_t *a = ev->stanza->arena;
    pv_node_t *stored, *row, *evn, *items, *r;
    pv_buf_t b = { 0 };
    pep_op_t *op;
    const char *id;
    char *key;
    long idx;
    uint64_t ts = now_us();
    int has_index;

    if (!valid_name(name, PEP_NODE_MAX))
        return pep_error(ev, PV_ERR_MODIFY, "bad-request", "nodeid-required",
                         NULL);
    if (item == NULL)
        return pep_error(ev, PV_ERR_MODIFY, "bad-request", "item-required",
                         NULL);
    if (pv_node_next_child(pub, item, "item", NS_PUBSUB) != NULL ||
        element_count(item) != 1 ||
        (is_stories(name) &&
         !status_valid(pv_node_first_element(item), a)))
        return pep_error(ev, PV_ERR_MODIFY, "bad-request", "invalid-payload",
                         NULL);
    id = pv_node_attr(item, "id");
    if (id != NULL && !valid_name(id, PEP_ID_MAX))
        return pep_error(ev, PV_ERR_MODIFY, "not-acceptable", NULL, NULL);
    if (id == NULL)
        id = pv_arena_printf(a, "%016llx%lx", (unsigned long long)now_us(),
                             ++ph->seq);
    /* the stored form is the item as subscribers get it */
    row = pv_node_new(a, "row", NS_ROW, NULL);
    pv_node_set_attr(a, row, "ts",
                     pv_arena_printf(a, "%llu", (unsigned long long)ts));
    stored = pv_node_new(a, "item", NS_PUBSUB, row);
    pv_node_set_attr(a, stored, "id", id);
    pv_node_append(stored, pv_node_copy(a, pv_node_first_element(item)));
    pv_buf_append(&b, (const uint8_t[]){ PEP_FORMAT }, 1);
    pv_node_pack(row, &b);
    if (conf->max_item_size != PV_SIZE_OFF && b.len > conf->max_item_size) {
        pv_buf_free(&b);
        return pep_error(ev, PV_ERR_MODIFY, "not-acceptable",
                         "payload-too-big", NULL);
    }
    n = node_find(o, name);
    if (n != NULL)
        cfg_copy(&want, &n->cfg);
    else
        cfg_default_for(&want, name, conf);
    if (opts != NULL &&
        (cfg_apply_form(&want, conf, opts, &mask, a) != PV_OK ||
         !cfg_valid_for(&want, name, conf) ||
         (n != NULL && !cfg_meets(&n->cfg, &want, mask, conf)))) {
        /* XEP-0223 §4, XEP-0060 §7.1.5 */
        cfg_free(&want);
        pv_buf_free(&b);
        return pep_error(ev, PV_ERR_CANCEL, "conflict",
                         "precondition-not-met", NULL);
    }
    if (n == NULL) {
        if (!may_add_node(conf, o)) {
            cfg_free(&want);
            pv_buf_free(&b);
            return pep_error(ev, PV_ERR_WAIT, "resource-constraint", NULL,
                             NULL);
        }
        /* XEP-0163 §3 auto-create; new nodes take the options as config */
        n = node_add(o, name, &want);
    }
    cfg_free(&want);

    op = op_new(ph, ev, o->user);
    op->node = pv_xstrdup(name);
    has_index = n->cfg.item_expire > 0;
    if (n->cfg.persist) {
        idx = strv_find(&n->ids, id);
        if (idx >= 0)
            strv_remove_at(&n->ids, (size_t)idx);
        strv_add(&n->ids, id);
        key = item_key(name, id);
        op_put(op, ph->items_st, key, b.data, b.len);
        free(key);
        if (has_index) {
            /* a republished id lives for a new period */
            if (idx >= 0)
                op_index_del(op, name, id);
            op_index_add(op, name, id, item_due(n, ts));
        }
    }
    trim_items(op, n, conf, has_index);
    op_save_node(op, n);
    pv_buf_free(&b);

    op->reply = pv_iq_result(ev->stanza);
    r = pv_node_new(op->reply->arena, "pubsub", NS_PUBSUB, op->reply->root);
    r = pv_node_new(op->reply->arena, "publish", NULL, r);
    pv_node_set_attr(op->reply->arena, r, "node", name);
    pv_node_set_attr(op->reply->arena, pv_node_new(op->reply->arena, "item",
                                                   NULL, r), "id", id);
    op->event = event_new(ph, o->user, &evn);
    items = pv_node_new(op->event->arena, "items", NULL, evn);
    pv_node_set_attr(op->event->arena, items, "node", name);
    event_item(op->event->arena, items, stored, n->cfg.deliver_payloads);
    pv_stanza_touch(op->event);
    op_submit(op);
    return PV_HANDLED;
}

/* XEP-0060 §7.2. */
static pv_rc_t
do_retract(pv_event_t *ev, pep_host_t *ph, pep_owner_t *o,
           const pv_node_t *ret)
{
    const char *name = pv_node_attr(ret, "node");
    const pv_node_t *item = pv_node_child(ret, "item", NS_PUBSUB);
    const char *id = item ? pv_node_attr(item, "id") : NULL;
    const char *nt = pv_node_attr(ret, "notify");
    pep_node_t *n;
    pep_op_t *op;
    pv_node_t *evn, *items;
    long idx;
    int is_notify;

    if (!valid_name(name, PEP_NODE_MAX))
        return pep_error(ev, PV_ERR_MODIFY, "bad-request", "nodeid-required",
                         NULL);
    if (id == NULL)
        return pep_error(ev, PV_ERR_MODIFY, "bad-request", "item-required",
                         NULL);
    n = node_find(o, name);
    if (n == NULL || (idx = strv_find(&n->ids, id)) < 0)
        return pep_error(ev, PV_ERR_CANCEL, "item-not-found", NULL, NULL);
    if (nt != NULL)
        is_notify = strcmp(nt, "true") == 0 || strcmp(nt, "1") == 0;
    else
        is_notify = n->cfg.notify_retract;
    op = op_new(ph, ev, o->user);
    op->node = pv_xstrdup(name);
    op_delete_item(op, name, id);
    if (n->cfg.item_expire > 0)
        op_index_del(op, name, id);
    strv_remove_at(&n->ids, (size_t)idx);
    op_save_node(op, n);
    op->reply = pv_iq_result(ev->stanza);
    if (is_notify) {
        op->event = event_new(ph, o->user, &evn);
        items = pv_node_new(op->event->arena, "items", NULL, evn);
        pv_node_set_attr(op->event->arena, items, "node", name);
        pv_node_set_attr(op->event->arena,
                         pv_node_new(op->event->arena, "retract", NULL,
                                     items), "id", id);
        pv_stanza_touch(op->event);
    }
    op_submit(op);
    return PV_HANDLED;
}

/* XEP-0060 §6.5. */
static pv_rc_t
do_items(pv_event_t *ev, pep_host_t *ph, pep_owner_t *o,
         const pv_node_t *items_req)
{
    const char *name = pv_node_attr(items_req, "node");
    const char *max_s = pv_node_attr(items_req, "max_items");
    const pv_node_t *it;
    pep_node_t *n;
    pv_stanza_t *st;
    pv_node_t *ps, *items, *item;
    long long max = -1;
    size_t i, first = 0;
    int why;

    if (!valid_name(name, PEP_NODE_MAX))
        return pep_error(ev, PV_ERR_MODIFY, "bad-request", "nodeid-required",
                         NULL);
    n = node_find(o, name);
    if (n == NULL)
        return pep_error(ev, PV_ERR_CANCEL, "item-not-found", NULL, NULL);
    why = access_for(ph->h, o->user, n, ev->to->bare,
                     ev->from ? ev->from->bare : NULL);
    if (why != ACCESS_OK)
        return access_error(ev, why);
    if (max_s != NULL && parse_count(max_s, 0, &max) != PV_OK)
        return pep_error(ev, PV_ERR_MODIFY, "bad-request", NULL, NULL);
    st = pv_iq_result(ev->stanza);
    ps = pv_node_new(st->arena, "pubsub", NS_PUBSUB, st->root);
    items = pv_node_new(st->arena, "items", NULL, ps);
    pv_node_set_attr(st->arena, items, "node", name);
    it = pv_node_child(items_req, "item", NS_PUBSUB);
    if (it != NULL) {
        /* §6.5.8: particular items, in the order asked */
        for (; it != NULL;
             it = pv_node_next_child(items_req, it, "item", NS_PUBSUB)) {
            const char *id = pv_node_attr(it, "id");
            if (id == NULL || strv_find(&n->ids, id) < 0)
                continue;
            item = item_read(ph, o->user, n, id, st->arena);
            if (item != NULL)
                pv_node_append(items, item);
        }
    } else {
        /* §6.5.7: the newest max_items, oldest first; expired items
         * the sweep has not removed yet do not count */
        pv_node_t **got = pv_xcalloc(n->ids.n + 1, sizeof(*got));
        size_t n_got = 0;

        for (i = n->ids.n; i-- > first;) {
            if (max >= 0 && n_got >= (size_t)max)
                break;
            item = item_read(ph, o->user, n, n->ids.v[i], st->arena);
            if (item != NULL)
                got[n_got++] = item;
        }
        while (n_got > 0)
            pv_node_append(items, got[--n_got]);
        free(got);
    }
    reply(ev, st);
    return PV_HANDLED;
}

/* XEP-0060 §8.1. */
static pv_rc_t
do_create(pv_event_t *ev, pep_host_t *ph, pep_owner_t *o,
          const pv_node_t *pubsub, const pv_node_t *create)
{
    const pep_conf_t *conf = pv_module_conf(ev->module, ev->host);
    const char *name = pv_node_attr(create, "node");
    const pv_node_t *x = form_of(pv_node_child(pubsub, "configure",
                                               NS_PUBSUB));
    pep_cfg_t cfg;
    unsigned mask;
    pep_node_t *n;
    pep_op_t *op;

    if (!valid_name(name, PEP_NODE_MAX))
        /* §8.1.2 instant nodes make no sense for PEP */
        return pep_error(ev, PV_ERR_MODIFY, "not-acceptable",
                         "nodeid-required", NULL);
    if (node_find(o, name) != NULL)
        return pep_error(ev, PV_ERR_CANCEL, "conflict", NULL, NULL);
    if (!may_add_node(conf, o))
        return pep_error(ev, PV_ERR_WAIT, "resource-constraint", NULL, NULL);
    cfg_default_for(&cfg, name, conf);
    if ((x != NULL &&
         cfg_apply_form(&cfg, conf, x, &mask, ev->stanza->arena) !=
             PV_OK) ||
        !cfg_valid_for(&cfg, name, conf)) {
        cfg_free(&cfg);
        return pep_error(ev, PV_ERR_MODIFY, "not-acceptable", NULL, NULL);
    }
    n = node_add(o, name, &cfg);
    cfg_free(&cfg);
    op = op_new(ph, ev, o->user);
    op_save_node(op, n);
    op->reply = pv_iq_result(ev->stanza);
    op_submit(op);
    return PV_HANDLED;
}

/* --- owner use cases (XEP-0060 §8) ------------------------------------ */

static pv_rc_t
do_configure(pv_event_t *ev, pep_host_t *ph, pep_owner_t *o,
             const pv_node_t *c, int is_set)
{
    const pep_conf_t *conf = pv_module_conf(ev->module, ev->host);
    const char *name = pv_node_attr(c, "node");
    pep_node_t *n;
    pv_stanza_t *st;
    pv_node_t *r;
    const pv_node_t *x;
    pep_cfg_t cfg;
    unsigned mask;
    pep_op_t *op;
    long long old_expire;
    size_t i;

    if (!valid_name(name, PEP_NODE_MAX))
        return pep_error(ev, PV_ERR_MODIFY, "bad-request", "nodeid-required",
                         NULL);
    n = node_find(o, name);
    if (n == NULL)
        return pep_error(ev, PV_ERR_CANCEL, "item-not-found", NULL, NULL);
    if (!is_set) {
        st = pv_iq_result(ev->stanza);
        r = pv_node_new(st->arena, "pubsub", NS_OWNER, st->root);
        r = pv_node_new(st->arena, "configure", NULL, r);
        pv_node_set_attr(st->arena, r, "node", name);
        cfg_form(st->arena, r, &n->cfg);
        reply(ev, st);
        return PV_HANDLED;
    }
    x = pv_node_child(c, "x", NS_DATA);
    if (x == NULL)
        return pep_error(ev, PV_ERR_MODIFY, "bad-request", NULL, NULL);
    if (pv_node_attr(x, "type") && strcmp(pv_node_attr(x, "type"),
                                          "cancel") == 0) {
        pv_event_result(ev, NULL);
        return PV_HANDLED;
    }
    if (form_of(c) == NULL)
        return pep_error(ev, PV_ERR_MODIFY, "bad-request", NULL, NULL);
    cfg_copy(&cfg, &n->cfg);
    if (cfg_apply_form(&cfg, conf, x, &mask, ev->stanza->arena) != PV_OK ||
        !cfg_valid_for(&cfg, name, conf)) {
        cfg_free(&cfg);
        return pep_error(ev, PV_ERR_MODIFY, "not-acceptable", NULL, NULL);
    }
    old_expire = n->cfg.item_expire;
    cfg_free(&n->cfg);
    n->cfg = cfg;
    op = op_new(ph, ev, o->user);
    trim_items(op, n, conf, old_expire > 0);
    if (old_expire != n->cfg.item_expire) {
        /* a new item_expire applies to the items already there too:
         * their expiry is publish time + the node's current value */
        for (i = 0; i < n->ids.n; i++) {
            uint64_t ts = item_ts(ph, o->user, n, n->ids.v[i]);

            if (old_expire > 0)
                op_index_del(op, name, n->ids.v[i]);
            if (n->cfg.item_expire > 0)
                op_index_add(op, name, n->ids.v[i],
                             item_due(n, ts != 0 ? ts : now_us()));
        }
    }
    op_save_node(op, n);
    op->reply = pv_iq_result(ev->stanza);
    op_submit(op);
    return PV_HANDLED;
}

static pv_rc_t
do_default(pv_event_t *ev)
{
    pv_stanza_t *st = pv_iq_result(ev->stanza);
    pv_node_t *r = pv_node_new(st->arena, "pubsub", NS_OWNER, st->root);
    pep_cfg_t cfg;

    r = pv_node_new(st->arena, "default", NULL, r);
    cfg_default(&cfg);
    cfg_form(st->arena, r, &cfg);
    cfg_free(&cfg);
    reply(ev, st);
    return PV_HANDLED;
}

/* Delete (§8.4) or purge (§8.5). */
static pv_rc_t
do_delete(pv_event_t *ev, pep_host_t *ph, pep_owner_t *o,
          const pv_node_t *d, int is_purge)
{
    const char *name = pv_node_attr(d, "node");
    pep_node_t *n;
    pep_op_t *op;
    pv_node_t *evn, *e;
    size_t i;

    if (!valid_name(name, PEP_NODE_MAX))
        return pep_error(ev, PV_ERR_MODIFY, "bad-request", "nodeid-required",
                         NULL);
    n = node_find(o, name);
    if (n == NULL)
        return pep_error(ev, PV_ERR_CANCEL, "item-not-found", NULL, NULL);
    op = op_new(ph, ev, o->user);
    op->node = pv_xstrdup(name);
    for (i = 0; i < n->ids.n; i++) {
        op_delete_item(op, name, n->ids.v[i]);
        if (n->cfg.item_expire > 0)
            op_index_del(op, name, n->ids.v[i]);
    }
    strv_free(&n->ids);
    if (is_purge) {
        op_save_node(op, n);
    } else {
        op_delete(op, ph->nodes_st, name);
        node_unlink(o, n);
        op->gone = n;
    }
    op->reply = pv_iq_result(ev->stanza);
    if (is_purge || n->cfg.notify_delete) {
        op->event = event_new(ph, o->user, &evn);
        e = pv_node_new(op->event->arena, is_purge ? "purge" : "delete",
                        NULL, evn);
        pv_node_set_attr(op->event->arena, e, "node", name);
        pv_stanza_touch(op->event);
    }
    op_submit(op);
    return PV_HANDLED;
}

/* §8.9: the owner and the whitelist members. */
static pv_rc_t
do_affiliations(pv_event_t *ev, pep_host_t *ph, pep_owner_t *o,
                const pv_node_t *af, int is_set)
{
    const char *name = pv_node_attr(af, "node");
    const pv_node_t *a;
    pep_node_t *n;
    pv_stanza_t *st;
    pv_node_t *r, *e;
    pep_op_t *op;
    size_t i;

    if (!valid_name(name, PEP_NODE_MAX))
        return pep_error(ev, PV_ERR_MODIFY, "bad-request", "nodeid-required",
                         NULL);
    n = node_find(o, name);
    if (n == NULL)
        return pep_error(ev, PV_ERR_CANCEL, "item-not-found", NULL, NULL);
    if (!is_set) {
        st = pv_iq_result(ev->stanza);
        r = pv_node_new(st->arena, "pubsub", NS_OWNER, st->root);
        r = pv_node_new(st->arena, "affiliations", NULL, r);
        pv_node_set_attr(st->arena, r, "node", name);
        e = pv_node_new(st->arena, "affiliation", NULL, r);
        pv_node_set_attr(st->arena, e, "jid", ev->to->bare);
        pv_node_set_attr(st->arena, e, "affiliation", "owner");
        for (i = 0; i < n->members.n; i++) {
            e = pv_node_new(st->arena, "affiliation", NULL, r);
            pv_node_set_attr(st->arena, e, "jid", n->members.v[i]);
            pv_node_set_attr(st->arena, e, "affiliation", "member");
        }
        reply(ev, st);
        return PV_HANDLED;
    }
    /* validate everything before changing anything (§8.9.2.4) */
    for (a = pv_node_child(af, "affiliation", NS_OWNER); a != NULL;
         a = pv_node_next_child(af, a, "affiliation", NS_OWNER)) {
        const char *jid = pv_node_attr(a, "jid");
        const char *aff = pv_node_attr(a, "affiliation");
        pv_jid_t j;

        if (jid == NULL || aff == NULL ||
            (strcmp(aff, "member") && strcmp(aff, "none")) ||
            pv_jid_parse(jid, strlen(jid), &j, ev->stanza->arena) != PV_OK ||
            strcmp(j.bare, ev->to->bare) == 0)
            return pep_error(ev, PV_ERR_MODIFY, "not-acceptable", NULL, NULL);
    }
    for (a = pv_node_child(af, "affiliation", NS_OWNER); a != NULL;
         a = pv_node_next_child(af, a, "affiliation", NS_OWNER)) {
        const char *jid = pv_node_attr(a, "jid");
        const char *aff = pv_node_attr(a, "affiliation");
        pv_jid_t j;
        long idx;

        pv_jid_parse(jid, strlen(jid), &j, ev->stanza->arena);
        idx = strv_find(&n->members, j.bare);
        if (strcmp(aff, "member") == 0 && idx < 0)
            strv_add(&n->members, j.bare);
        else if (strcmp(aff, "none") == 0 && idx >= 0)
            strv_remove_at(&n->members, (size_t)idx);
    }
    op = op_new(ph, ev, o->user);
    op_save_node(op, n);
    op->reply = pv_iq_result(ev->stanza);
    op_submit(op);
    return PV_HANDLED;
}

static pv_rc_t
pep_iq(pv_event_t *ev)
{
    pep_host_t *ph = pv_module_host_data(ev->module, ev->host);
    const pv_node_t *ps = ev->payload, *act;
    int is_set = ev->kind == PV_IQ_SET;
    int is_owner_ns = strcmp(ps->xmlns, NS_OWNER) == 0;
    int is_owner;
    pep_owner_t *o;

    if (ph == NULL || ph->nodes_st == NULL || ev->to->node == NULL ||
        !pv_user_exists(ev->host, ev->to->node))
        return PV_PASS;
    is_owner = ev->from != NULL && strcmp(ev->from->bare, ev->to->bare) == 0;
    act = pv_node_first_element(ps);
    if (act == NULL)
        return pep_error(ev, PV_ERR_MODIFY, "bad-request", NULL, NULL);
    /* only the owner changes anything or sees owner data (XEP-0163 §3) */
    if ((is_set || is_owner_ns) && !is_owner &&
        strcmp(act->name, "subscribe") && strcmp(act->name, "unsubscribe"))
        return pep_error(ev, PV_ERR_AUTH, "forbidden", NULL, NULL);
    o = owner_get(ph, ev->to->node);
    if (!is_owner_ns) {
        if (is_set && strcmp(act->name, "publish") == 0)
            return do_publish(ev, ph, o, ps, act);
        if (is_set && strcmp(act->name, "retract") == 0)
            return do_retract(ev, ph, o, act);
        if (is_set && strcmp(act->name, "create") == 0)
            return do_create(ev, ph, o, ps, act);
        if (!is_set && strcmp(act->name, "items") == 0)
            return do_items(ev, ph, o, act);
        /* PEP subscriptions are presence-based (XEP-0163 §2) */
        return pep_error(ev, PV_ERR_CANCEL, "feature-not-implemented",
                         "unsupported",
                         strcmp(act->name, "subscribe") == 0 ||
                         strcmp(act->name, "unsubscribe") == 0
                             ? "subscribe" : act->name);
    }
    if (strcmp(act->name, "configure") == 0)
        return do_configure(ev, ph, o, act, is_set);
    if (!is_set && strcmp(act->name, "default") == 0)
        return do_default(ev);
    if (is_set && strcmp(act->name, "delete") == 0)
        return do_delete(ev, ph, o, act, 0);
    if (is_set && strcmp(act->name, "purge") == 0)
        return do_delete(ev, ph, o, act, 1);
    if (strcmp(act->name, "affiliations") == 0)
        return do_affiliations(ev, ph, o, act, is_set);
    return pep_error(ev, PV_ERR_CANCEL, "feature-not-implemented",
                     "unsupported", act->name);
}

/* --- service discovery (XEP-0030, XEP-0060 §5) ------------------------ */

static const char *const pep_features[] = {
    NS_PUBSUB,
    NS_PUBSUB "#access-open",
    NS_PUBSUB "#access-presence",
    NS_PUBSUB "#access-roster",
    NS_PUBSUB "#access-whitelist",
    NS_PUBSUB "#auto-create",
    NS_PUBSUB "#config-node",
    NS_PUBSUB "#config-node-max",
    NS_PUBSUB "#create-and-configure",
    NS_PUBSUB "#create-nodes",
    NS_PUBSUB "#delete-items",
    NS_PUBSUB "#delete-nodes",
    NS_PUBSUB "#filtered-notifications",
    NS_PUBSUB "#item-ids",
    NS_PUBSUB "#last-published",
    NS_PUBSUB "#manage-affiliations",
    NS_PUBSUB "#member-affiliation",
    NS_PUBSUB "#modify-affiliations",
    NS_PUBSUB "#persistent-items",
    NS_PUBSUB "#presence-notifications",
    NS_PUBSUB "#publish",
    NS_PUBSUB "#publish-options",
    NS_PUBSUB "#purge-nodes",
    NS_PUBSUB "#retract-items",
    NS_PUBSUB "#retrieve-affiliations",
    NS_PUBSUB "#retrieve-default",
    NS_PUBSUB "#retrieve-items",
    NS_STATUS,    /* doc/status.md: item_expire enforced, text statuses */
    NULL
};

static pv_rc_t
pep_account_info(pv_event_t *ev)
{
    pv_node_t *q = ev->data, *n;
    pv_arena_t *a = ev->stanza->arena;
    const char *const *f;

    n = pv_node_new(a, "identity", NULL, q);
    pv_node_set_attr(a, n, "category", "pubsub");
    pv_node_set_attr(a, n, "type", "pep");
    for (f = pep_features; *f != NULL; f++)
        pv_node_set_attr(a, pv_node_new(a, "feature", NULL, q), "var", *f);
    return PV_PASS;
}

/* disco#info on a node (XEP-0060 §5.3); without a node mod_disco
 * answers for the account. */
static pv_rc_t
pep_disco_info(pv_event_t *ev)
{
    pep_host_t *ph = pv_module_host_data(ev->module, ev->host);
    const char *name = pv_node_attr(ev->payload, "node");
    pep_node_t *n;
    pv_stanza_t *st;
    pv_node_t *q, *id;

    if (ph == NULL || name == NULL || ev->to->node == NULL ||
        !pv_user_exists(ev->host, ev->to->node))
        return PV_PASS;
    n = node_find(owner_get(ph, ev->to->node), name);
    if (n == NULL || access_for(ev->host, ev->to->node, n, ev->to->bare,
                                ev->from ? ev->from->bare : NULL) !=
                         ACCESS_OK)
        return pep_error(ev, PV_ERR_CANCEL, "item-not-found", NULL, NULL);
    st = pv_iq_result(ev->stanza);
    q = pv_node_new(st->arena, "query", NS_INFO, st->root);
    pv_node_set_attr(st->arena, q, "node", name);
    id = pv_node_new(st->arena, "identity", NULL, q);
    pv_node_set_attr(st->arena, id, "category", "pubsub");
    pv_node_set_attr(st->arena, id, "type", "leaf");
    pv_node_set_attr(st->arena, pv_node_new(st->arena, "feature", NULL, q),
                     "var", NS_PUBSUB);
    reply(ev, st);
    return PV_HANDLED;
}

/* disco#items: the nodes the requester may see, or a node's item ids
 * (XEP-0060 §5.2, §5.5). */
static pv_rc_t
pep_disco_items(pv_event_t *ev)
{
    pep_host_t *ph = pv_module_host_data(ev->module, ev->host);
    const char *name = pv_node_attr(ev->payload, "node");
    const char *req = ev->from ? ev->from->bare : NULL;
    pep_owner_t *o;
    pep_node_t *n;
    pv_stanza_t *st;
    pv_node_t *q, *it;
    size_t i;

    if (ph == NULL || ev->to->node == NULL ||
        !pv_user_exists(ev->host, ev->to->node))
        return PV_PASS;
    o = owner_get(ph, ev->to->node);
    st = pv_iq_result(ev->stanza);
    q = pv_node_new(st->arena, "query", NS_ITEMS, st->root);
    if (name == NULL) {
        for (n = o->nodes; n != NULL; n = n->next) {
            if (access_for(ev->host, o->user, n, ev->to->bare, req) !=
                ACCESS_OK)
                continue;
            it = pv_node_new(st->arena, "item", NULL, q);
            pv_node_set_attr(st->arena, it, "jid", ev->to->bare);
            pv_node_set_attr(st->arena, it, "node", n->name);
        }
    } else {
        int why;

        n = node_find(o, name);
        if (n == NULL) {
            pv_stanza_unref(st);
            return pep_error(ev, PV_ERR_CANCEL, "item-not-found", NULL,
                             NULL);
        }
        why = access_for(ev->host, o->user, n, ev->to->bare, req);
        if (why != ACCESS_OK) {
            pv_stanza_unref(st);
            return access_error(ev, why);
        }
        pv_node_set_attr(st->arena, q, "node", name);
        for (i = 0; i < n->ids.n; i++) {
            if (!item_live(ph, o->user, n, n->ids.v[i]))
                continue;
            it = pv_node_new(st->arena, "item", NULL, q);
            pv_node_set_attr(st->arena, it, "jid", ev->to->bare);
            pv_node_set_attr(st->arena, it, "name", n->ids.v[i]);
        }
    }
    reply(ev, st);
    return PV_HANDLED;
}

/* --- lifecycle ----------------------------------------------------------- */

typedef struct {
    pep_host_t *ph;
    const char *owner;
} sub_ctx_t;

static void
send_last_on_sub(void *arg, const char *full, pv_session_t *s)
{
    sub_ctx_t *sc = arg;
    pep_session_t *ps = s ? pv_session_data(s, sc->ph->m) : NULL;
    pep_remote_t *r = s ? NULL : remote_find(sc->ph, full);
    pv_jid_t j;
    pep_host_t *caps_ph = s ? pv_module_host_data(sc->ph->m,
                                                  pv_session_host(s))
                            : sc->ph;

    if (pv_jid_parse(full, strlen(full), &j, NULL) != PV_OK)
        return;
    send_owner_last(sc->ph, sc->owner, j.bare, full, s,
                    ps ? ps->caps : r ? r->caps : NULL, caps_ph, 1);
    pv_jid_clear(&j);
}

typedef struct {
    const char **v;
    pv_session_t **s;
    size_t n;
} targets_t;

static void
collect_target(void *arg, const char *full, pv_session_t *s)
{
    targets_t *t = arg;

    t->v = pv_xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
    t->s = pv_xrealloc(t->s, (t->n + 1) * sizeof(*t->s));
    t->v[t->n] = pv_xstrdup(full);
    t->s[t->n++] = s;
}

/* XEP-0060 §6.1.7: a contact that was just allowed to see the owner's
 * presence gets the last items at once. */
static pv_rc_t
pep_roster_changed(pv_event_t *ev)
{
    pep_host_t *ph = pv_module_host_data(ev->module, ev->host);
    const pv_roster_change_t *rc = ev->data;
    sub_ctx_t sc;
    pv_jid_t j;
    pv_host_t *ch;
    pep_remote_t *r;
    targets_t t = { NULL, NULL, 0 };
    size_t i;

    if (ph == NULL || rc == NULL || rc->is_removed || ev->user == NULL ||
        !(rc->new_state & PV_SUB_FROM) || (rc->old_state & PV_SUB_FROM))
        return PV_PASS;
    if (pv_jid_parse(rc->contact, strlen(rc->contact), &j, NULL) != PV_OK)
        return PV_PASS;
    ch = pv_host_find(pv_host_server(ph->h), j.domain);
    if (ch != NULL && j.node != NULL) {
        sess_list_t l = { ph->m, NULL, NULL, 0 };
        /* every available session; send_owner_last filters by caps */
        pv_host_each_session(ch, j.node, collect_available, &l);
        for (i = 0; i < l.n; i++)
            collect_target(&t, pv_session_jid(l.v[i])->full, l.v[i]);
        free(l.v);
    } else if (ch == NULL) {
        for (r = ph->remotes; r != NULL; r = r->next)
            if (strcmp(r->bare, j.bare) == 0)
                collect_target(&t, r->full, NULL);
    }
    pv_jid_clear(&j);
    sc.ph = ph;
    sc.owner = ev->user;
    for (i = 0; i < t.n; i++) {
        send_last_on_sub(&sc, t.v[i], t.s[i]);
        free((char *)t.v[i]);
    }
    free(t.v);
    free(t.s);
    return PV_PASS;
}

/* The expiry rows are host-level (user ""), so the core's removal of the
 * account's rows does not reach them: drop them while the nodes are
 * still readable. A re-created account of the same name then starts
 * clean. */
static pv_rc_t
pep_user_deleting(pv_event_t *ev)
{
    pep_host_t *ph = pv_module_host_data(ev->module, ev->host);
    pep_node_t *n;
    pep_op_t *op;
    size_t i;

    if (ph == NULL || ph->nodes_st == NULL || ph->expiry_st == NULL ||
        ev->user == NULL || ev->data != NULL)
        return PV_PASS;
    op = op_new(ph, NULL, ev->user);
    for (n = owner_get(ph, ev->user)->nodes; n != NULL; n = n->next)
        if (n->cfg.item_expire > 0)
            for (i = 0; i < n->ids.n; i++)
                op_index_del(op, n->name, n->ids.v[i]);
    op_submit(op);
    return PV_PASS;
}

static pv_rc_t
pep_user_deleted(pv_event_t *ev)
{
    pep_host_t *ph = pv_module_host_data(ev->module, ev->host);

    /* the core removed the rows; forget what we cached */
    if (ph != NULL && ev->user != NULL)
        owner_forget(ph, ev->user);
    return PV_PASS;
}

static void
pep_session_fini(pv_module_t *m, pv_session_t *s, void *data)
{
    pep_session_t *ps = data;

    (void)m;
    (void)s;
    free(ps->caps);
    ps->caps = NULL;
}

static int
pep_host_init(pv_module_t *m, pv_host_t *h)
{
    pep_host_t *ph = pv_xcalloc(1, sizeof(*ph));

    ph->refs = 1;
    ph->m = m;
    ph->h = h;
    ph->nodes_st = pv_store_open(h, m, "nodes", PV_STORE_MAP);
    ph->items_st = pv_store_open(h, m, "items", PV_STORE_MAP);
    ph->expiry_st = pv_store_open(h, m, "expiry", PV_STORE_ARCHIVE);
    if (ph->nodes_st == NULL || ph->items_st == NULL) {
        pv_log(PV_LOG_WARN, "mod_pep", "%s: no storage: PEP disabled",
               pv_host_name(h));
        ph->nodes_st = NULL;
        ph->expiry_st = NULL;
    }
    pv_module_set_host_data(m, h, ph);
    /* the first sweep removes what expired while the server was down */
    if (ph->expiry_st != NULL)
        expiry_arm(ph, 0);
    return PV_OK;
}

static void
pep_host_fini(pv_module_t *m, pv_host_t *h)
{
    pep_host_t *ph = pv_module_host_data(m, h);

    if (ph == NULL)
        return;
    ph->is_dead = 1;
    pv_module_set_host_data(m, h, NULL);
    ph_unref(ph);
}

static const pv_hook_t pep_hooks[] = {
    { PV_IQ_GET, PV_TO_BARE, NS_PUBSUB, "pubsub", pep_iq, 0, 0 },
    { PV_IQ_SET, PV_TO_BARE, NS_PUBSUB, "pubsub", pep_iq, 0, 0 },
    { PV_IQ_GET, PV_TO_BARE, NS_OWNER, "pubsub", pep_iq, 0, 0 },
    { PV_IQ_SET, PV_TO_BARE, NS_OWNER, "pubsub", pep_iq, 0, 0 },
    /* before mod_disco's account handler (priority 100) */
    { PV_IQ_GET, PV_TO_BARE, NS_INFO, "query", pep_disco_info, 50, 0 },
    { PV_IQ_GET, PV_TO_BARE, NS_ITEMS, "query", pep_disco_items, 50, 0 },
    { PV_IQ_RESULT, PV_TO_HOST, NULL, NULL, pep_caps_result, 0, 0 },
    { PV_IQ_ERROR, PV_TO_HOST, NULL, NULL, pep_caps_result, 0, 0 },
    /* observers: before mod_presence, and they always pass */
    { PV_PRESENCE, PV_TO_ANY, NULL, NULL, pep_presence_out, -10,
      PV_HOOK_PRE },
    { PV_PRESENCE, PV_TO_BARE, NULL, NULL, pep_presence_in, -10, 0 },
    { PV_MESSAGE, PV_TO_BARE, NS_EVENT, "event", pep_bounce, -100, 0 },
    { PV_EV_ACCOUNT_DISCO_INFO, PV_TO_ANY, NULL, NULL, pep_account_info, 0,
      0 },
    { PV_EV_ROSTER_CHANGED, PV_TO_ANY, NULL, NULL, pep_roster_changed, 0,
      0 },
    { PV_EV_USER_DELETING, PV_TO_ANY, NULL, NULL, pep_user_deleting, 0,
      0 },
    { PV_EV_USER_DELETED, PV_TO_ANY, NULL, NULL, pep_user_deleted, 0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t pep_directives[] = {
    { "pep_max_item_size", PV_CTX_ANY, pv_conf_size,
      offsetof(pep_conf_t, max_item_size), "64K", 0, 0, NULL },
    { "pep_max_items", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(pep_conf_t, max_items), "256", 1, 0, NULL },
    { "pep_max_nodes", PV_CTX_ANY, pv_conf_count_or_off,
      offsetof(pep_conf_t, max_nodes), "256", 0, 0, NULL },
    { "pep_status_expire", PV_CTX_ANY, pv_conf_duration,
      offsetof(pep_conf_t, status_expire), "1d", 1000, 0, NULL },
    { "pep_item_expire_max", PV_CTX_ANY, pv_conf_duration,
      offsetof(pep_conf_t, expire_max), "7d", 1000, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(pep) = {
    .abi = PV_MODULE_ABI,
    .name = "pep",
    .hooks = pep_hooks,
    .directives = pep_directives,
    .conf_size = sizeof(pep_conf_t),
    .session_data_size = sizeof(pep_session_t),
    .host_init = pep_host_init,
    .host_fini = pep_host_fini,
    .session_fini = pep_session_fini,
};
