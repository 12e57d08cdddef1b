#!/usr/bin/env python3
"""Sizes of a 32-bit little-endian ARM ELF (the firmware), read with the standard library only.

  elf.py budgets ELF     flash and static RAM use, from the section headers:
                         prints `flash BYTES` and `ram BYTES` lines
  elf.py symbols ELF [N] the N largest symbols (default 25): size, section, demangled-ish name

Flash counts every allocated section stored in flash (address in 0x08000000..+1 MiB) plus
the load image of initialised RAM data (.data); RAM counts every allocated section that lives
in RAM (0x20000000..+128 KiB): .data, .bss, .uninit. It is the same arithmetic as
`arm-none-eabi-size -A`, without needing binutils for ARM.
"""
import struct
import sys

FLASH = (0x0800_0000, 1024 * 1024)
RAM = (0x2000_0000, 128 * 1024)
SHF_ALLOC = 0x2
SHT_NOBITS = 8
SHT_SYMTAB = 2


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


def budgets(data):
    flash = ram = 0
    for s in sections(data):
        if not s["flags"] & SHF_ALLOC or s["size"] == 0:
            continue
        if inside(s["addr"], FLASH):
            flash += s["size"]
        elif inside(s["addr"], RAM):
            ram += s["size"]
            if s["type"] != SHT_NOBITS:
                flash += s["size"]  # its initial values are copied from flash at boot
    return flash, ram


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


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("budgets", "symbols"):
        die("usage: elf.py budgets ELF | elf.py symbols ELF [N]")
    try:
        with open(sys.argv[2], "rb") as f:
            data = f.read()
    except OSError as e:
        die(str(e))
    if sys.argv[1] == "budgets":
        flash, ram = budgets(data)
        print(f"flash {flash}")
        print(f"ram {ram}")
    else:
        symbols(data, int(sys.argv[3]) if len(sys.argv) > 3 else 25)


if __name__ == "__main__":
    main()
