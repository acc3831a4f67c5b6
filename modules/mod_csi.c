/* modules/mod_csi.c: placeholder until the module lands. */
#include <palaver/module.h>

PV_MODULE(csi) = {
    .abi = PV_MODULE_ABI,
    .name = "csi",
};
