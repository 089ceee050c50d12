#ifndef FEEDBACKLOOP_CCRYPTO_SHIM_H
#define FEEDBACKLOOP_CCRYPTO_SHIM_H

/* OpenSSL's libcrypto, only for the one-shot SHA-256 and HMAC-SHA256 that ServiceKit's `Digest`
 * wraps (API-key hashes, PII hashing). Installed with libssl-dev. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#endif
