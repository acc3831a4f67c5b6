/* modules/mod_push.c: placeholder until the module lands. */
#include <palaver/module.h>

PV_MODULE(push) = {
    .abi = PV_MODULE_ABI,
    .name = "push",
};
