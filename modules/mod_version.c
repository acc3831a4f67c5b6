/* modules/mod_version.c: XEP-0092 software version of the server. The OS
 * is not disclosed unless version_show_os is on (it helps attackers more
 * than operators). */
#include <stddef.h>
#include <string.h>
#include <sys/utsname.h>

#include <palaver/module.h>

#define NS_VERSION "jabber:iq:version"

typedef struct {
    int show_os;
} version_conf_t;

static void
add_text_child(pv_stanza_t *st, pv_node_t *parent, const char *name,
               const char *text)
{
    pv_node_t *n = pv_node_new(st->arena, name, NULL, parent);

    pv_node_add_text(st->arena, n, text, strlen(text));
}

static pv_rc_t
version_reply(pv_event_t *ev)
{
    const version_conf_t *conf = pv_module_conf(ev->module, ev->host);
    pv_stanza_t *st = pv_iq_result(ev->stanza);
    pv_node_t *q = pv_node_new(st->arena, "query", NS_VERSION, st->root);

    add_text_child(st, q, "name", "Palaver");
    add_text_child(st, q, "version", PV_VERSION_STRING);
    if (conf != NULL && conf->show_os) {
        struct utsname u;
        if (uname(&u) == 0)
            add_text_child(st, q, "os", u.sysname);
    }
    pv_event_reply(ev, st);
    return PV_HANDLED;
}

static const pv_hook_t version_hooks[] = {
    { PV_IQ_GET, PV_TO_HOST, NS_VERSION, "query", version_reply, 0, 0 },
    PV_HOOKS_END
};

static const pv_directive_t version_directives[] = {
    { "version_show_os", PV_CTX_ANY, pv_conf_bool,
      offsetof(version_conf_t, show_os), "false", 0, 0, NULL },
    PV_DIRECTIVES_END
};

PV_MODULE(version) = {
    .abi = PV_MODULE_ABI,
    .name = "version",
    .features = (const char *const[]){ NS_VERSION, NULL },
    .hooks = version_hooks,
    .directives = version_directives,
    .conf_size = sizeof(version_conf_t),
};
