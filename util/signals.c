/*  signals.c - SIGINT and SIGTERM as stop requests, SIGHUP as reload
    requests, for an event loop.  */
#include "signals.h"

#include <czmq.h>
#include <signal.h>

static volatile sig_atomic_t s_stop_requests = 0;
static volatile sig_atomic_t s_reload_requests = 0;

static void s_on_signal (int sig)
{
    if (sig == SIGHUP)
        s_reload_requests++;
    else
        s_stop_requests++;
}

void signals_catch_stop (void)
{
    zsys_handler_set (NULL); //  czmq would swallow the signal into zsys_interrupted
    struct sigaction action = {.sa_handler = s_on_signal};
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
}

int signals_stop_requests (void)
{
    return s_stop_requests;
}

void signals_catch_reload (void)
{
    struct sigaction action = {.sa_handler = s_on_signal};
    sigemptyset (&action.sa_mask);
    sigaction (SIGHUP, &action, NULL);
}

int signals_reload_requests (void)
{
    return s_reload_requests;
}
