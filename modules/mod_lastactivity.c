/* modules/mod_lastactivity.c: being written (issue 3). */
#include <palaver/module.h>

PV_MODULE(lastactivity) = {
    .abi = PV_MODULE_ABI,
    .name = "lastactivity",
};
