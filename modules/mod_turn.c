/* modules/mod_turn.c: placeholder registered in the build; its engineer
 * replaces it. */
#include <palaver/module.h>

PV_MODULE(turn) = {
    .abi = PV_MODULE_ABI,
    .name = "turn",
};
