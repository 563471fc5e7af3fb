/* laudio.c — placeholder until the audio front end lands: registers no functions. */
#include "lbind.h"

void lc_open_audio(lua_State *L) { (void)L; }
