/* modules/mod_avatar.c: placeholder registered in the build; its engineer
 * replaces it. */
#include <palaver/module.h>

PV_MODULE(avatar) = {
    .abi = PV_MODULE_ABI,
    .name = "avatar",
};
