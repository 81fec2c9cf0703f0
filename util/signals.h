/*  signals.h - SIGINT and SIGTERM as stop requests, SIGHUP as reload
    requests, for an event loop.

    The daemons stop in two steps: the first signal starts a graceful stop
    (drain), a second one cuts it short.  SIGHUP asks the worker to look at
    its models folder again.  The handlers only count; the event loop reads
    the counts between polls (a signal interrupts the poll).
*/
#ifndef AMAAS_SIGNALS_H_INCLUDED
#define AMAAS_SIGNALS_H_INCLUDED

//  Installs the SIGINT and SIGTERM handlers (and keeps czmq's own out of
//  the way).  Call once, early.  Cannot fail.
void signals_catch_stop (void);

//  How many SIGINT/SIGTERM arrived since signals_catch_stop.  Cannot fail.
int signals_stop_requests (void);

//  Installs the SIGHUP handler (without it SIGHUP ends the process).  Call
//  once, early, after signals_catch_stop.  Cannot fail.
void signals_catch_reload (void);

//  How many SIGHUP arrived since signals_catch_reload: compare with the
//  count last seen.  Cannot fail.
int signals_reload_requests (void);

#endif
