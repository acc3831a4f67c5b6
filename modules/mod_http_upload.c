/* modules/mod_http_upload.c: placeholder registered in the build; its engineer
 * replaces it. */
#include <palaver/module.h>

PV_MODULE(http_upload) = {
    .abi = PV_MODULE_ABI,
    .name = "http_upload",
    .component = "upload",
};
