/*  codec.h - the amaas wire protocol: include this one header.

    Every message is [signature "AMAAS01"][command byte][header map][payload?]
    (docs/PROTOCOL.md).  The protocol library (amaas_proto) is four pairs,
    one concept each:

      header.h   commands and the header map, each field described once
      frames.h   messages on a ZeroMQ socket: receive, parse, send
      tensors.h  the payload: an array of tensors
      mp.h       checks and getters for untrusted msgpack

    The names of codes and datatypes are the public API's (amaas.h,
    client/names.c).
*/
#ifndef AMAAS_CODEC_H_INCLUDED
#define AMAAS_CODEC_H_INCLUDED

#include "amaas.h"
#include "frames.h"
#include "header.h"
#include "mp.h"
#include "tensors.h"

#endif
