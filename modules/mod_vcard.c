/* modules/mod_vcard.c: being written (issue 3). */
#include <palaver/module.h>

PV_MODULE(vcard) = {
    .abi = PV_MODULE_ABI,
    .name = "vcard",
};
