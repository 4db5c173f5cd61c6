"""The whole closure after the fact: ``vectool --mode=retro``.

A program and every library it loads are resolved statically by ld.so's
rules (:mod:`elfvector.ldso`, :mod:`.resolve`), each library is given a
fixed base and moved there, and every reference that was resolved is
settled in the files (:mod:`.rewrite`); what ld.so still does at start-up
is a handful of checks and the references that must stay lookups.
:mod:`.model` holds the plan that passes from the resolution to the
rewriting.  docs/design.md describes the layout and the start-up sequence.
"""
