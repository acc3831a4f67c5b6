/* modules/mod_avatar.c: avatars. XEP-0084 avatars are plain PEP nodes
 * (mod_pep's); this module converts between them and the vCard PHOTO
 * (XEP-0398, both directions, through IQs it routes on the user's behalf
 * to mod_pep and mod_vcard), keeps each account's current avatar hash in
 * the keyval store "avatar.hash", and adds that hash to the user's
 * available presence for XEP-0153 clients. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <palaver/module.h>

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_AV_DATA "urn:xmpp:avatar:data"
#define NS_AV_META "urn:xmpp:avatar:metadata"
#define NS_VCARD "vcard-temp"
#define NS_VCARD_UPDATE "vcard-temp:x:update"
#define NS_CONVERSION "urn:xmpp:pep-vcard-conversion:0"

#define AV_ID_PREFIX "pvav-"  /* ids of the IQs this module routes */
#define AV_TIMEOUT_MS 60000   /* requests nobody answered are dropped */
#define AV_SWEEP_MS 10000
#define AV_WATCH_MAX 1024     /* client requests waiting per host */
#define AV_HASH_LEN 40        /* hex SHA-1 */

typedef struct av_host_s av_host_t;
typedef struct av_fresh_s av_fresh_t;

/* Completion of a request this module routed: res is the result or error
 * (borrowed), NULL when nobody answered in time or the host goes away. */
typedef void av_done_fn(av_host_t *ah, const char *user,
                        const pv_stanza_t *res, void *ctx);

typedef struct av_req_s {
    char *id;
    char *user;
    uint64_t ms;
    av_done_fn *done;
    void *ctx;                /* freed by done */
    struct av_req_s *next;
} av_req_t;

/* A client's request whose success we act on once its result goes back
 * to the client: a metadata publish or a vCard set. Errors are answered
 * straight to the session, so unmatched entries just age out. */
typedef struct av_watch_s {
    char *full;
    char *id;
    pv_stanza_t *req;         /* our reference */
    uint64_t ms;
    struct av_watch_s *next;
} av_watch_t;

struct av_host_s {
    pv_module_t *m;
    pv_host_t *h;
    pv_store_t *hashes;
    av_req_t *reqs;
    av_watch_t *watches;
    size_t n_watches;
    av_fresh_t *fresh;        /* hashes waiting for their commit */
    unsigned long seq;
};

/* What a conversion carries from one step to the next. */
typedef struct {
    char *id;                 /* hex SHA-1 of the image; NULL: no avatar */
    char *type;
    char *b64;                /* the image, base64 without whitespace */
} av_job_t;

static void
job_free(av_job_t *j)
{
    if (j == NULL)
        return;
    free(j->id);
    free(j->type);
    free(j->b64);
    free(j);
}

/* --- images ----------------------------------------------------------- */

/* Decodes base64 text (whitespace ignored, as vCard BINVAL is often
 * folded). Returns the bytes (malloc'd, *len set) or NULL when the text
 * is not base64. *clean gets the text without whitespace (malloc'd). */
static unsigned char *
b64_decode(const char *text, size_t *len, char **clean)
{
    size_t n = strlen(text), k = 0, pad = 0;
    char *c = pv_xmalloc(n + 1);
    unsigned char *out;
    int got;

    for (; *text != '\0'; text++)
        if (!strchr(" \t\r\n", *text))
            c[k++] = *text;
    c[k] = '\0';
    if (k == 0 || k % 4 != 0 || k > INT32_MAX) {
        free(c);
        return NULL;
    }
    if (c[k - 1] == '=')
        pad++;
    if (c[k - 2] == '=')
        pad++;
    out = pv_xmalloc(k / 4 * 3 + 1);
    got = EVP_DecodeBlock(out, (const unsigned char *)c, (int)k);
    if (got < 0 || (size_t)got < pad) {
        free(out);
        free(c);
        return NULL;
    }
    *len = (size_t)got - pad;
    *clean = c;
    return out;
}

static void
sha1_hex(const unsigned char *data, size_t len, char out[AV_HASH_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;

    EVP_Digest(data, len, md, &n, EVP_sha1(), NULL);
    for (i = 0; i < n && i < AV_HASH_LEN / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[AV_HASH_LEN] = '\0';
}

static unsigned
be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* Type and pixel size from the image's own header (PNG, GIF, JPEG);
 * XEP-0084 §4.2.1 makes width and height optional, so unknown formats
 * just leave them 0. */
static const char *
image_sniff(const unsigned char *p, size_t n, unsigned *w, unsigned *h)
{
    size_t i;

    *w = *h = 0;
    if (n >= 24 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0 &&
        memcmp(p + 12, "IHDR", 4) == 0) {
        *w = be16(p + 18);    /* the high halves of real avatars are 0 */
        *h = be16(p + 22);
        if (be16(p + 16) || be16(p + 20))
            *w = *h = 0;
        return "image/png";
    }
    if (n >= 10 && (memcmp(p, "GIF87a", 6) == 0 ||
                    memcmp(p, "GIF89a", 6) == 0)) {
        *w = (unsigned)p[6] | (unsigned)p[7] << 8;
        *h = (unsigned)p[8] | (unsigned)p[9] << 8;
        return "image/gif";
    }
    if (n >= 4 && p[0] == 0xff && p[1] == 0xd8) {
        /* walk the segments to the first start-of-frame */
        for (i = 2; i + 9 < n && p[i] == 0xff;) {
            unsigned mk = p[i + 1];

            if (mk >= 0xc0 && mk <= 0xcf && mk != 0xc4 && mk != 0xc8 &&
                mk != 0xcc) {
                *h = be16(p + i + 5);
                *w = be16(p + i + 7);
                break;
            }
            i += 2 + be16(p + i + 2);
        }
        return "image/jpeg";
    }
    return NULL;
}

/* --- the hash of each account ----------------------------------------- */

/* A hash written but not committed yet: reads see committed data only,
 * and a presence right after a change must carry the new hash. */
struct av_fresh_s {
    av_host_t *ah;            /* NULL once the host went away */
    char *user;
    char hash[AV_HASH_LEN + 1];
    av_fresh_t *prev, *next;
};

static void
fresh_done(void *arg, int rc)
{
    av_fresh_t *f = arg;

    if (f->ah != NULL) {
        if (rc != PV_OK)
            pv_log(PV_LOG_ERROR, pv_host_name(f->ah->h), "mod_avatar: "
                   "cannot store the avatar hash of %s", f->user);
        if (f->prev != NULL)
            f->prev->next = f->next;
        else
            f->ah->fresh = f->next;
        if (f->next != NULL)
            f->next->prev = f->prev;
    }
    free(f->user);
    free(f);
}

/* 1 and the hash ("" for no avatar) in out, or 0 when not known yet. */
static int
hash_get(av_host_t *ah, const char *user, char out[AV_HASH_LEN + 1])
{
    const av_fresh_t *f;
    void *val = NULL;
    size_t len = 0;

    /* newest first */
    for (f = ah->fresh; f != NULL; f = f->next) {
        if (strcmp(f->user, user) == 0) {
            memcpy(out, f->hash, sizeof(f->hash));
            return 1;
        }
    }
    if (pv_store_get(ah->hashes, pv_host_name(ah->h), user, NULL, &val,
                     &len) != PV_OK)
        return 0;
    if (len > AV_HASH_LEN) {
        free(val);
        return 0;
    }
    memcpy(out, val, len);
    out[len] = '\0';
    free(val);
    return 1;
}

static void
hash_put(av_host_t *ah, const char *user, const char *hash)
{
    av_fresh_t *f = pv_xcalloc(1, sizeof(*f));

    f->user = pv_xstrdup(user);
    snprintf(f->hash, sizeof(f->hash), "%s", hash ? hash : "");
    if (pv_store_put(ah->hashes, pv_host_name(ah->h), user, NULL, f->hash,
                     strlen(f->hash), fresh_done, f) != PV_OK) {
        pv_log(PV_LOG_ERROR, pv_host_name(ah->h), "mod_avatar: cannot "
               "store the avatar hash of %s", user);
        free(f->user);
        free(f);
        return;
    }
    f->ah = ah;
    f->next = ah->fresh;
    if (ah->fresh != NULL)
        ah->fresh->prev = f;
    ah->fresh = f;
}

/* --- requests routed on the user's behalf ------------------------------ */

/* New IQ from the account to itself: mod_pep and mod_vcard take it as the
 * owner's own request (from and to are the same bare JID). Its origin is
 * the server, so no pre- hook (ours included) sees it: a conversion never
 * triggers another conversion. */
static pv_stanza_t *
req_build(av_host_t *ah, const char *user, const char *type,
          av_done_fn *done, void *ctx)
{
    pv_stanza_t *st = pv_stanza_build("iq");
    const char *bare = pv_arena_printf(st->arena, "%s@%s", user,
                                       pv_host_name(ah->h));
    av_req_t *r = pv_xcalloc(1, sizeof(*r));

    r->id = pv_xasprintf(AV_ID_PREFIX "%lu", ++ah->seq);
    r->user = pv_xstrdup(user);
    r->ms = pv_now_ms(pv_host_server(ah->h));
    r->done = done;
    r->ctx = ctx;
    r->next = ah->reqs;
    ah->reqs = r;
    pv_node_set_attr(st->arena, st->root, "type", type);
    pv_node_set_attr(st->arena, st->root, "id", r->id);
    pv_node_set_attr(st->arena, st->root, "from", bare);
    pv_node_set_attr(st->arena, st->root, "to", bare);
    return st;
}

/* Routes st; the answer may come back before this returns (handlers
 * answer synchronously), so nothing may be touched afterwards. */
static void
req_send(av_host_t *ah, pv_stanza_t *st)
{
    pv_stanza_touch(st);
    pv_host_route(ah->h, st);
    pv_stanza_unref(st);
}

static void
req_free(av_req_t *r)
{
    free(r->id);
    free(r->user);
    free(r);
}

static int
is_result(const pv_stanza_t *res)
{
    return res != NULL && res->type != NULL &&
           strcmp(res->type, "result") == 0;
}

static pv_rc_t
av_answer(pv_event_t *ev)
{
    av_host_t *ah = pv_module_host_data(ev->module, ev->host);
    const char *id = ev->stanza->id;
    av_req_t **pp, *r;

    if (ah == NULL || id == NULL || strncmp(id, AV_ID_PREFIX,
                                            strlen(AV_ID_PREFIX)) != 0)
        return PV_PASS;
    /* only the account answers what we asked on its behalf: a forged
     * answer from anyone else must not feed a conversion */
    if (ev->from == NULL || ev->to->node == NULL ||
        strcmp(ev->from->bare, ev->to->bare) != 0)
        return PV_HANDLED;
    for (pp = &ah->reqs; (r = *pp) != NULL; pp = &r->next) {
        if (strcmp(r->id, id) != 0 || strcmp(r->user, ev->to->node) != 0)
            continue;
        *pp = r->next;
        r->done(ah, r->user, ev->stanza, r->ctx);
        req_free(r);
        break;
    }
    /* ours, answered or stale: nobody else waits for it */
    return PV_HANDLED;
}

/* --- PEP to vCard (XEP-0398 §3.1) -------------------------------------- */

static void
vcard_set_done(av_host_t *ah, const char *user, const pv_stanza_t *res,
               void *ctx)
{
    (void)ctx;
    if (!is_result(res))
        pv_log(PV_LOG_WARN, pv_host_name(ah->h), "mod_avatar: updating the "
               "vCard PHOTO of %s failed", user);
}

/* The vCard as it is, with PHOTO replaced by the job's image (or removed
 * when the avatar was disabled); everything else is the user's. */
static void
vcard_got(av_host_t *ah, const char *user, const pv_stanza_t *res,
          void *ctx)
{
    av_job_t *j = ctx;
    const pv_node_t *old = res ? pv_node_child(res->root, "vCard", NS_VCARD)
                               : NULL;
    const pv_node_t *c;
    pv_stanza_t *st;
    pv_node_t *v, *photo = NULL;
    int placed = 0;

    if (!is_result(res)) {
        pv_log(PV_LOG_WARN, pv_host_name(ah->h), "mod_avatar: cannot read "
               "the vCard of %s", user);
        job_free(j);
        return;
    }
    st = req_build(ah, user, "set", vcard_set_done, NULL);
    v = pv_node_new(st->arena, "vCard", NS_VCARD, st->root);
    if (j->id != NULL) {
        photo = pv_node_new(st->arena, "PHOTO", NS_VCARD, NULL);
        pv_node_add_text(st->arena, pv_node_new(st->arena, "TYPE", NS_VCARD,
                                                photo),
                         j->type, strlen(j->type));
        pv_node_add_text(st->arena, pv_node_new(st->arena, "BINVAL",
                                                NS_VCARD, photo),
                         j->b64, strlen(j->b64));
    }
    for (c = old ? old->children : NULL; c != NULL; c = c->next) {
        if (c->name != NULL && strcmp(c->name, "PHOTO") == 0 &&
            strcmp(c->xmlns, NS_VCARD) == 0) {
            /* in the old PHOTO's place, once */
            if (photo != NULL && !placed)
                pv_node_append(v, photo);
            placed = 1;
            continue;
        }
        if (c->name != NULL)
            pv_node_append(v, pv_node_copy(st->arena, c));
    }
    if (photo != NULL && !placed)
        pv_node_append(v, photo);
    job_free(j);
    req_send(ah, st);
}

static void
vcard_fetch(av_host_t *ah, const char *user, av_job_t *j)
{
    pv_stanza_t *st = req_build(ah, user, "get", vcard_got, j);

    pv_node_new(st->arena, "vCard", NS_VCARD, st->root);
    req_send(ah, st);
}

/* The data item the metadata points at: checked against its id, as
 * XEP-0398 §3.1 recommends, before it goes into the vCard. */
static void
data_got(av_host_t *ah, const char *user, const pv_stanza_t *res, void *ctx)
{
    av_job_t *j = ctx;
    const pv_node_t *d = NULL;
    unsigned char *bin = NULL;
    size_t len = 0;
    char hash[AV_HASH_LEN + 1], *clean = NULL;

    if (is_result(res)) {
        const pv_node_t *ps = pv_node_child(res->root, "pubsub", NS_PUBSUB);
        const pv_node_t *items = ps ? pv_node_child(ps, "items", NS_PUBSUB)
                                    : NULL;
        const pv_node_t *it = items ? pv_node_child(items, "item",
                                                    NS_PUBSUB) : NULL;
        d = it ? pv_node_child(it, "data", NS_AV_DATA) : NULL;
    }
    if (d != NULL) {
        pv_arena_t *a = pv_arena_new(0);
        bin = b64_decode(pv_node_text(d, a), &len, &clean);
        pv_arena_free(a);
    }
    if (bin == NULL) {
        pv_log(PV_LOG_INFO, pv_host_name(ah->h), "mod_avatar: no usable "
               "avatar data %s for %s: vCard not updated", j->id, user);
        job_free(j);
        return;
    }
    sha1_hex(bin, len, hash);
    free(bin);
    if (strcmp(hash, j->id) != 0) {
        pv_log(PV_LOG_INFO, pv_host_name(ah->h), "mod_avatar: avatar data "
               "of %s does not match its id %s: vCard not updated", user,
               j->id);
        free(clean);
        job_free(j);
        return;
    }
    j->b64 = clean;
    vcard_fetch(ah, user, j);
}

/* A metadata item the user published (XEP-0084 §4.2): the info without
 * a url is the image in the data node; no info at all disables the
 * avatar. */
static void
pep_to_vcard(av_host_t *ah, const char *user, const pv_node_t *meta)
{
    const pv_node_t *info;
    const char *id = NULL, *type = NULL;
    av_job_t *j;
    pv_stanza_t *st;
    pv_node_t *ps, *items;

    for (info = pv_node_child(meta, "info", NS_AV_META); info != NULL;
         info = pv_node_next_child(meta, info, "info", NS_AV_META)) {
        if (pv_node_attr(info, "url") == NULL) {
            id = pv_node_attr(info, "id");
            type = pv_node_attr(info, "type");
            break;
        }
    }
    if (pv_node_child(meta, "info", NS_AV_META) == NULL) {
        hash_put(ah, user, "");
        vcard_fetch(ah, user, pv_xcalloc(1, sizeof(av_job_t)));
        return;
    }
    if (id == NULL || strlen(id) != AV_HASH_LEN)
        return;       /* only URLs, or not a SHA-1 id: nothing to copy */
    hash_put(ah, user, id);
    j = pv_xcalloc(1, sizeof(*j));
    j->id = pv_xstrdup(id);
    j->type = pv_xstrdup(type ? type : "image/png");
    st = req_build(ah, user, "get", data_got, j);
    ps = pv_node_new(st->arena, "pubsub", NS_PUBSUB, st->root);
    items = pv_node_new(st->arena, "items", NULL, ps);
    pv_node_set_attr(st->arena, items, "node", NS_AV_DATA);
    pv_node_set_attr(st->arena, pv_node_new(st->arena, "item", NULL, items),
                     "id", id);
    req_send(ah, st);
}

/* --- vCard to PEP (XEP-0398 §3.2) -------------------------------------- */

static void
publish_done(av_host_t *ah, const char *user, const pv_stanza_t *res,
             void *ctx)
{
    (void)ctx;
    if (!is_result(res))
        pv_log(PV_LOG_WARN, pv_host_name(ah->h), "mod_avatar: publishing "
               "the vCard avatar of %s to PEP failed", user);
}

static pv_node_t *
publish_node(pv_stanza_t *st, const char *node, const char *id)
{
    pv_node_t *ps = pv_node_new(st->arena, "pubsub", NS_PUBSUB, st->root);
    pv_node_t *pub = pv_node_new(st->arena, "publish", NULL, ps);
    pv_node_t *item;

    pv_node_set_attr(st->arena, pub, "node", node);
    item = pv_node_new(st->arena, "item", NULL, pub);
    if (id != NULL)
        pv_node_set_attr(st->arena, item, "id", id);
    return item;
}

typedef struct {
    char *id;
    char *type;
    size_t bytes;
    unsigned w, h;
} av_meta_t;

static void
metadata_publish(av_host_t *ah, const char *user, const av_meta_t *mt)
{
    pv_stanza_t *st = req_build(ah, user, "set", publish_done, NULL);
    pv_node_t *item = publish_node(st, NS_AV_META, mt ? mt->id : "current");
    pv_node_t *meta = pv_node_new(st->arena, "metadata", NS_AV_META, item);
    pv_node_t *info;

    if (mt != NULL) {
        /* XEP-0084 §4.2.1: bytes, id and type are required, the size is
         * given when known */
        info = pv_node_new(st->arena, "info", NULL, meta);
        pv_node_set_attr(st->arena, info, "bytes",
                         pv_arena_printf(st->arena, "%zu", mt->bytes));
        pv_node_set_attr(st->arena, info, "id", mt->id);
        pv_node_set_attr(st->arena, info, "type", mt->type);
        if (mt->w > 0 && mt->h > 0) {
            pv_node_set_attr(st->arena, info, "width",
                             pv_arena_printf(st->arena, "%u", mt->w));
            pv_node_set_attr(st->arena, info, "height",
                             pv_arena_printf(st->arena, "%u", mt->h));
        }
    }
    req_send(ah, st);
}

/* The metadata goes out only once the data is stored, so that a client
 * fetching the data on the notification finds it (XEP-0084 §4.1). */
static void
data_published(av_host_t *ah, const char *user, const pv_stanza_t *res,
               void *ctx)
{
    av_meta_t *mt = ctx;

    if (is_result(res))
        metadata_publish(ah, user, mt);
    else
        pv_log(PV_LOG_WARN, pv_host_name(ah->h), "mod_avatar: publishing "
               "the vCard avatar data of %s failed", user);
    free(mt->id);
    free(mt->type);
    free(mt);
}

static void
vcard_to_pep(av_host_t *ah, const char *user, const pv_node_t *vcard)
{
    const pv_node_t *photo = pv_node_child(vcard, "PHOTO", NS_VCARD);
    const pv_node_t *bv, *tn;
    pv_arena_t *a;
    unsigned char *bin;
    size_t len = 0;
    char hash[AV_HASH_LEN + 1], old[AV_HASH_LEN + 1], *clean = NULL;
    const char *sniffed;
    av_meta_t *mt;
    pv_stanza_t *st;
    pv_node_t *item;

    /* no PHOTO: the vCard says nothing about the avatar (a client that
     * only changed its FN); an empty PHOTO removes it */
    if (photo == NULL)
        return;
    bv = pv_node_child(photo, "BINVAL", NS_VCARD);
    if (bv == NULL) {
        if (pv_node_child(photo, "EXTVAL", NS_VCARD) != NULL)
            return;   /* a URL: XEP-0084 needs the image itself */
        if (hash_get(ah, user, old) && old[0] == '\0')
            return;
        hash_put(ah, user, "");
        metadata_publish(ah, user, NULL);
        return;
    }
    a = pv_arena_new(0);
    bin = b64_decode(pv_node_text(bv, a), &len, &clean);
    tn = pv_node_child(photo, "TYPE", NS_VCARD);
    if (bin == NULL) {
        pv_arena_free(a);
        return;
    }
    sha1_hex(bin, len, hash);
    if (hash_get(ah, user, old) && strcmp(old, hash) == 0) {
        /* the same picture again (legacy clients resend the whole vCard
         * for any change): nothing to publish */
        free(bin);
        free(clean);
        pv_arena_free(a);
        return;
    }
    hash_put(ah, user, hash);
    mt = pv_xcalloc(1, sizeof(*mt));
    mt->id = pv_xstrdup(hash);
    mt->bytes = len;
    sniffed = image_sniff(bin, len, &mt->w, &mt->h);
    if (tn != NULL && *pv_node_text(tn, a) != '\0')
        mt->type = pv_xstrdup(pv_node_text(tn, a));
    else
        mt->type = pv_xstrdup(sniffed ? sniffed : "image/png");
    free(bin);
    pv_arena_free(a);
    st = req_build(ah, user, "set", data_published, mt);
    item = publish_node(st, NS_AV_DATA, hash);
    pv_node_add_text(st->arena, pv_node_new(st->arena, "data", NS_AV_DATA,
                                            item),
                     clean, strlen(clean));
    free(clean);
    req_send(ah, st);
}

/* --- watching the user's own requests ------------------------------------ */

static void
watch_free(av_watch_t *w)
{
    free(w->full);
    free(w->id);
    pv_stanza_unref(w->req);
    free(w);
}

static void
watch_add(av_host_t *ah, pv_event_t *ev)
{
    av_watch_t *w, **pp;

    if (ev->stanza->id == NULL)
        return;
    if (ah->n_watches >= AV_WATCH_MAX) {
        /* drop the oldest (the list's tail) */
        for (pp = &ah->watches; (*pp)->next != NULL; pp = &(*pp)->next)
            ;
        watch_free(*pp);
        *pp = NULL;
        ah->n_watches--;
    }
    w = pv_xcalloc(1, sizeof(*w));
    w->full = pv_xstrdup(pv_session_jid(ev->origin)->full);
    w->id = pv_xstrdup(ev->stanza->id);
    w->req = pv_stanza_ref(ev->stanza);
    w->ms = pv_now_ms(ev->server);
    w->next = ah->watches;
    ah->watches = w;
    ah->n_watches++;
}

/* Is this the user's own request to the own account (or to no one)? */
static int
own_request(const pv_event_t *ev)
{
    return ev->origin != NULL && ev->to != NULL && ev->to->node != NULL &&
           ev->to->resource == NULL &&
           strcmp(ev->to->bare, pv_session_jid(ev->origin)->bare) == 0;
}

static pv_rc_t
av_pubsub_pre(pv_event_t *ev)
{
    av_host_t *ah = pv_module_host_data(ev->module, ev->host);
    const pv_node_t *pub = pv_node_child(ev->payload, "publish", NS_PUBSUB);
    const char *node = pub ? pv_node_attr(pub, "node") : NULL;

    if (ah != NULL && own_request(ev) && node != NULL &&
        strcmp(node, NS_AV_META) == 0)
        watch_add(ah, ev);
    return PV_PASS;
}

static pv_rc_t
av_vcard_pre(pv_event_t *ev)
{
    av_host_t *ah = pv_module_host_data(ev->module, ev->host);

    if (ah != NULL && own_request(ev))
        watch_add(ah, ev);
    return PV_PASS;
}

/* The request succeeded: convert what it stored. */
static void
watch_act(av_host_t *ah, const pv_stanza_t *req)
{
    const pv_node_t *p = pv_node_first_element(req->root);
    const char *user = req->from->node;

    if (p == NULL || user == NULL)
        return;
    if (strcmp(p->name, "vCard") == 0) {
        vcard_to_pep(ah, user, p);
    } else {
        const pv_node_t *pub = pv_node_child(p, "publish", NS_PUBSUB);
        const pv_node_t *it = pub ? pv_node_child(pub, "item", NS_PUBSUB)
                                  : NULL;
        const pv_node_t *meta = it ? pv_node_child(it, "metadata",
                                                   NS_AV_META) : NULL;
        if (meta != NULL)
            pep_to_vcard(ah, user, meta);
    }
}

/* Results going back to a client: the completion of a watched request.
 * Only the account itself answers these, so a result from anyone else
 * with a guessed id changes nothing. */
static pv_rc_t
av_client_answer(pv_event_t *ev)
{
    av_host_t *ah = pv_module_host_data(ev->module, ev->host);
    const char *id = ev->stanza->id;
    av_watch_t **pp, *w;

    if (ah == NULL || id == NULL || ah->watches == NULL)
        return PV_PASS;
    for (pp = &ah->watches; (w = *pp) != NULL; pp = &w->next) {
        if (strcmp(w->id, id) != 0 || strcmp(w->full, ev->to->full) != 0)
            continue;
        if (ev->from != NULL && strcmp(ev->from->bare, ev->to->bare) != 0)
            return PV_PASS;
        *pp = w->next;
        ah->n_watches--;
        if (ev->kind == PV_IQ_RESULT)
            watch_act(ah, w->req);
        watch_free(w);
        break;
    }
    return PV_PASS;
}

/* --- presence (XEP-0153 §4.1, XEP-0398 §4) ----------------------------- */

static void
lookup_meta_done(av_host_t *ah, const char *user, const pv_stanza_t *res,
                 void *ctx);

static int
lookup_pending(av_host_t *ah, const char *user)
{
    const av_req_t *r;

    for (r = ah->reqs; r != NULL; r = r->next)
        if (r->done == lookup_meta_done && strcmp(r->user, user) == 0)
            return 1;
    return 0;
}

/* No PEP avatar: a vCard PHOTO stored before this module was enabled
 * goes to PEP now, as if it had just been set. */
static void
lookup_vcard_done(av_host_t *ah, const char *user, const pv_stanza_t *res,
                  void *ctx)
{
    const pv_node_t *v = res ? pv_node_child(res->root, "vCard", NS_VCARD)
                             : NULL;
    const pv_node_t *photo = v ? pv_node_child(v, "PHOTO", NS_VCARD) : NULL;
    char hash[AV_HASH_LEN + 1];

    (void)ctx;
    if (!is_result(res))
        return;
    if (photo != NULL && pv_node_child(photo, "BINVAL", NS_VCARD) != NULL)
        vcard_to_pep(ah, user, v);
    /* nothing usable: known to have no avatar from now on */
    if (!hash_get(ah, user, hash))
        hash_put(ah, user, "");
}

/* No hash stored yet for the user (an account older than this module):
 * the PEP avatar wins, converted to the vCard as a new publish would
 * be; without one, the vCard's. Both answers come back at once, so the
 * presence that asked usually gets the hash already. */
static void
lookup_meta_done(av_host_t *ah, const char *user, const pv_stanza_t *res,
                 void *ctx)
{
    const pv_node_t *ps = res ? pv_node_child(res->root, "pubsub", NS_PUBSUB)
                              : NULL;
    const pv_node_t *items = ps ? pv_node_child(ps, "items", NS_PUBSUB)
                                : NULL;
    const pv_node_t *it, *meta = NULL;
    pv_stanza_t *st;

    (void)ctx;
    if (res == NULL)
        return;
    /* the newest item is the last one */
    for (it = items ? pv_node_child(items, "item", NS_PUBSUB) : NULL;
         it != NULL; it = pv_node_next_child(items, it, "item", NS_PUBSUB))
        meta = pv_node_child(it, "metadata", NS_AV_META);
    if (meta != NULL && pv_node_child(meta, "info", NS_AV_META) != NULL) {
        pep_to_vcard(ah, user, meta);
        return;
    }
    st = req_build(ah, user, "get", lookup_vcard_done, NULL);
    pv_node_new(st->arena, "vCard", NS_VCARD, st->root);
    req_send(ah, st);
}

static void
lookup_start(av_host_t *ah, const char *user)
{
    pv_stanza_t *st;
    pv_node_t *items;

    if (lookup_pending(ah, user))
        return;
    st = req_build(ah, user, "get", lookup_meta_done, NULL);
    items = pv_node_new(st->arena, "items", NULL,
                        pv_node_new(st->arena, "pubsub", NS_PUBSUB,
                                    st->root));
    pv_node_set_attr(st->arena, items, "node", NS_AV_META);
    pv_node_set_attr(st->arena, items, "max_items", "1");
    req_send(ah, st);
}

static pv_rc_t
av_presence(pv_event_t *ev)
{
    av_host_t *ah = pv_module_host_data(ev->module, ev->host);
    pv_stanza_t *st = ev->stanza;
    const char *user;
    pv_node_t *x, *photo;
    char hash[AV_HASH_LEN + 1];

    /* every available presence, broadcast or directed (MUC joins) */
    if (ah == NULL || ev->origin == NULL || st->type != NULL)
        return PV_PASS;
    user = pv_session_jid(ev->origin)->node;
    x = pv_node_child(st->root, "x", NS_VCARD_UPDATE);
    /* the client's own <photo/>, empty or not, is left alone; an <x/>
     * without one is filled in (XEP-0398 §4) */
    if (x != NULL && pv_node_child(x, "photo", NS_VCARD_UPDATE) != NULL)
        return PV_PASS;
    if (!hash_get(ah, user, hash)) {
        lookup_start(ah, user);
        /* mod_pep and mod_vcard answer at once: usually known now */
        if (!hash_get(ah, user, hash))
            return PV_PASS;
    }
    if (st->refs != 1)
        return PV_PASS;       /* shared: not ours to change */
    if (x == NULL)
        x = pv_node_new(st->arena, "x", NS_VCARD_UPDATE, st->root);
    photo = pv_node_new(st->arena, "photo", NS_VCARD_UPDATE, x);
    if (hash[0] != '\0')
        pv_node_add_text(st->arena, photo, hash, strlen(hash));
    pv_stanza_touch(st);
    return PV_PASS;
}

/* --- disco, lifecycle ---------------------------------------------------- */

static pv_rc_t
av_account_info(pv_event_t *ev)
{
    pv_node_t *q = ev->data;
    pv_arena_t *a = ev->stanza->arena;

    /* XEP-0398 §2: on the account */
    pv_node_set_attr(a, pv_node_new(a, "feature", NULL, q), "var",
                     NS_CONVERSION);
    return PV_PASS;
}

static void
av_sweep(void *arg)
{
    av_host_t *ah = arg;
    uint64_t now = pv_now_ms(pv_host_server(ah->h));
    av_watch_t **wp, *w;
    av_req_t **rp, *r;

    for (wp = &ah->watches; (w = *wp) != NULL;) {
        if (now - w->ms > AV_TIMEOUT_MS) {
            *wp = w->next;
            ah->n_watches--;
            watch_free(w);
        } else {
            wp = &w->next;
        }
    }
    for (rp = &ah->reqs; (r = *rp) != NULL;) {
        if (now - r->ms > AV_TIMEOUT_MS) {
            *rp = r->next;
            pv_log(PV_LOG_WARN, pv_host_name(ah->h), "mod_avatar: no "
                   "answer to %s for %s", r->id, r->user);
            r->done(ah, r->user, NULL, r->ctx);
            req_free(r);
        } else {
            rp = &r->next;
        }
    }
}

static int
av_host_init(pv_module_t *m, pv_host_t *h)
{
    av_host_t *ah;
    pv_store_t *store = pv_store_open(h, m, "hash", PV_STORE_KEYVAL);

    if (store == NULL) {
        pv_log(PV_LOG_ERROR, pv_host_name(h), "mod_avatar: cannot open "
               "store avatar.hash");
        return PV_ERROR;
    }
    ah = pv_xcalloc(1, sizeof(*ah));
    ah->m = m;
    ah->h = h;
    ah->hashes = store;
    pv_module_set_host_data(m, h, ah);
    /* the core cancels module timers with the host */
    pv_module_timer(m, h, AV_SWEEP_MS, AV_SWEEP_MS, av_sweep, ah);
    return PV_OK;
}

static void
av_host_fini(pv_module_t *m, pv_host_t *h)
{
    av_host_t *ah = pv_module_host_data(m, h);
    av_watch_t *w;
    av_fresh_t *f;
    av_req_t *r;

    if (ah == NULL)
        return;
    pv_module_set_host_data(m, h, NULL);
    while ((w = ah->watches) != NULL) {
        ah->watches = w->next;
        watch_free(w);
    }
    /* writes in flight free their entries later */
    for (f = ah->fresh; f != NULL; f = f->next)
        f->ah = NULL;
    /* answers arriving later find no host data and are dropped */
    while ((r = ah->reqs) != NULL) {
        ah->reqs = r->next;
        r->done(ah, r->user, NULL, r->ctx);
        req_free(r);
    }
    free(ah);
}

static const pv_hook_t av_hooks[] = {
    /* observers of the user's own requests: before mod_pep and mod_vcard
     * see them, and they always pass */
    { PV_IQ_SET, PV_TO_ANY, NS_PUBSUB, "pubsub", av_pubsub_pre, -50,
      PV_HOOK_PRE },
    { PV_IQ_SET, PV_TO_ANY, NS_VCARD, "vCard", av_vcard_pre, -50,
      PV_HOOK_PRE },
    { PV_IQ_RESULT, PV_TO_FULL, NULL, NULL, av_client_answer, -50, 0 },
    { PV_IQ_ERROR, PV_TO_FULL, NULL, NULL, av_client_answer, -50, 0 },
    /* answers to our own requests */
    { PV_IQ_RESULT, PV_TO_BARE, NULL, NULL, av_answer, -100, 0 },
    { PV_IQ_ERROR, PV_TO_BARE, NULL, NULL, av_answer, -100, 0 },
    /* before mod_presence (0) and mod_pep (-10) copy or route it */
    { PV_PRESENCE, PV_TO_ANY, NULL, NULL, av_presence, -50, PV_HOOK_PRE },
    { PV_EV_ACCOUNT_DISCO_INFO, PV_TO_ANY, NULL, NULL, av_account_info, 0,
      0 },
    PV_HOOKS_END
};

PV_MODULE(avatar) = {
    .abi = PV_MODULE_ABI,
    .name = "avatar",
    .depends = (const char *const[]){ "pep", "vcard", NULL },
    .hooks = av_hooks,
    .host_init = av_host_init,
    .host_fini = av_host_fini,
};
