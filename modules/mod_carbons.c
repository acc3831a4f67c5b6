/* modules/mod_carbons.c: placeholder until the module lands. */
#include <palaver/module.h>

PV_MODULE(carbons) = {
    .abi = PV_MODULE_ABI,
    .name = "carbons",
};
