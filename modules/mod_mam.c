/* modules/mod_mam.c: placeholder until the module lands. */
#include <palaver/module.h>

PV_MODULE(mam) = {
    .abi = PV_MODULE_ABI,
    .name = "mam",
};
