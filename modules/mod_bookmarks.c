/* modules/mod_bookmarks.c: placeholder registered in the build; its engineer
 * replaces it. */
#include <palaver/module.h>

PV_MODULE(bookmarks) = {
    .abi = PV_MODULE_ABI,
    .name = "bookmarks",
};
