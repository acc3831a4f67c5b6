/* modules/mod_offline.c: being written (issue 3). */
#include <palaver/module.h>

PV_MODULE(offline) = {
    .abi = PV_MODULE_ABI,
    .name = "offline",
};
