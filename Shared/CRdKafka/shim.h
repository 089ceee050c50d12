#ifndef FEEDBACKLOOP_CRDKAFKA_SHIM_H
#define FEEDBACKLOOP_CRDKAFKA_SHIM_H

#include <librdkafka/rdkafka.h>

/* librdkafka before 2.2.0 mis-parses the tagged fields modern brokers put in ApiVersions responses
 * and never connects (Debian bookworm ships 2.0.2). Run deploy/local/install.sh, which builds a
 * newer one into .local/librdkafka, and build through ./loop so pkg-config finds it. */
#if RD_KAFKA_VERSION < 0x020200ff
#error "librdkafka >= 2.2.0 is required (found older headers); run deploy/local/install.sh and build with ./loop build"
#endif

#endif
