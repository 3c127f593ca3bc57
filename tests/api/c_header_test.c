// SPDX-License-Identifier: Apache-2.0
/* The public header compiles as C and the library links from C. */
#include <stdio.h>
#include <string.h>

#include "gradpack/gradpack.h"

int main(void) {
  gp_codec_t* codec = NULL;
  float in[16], out[16];
  unsigned char frame[256];
  size_t bytes = 0;
  int i;
  for (i = 0; i < 16; ++i) in[i] = (float)i;
  if (gp_codec_create("fp16", &codec) != GP_OK) return 1;
  if (gp_codec_encode(codec, in, 16, GP_FLOAT32, NULL, frame, sizeof frame, &bytes) != GP_OK)
    return 2;
  if (gp_codec_decode(frame, bytes, out, 16, GP_FLOAT32, 0) != GP_OK) return 3;
  if (memcmp(in, out, sizeof in) != 0) return 4;
  gp_codec_destroy(codec);
  printf("C API ok: %s\n", gp_version());
  return 0;
}
