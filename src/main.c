/* src/main.c: palaverd's command line (CONTRACTS.md §1): -c FILE runs the
 * server in the foreground, -t checks the configuration, -V prints the
 * version. Everything else is server.c's. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "palaver.h"

static void
usage(FILE *out)
{
    fprintf(out, "usage: palaverd -c FILE [-t] | -V\n"
                 "  -c FILE  configuration file (libconfig syntax)\n"
                 "  -t       check the configuration and exit\n"
                 "  -V       print the version and exit\n");
}

int
main(int argc, char **argv)
{
    const char *path = NULL;
    int check = 0, opt, rc;
    pv_server_t *srv;
    pv_config_t *cfg;

    while ((opt = getopt(argc, argv, "c:tVh")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check = 1;
            break;
        case 'V':
            printf("palaverd %s\n", PV_VERSION_STRING);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    /* files we create (ports, logs, store) are the operator's only */
    umask(077);
    srv = pv_server_new(path, 0);
    cfg = pv_server_load_config(srv, path, 1);
    if (cfg == NULL) {
        fprintf(stderr, "%s: configuration has errors\n", path);
        pv_server_free(srv);
        return 1;
    }
    if (check) {
        printf("%s: configuration ok\n", path);
        pv_config_free(cfg);
        pv_server_free(srv);
        return 0;
    }
    rc = pv_server_start(srv, cfg) == PV_OK ? pv_server_run(srv) : 1;
    pv_server_free(srv);
    return rc == 0 ? 0 : 1;
}
