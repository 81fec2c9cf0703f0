/*  signals.h - SIGINT and SIGTERM as stop requests for an event loop.

    The daemons stop in two steps: the first signal starts a graceful stop
    (drain), a second one cuts it short.  The handler only counts; the event
    loop reads the count between polls (a signal interrupts the poll).
*/
#ifndef AMAAS_SIGNALS_H_INCLUDED
#define AMAAS_SIGNALS_H_INCLUDED

//  Installs the handlers (and keeps czmq's own out of the way).  Call once,
//  early.  Cannot fail.
void signals_catch_stop (void);

//  How many SIGINT/SIGTERM arrived since signals_catch_stop.
int signals_stop_requests (void);

#endif
