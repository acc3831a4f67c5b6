/* tests/fuzz/fuzz_jid.c: libFuzzer harness for src/jid.c. Parses arbitrary
 * bytes as a JID and, when that succeeds, checks that the result is stable:
 * re-parsing the prepared full JID gives identical parts, and the parts
 * rebuild the same JID through pv_jid_make(). Also feeds the bytes to the
 * single-part preparations and the OpaqueString profile with the same
 * idempotence check. Any violation aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/jid.h>

static int
same(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static void
check_same(const pv_jid_t *a, const pv_jid_t *b)
{
    if (!same(a->full, b->full) || !same(a->bare, b->bare) ||
        !same(a->node, b->node) || !same(a->domain, b->domain) ||
        !same(a->resource, b->resource))
        abort();
}

static void
check_prep(char *(*fn)(const char *, size_t), const uint8_t *data, size_t size)
{
    char *once = fn((const char *)data, size);
    char *twice;

    if (once == NULL)
        return;
    if (once[0] == '\0' ||
        strlen(once) > (fn == pv_precis_opaque ? (size_t)-1 : PV_JID_PART_MAX))
        abort();
    twice = fn(once, strlen(once));
    if (twice == NULL || strcmp(once, twice) != 0)
        abort();
    free(once);
    free(twice);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pv_arena_t *arena;
    pv_jid_t j, again, made, copy;

    if (pv_jid_parse((const char *)data, size, &j, NULL) == PV_OK) {
        arena = pv_arena_new(0);
        if (pv_jid_parse(j.full, strlen(j.full), &again, arena) != PV_OK)
            abort();
        check_same(&j, &again);
        if (pv_jid_make(j.node, j.domain, j.resource, &made, arena) != PV_OK)
            abort();
        check_same(&j, &made);
        if (pv_jid_copy(&j, &copy, NULL) != PV_OK)
            abort();
        check_same(&j, &copy);
        if (!pv_jid_equal(&j, &copy) || !pv_jid_bare_equal(&j, &made))
            abort();
        if (strlen(j.domain) > PV_JID_PART_MAX ||
            (j.node && strlen(j.node) > PV_JID_PART_MAX) ||
            (j.resource && strlen(j.resource) > PV_JID_PART_MAX))
            abort();
        pv_jid_clear(&copy);
        pv_jid_clear(&j);
        pv_arena_free(arena);
    }
    check_prep(pv_jid_prep_node, data, size);
    check_prep(pv_jid_prep_domain, data, size);
    check_prep(pv_jid_prep_resource, data, size);
    check_prep(pv_precis_opaque, data, size);
    return 0;
}
