/* Linked at the base of a rewritten library and preloaded, so that the
   library cannot have its base; no symbol in common with anything. */
int retro_blocker_marker = 1;
