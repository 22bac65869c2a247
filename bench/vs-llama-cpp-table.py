#!/usr/bin/env python3
"""Prints the table of a bench/vs-llama-cpp.sh run: per type, thread count and test, llama.cpp's and Lutra's t/s
(mean ± sd over the repetitions, as both tools report them) and Lutra / llama.cpp. Given several run directories,
it prints the median over them of each engine's t/s and of the per-run ratio. --wide prints one row per type
(tests and thread counts as columns: llama.cpp / Lutra t/s, the median ratio, decode's % adjacent probes)."""
import glob
import json
import os
import statistics
import sys


def rows_of(directory):
    rows = {}
    for path in sorted(glob.glob(os.path.join(directory, '*-t*.json*'))):
        engine, type_, threads = os.path.basename(path).split('.')[0].split('-')
        text = open(path).read().strip()
        if not text:
            continue
        objects = json.loads(text) if text.startswith('[') else [json.loads(line) for line in text.splitlines() if line.startswith('{')]
        for o in objects:
            if o.get('kernel_choice', 'auto') != 'auto':
                continue
            test = 'pp%d' % o['n_prompt'] if o['n_prompt'] else 'tg%d' % o['n_gen']
            rows.setdefault((type_, int(threads[1:]), test), {})[engine] = o
    return rows


def cell(runs, key):
    pairs = [r[key] for r in runs if key in r and 'llama' in r[key] and 'lutra' in r[key]]
    if not pairs:
        return '–'
    llama = statistics.median(p['llama']['avg_ts'] for p in pairs)
    lutra = statistics.median(p['lutra']['avg_ts'] for p in pairs)
    ratio = statistics.median(p['lutra']['avg_ts'] / p['llama']['avg_ts'] for p in pairs)
    adjacent = [p['lutra']['adjacent_roofline_pct'] for p in pairs if p['lutra'].get('adjacent_roofline_pct') is not None]
    pct = ', %.0f %%' % statistics.median(adjacent) if adjacent and key[2].startswith('tg') else ''
    return '%.1f / %.1f (%.2f×%s)' % (llama, lutra, ratio, pct)


def wide(directories):
    runs = [rows_of(d) for d in directories]
    keys = {k for r in runs for k in r}
    types = sorted({k[0] for k in keys}, key=lambda t: ORDER.index(t) if t in ORDER else len(ORDER))
    columns = sorted({(k[1], k[2]) for k in keys}, key=lambda c: (c[0], not c[1].startswith('pp'), c[1]))
    print('| type | ' + ' | '.join('%s, %d thread%s' % (test, t, '' if t == 1 else 's') for t, test in columns) + ' |')
    print('| --- |' + ' ---: |' * len(columns))
    for type_ in types:
        print('| %s | %s |' % (type_, ' | '.join(cell(runs, (type_, t, test)) for t, test in columns)))


ORDER = ['F16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q4_K', 'Q6_K', 'Q2_K', 'TQ2_0', 'TQ1_0']


def main(directories):
    runs = [rows_of(d) for d in directories]
    keys = sorted({k for r in runs for k in r}, key=lambda k: (k[0], k[1], k[2]))
    print('| type | threads | test | llama.cpp t/s | Lutra t/s | Lutra / llama.cpp | Lutra % adjacent probes |')
    print('| --- | ---: | --- | ---: | ---: | ---: | ---: |')
    for key in keys:
        pairs = [r[key] for r in runs if key in r and 'llama' in r[key] and 'lutra' in r[key]]
        if not pairs:
            continue
        llama = [p['llama']['avg_ts'] for p in pairs]
        lutra = [p['lutra']['avg_ts'] for p in pairs]
        ratio = statistics.median(b / a for a, b in zip(llama, lutra))
        adjacent = [p['lutra'].get('adjacent_roofline_pct') for p in pairs if p['lutra'].get('adjacent_roofline_pct') is not None]
        if len(pairs) == 1:
            cells = '%.2f ± %.2f | %.2f ± %.2f' % (llama[0], pairs[0]['llama']['stddev_ts'], lutra[0], pairs[0]['lutra']['stddev_ts'])
        else:
            cells = '%.2f | %.2f' % (statistics.median(llama), statistics.median(lutra))
        pct = '%.0f %%' % statistics.median(adjacent) if adjacent and key[2].startswith('tg') else ''
        print('| %s | %d | %s | %s | %.2f× | %s |' % (key[0], key[1], key[2], cells, ratio, pct))


if __name__ == '__main__':
    arguments = [a for a in sys.argv[1:] if a != '--wide']
    if not arguments:
        sys.exit('usage: vs-llama-cpp-table.py [--wide] RUNDIR [RUNDIR ...]')
    (wide if '--wide' in sys.argv[1:] else main)(arguments)
