/* modules/mod_disco.c: XEP-0030 service discovery for the server: the
 * identities and features every enabled module declared (the host's
 * registry), XEP-0157 contact addresses as a XEP-0128 form, the server's
 * XEP-0115 caps node, and items (components served under this host); and
 * for an account's bare JID, the account identity with the features
 * modules add on PV_EV_ACCOUNT_DISCO_INFO. */
#include <stdio.h>
#include <string.h>

#include <palaver/module.h>
#include <palaver/roster.h>

#define NS_INFO "http://jabber.org/protocol/disco#info"
#define NS_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_DATA "jabber:x:data"
#define CAPS_NODE "https://palaver.im"

typedef struct {
    pv_stanza_t *st;
    pv_node_t *query;
} disco_build_t;

static void
add_identity(void *arg, const pv_identity_t *id)
{
    disco_build_t *b = arg;
    pv_node_t *n = pv_node_new(b->st->arena, "identity", NULL, b->query);

    pv_node_set_attr(b->st->arena, n, "category", id->category);
    pv_node_set_attr(b->st->arena, n, "type", id->type);
    if (id->name != NULL)
        pv_node_set_attr(b->st->arena, n, "name", id->name);
}

static void
add_feature(void *arg, const char *feature)
{
    disco_build_t *b = arg;
    pv_node_t *n = pv_node_new(b->st->arena, "feature", NULL, b->query);

    pv_node_set_attr(b->st->arena, n, "var", feature);
}

static void
add_field(pv_stanza_t *st, pv_node_t *form, const char *var,
          const char *type, const char *const *values)
{
    pv_node_t *f = pv_node_new(st->arena, "field", NULL, form);

    pv_node_set_attr(st->arena, f, "var", var);
    if (type != NULL)
        pv_node_set_attr(st->arena, f, "type", type);
    for (; values && *values; values++) {
        pv_node_t *v = pv_node_new(st->arena, "value", NULL, f);
        pv_node_add_text(st->arena, v, *values, strlen(*values));
    }
}

/* XEP-0157 §3: contact addresses in a serverinfo form. */
static void
add_contact_form(pv_host_t *h, pv_stanza_t *st, pv_node_t *query)
{
    static const char *const kinds[] = { "abuse", "admin", "feedback",
                                         "sales", "security", "support" };
    static const char *const form_type[] = {
        "http://jabber.org/network/serverinfo", NULL };
    pv_node_t *x = NULL;
    size_t i;

    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        const char *const *addrs = pv_host_contact(h, kinds[i]);
        char var[32];

        if (addrs[0] == NULL)
            continue;
        if (x == NULL) {
            x = pv_node_new(st->arena, "x", NS_DATA, query);
            pv_node_set_attr(st->arena, x, "type", "result");
            add_field(st, x, "FORM_TYPE", "hidden", form_type);
        }
        snprintf(var, sizeof(var), "%s-addresses", kinds[i]);
        add_field(st, x, var, NULL, addrs);
    }
}

static pv_rc_t
disco_info(pv_event_t *ev)
{
    const char *node = pv_node_attr(ev->payload, "node");
    pv_stanza_t *st;
    disco_build_t b;
    pv_event_t ext;

    /* the only node we describe is our own caps node */
    if (node != NULL) {
        size_t cl = strlen(CAPS_NODE);
        if (strncmp(node, CAPS_NODE "#", cl + 1) != 0 ||
            strcmp(node + cl + 1, pv_host_caps_ver(ev->host)) != 0) {
            pv_event_error(ev, PV_ERR_CANCEL,
                          "item-not-found", NULL);
            return PV_HANDLED;
        }
    }
    st = pv_iq_result(ev->stanza);
    b.st = st;
    b.query = pv_node_new(st->arena, "query", NS_INFO, st->root);
    if (node != NULL)
        pv_node_set_attr(st->arena, b.query, "node", node);
    pv_host_each_identity(ev->host, add_identity, &b);
    pv_host_each_feature(ev->host, add_feature, &b);
    if (node == NULL) {
        add_contact_form(ev->host, st, b.query);
        memset(&ext, 0, sizeof(ext));
        ext.kind = PV_EV_DISCO_INFO;
        ext.host = ev->host;
        ext.stanza = st;
        ext.data = b.query;
        pv_event_fire(&ext);
    }
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

/* Who may see an account's features: the account itself and contacts
 * its presence goes to (RFC 6121 subscription 'from'), as presence would
 * tell them anyway. */
static int
may_see_account(pv_event_t *ev)
{
    if (ev->from != NULL && ev->from->node != NULL &&
        strcmp(ev->from->bare, ev->to->bare) == 0)
        return 1;
    if (ev->from == NULL)
        return 0;
    return (pv_roster_state(ev->host, ev->to->node, ev->from->bare) &
            PV_SUB_FROM) != 0;
}

static pv_rc_t
account_info(pv_event_t *ev)
{
    static const pv_identity_t account = { "account", "registered", NULL };
    pv_stanza_t *st;
    disco_build_t b;
    pv_event_t ext;

    if (pv_node_attr(ev->payload, "node") != NULL ||
        !pv_user_exists(ev->host, ev->to->node))
        return PV_PASS;
    if (!may_see_account(ev)) {
        pv_event_error(ev, PV_ERR_CANCEL,
                      "service-unavailable", NULL);
        return PV_HANDLED;
    }
    st = pv_iq_result(ev->stanza);
    b.st = st;
    b.query = pv_node_new(st->arena, "query", NS_INFO, st->root);
    add_identity(&b, &account);
    add_feature(&b, NS_INFO);
    memset(&ext, 0, sizeof(ext));
    ext.kind = PV_EV_ACCOUNT_DISCO_INFO;
    ext.host = ev->host;
    ext.stanza = st;
    ext.user = ev->to->node;
    ext.data = b.query;
    pv_event_fire(&ext);
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

static void
add_component_item(void *arg, const char *domain)
{
    disco_build_t *b = arg;
    pv_node_t *n = pv_node_new(b->st->arena, "item", NULL, b->query);

    pv_node_set_attr(b->st->arena, n, "jid", domain);
}

static pv_rc_t
disco_items(pv_event_t *ev)
{
    pv_stanza_t *st = pv_iq_result(ev->stanza);
    pv_node_t *q = pv_node_new(st->arena, "query", NS_ITEMS, st->root);
    const char *node = pv_node_attr(ev->payload, "node");

    if (node != NULL)
        pv_node_set_attr(st->arena, q, "node", node);
    else
        pv_host_each_component(ev->host, add_component_item,
                               &(disco_build_t){ st, q });
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

static const pv_hook_t disco_hooks[] = {
    { PV_IQ_GET, PV_TO_HOST, NS_INFO, "query", disco_info, 0, 0 },
    { PV_IQ_GET, PV_TO_HOST, NS_ITEMS, "query", disco_items, 0, 0 },
    /* late, so that a PEP service can answer its own nodes first */
    { PV_IQ_GET, PV_TO_BARE, NS_INFO, "query", account_info, 100, 0 },
    PV_HOOKS_END
};

PV_MODULE(disco) = {
    .abi = PV_MODULE_ABI,
    .name = "disco",
    .features = (const char *const[]){ NS_INFO, NS_ITEMS, NULL },
    .hooks = disco_hooks,
};
