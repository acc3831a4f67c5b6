/* modules/mod_extdisco.c: placeholder registered in the build; its engineer
 * replaces it. */
#include <palaver/module.h>

PV_MODULE(extdisco) = {
    .abi = PV_MODULE_ABI,
    .name = "extdisco",
};
