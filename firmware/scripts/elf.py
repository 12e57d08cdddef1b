#!/usr/bin/env python3
"""Sizes of a 32-bit little-endian ARM ELF (the firmware), read with the standard library only.

  elf.py budgets ELF     flash and static RAM use, from the program headers:
                         prints `flash BYTES` and `ram BYTES` lines
  elf.py symbols ELF [N] the N largest symbols (default 25): size, section, demangled-ish name
  elf.py smlad ELF       how many SMLAD/SMLADX instructions (Cortex-M4 DSP dual 16-bit
                         multiply-accumulate) the code holds: 0 means the int8 dot products
                         were compiled without the DSP extension

Flash is the extent of the loadable segments stored in flash (0x08000000..+1 MiB): vectors,
code, read-only data (the model) and the initial values of .data. RAM is the extent of the
segments that live in RAM (0x20000000..+128 KiB): .data, .bss, .uninit. Padding between
sections counts, as it does in the firmware's own figures; binutils for ARM is not needed.
"""
import struct
import sys

FLASH = (0x0800_0000, 1024 * 1024)
RAM = (0x2000_0000, 128 * 1024)
SHF_ALLOC = 0x2
SHT_NOBITS = 8
SHT_SYMTAB = 2
PT_LOAD = 1


def die(msg):
    print(f"elf.py: {msg}", file=sys.stderr)
    sys.exit(2)


def sections(data):
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        die("not a 32-bit little-endian ELF")
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    out = []
    for i in range(shnum):
        name, typ, flags, addr, off, size, link, info, align, entsize = struct.unpack_from(
            "<IIIIIIIIII", data, shoff + i * shentsize)
        out.append(dict(name=name, type=typ, flags=flags, addr=addr, off=off, size=size, link=link,
                        entsize=entsize))
    strtab = out[shstrndx]
    for s in out:
        raw = data[strtab["off"] + s["name"]:]
        s["name"] = raw[:raw.index(b"\0")].decode()
    return out


def inside(addr, region):
    return region[0] <= addr < region[0] + region[1]


def segments(data):
    phoff, = struct.unpack_from("<I", data, 0x1C)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x2A)
    for i in range(phnum):
        typ, off, vaddr, paddr, filesz, memsz, flags, align = struct.unpack_from(
            "<IIIIIIII", data, phoff + i * phentsize)
        if typ == PT_LOAD:
            yield vaddr, paddr, filesz, memsz


def budgets(data):
    """Extent used in each memory: from its origin to the end of the last byte placed there,
    alignment padding included (as the firmware measures it from its linker symbols)."""
    sections(data)  # validates the header
    flash_end, ram_end = FLASH[0], RAM[0]
    for vaddr, paddr, filesz, memsz in segments(data):
        if filesz and inside(paddr, FLASH):
            flash_end = max(flash_end, paddr + filesz)  # code, rodata, .data's initial values
        if memsz and inside(vaddr, RAM):
            ram_end = max(ram_end, vaddr + memsz)  # .data, .bss, .uninit
    return flash_end - FLASH[0], ram_end - RAM[0]


def symbols(data, n):
    secs = sections(data)
    syms = []
    for s in secs:
        if s["type"] != SHT_SYMTAB:
            continue
        strtab = secs[s["link"]]
        for i in range(s["size"] // 16):
            name, value, size, info, other, shndx = struct.unpack_from("<IIIBBH", data, s["off"] + i * 16)
            if size == 0 or shndx == 0 or shndx >= len(secs):
                continue
            raw = data[strtab["off"] + name:]
            syms.append((size, secs[shndx]["name"], raw[:raw.index(b"\0")].decode(errors="replace")))
    syms.sort(reverse=True)
    for size, sec, name in syms[:n]:
        print(f"{size:8d} {sec:12s} {name}")


def smlad_count(data):
    """T32 SMLAD{X}: first halfword 1111 1011 0010 Rn, second Ra Rd 000X Rm with Ra != 1111
    (Ra = 1111 encodes SMUAD). A linear sweep of the executable sections; a literal pool can
    throw it off for an instruction or two, so treat small counts with care."""
    n = 0
    for s in sections(data):
        if not (s["flags"] & 0x4) or s["type"] == SHT_NOBITS:  # SHF_EXECINSTR
            continue
        code = data[s["off"]:s["off"] + s["size"]]
        i = 0
        while i + 4 <= len(code):  # linear sweep: 32-bit encodings start 0b11101/0b11110/0b11111
            hw1, hw2 = struct.unpack_from("<HH", code, i)
            if hw1 >> 11 in (0x1D, 0x1E, 0x1F):
                if hw1 & 0xFFF0 == 0xFB20 and hw2 & 0x00E0 == 0 and hw2 >> 12 != 0xF:
                    n += 1
                i += 4
            else:
                i += 2
    return n


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("budgets", "symbols", "smlad"):
        die("usage: elf.py budgets ELF | elf.py symbols ELF [N] | elf.py smlad ELF")
    try:
        with open(sys.argv[2], "rb") as f:
            data = f.read()
    except OSError as e:
        die(str(e))
    if sys.argv[1] == "budgets":
        flash, ram = budgets(data)
        print(f"flash {flash}")
        print(f"ram {ram}")
    elif sys.argv[1] == "smlad":
        print(f"smlad {smlad_count(data)}")
    else:
        symbols(data, int(sys.argv[3]) if len(sys.argv) > 3 else 25)


if __name__ == "__main__":
    main()
