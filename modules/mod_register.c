/* modules/mod_register.c: being written (issue 3). */
#include <palaver/module.h>

PV_MODULE(register) = {
    .abi = PV_MODULE_ABI,
    .name = "register",
};
