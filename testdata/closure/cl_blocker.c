/* Linked at the base a rewritten library wants, and preloaded: the
   library cannot get its base.  No symbol in common with anything. */
int cl_blocker_marker = 1;
