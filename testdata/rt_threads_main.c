/* A vectored program without constructors: 16 threads call librtv at once,
 * 100000 times each. */
#include "rt_probe.h"   /* first: it defines _GNU_SOURCE */
#include <pthread.h>
#include <stdio.h>
#include "rt_vlib.h"

#define THREADS 16
#define CALLS 100000

static pthread_barrier_t start;
static long sums[THREADS], products[THREADS];

static void *worker(void *arg)
{
    long t = (long)arg;
    int sum = 0, product = 1;
    pthread_barrier_wait(&start);
    for (int i = 0; i < CALLS; i++) {
        sum = v_add(sum, (int)((i + t) % 5));
        if (i % 1000 == 0)
            product = v_mul(product, 3) % 1000003;
    }
    sums[t] = sum;
    products[t] = product;
    return NULL;
}

int main(void)
{
    pthread_t tid[THREADS];
    char state = RT_OWN_SLOTS();
    pthread_barrier_init(&start, NULL, THREADS);
    for (long t = 0; t < THREADS; t++)
        if (pthread_create(&tid[t], NULL, worker, (void *)t) != 0)
            return 1;
    long total = 0, ptotal = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(tid[t], NULL);
        printf("thread %d: sum %ld product %ld\n", t, sums[t], products[t]);
        total += sums[t];
        ptotal += products[t];
    }
    printf("total %ld products %ld calls %ld\n", total, ptotal, v_calls());
    char wx[32];
    rt_probe("main: slots %c\n", state);
    rt_probe("main: slot pages %s\n", RT_OWN_WX(wx));
    return 0;
}
