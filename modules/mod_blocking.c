/* modules/mod_blocking.c: being written (issue 3). */
#include <palaver/module.h>

PV_MODULE(blocking) = {
    .abi = PV_MODULE_ABI,
    .name = "blocking",
};
