/* modules/mod_private.c: being written (issue 3). */
#include <palaver/module.h>

PV_MODULE(private) = {
    .abi = PV_MODULE_ABI,
    .name = "private",
};
