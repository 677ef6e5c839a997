"""Instruction statistics of the compiled kernels, read from `cuobjdump -sass` output.

Counts, per kernel, the WGMMAs (IGMMA), how many of them wait right after issue (serialized), and the
LiquidQuant dequant instructions: nibble masks (LOP3 with 0x0f0f0f0f), shifts, IMADs and sign flips (LOP3 with
0x80808080). The dequant cost per 4 weights = (masks + shifts + dequant IMADs + flips) / (A registers made).
Usage: python bench/sass_stats.py kernels.sass
"""
from __future__ import annotations

import re
import sys
from collections import Counter


def kernel_sections(text: str):
    name, lines = None, []
    for line in text.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            if name:
                yield name, lines
            name, lines = m.group(1), []
        elif name:
            lines.append(line)
    if name:
        yield name, lines


def stats(lines: list[str]) -> Counter:
    c = Counter()
    instrs = [m.group(1).strip() for line in lines if (m := re.search(r"\*/\s+(.*?);", line))]
    for i, ins in enumerate(instrs):
        words = [w for w in ins.split() if not w.startswith("@")]
        op = words[0] if words else ""
        if "IGMMA" in ins:
            c["igmma"] += 1
            nxt = instrs[i + 1] if i + 1 < len(instrs) else ""
            if "DEPBAR" in nxt and "0x0" in nxt:
                c["igmma_serialized"] += 1
        if "LOP3" in ins and "0x80808080" in ins:
            c["sign_flip"] += 1
        if "LOP3" in ins and "0xf0f0f0f" in ins:
            c["nibble_mask"] += 1
        if op.startswith("SHF.R.U32") and ", 0x4," in ins:
            c["nibble_shift"] += 1
        if op == "IMAD" and "0x1010101" not in ins:
            c["imad"] += 1
        if op.startswith("LDS.128"):
            c["lds128"] += 1
    return c


def main(path: str) -> None:
    text = open(path).read()
    for name, lines in kernel_sections(text):
        if "GemmUniversal" not in name:
            continue
        c = stats(lines)
        regs = c["sign_flip"]
        per4 = (c["nibble_mask"] + c["nibble_shift"] + regs * 2) / regs if regs else float("nan")
        print(f"{name[:90]}...\n  igmma={c['igmma']} serialized={c['igmma_serialized']} lds128={c['lds128']} "
              f"masks={c['nibble_mask']} shifts={c['nibble_shift']} imad={c['imad']} flips={regs} "
              f"-> ~{per4:.2f} instructions per 4 weights (mask/shift + IMAD + XOR)")


if __name__ == "__main__":
    main(sys.argv[1])
