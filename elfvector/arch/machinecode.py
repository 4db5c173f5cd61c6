"""keystone and capstone for the post-link code of i386 and AArch64.

The post-link commands put machine code into a linked file (IFUNC stubs,
retroimp's resolver stubs, relvec's fix-up routine), assembled at the
address it will have by keystone and decoded back by capstone, the
project's declared dependencies.  Both are imported when code is first
written or read, not by every command, and each engine is made once.
"""

import functools

#: architecture -> (keystone arch, keystone mode, AT&T syntax?), (capstone arch, mode);
#: names, so that neither library is imported before it is needed
_ENGINES = {
    "i386": (("KS_ARCH_X86", "KS_MODE_32", True), ("CS_ARCH_X86", "CS_MODE_32")),
    "aarch64": (("KS_ARCH_ARM64", "KS_MODE_LITTLE_ENDIAN", False),
                ("CS_ARCH_ARM64", "CS_MODE_ARM")),
}


@functools.cache
def keystone(arch):
    """The assembler for ``arch`` (``i386``: AT&T syntax, as GNU as reads it)."""
    import keystone as ks
    ks_arch, ks_mode, att = _ENGINES[arch][0]
    engine = ks.Ks(getattr(ks, ks_arch), getattr(ks, ks_mode))
    if att:
        engine.syntax = ks.KS_OPT_SYNTAX_ATT
    return engine


@functools.cache
def capstone(arch):
    """The disassembler for ``arch``, with operand details."""
    import capstone as cs
    cs_arch, cs_mode = _ENGINES[arch][1]
    engine = cs.Cs(getattr(cs, cs_arch), getattr(cs, cs_mode))
    engine.detail = True
    return engine


def assemble(arch, lines, at, size, prefix=b"", pad=None):
    """``prefix`` (bytes keystone cannot assemble, such as ``endbr32``),
    then ``lines`` assembled at ``at`` + ``len(prefix)``: ``size`` bytes,
    filled up with ``pad`` (a byte) when given, else exactly.  Code that
    does not fit what its caller planned is an error, never a truncated
    routine."""
    code, _ = keystone(arch).asm("\n".join(lines), at + len(prefix))
    code = prefix + bytes(code or b"")
    if len(code) > size or (pad is None and len(code) != size):
        raise AssertionError(f"{len(code)} bytes of {arch} code where {size} were planned")
    return code + (pad or b"") * (size - len(code))


def disassemble(arch, code, at):
    """The instructions of ``code`` at ``at``, up to the first it cannot decode."""
    return list(capstone(arch).disasm(code, at))
