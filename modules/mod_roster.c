/* modules/mod_roster.c: being written (issue 3). */
#include <palaver/module.h>

PV_MODULE(roster) = {
    .abi = PV_MODULE_ABI,
    .name = "roster",
};
