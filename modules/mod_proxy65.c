/* modules/mod_proxy65.c: placeholder registered in the build; its engineer
 * replaces it. */
#include <palaver/module.h>

PV_MODULE(proxy65) = {
    .abi = PV_MODULE_ABI,
    .name = "proxy65",
    .component = "proxy",
};
