/* modules/mod_smacks.c: placeholder until the module lands. */
#include <palaver/module.h>

PV_MODULE(smacks) = {
    .abi = PV_MODULE_ABI,
    .name = "smacks",
};
