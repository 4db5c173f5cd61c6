/* A stock program (no import vector) that dlopens librtv (built with
 * expvec) and librta (built with impvec --link, so it has an import vector
 * of its own), calls them through dlsym, unloads and reloads them, and
 * dlopens librta from 16 threads at once. */
#define _GNU_SOURCE
#include "rt_probe.h"   /* first: it defines _GNU_SOURCE */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "rt_alib.h"
#include "rt_vlib.h"

#define THREADS 16

static void *need(void *handle, const char *name)
{
    void *p = dlsym(handle, name);
    if (!p) {
        fprintf(stderr, "dlsym %s: %s\n", name, dlerror());
        exit(1);
    }
    return p;
}

static void *open_lib(const char *name, int flags)
{
    void *h = dlopen(name, flags);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", name, dlerror());
        exit(1);
    }
    return h;
}

static void *thread_main(void *arg)
{
    long t = (long)arg;
    void *h = open_lib("librta.so.1", RTLD_LAZY);
    long (*count)(int) = (long (*)(int))need(h, "a_count");
    long r = count(20000 + (int)t);
    dlclose(h);
    return (void *)r;
}

int main(void)
{
    /* librta (and with it librtv) loaded and unloaded three times. */
    for (int round = 0; round < 3; round++) {
        void *a = open_lib("librta.so.1", round == 1 ? RTLD_LAZY | RTLD_GLOBAL : RTLD_NOW);
        int (*compute)(int, char *, size_t) = (int (*)(int, char *, size_t))need(a, "a_compute");
        long (*count)(int) = (long (*)(int))need(a, "a_count");
        int (*ctor_result)(void) = (int (*)(void))need(a, "a_ctor_result");
        char (*state)(void) = (char (*)(void))need(a, "a_slot_state");
        char buf[200];
        int n = compute(round + 5, buf, sizeof buf);
        printf("round %d: %s (%d chars) count %ld ctor %d\n", round, buf, n, count(3000),
               ctor_result());
        rt_probe("round %d: librta slots %c\n", round, state());
        dlclose(a);
    }

    /* librtv by itself, every kind of call through dlsym'd pointers. */
    void *v = open_lib("librtv.so.1", RTLD_NOW | RTLD_LOCAL);
    int (*add)(int, int) = (int (*)(int, int))need(v, "v_add");
    int (*mul)(int, int) = (int (*)(int, int))need(v, "v_mul");
    double (*sumd)(int, ...) = (double (*)(int, ...))need(v, "v_sumd");
    int (*fmt)(char *, size_t, const char *, ...) =
        (int (*)(char *, size_t, const char *, ...))need(v, "v_fmt");
    long (*many)(int, long, int, long, int, long, int, long, double, int, double) =
        (long (*)(int, long, int, long, int, long, int, long, double, int, double))need(v, "v_many");
    struct v_pair (*pair)(long, long) = (struct v_pair (*)(long, long))need(v, "v_pair");
    const char *(*name)(void) = (const char *(*)(void))need(v, "v_name");
    int (*(*self_add)(void))(int, int) = (int (*(*)(void))(int, int))need(v, "v_self_add");
    char buf[200];
    struct v_pair p = pair(12, 5);
    fmt(buf, sizeof buf, "add %d mul %d sumd %.3f many %ld pair %ld/%ld/%ld name %s",
        add(19, 23), mul(6, 7), sumd(3, 0.5, 0.25, 4.0),
        many(1, 2, 3, 4, 5, 6, 7, 8, 0.25, 9, 0.5), p.a, p.b, p.c, name());
    printf("librtv: %s\n", buf);
    printf("librtv: dlsym's v_add is the library's own: %s\n",
           self_add() == add ? "yes" : "NO");

    /* librta from 16 threads at once, while librtv stays loaded. */
    pthread_t tid[THREADS];
    for (long t = 0; t < THREADS; t++)
        pthread_create(&tid[t], NULL, thread_main, (void *)t);
    long total = 0;
    for (int t = 0; t < THREADS; t++) {
        void *r;
        pthread_join(tid[t], &r);
        total += (long)r;
    }
    printf("threads: total %ld\n", total);
    rt_probe("librtv vector symbol: %s\n", dlsym(v, "__V_librtv_so_1") ? "found" : "missing");
    dlclose(v);
    return 0;
}
