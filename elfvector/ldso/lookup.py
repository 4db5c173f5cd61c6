"""Symbol lookup (``elf/dl-lookup.c``): which definition a reference binds
to, scope by scope, with ``check_match``'s version rules, protected
references and the table of STB_GNU_UNIQUE symbols."""

from .symbols import (CLASS_COPY, CLASS_NORMAL, CLASS_PLT, SHN_UNDEF, STB_GLOBAL,
                      STB_GNU_UNIQUE, STB_WEAK, STV_HIDDEN, STV_INTERNAL, STV_PROTECTED,
                      Version)


def lookup(linkmap, name, requester, version=None, type_class=CLASS_NORMAL, ref=None,
           newest=False):
    """``_dl_lookup_symbol_x`` in ``linkmap``: (MappedObject, Symbol) or None.

    ``version`` is a :class:`Version` or a version name; ``ref`` the
    referencing Symbol of ``requester`` (for protected references);
    ``newest`` is dlsym's DL_LOOKUP_RETURN_NEWEST.  Lookups of
    STB_GNU_UNIQUE symbols enter the link map's unique table, as in
    ld.so, so their order matters (:func:`.startup.replay` keeps ld.so's).
    """
    if isinstance(version, str):
        version = Version.named(version)
    found = _search_scopes(linkmap, name, requester, version, type_class, ref, newest)
    if found is None or ref is None or ref.visibility != STV_PROTECTED:
        return found
    if type_class == CLASS_PLT:
        other = found
    else:
        other = _search_scopes(linkmap, name, requester, version, CLASS_PLT, ref, newest)
    if other is not None and other[0] is not requester:
        return requester, ref
    return found


def definitions(linkmap, name, requester, version=None, type_class=CLASS_NORMAL):
    """Every (MappedObject, Symbol) that the lookup of ``name`` from
    ``requester`` would accept, in the order the lookup tries them: the
    first is the one it binds to (unless a unique or protected symbol
    decides otherwise), the others are the definitions it hides."""
    if isinstance(version, str):
        version = Version.named(version)
    found, seen = [], set()
    for scope in (linkmap.main.scope if requester.is_rtld else requester.scope):
        for obj in scope:
            candidates = obj.elf.index.get(name)
            if not candidates or obj in seen or (type_class & CLASS_COPY and obj.is_main):
                continue
            sym = _match(obj.elf, name, candidates, version, type_class, False)
            if sym is not None:
                seen.add(obj)
                found.append((obj, sym))
    return found


def _search_scopes(linkmap, name, requester, version, type_class, ref, newest):
    for scope in (linkmap.main.scope if requester.is_rtld else requester.scope):
        for obj in scope:
            candidates = obj.elf.index.get(name)
            if not candidates or (type_class & CLASS_COPY and obj.is_main):
                continue            # a copy relocation never binds to the program
            found = _match(obj.elf, name, candidates, version, type_class, newest)
            if found is not None:
                return _unique_entry(linkmap.unique, obj, found, type_class, ref, requester)
    return None


def lookup_in(elf, name, version, type_class, newest=False):
    """``do_lookup_x`` for one ElfObject: the first symbol of the hash
    chain that ``check_match`` accepts (or the only non-default versioned
    one, for an unversioned reference), if it is visible; ``version`` is a
    :class:`Version` or None."""
    candidates = elf.index.get(name)
    return _match(elf, name, candidates, version, type_class, newest) if candidates else None


def _match(elf, name, candidates, version, type_class, newest):
    """``do_lookup_x``'s walk over the ``candidates`` of its hash chain."""
    num_versions, versioned = 0, None
    for i in candidates:
        sym = elf.symbol(i, name)
        if type_class & CLASS_PLT and sym.shndx == SHN_UNDEF:
            continue
        if sym.versym is not None:
            if version is not None:
                own = elf.versions.get(sym.versym & 0x7FFF)
                own_hash, own_name = (own.hash, own.name) if own else (0, None)
                if (own_hash != version.hash or own_name != version.name) and \
                        (version.hidden or own_hash or sym.versym & 0x8000):
                    continue
            elif sym.versym & 0x7FFF >= (2 if newest else 3):
                if not sym.versym & 0x8000:
                    num_versions += 1
                    versioned = versioned or sym
                continue
        break
    else:
        sym = versioned if num_versions == 1 else None
    if sym is None or sym.other & 3 in (STV_HIDDEN, STV_INTERNAL):
        return None
    return sym if sym.info >> 4 in (STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE) else None


def _unique_entry(unique, obj, sym, type_class, ref, requester):
    """``do_lookup_unique``: the first definition of a unique name found
    (a COPY relocation enters the program's copy instead); ``unique`` is
    the link map's table, name -> (MappedObject, Symbol)."""
    if sym.bind != STB_GNU_UNIQUE:
        return obj, sym
    entry = unique.get(sym.name)
    if entry is not None:
        return (obj, sym) if type_class & CLASS_COPY else entry
    unique[sym.name] = (requester, ref) if type_class & CLASS_COPY else (obj, sym)
    return obj, sym
