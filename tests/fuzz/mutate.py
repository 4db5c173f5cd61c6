"""ELF mutations of one baseline: truncations and field changes, each a ``(kind, label, bytes)``.

Every mutation changes one thing (a field, a table entry, a cut) so that a
failure points at one cause.  The values are the ones parsers get wrong:
zero (divisions, empty loops), huge (allocations, offsets past the end,
counts that loop for ever), one past a table, not a multiple of the entry
size, unknown enumeration values.  The ``random.Random`` given picks the
few things that are not fixed (cut points, a second symbol, bytes), so the
inputs are a function of the baseline and the seed.

An ELF32 (i386) or AArch64 baseline gets the same mutations, aimed with
its class's layout (:class:`~.elfview.ElfView`); the labels name the same
fields, so a failure reads the same whatever the class.
"""

from .elfview import (COPY, DT, EM_386, EM_AARCH64, EM_X86_64, GNU_HASH, PT_DYNAMIC, PT_GNU_RELRO,
                      PT_GNU_STACK, PT_INTERP, PT_LOAD, ElfView, patch)

HUGE = 0x7FFF_FFFF_FFFF_F000      # past any file, positive as a signed field too
HUGE32 = 0xFFFF_FFFF
#: the machines an e_machine mutation names, and which class each goes with
MACHINES = {"i386": (EM_386, 1), "x86-64": (EM_X86_64, 2), "aarch64": (EM_AARCH64, 2),
            "none": (0, None)}
#: the baselines whose symbols are the library's own definitions
LIBRARY_ROLES = ("lib", "veclib", "libc", "lib-i386", "lib-aarch64")


class Mutator:
    """The mutations of one baseline (``role``: lib, veclib, pie, nopie, libc,
    lib-i386, lib-aarch64)."""

    def __init__(self, role, data, rng, vector=None):
        self.role = role
        self.elf = ElfView(data)
        self.data = self.elf.data
        self.rng = rng
        self.vector = vector          # the export vector's symbol name, for veclib

    def foreign(self):
        """Labels of the ELF header mutations that give a class, byte order or
        machine the core does not read together: no command may accept them."""
        labels = {"class-none", "class-3", "big-endian", "data-none", "magic",
                  "class-64" if not self.elf.is64 else "class-32"}
        own_class = 2 if self.elf.is64 else 1
        labels |= {f"e_machine={name}" for name, (_, elfclass) in MACHINES.items()
                   if elfclass != own_class}
        if self.elf.machine != EM_AARCH64:
            labels.add("e_machine=aarch64")   # x86-64 relocation types are no AArch64 ones
        if self.elf.machine == EM_AARCH64:
            labels.add("e_machine=x86-64")    # and the reverse
        return labels

    def all(self):
        for family in (self.truncations, self.ehdr, self.phdrs, self.shdrs, self.dynamic,
                       self.dynsym, self.gnu_hash, self.relocations, self.vector_table,
                       self.dynstr):
            yield from family()

    # -- helpers -------------------------------------------------------------

    def field(self, base, table, name, value):
        """``table`` is a field table's name (``EHDR``, ``PHDR``, ...) of the file's class."""
        offset, fmt = getattr(self.elf, table)[name]
        return patch(self.data, base + offset, fmt, value)

    def replace(self, offset, new):
        return self.data[:offset] + new + self.data[offset + len(new):]

    # -- truncations ---------------------------------------------------------

    def truncations(self):
        """Cuts in the ELF header, the program headers, the dynamic tables, the end."""
        e, s = self.elf, self.elf.sections
        points = {"1": 1, "4": 4, "16": 16, "63": 63, "ehdr": e.ehdr_size,
                  "mid-phdrs": e.phoff + e.phentsize * e.phnum // 2 + 3,
                  "end-phdrs": e.phoff + e.phentsize * e.phnum,
                  "mid-dynsym": s[".dynsym"].offset + s[".dynsym"].size // 2 + 5,
                  "mid-dynstr": s[".dynstr"].offset + s[".dynstr"].size // 2,
                  "mid-gnu.hash": s[".gnu.hash"].offset + 12,
                  "mid-dynamic": s[".dynamic"].offset + 40,
                  "shdrs": e.ehdr("e_shoff") + 100,
                  "last-byte": len(self.data) - 1}
        points.update((f"random-{i}", self.rng.randrange(64, len(self.data)))
                      for i in range(3))
        for label, at in points.items():
            yield "truncation", f"{label}@{at:#x}", self.data[:at]

    # -- the ELF header ------------------------------------------------------

    def ehdr(self):
        size = len(self.data)
        other_class = ("class-32", (4, 1)) if self.elf.is64 else ("class-64", (4, 2))
        ident = {other_class[0]: other_class[1], "class-none": (4, 0), "class-3": (4, 3),
                 "big-endian": (5, 2), "data-none": (5, 0), "ident-version-0": (6, 0),
                 "osabi-arm": (7, 97), "magic": (3, ord("G"))}
        for label, (offset, value) in ident.items():
            yield "ehdr", label, patch(self.data, offset, "<B", value)
        # the other class's entry sizes
        wrong_phentsize, wrong_shentsize = (("32", 32), ("40", 40)) if self.elf.is64 else \
            (("56", 56), ("64", 64))
        fields = [("e_type", "rel", 1), ("e_type", "core", 4), ("e_type", "os", 0xFE00),
                  ("e_type", "swapped", 2 if self.elf.ehdr("e_type") == 3 else 3),
                  *(("e_machine", name, number) for name, (number, _) in MACHINES.items()
                    if number != self.elf.machine),
                  ("e_version", "0", 0),
                  ("e_entry", "huge", HUGE), ("e_phoff", "past-end", size + 8),
                  ("e_phoff", "huge", HUGE), ("e_phoff", "unaligned", self.elf.phoff + 1),
                  ("e_shoff", "0", 0), ("e_shoff", "at-end", size), ("e_shoff", "huge", HUGE),
                  ("e_ehsize", "0", 0), ("e_phentsize", "0", 0),
                  ("e_phentsize", *wrong_phentsize), ("e_phnum", "0", 0),
                  ("e_phnum", "max", 0xFFFF), ("e_shentsize", "0", 0),
                  ("e_shentsize", *wrong_shentsize), ("e_shnum", "0", 0),
                  ("e_shnum", "max", 0xFFFF),
                  ("e_shstrndx", "0", 0), ("e_shstrndx", "e_shnum", self.elf.ehdr("e_shnum")),
                  ("e_shstrndx", "xindex", 0xFFFF)]
        for name, label, value in fields:
            yield "ehdr", f"{name}={label}", self.field(0, "EHDR", name, value)

    # -- program headers -----------------------------------------------------

    def phdrs(self):
        size = len(self.data)
        dyn = self.elf.phdr_of_type(PT_DYNAMIC)
        load = self.elf.phdr_of_type(PT_LOAD)
        changes = [
            ("dynamic", dyn, "p_type", "null", 0), ("dynamic", dyn, "p_offset", "huge", HUGE),
            ("dynamic", dyn, "p_offset", "end", size - 8), ("dynamic", dyn, "p_filesz", "huge", HUGE),
            ("dynamic", dyn, "p_filesz", "0", 0), ("dynamic", dyn, "p_vaddr", "+4096",
                                                  self.elf.read(*self._at(dyn, "PHDR", "p_vaddr"))
                                                  + 4096),
            ("load", load, "p_offset", "huge", HUGE), ("load", load, "p_filesz", "huge", HUGE),
            ("load", load, "p_memsz", "huge", 1 << 62), ("load", load, "p_align", "0", 0),
            ("load", load, "p_align", "3", 3), ("load", load, "p_vaddr", "huge", HUGE),
        ]
        for what, offset, name, label, value in changes:
            yield "phdr", f"{what}.{name}={label}", self.field(offset, "PHDR", name, value)
        types = dict(self.elf.phdrs())
        others = [off for off, t in types.items() if t in (PT_GNU_STACK, PT_GNU_RELRO)]
        if others:
            yield "phdr", "second-dynamic", self.field(others[0], "PHDR", "p_type", PT_DYNAMIC)
        relro = [off for off, t in types.items() if t == PT_GNU_RELRO]
        if relro:
            yield "phdr", "relro.p_memsz=huge", self.field(relro[0], "PHDR", "p_memsz", HUGE)
        interp = [off for off, t in types.items() if t == PT_INTERP]
        if interp:
            yield "phdr", "interp.p_offset=huge", self.field(interp[0], "PHDR", "p_offset", HUGE)
        no_load = self.data
        for off, t in self.elf.phdrs():
            if t == PT_LOAD:
                no_load = patch(no_load, off, "<I", 0)
        yield "phdr", "no-load", no_load

    # -- section headers -----------------------------------------------------

    SHDR_CHANGES = [("sh_offset", "huge", HUGE), ("sh_size", "huge", HUGE), ("sh_size", "0", 0),
                    ("sh_name", "huge", HUGE32), ("sh_type", "null", 0), ("sh_type", "nobits", 8),
                    ("sh_link", "huge", 0xFFFF), ("sh_link", "0", 0), ("sh_entsize", "0", 0),
                    ("sh_entsize", "7", 7), ("sh_addr", "+256", None)]
    SHDR_MAIN = (".dynsym", ".dynstr", ".dynamic", ".gnu.hash")
    SHDR_OTHER = (".rela.plt", ".rela.dyn", ".text", ".shstrtab", ".gnu.version")

    def _at(self, base, table, name):
        """(file offset, format) of field ``name`` of the record at ``base``."""
        offset, fmt = getattr(self.elf, table)[name]
        return base + offset, fmt

    def shdrs(self):
        secs = self.elf.sections
        other = tuple(self.elf.rel_section(n[6:]) if n.startswith(".rela.") else n
                      for n in self.SHDR_OTHER)
        for name in self.SHDR_MAIN + other:
            if name not in secs:
                continue
            changes = self.SHDR_CHANGES if name in self.SHDR_MAIN else self.rng.sample(
                self.SHDR_CHANGES, 3)
            for field, label, value in changes:
                if value is None:
                    value = secs[name].addr + 256
                yield "shdr", f"{name}.{field}={label}", self.field(secs[name].header, "SHDR",
                                                                   field, value)

    # -- .dynamic ------------------------------------------------------------

    def without_entry(self, tag):
        """``.dynamic`` with the entry ``tag`` removed (the rest moved up, DT_NULL kept)."""
        entries, size = self.elf.dynamic(), self.elf.dyn_size
        start = entries[0][0]
        kept = [self.data[off:off + size] for off, t, _ in entries if t != tag]
        kept += [bytes(size)] * (len(entries) - len(kept))
        return self.replace(start, b"".join(kept))

    def _dynamic_changes(self):
        """(tag name, label, value) of the .dynamic mutations; an i386 file's
        REL tags stand for the RELA ones, and the wrong sizes are the other
        class's."""
        rel = {} if self.elf.rela else {"DT_RELASZ": "DT_RELSZ", "DT_RELA": "DT_REL",
                                        "DT_RELAENT": "DT_RELENT", "DT_RELACOUNT": "DT_RELCOUNT"}
        other_pltrel = ("DT_REL", 17) if self.elf.rela else ("DT_RELA", 7)
        other_syment = "16" if self.elf.is64 else "24"
        changes = [("DT_PLTRELSZ", "+1", 1), ("DT_PLTRELSZ", "+8", 8), ("DT_PLTRELSZ", "huge", None),
                   ("DT_RELASZ", "+8", 8), ("DT_RELASZ", "huge", None), ("DT_STRSZ", "huge", None),
                   ("DT_STRSZ", "0", 0), ("DT_STRTAB", "huge", None), ("DT_SYMTAB", "huge", None),
                   ("DT_GNU_HASH", "huge", None), ("DT_JMPREL", "huge", None),
                   ("DT_RELA", "huge", None), ("DT_SYMENT", "0", 0),
                   ("DT_SYMENT", other_syment, int(other_syment)),
                   ("DT_RELAENT", "0", 0), ("DT_PLTREL", *other_pltrel),
                   ("DT_NEEDED", "huge", None), ("DT_SONAME", "huge", None),
                   ("DT_RUNPATH", "huge", None), ("DT_VERSYM", "huge", None),
                   ("DT_VERNEEDNUM", "huge", None), ("DT_VERDEFNUM", "huge", None),
                   ("DT_VERNEED", "huge", None), ("DT_FLAGS_1", "all", HUGE32),
                   ("DT_INIT_ARRAYSZ", "huge", None), ("DT_RELACOUNT", "huge", None)]
        return [(rel.get(name, name), label, value) for name, label, value in changes]

    def dynamic(self):
        for name in ("DT_STRTAB", "DT_SYMTAB", "DT_GNU_HASH", "DT_JMPREL"):
            if self.elf.dyn_entry(DT[name]) is not None:
                yield "dynamic", f"no-{name}", self.without_entry(DT[name])
        null = self.elf.dynamic()[-1][0]
        no_null = self.data
        sec = self.elf.sections[".dynamic"]
        for off in range(null, sec.offset + sec.size, self.elf.dyn_size):
            no_null = patch(no_null, off, "<q" if self.elf.is64 else "<i",
                            0x6FFFFDF5)   # DT_GNU_PRELINKED, repeated
        yield "dynamic", "no-DT_NULL", no_null
        word, value_at = self.elf.word, self.elf.dyn_size // 2
        for name, label, value in self._dynamic_changes():
            off = self.elf.dyn_entry(DT[name])
            if off is None:
                continue
            old = self.elf.read(off + value_at, word)
            if value is None:
                new = HUGE
            elif label.startswith("+"):
                new = old + value
            else:
                new = value
            yield "dynamic", f"{name}={label}", patch(self.data, off + value_at, word, new)

    # -- .dynsym -------------------------------------------------------------

    SYM_CHANGES = [("type", "object", 1), ("type", "common", 5), ("type", "tls", 6),
                   ("type", "7", 7), ("type", "ifunc", 10), ("type", "loproc", 13),
                   ("type", "15", 15), ("bind", "local", 0), ("bind", "weak", 2),
                   ("bind", "3", 3), ("bind", "unique", 10), ("bind", "15", 15),
                   ("vis", "internal", 1), ("vis", "hidden", 2), ("vis", "protected", 3),
                   ("other", "0xf8", 0xF8),
                   ("st_shndx", "undef", 0), ("st_shndx", "abs", 0xFFF1),
                   ("st_shndx", "common", 0xFFF2), ("st_shndx", "loreserve", 0xFF00),
                   ("st_shndx", "xindex", 0xFFFF), ("st_shndx", "999", 999),
                   ("st_value", "0", 0), ("st_value", "huge", HUGE), ("st_value", "+1", None),
                   ("st_size", "0", 0), ("st_size", "huge", HUGE), ("st_name", "huge", HUGE32),
                   ("st_name", "0", 0)]

    def sym_change(self, entry, change, value):
        info_at, other_at = entry + self.elf.SYM["st_info"][0], entry + self.elf.SYM["st_other"][0]
        info = self.elf.read(info_at, "<B")
        if change == "type":
            return patch(self.data, info_at, "<B", (info & 0xF0) | value)
        if change == "bind":
            return patch(self.data, info_at, "<B", (value << 4) | (info & 0xF))
        if change in ("vis", "other"):
            return patch(self.data, other_at, "<B", value)
        if value is None:
            value = self.elf.symbol_field(entry, change) + 1
        offset, fmt = self.elf.SYM[change]
        return patch(self.data, entry + offset, fmt, value)

    def target_symbols(self):
        """The symbols every sym change is applied to, and one picked by the seed."""
        defined = self.role in LIBRARY_ROLES
        functions = self.elf.function_symbols(defined=defined)
        preferred = {"libc": "puts"}.get(self.role, "fz_add")
        first = next(s for s in functions if s[2] == preferred)
        targets = [(first, self.SYM_CHANGES)]
        if self.vector:
            targets.append((self.elf.symbol(self.vector), self.SYM_CHANGES))
        chosen = {symbol[0] for symbol, _ in targets}
        other = self.rng.choice([s for s in self.elf.symbols()[1:] if s[0] not in chosen])
        targets.append((other, self.rng.sample(self.SYM_CHANGES, 5)))
        return targets

    def dynsym(self):
        for (index, entry, name, _, _), changes in self.target_symbols():
            for change, label, value in changes:
                yield "dynsym", f"{name}#{index}.{change}={label}", self.sym_change(entry, change,
                                                                                   value)
        zero = self.elf.sections[".dynsym"].offset
        yield "dynsym", "null-symbol-named", patch(self.data, zero, "<I", 1)

    # -- .gnu.hash -----------------------------------------------------------

    def gnu_hash(self):
        sec = self.elf.sections[".gnu.hash"]
        nsyms = self.elf.sections[".dynsym"].size // self.elf.sym_size
        nbucket, symoffset, bloom_size, _ = (self.elf.read(sec.offset + GNU_HASH[f][0], "<I")
                                             for f in GNU_HASH)
        changes = [("nbucket", "0", 0), ("nbucket", "huge", 0x7FFFFFFF),
                   ("bloom_size", "0", 0), ("bloom_size", "huge", 0x7FFFFFFF),
                   ("bloom_size", "3", 3), ("symoffset", "0", 0),
                   ("symoffset", "huge", 0xFFFFFFFF), ("symoffset", "past-table", nsyms + 5),
                   ("bloom_shift", "255", 255)]
        for name, label, value in changes:
            yield "gnu_hash", f"{name}={label}", self.field(sec.offset, "GNU_HASH", name, value)
        bloom, bloom_word = sec.offset + 16, 8 if self.elf.is64 else 4
        buckets = bloom + bloom_word * bloom_size
        chains = buckets + 4 * nbucket
        yield "gnu_hash", "bloom-zero", self.replace(bloom, bytes(bloom_word * bloom_size))
        yield "gnu_hash", "bucket-huge", patch(self.data, buckets, "<I", 0xFFFFFFF0)
        unterminated = self.data
        for i in range(nsyms - symoffset):
            value = self.elf.read(chains + 4 * i, "<I")
            unterminated = patch(unterminated, chains + 4 * i, "<I", value & ~1)
        yield "gnu_hash", "chains-unterminated", unterminated

    # -- relocations ---------------------------------------------------------

    def relocations(self):
        elf = self.elf
        nsyms = elf.sections[".dynsym"].size // elf.sym_size
        info_at, info_fmt = elf.REL["r_info"]
        for section in (elf.rel_section("plt"), elf.rel_section("dyn")):
            symbolic = [r for r in elf.relocations(section) if r[1] != 0]
            if not symbolic:
                continue
            off, sym, rtype = symbolic[0]
            for label, new_sym, new_type in (("sym-past-table", nsyms + 10, rtype),
                                             ("sym-huge", 0xFFFFFF, rtype),
                                             ("type-unknown", sym, 200), ("type-none", sym, 0),
                                             ("type-copy", sym, COPY[elf.machine])):
                yield ("reloc", f"{section}[0].{label}",
                       patch(self.data, off + info_at, info_fmt,
                             (new_sym << elf.sym_shift) | new_type))
            yield "reloc", f"{section}[0].r_offset=huge", patch(self.data, off, elf.word, HUGE)

    # -- the vector table ----------------------------------------------------

    def vector_table(self):
        """The table of a vectored library: its entries and the symbol that names it."""
        if not self.vector:
            return
        _, entry, _, _, _ = self.elf.symbol(self.vector)
        table = self.elf.file_offset(self.elf.symbol_field(entry, "st_value"))
        count = self.elf.symbol_field(entry, "st_size") // 4
        size_at, size_fmt = self._at(entry, "SYM", "st_size")
        first, second = (self.elf.read(table + 4 * i, "<i") for i in (0, 1))
        changes = [("entry0=huge", self.replace(table, (0x7FFFFFFF).to_bytes(4, "little"))),
                   ("entry0=0", self.replace(table, bytes(4))),
                   ("entry0=-huge", self.replace(table, (0x80000000).to_bytes(4, "little"))),
                   ("entry0=+1", self.replace(table, (first + 1).to_bytes(4, "little",
                                                                          signed=True))),
                   ("entries-swapped", self.replace(
                       table, second.to_bytes(4, "little", signed=True)
                       + first.to_bytes(4, "little", signed=True))),
                   ("all-zero", self.replace(table, bytes(4 * count))),
                   ("size=3", patch(self.data, size_at, size_fmt, 3)),
                   ("size=count+1", patch(self.data, size_at, size_fmt, 4 * count + 4))]
        for label, data in changes:
            yield "vector", label, data
        layout = next((s for s in self.elf.symbols() if s[2].startswith(self.vector + "__")), None)
        if layout:
            at = self.elf.name_offset(layout[1]) + len(layout[2]) - 1
            flipped = b"0" if self.data[at:at + 1] != b"0" else b"1"
            yield "vector", "layout-name-changed", self.replace(at, flipped)

    # -- .dynstr -------------------------------------------------------------

    def dynstr(self):
        sec = self.elf.sections[".dynstr"]
        function = self.elf.symbol({"libc": "puts"}.get(self.role, "fz_add"))[1]
        names = {"function": sec.offset + self.elf.read(function, "<I")}
        for what in ("DT_SONAME", "DT_NEEDED"):
            entry = self.elf.dyn_entry(DT[what])
            if entry is not None:
                names[what[3:].lower()] = sec.offset + self.elf.read(
                    entry + self.elf.dyn_size // 2, self.elf.word)
        for what, at in names.items():
            for label, byte in (("latin1", b"\xe9"), ("ff", b"\xff")):
                yield "dynstr", f"{what}-{label}", self.replace(at + 1, byte)
        yield "dynstr", "unterminated", self.replace(sec.offset + sec.size - 1, b"A")
        yield "dynstr", "all-ff", self.replace(sec.offset + 1, b"\xff" * (sec.size - 2))
