/* librtracer.so.1 (linked the usual way), a library that librta depends on:
 * its constructor runs before librta's binder and starts 16 threads that,
 * released together, all call librta (so librtv through librta's unbound
 * slots) at once: they race to bind. */
#include "rt_probe.h"   /* first: it defines _GNU_SOURCE */
#include <pthread.h>
#include <stdio.h>
#include "rt_alib.h"

#define THREADS 16
#define CALLS 100000

static pthread_barrier_t start;
static long results[THREADS];

static void *worker(void *arg)
{
    long i = (long)arg;
    char buf[200];
    pthread_barrier_wait(&start);
    results[i] = a_count(CALLS);
    results[i] += a_compute((int)i, buf, sizeof buf);
    return NULL;
}

__attribute__((constructor)) static void racer_ctor(void)
{
    pthread_t tid[THREADS];
    char before = a_slot_state();
    pthread_barrier_init(&start, NULL, THREADS);
    for (long i = 0; i < THREADS; i++)
        if (pthread_create(&tid[i], NULL, worker, (void *)i) != 0) {
            printf("racer ctor: pthread_create failed\n");
            return;
        }
    long total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(tid[i], NULL);
        total += results[i];
    }
    printf("racer ctor: %d threads, total %ld\n", THREADS, total);
    rt_probe("racer ctor: before %c after %c\n", before, a_slot_state());
}
