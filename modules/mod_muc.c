/* modules/mod_muc.c: placeholder registered in the build; its engineer
 * replaces it. */
#include <palaver/module.h>

PV_MODULE(muc) = {
    .abi = PV_MODULE_ABI,
    .name = "muc",
    .component = "conference",
};
