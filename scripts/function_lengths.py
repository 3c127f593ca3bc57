#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Lengths of the functions in C++ sources, and the check that keeps them short.

  function_lengths.py [--max N] [--top K] PATH...

Lists every function (free, member, or defined inside a class body; lambdas count toward the
function they are written in) of the .cc/.h/.cu/.cuh/.inc files under PATH, longest first, with its
lines from the opening brace to the closing one. With --max N it exits 1 if any function is longer
than N lines, unless the comment lines right above its signature contain "long-function:" followed
by the reason it must be that long.

A brace scanner, not a parser: it skips comments, strings and character literals, and decides what
a '{' opens from the text before it (namespace, class, a function's parameter list, or a block).
"""
import argparse
import os
import re
import sys

EXTS = ('.cc', '.h', '.cu', '.cuh', '.inc', '.hpp', '.cpp')
CONTROL = re.compile(r'\b(if|for|while|switch|catch|do|else|try)\b')
TYPE_SCOPE = re.compile(r'\b(namespace|class|struct|union|enum)\b')


def strip(text):
    """Comments, strings and character literals replaced by spaces (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i))
            i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif c == 'R' and text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(')' + (m.group(1) if m else '') + '"', i)
            j = n if end < 0 else end + len(m.group(1) if m else '') + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            j = min(j + 1, n)
            # a digit separator (1'000) is not a character literal
            if c == "'" and i > 0 and text[i - 1].isalnum() and j - i > 4:
                out.append(c)
                i += 1
                continue
            out.append(c + ' ' * (j - i - 2) + c if j - i >= 2 else c)
            i = j
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def functions(path):
    raw = open(path, encoding='utf-8', errors='replace').read()
    text = strip(raw)
    raw_lines = raw.split('\n')
    stack = []  # (kind, start line, header)
    header_start = 0
    line = 1
    found = []
    for i, c in enumerate(text):
        if c == '\n':
            line += 1
        if c in ';':
            if not stack or stack[-1][0] != 'function' and stack[-1][0] != 'block':
                header_start = i + 1
        elif c == '{':
            header = text[header_start:i]
            in_function = any(k in ('function', 'block') for k, _, _ in stack)
            h = ' '.join(header.split())
            if in_function:
                kind = 'block'
            elif re.search(r'\bnamespace\b', h) or re.search(r'extern\s+"', header):
                kind = 'namespace'
            elif ')' in h and not CONTROL.match(h.split('(')[0].strip().split()[-1] if h.split('(')[0].strip() else ''):
                # a parameter list before the brace: a function (constructor initializer lists and
                # trailing qualifiers included), unless the parenthesis belongs to a type's base
                # or to an initializer
                kind = 'function' if not re.search(r'=\s*$', h) else 'other'
                if TYPE_SCOPE.search(h.split('(')[0]) and not re.search(r'\boperator\b', h):
                    kind = 'class' if not re.search(r'\)\s*(const|noexcept|override|final|->.*)?\s*$', h) or h.split('(')[0].strip().endswith(('struct', 'class')) else 'function'
            elif TYPE_SCOPE.search(h):
                kind = 'class'
            else:
                kind = 'other'
            stack.append((kind, line, h))
            header_start = i + 1
        elif c == '}':
            if stack:
                kind, start, h = stack.pop()
                if kind == 'function':
                    found.append((line - start + 1, start, line, h))
            if not stack or stack[-1][0] in ('namespace', 'class'):
                header_start = i + 1
    result = []
    for length, start, end, h in found:
        name = h.split('(')[0].split()[-1] if h.split('(')[0].split() else h[:40]
        # the signature's first line (it may span lines before the brace), then the comment above
        sig = start
        while sig > 1:
            prev = raw_lines[sig - 2].strip()
            if not prev or prev.startswith(('//', '#')) or prev.endswith((';', '{', '}', ':')):
                break
            sig -= 1
        k = sig - 2
        comment = []
        while k >= 0 and raw_lines[k].strip().startswith('//'):
            comment.append(raw_lines[k])
            k -= 1
        excused = any('long-function:' in c for c in comment)
        result.append((length, path, start, name, excused))
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('paths', nargs='+')
    ap.add_argument('--max', type=int, default=0)
    ap.add_argument('--top', type=int, default=0)
    args = ap.parse_args()
    rows = []
    for p in args.paths:
        files = [p] if os.path.isfile(p) else [
            os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs if f.endswith(EXTS)]
        for f in sorted(files):
            rows.extend(functions(f))
    rows.sort(key=lambda r: -r[0])
    shown = rows[:args.top] if args.top else ([] if args.max else rows)
    for length, path, start, name, excused in shown:
        print(f'{length:5d}  {path}:{start}  {name}{"  (long-function: excused)" if excused else ""}')
    if args.max:
        over = [r for r in rows if r[0] > args.max and not r[4]]
        for length, path, start, name, _ in over:
            print(f'{path}:{start}: {name} is {length} lines, over {args.max}: split it, or say '
                  f'why it must be this long in a "// long-function: ..." comment above it',
                  file=sys.stderr)
        return 1 if over else 0
    return 0


if __name__ == '__main__':
    sys.exit(main())
