/* src/metrics.c: the parts of /metrics (Prometheus text format 0.0.4)
 * that are not HTTP's own: server-to-server links and their queues, the
 * store's commit latency histogram and write queue depth. http.c renders
 * the response around them. */
#include <stdio.h>

#include "palaver.h"
#include "s2s.h"

static void
head(pv_buf_t *b, const char *name, const char *type, const char *help)
{
    pv_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
s2s_count(pv_server_t *srv, size_t *in, size_t *out, size_t *queued)
{
    const pv_s2s_stream_t *s;

    *in = *out = *queued = 0;
    for (s = srv->s2s ? srv->s2s->streams : NULL; s != NULL; s = s->next) {
        if (s->is_out) {
            (*out)++;
            *queued += s->n_queue;
        } else {
            (*in)++;
        }
    }
}

void
pv_metrics_s2s_connections(pv_server_t *srv, pv_buf_t *b)
{
    size_t in, out, queued;

    s2s_count(srv, &in, &out, &queued);
    pv_buf_printf(b, "palaver_connections{kind=\"s2s_in\"} %zu\n", in);
    pv_buf_printf(b, "palaver_connections{kind=\"s2s_out\"} %zu\n", out);
}

static void
storage_metrics(pv_server_t *srv, pv_buf_t *b)
{
    pv_storage_stats_t st;
    uint64_t cum = 0;
    size_t i;

    pv_storage_stats(srv->storage, &st);
    head(b, "palaver_storage_commits_total", "counter",
         "LMDB write transactions committed.");
    pv_buf_printf(b, "palaver_storage_commits_total %llu\n",
                  (unsigned long long)st.commits);
    head(b, "palaver_storage_requests_total", "counter",
         "Storage write requests completed.");
    pv_buf_printf(b, "palaver_storage_requests_total %llu\n",
                  (unsigned long long)st.requests);
    head(b, "palaver_storage_queue_depth", "gauge",
         "Storage write requests submitted and not yet committed.");
    pv_buf_printf(b, "palaver_storage_queue_depth %llu\n",
                  (unsigned long long)st.queued);
    head(b, "palaver_storage_commit_seconds", "histogram",
         "Time of one group commit (fsync included).");
    for (i = 0; i < PV_STORAGE_COMMIT_BUCKETS; i++) {
        cum += st.commit_hist[i];
        pv_buf_printf(b, "palaver_storage_commit_seconds_bucket{le=\"%g\"} "
                      "%llu\n", (double)pv_storage_commit_bounds_us[i] / 1e6,
                      (unsigned long long)cum);
    }
    cum += st.commit_hist[PV_STORAGE_COMMIT_BUCKETS];
    pv_buf_printf(b, "palaver_storage_commit_seconds_bucket{le=\"+Inf\"} "
                  "%llu\n", (unsigned long long)cum);
    pv_buf_printf(b, "palaver_storage_commit_seconds_sum %.6f\n",
                  (double)st.commit_us_sum / 1e6);
    pv_buf_printf(b, "palaver_storage_commit_seconds_count %llu\n",
                  (unsigned long long)cum);
    head(b, "palaver_storage_map_size_bytes", "gauge", "LMDB map size.");
    pv_buf_printf(b, "palaver_storage_map_size_bytes %zu\n", st.map_size);
}

void
pv_metrics_write(pv_server_t *srv, pv_buf_t *b)
{
    size_t in, out, queued;

    s2s_count(srv, &in, &out, &queued);
    head(b, "palaver_s2s_queued_stanzas", "gauge",
         "Stanzas waiting for server-to-server links to come up.");
    pv_buf_printf(b, "palaver_s2s_queued_stanzas %zu\n", queued);
    if (srv->storage != NULL)
        storage_metrics(srv, b);
}
