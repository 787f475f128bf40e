/* Shared by the `sweep calibrate` benchmarks (forkbench.c, faultbench.c, walkbench.c,
 * floorbench.c): headers and the clock.  The clock is the calling thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID): the kernel work a benchmark times runs in the calling task
 * (dup_mmap(), the fault handlers, MADV_PAGEOUT reclaim), and time the task spends
 * preempted by the other work of a shared machine is not counted. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline long cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}
