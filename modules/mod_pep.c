/* modules/mod_pep.c: placeholder until the module lands. */
#include <palaver/module.h>

PV_MODULE(pep) = {
    .abi = PV_MODULE_ABI,
    .name = "pep",
};
