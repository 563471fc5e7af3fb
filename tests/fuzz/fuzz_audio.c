/* fuzz_audio.c — libFuzzer harness of the audio file reader (csrc/audio/audio_io.c over libsndfile):
 * WAV, FLAC, OGG and the other formats libsndfile recognises by their headers, through the two
 * functions the Lua binding calls, cc_audio_info_get and cc_audio_load (whole file, then a window
 * of one second from 0.5 s, downmixed to mono, zero-padded past the end as the
 * training windows are). Results are released after each input. */
#include "fuzz_common.h"

#include "audio/audio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64];
  int fd = fuzz_memfile(data, size, path);
  cc_audio_info info;
  if (cc_audio_info_get(path, &info) == 0) {
    int rate = 0;
    cc_tensor *w = cc_audio_load(path, 0.0, -1.0, 0, false, &rate);
    cc_release(w);
    w = cc_audio_load(path, 0.5, 1.0, 0, true, &rate);
    cc_release(w);
  }
  close(fd);
  return 0;
}
