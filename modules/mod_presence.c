/* modules/mod_presence.c: being written (issue 3). */
#include <palaver/module.h>

PV_MODULE(presence) = {
    .abi = PV_MODULE_ABI,
    .name = "presence",
};
