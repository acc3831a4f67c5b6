/* tests/fuzz/fuzz_pack.c: libFuzzer harness for pv_node_unpack(), the
 * reader of the packed trees modules keep in the store (a damaged row
 * must never crash the server). Whatever unpacks must pack back to bytes
 * that unpack to an equal tree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <palaver/xml.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pv_arena_t *a = pv_arena_new(0);
    pv_node_t *n = pv_node_unpack(a, data, size, NULL);

    if (n != NULL) {
        pv_buf_t b = {0};
        pv_node_t *again;

        pv_node_pack(n, &b);
        again = pv_node_unpack(a, b.data, b.len, NULL);
        if (again == NULL || !pv_node_equal(n, again))
            abort();
        pv_buf_free(&b);
    }
    pv_arena_free(a);
    return 0;
}
