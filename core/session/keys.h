/* Signing keys and the keys this user trusts, under the configuration
 * directory (lib/dirs.h):
 *   keys/NAME.key           this user's Ed25519 secret key (0600)
 *   keys/NAME.pub           its public key, to give to others
 *   trusted-keys/NAME.pub   public keys whose signatures make a bundle
 *                           trusted (a generated key is trusted too)
 * A public key file is one line: "smolvm-ed25519 BASE64 NAME". */
#ifndef SMOLVM_KEYS_H
#define SMOLVM_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define KEY_NAME_MAX 64
#define KEY_TEXT_MAX 45 /* base64 of 32 bytes, with its NUL */

/* A key name: 1-64 of [A-Za-z0-9._-], not starting with '.'. */
int key_name_ok(const char *name);
/* The public key as text (base64). */
void key_text(const uint8_t pk[32], char out[KEY_TEXT_MAX]);

/* Makes key NAME; refuses to replace one. Prints where it went. */
int key_generate(const char *name, struct err *e) WARN_UNUSED;
/* Loads this user's secret key NAME (64 bytes). */
int key_secret(const char *name, uint8_t sk[64], struct err *e) WARN_UNUSED;
/* Adds the public key in `file` ("-": stdin) to the trusted keys, as
 * `as` (NULL: the name in the file). */
int key_trust(const char *file, const char *as, struct err *e) WARN_UNUSED;
int key_untrust(const char *name, struct err *e) WARN_UNUSED;
/* Prints this user's keys and the trusted ones. */
int key_list(struct err *e) WARN_UNUSED;
/* Prints key NAME's public key line. */
int key_export(const char *name, struct err *e) WARN_UNUSED;
/* 1 (name filled) when pk is a trusted key, 0 when not, -errno. */
int key_trusted(const uint8_t pk[32], char *name, size_t len, struct err *e) WARN_UNUSED;

#endif
