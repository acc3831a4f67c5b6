/* src/loop.h: the event loop as the core sees it: run/stop, timers,
 * deferred tasks (end of the loop iteration), work offload to the thread
 * pool, cross-thread wake-ups and signals. Wraps libuv without exposing
 * it; streams live in conn.h. Nothing here is thread-safe unless its
 * comment says so: every call is made on the loop's thread. */
#ifndef PALAVER_LOOP_H
#define PALAVER_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include <palaver/defs.h>

typedef struct pv_loop_s pv_loop_t;
typedef struct pv_timer_s pv_timer_t;
typedef struct pv_async_s pv_async_t;
typedef struct pv_signal_s pv_signal_t;

/* Returns a new loop; aborts on OOM, NULL (logged) when libuv refuses. */
pv_loop_t *pv_loop_new(void);
/* Runs until pv_loop_stop(). Returns PV_OK, or PV_ERROR when called
 * recursively from inside the loop. */
int pv_loop_run(pv_loop_t *loop);
/* Makes pv_loop_run() return after the current iteration. Thread-safe;
 * a stop requested before pv_loop_run() makes the next run return at
 * once. */
void pv_loop_stop(pv_loop_t *loop);
/* Tears down everything still attached to the loop, then frees it: open
 * connections are aborted (their on_close runs with reason "loop shut
 * down"), listeners, timers, asyncs and signal watchers are closed and
 * freed, queued work is cancelled (done(arg, 1)) and running work is
 * waited for. Call it outside pv_loop_run(). NULL is a no-op. */
void pv_loop_free(pv_loop_t *loop);
/* Loop time in milliseconds, cached at the start of the iteration. */
uint64_t pv_loop_now_ms(const pv_loop_t *loop);

/* Timers. cb runs on the loop after after_ms, then every repeat_ms when
 * repeat_ms > 0. Lifetime: a timer stays valid until pv_timer_cancel();
 * a one-shot timer (repeat_ms == 0) is also freed right after its
 * callback returns unless the callback re-armed it with pv_timer_again()
 * or cancelled it, so its owner must forget the pointer in the callback.
 * Never returns NULL (aborts on OOM). */
pv_timer_t *pv_timer_add(pv_loop_t *loop, uint64_t after_ms, uint64_t repeat_ms,
                         void (*cb)(void *arg), void *arg);
/* Stops and frees t. Safe inside t's own callback; NULL is a no-op. */
void pv_timer_cancel(pv_timer_t *t);
/* Re-arms t to fire after after_ms (its repeat interval is kept). Works
 * on a running timer (resets the deadline) and on a one-shot timer from
 * inside its callback (keeps it alive). */
void pv_timer_again(pv_timer_t *t, uint64_t after_ms);

/* Deferred tasks run on the loop at the end of the current iteration
 * (after I/O callbacks, before the next poll; the poll does not block
 * while tasks are queued). A task queued by a deferred task runs in the
 * next iteration, so tasks cannot starve I/O.
 *
 * pv_loop_defer_node() takes a caller-owned node (no allocation): zero
 * the node once before first use; queueing a node that is already queued
 * is a no-op (cb and arg are not changed). The node must stay alive until
 * its callback starts or pv_loop_defer_cancel() removes it. */
typedef struct pv_defer_s {
    struct pv_defer_s *prev, *next; /* NULL when not queued */
    void (*cb)(void *arg);
    void *arg;
    int is_pooled; /* private to loop.c */
} pv_defer_t;

void pv_loop_defer_node(pv_loop_t *loop, pv_defer_t *node,
                        void (*cb)(void *arg), void *arg);
/* Unqueues node if it is queued; safe at any time. */
void pv_loop_defer_cancel(pv_loop_t *loop, pv_defer_t *node);
/* As pv_loop_defer_node() with a node from the loop's free list (no
 * malloc once the list is warm). Cannot be cancelled. */
void pv_loop_defer(pv_loop_t *loop, void (*cb)(void *arg), void *arg);

/* Runs work(arg) on a libuv thread-pool thread, then done(arg, 0) on the
 * loop. done(arg, 1) means the work never ran (cancelled by
 * pv_loop_free()). work must not touch loop objects. Returns PV_OK or
 * PV_ERROR (nothing will be called). */
int pv_loop_work(pv_loop_t *loop, void (*work)(void *arg),
                 void (*done)(void *arg, int cancelled), void *arg);

/* Cross-thread wake-up: cb(arg) runs on the loop after one or more
 * pv_async_send() calls (sends coalesce). pv_async_send() is thread-safe;
 * pv_async_free() is loop-thread only and must not race with a send. */
pv_async_t *pv_async_new(pv_loop_t *loop, void (*cb)(void *arg), void *arg);
void pv_async_send(pv_async_t *a);
void pv_async_free(pv_async_t *a);

/* Runs cb(arg, signum) on the loop when the process gets signum. Returns
 * NULL (logged) when the signal cannot be watched. */
pv_signal_t *pv_loop_signal(pv_loop_t *loop, int signum,
                            void (*cb)(void *arg, int signum), void *arg);
void pv_signal_free(pv_signal_t *s);

/* ---- For transports only (src/conn.c, src/dns.c): not module API. ---- */

/* The libuv loop under loop; only files allowed to include uv.h use it. */
struct uv_loop_s;
struct uv_loop_s *pv_loop_uv(pv_loop_t *loop);

/* Loop-wide scratch buffers, allocated on first use and kept for the
 * loop's life: the read buffer every stream reads into (64 KiB) and the
 * buffer TLS decrypts into (16 KiB). Borrowed; the contents are valid
 * only inside the read callback that filled them. */
char *pv_loop_read_buf(pv_loop_t *loop, size_t *len);
char *pv_loop_plain_buf(pv_loop_t *loop, size_t *len);

/* An object with libuv handles that pv_loop_free() must tear down.
 * shutdown() starts closing it; the object untracks itself when it is
 * finally freed. */
typedef struct pv_loop_obj_s {
    struct pv_loop_obj_s *prev, *next;
    void (*shutdown)(struct pv_loop_obj_s *obj);
} pv_loop_obj_t;

void pv_loop_track(pv_loop_t *loop, pv_loop_obj_t *obj,
                   void (*shutdown)(pv_loop_obj_t *obj));
void pv_loop_untrack(pv_loop_t *loop, pv_loop_obj_t *obj);

#endif
