/* The retro tests' threaded program: each thread bumps libdemo's __thread
   counter (a TLS relocation the retro mode keeps) and adds through
   libdemo under a mutex; the totals do not depend on the scheduling.
   threads [N]: N threads (default 4). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "demo.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long total;

static void *work(void *arg)
{
    int id = (int)(long)arg, mine = 0;
    for (int i = 0; i < 1000; i++)
        mine = demo_tls_bump(id + 1);
    pthread_mutex_lock(&lock);
    total = demo_add((int)total, mine);
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4;
    pthread_t threads[64];
    if (n < 1 || n > 64) {
        fprintf(stderr, "threads: between 1 and 64 threads\n");
        return 2;
    }
    for (int i = 0; i < n; i++)
        pthread_create(&threads[i], NULL, work, (void *)(long)i);
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    printf("%d threads: total %ld, main's own counter %d\n", n, total, demo_tls_bump(0));
    return 0;
}
