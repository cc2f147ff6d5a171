/* Cross-runtime benchmarks (bench/threads.c): each returns a rate per second. */
#ifndef PD_BENCH_THREADS_H
#define PD_BENCH_THREADS_H

/* Wake round trips between two threads: polldrop's hop relay... */
double pd_ping_pong(void);
/* ...and the raw transports: an eventfd write, or a MSG_RING request. */
double raw_ping_pong_eventfd(void);
double raw_ping_pong_msg_ring(void);

#endif
