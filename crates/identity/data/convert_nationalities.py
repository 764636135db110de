#!/usr/bin/env python3
"""Writes nationalities.tsv (ISO 3166-1 numeric, alpha-3, English name) from
the MIT-licensed `iso3166` package.

Usage:
    pip download --no-deps -d /tmp/iso iso3166==3.0.0
    cd /tmp/iso && python3 -m zipfile -e iso3166-3.0.0-py3-none-any.whl x
    python3 convert_nationalities.py /tmp/iso/x nationalities.tsv

Format: one country per line, sorted by numeric code, tab-separated:
`NNN<TAB>AAA<TAB>Name`. The crate embeds the file and checks the numeric
codes of foreign permanent resident ID numbers against it.
"""
import sys


def main():
    sys.path.insert(0, sys.argv[1])
    import iso3166

    rows = sorted((c.numeric, c.alpha3, c.name) for c in iso3166.countries)
    with open(sys.argv[2], "w", encoding="utf-8", newline="\n") as f:
        for numeric, alpha3, name in rows:
            assert len(numeric) == 3 and numeric.isdigit() and "\t" not in name
            f.write(f"{numeric}\t{alpha3}\t{name}\n")
    print(f"{len(rows)} countries")


if __name__ == "__main__":
    main()
