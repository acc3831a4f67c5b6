/* src/s2s_policy.c: which remote domains may federate (s2s_allow_domains,
 * s2s_deny_domains) and how fast each may send (s2s_rate_limit: one
 * token bucket per remote domain, shared by all its incoming streams;
 * a domain over its rate has its streams paused, not cut, so TCP pushes
 * back on the peer and nothing it sent is lost). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "palaver.h"
#include "s2s.h"

/* "example.org" matches itself; "*.example.org" its subdomains. */
static int
list_matches(char *const *list, const char *domain)
{
    size_t dl = strlen(domain);

    for (; list != NULL && *list != NULL; list++) {
        const char *e = *list;

        if (e[0] == '*' && e[1] == '.') {
            size_t el = strlen(e + 1);     /* ".example.org" */
            if (dl > el && strcasecmp(domain + dl - el, e + 1) == 0)
                return 1;
        } else if (strcasecmp(e, domain) == 0) {
            return 1;
        }
    }
    return 0;
}

int
pv_s2s_domain_allowed(const pv_s2s_t *s2s, const char *domain)
{
    const pv_core_conf_t *g = pv_s2s_conf(s2s);

    if (domain == NULL)
        return 1;
    if (list_matches(g->s2s_deny_domains, domain))
        return 0;
    if (g->s2s_allow_domains != NULL && g->s2s_allow_domains[0] != NULL)
        return list_matches(g->s2s_allow_domains, domain);
    return 1;
}

struct pv_s2s_bucket_s {
    char *key;
    double tokens;
    uint64_t ms;
};

static pv_s2s_bucket_t *
bucket_get(pv_s2s_t *s2s, const char *key, uint64_t now, size_t rate)
{
    pv_s2s_bucket_t *b = pv_map_get(&s2s->buckets, key);

    if (b == NULL) {
        b = pv_xcalloc(1, sizeof(*b));
        b->key = pv_xstrdup(key);
        b->tokens = 2.0 * (double)rate;     /* a burst of two seconds */
        b->ms = now;
        pv_map_put(&s2s->buckets, b->key, b);
    }
    return b;
}

uint64_t
pv_s2s_rate_charge(pv_s2s_t *s2s, const char *key, size_t bytes)
{
    size_t rate = pv_s2s_conf(s2s)->s2s_rate_limit;
    uint64_t now = pv_loop_now_ms(s2s->srv->loop);
    pv_s2s_bucket_t *b;
    double cap;

    if (rate == PV_SIZE_OFF || rate == 0 || key == NULL)
        return 0;
    b = bucket_get(s2s, key, now, rate);
    cap = 2.0 * (double)rate;
    b->tokens += (double)(now - b->ms) / 1000.0 * (double)rate;
    if (b->tokens > cap)
        b->tokens = cap;
    b->ms = now;
    b->tokens -= (double)bytes;
    if (b->tokens >= 0)
        return 0;
    /* time until the bucket is back at zero, at least one tick */
    return (uint64_t)(-b->tokens * 1000.0 / (double)rate) + 1;
}

typedef struct {
    uint64_t now;
    pv_s2s_bucket_t **idle;
    size_t n, cap;
} sweep_t;

static void
bucket_sweep_one(void *arg, const char *key, void *value)
{
    sweep_t *sw = arg;
    pv_s2s_bucket_t *b = value;

    (void)key;
    /* untouched for a minute: the bucket is full, so it carries nothing
     * worth keeping */
    if (sw->now - b->ms < 60000)
        return;
    if (sw->n == sw->cap) {
        sw->cap = sw->cap ? 2 * sw->cap : 16;
        sw->idle = pv_xrealloc(sw->idle, sw->cap * sizeof(*sw->idle));
    }
    sw->idle[sw->n++] = b;
}

void
pv_s2s_rate_sweep(pv_s2s_t *s2s)
{
    sweep_t sw = { pv_loop_now_ms(s2s->srv->loop), NULL, 0, 0 };
    size_t i;

    pv_map_each(&s2s->buckets, bucket_sweep_one, &sw);
    for (i = 0; i < sw.n; i++) {
        pv_map_del(&s2s->buckets, sw.idle[i]->key);
        free(sw.idle[i]->key);
        free(sw.idle[i]);
    }
    free(sw.idle);
}

static void
bucket_free_one(void *arg, const char *key, void *value)
{
    pv_s2s_bucket_t *b = value;

    (void)arg;
    (void)key;
    free(b->key);
    free(b);
}

void
pv_s2s_rate_free(pv_s2s_t *s2s)
{
    pv_map_each(&s2s->buckets, bucket_free_one, NULL);
    pv_map_clear(&s2s->buckets);
}
