/* binding placeholder */
int cocola_lua_placeholder;
