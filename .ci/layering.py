# The layering of src/ (ARCHITECTURE.md): builds the graph of top-level
# modules from the `crate::` paths of non-test, non-comment code and fails
# when modules import each other in a circle.
#   python3 .ci/layering.py [REPO]   (-v prints the graph)
import os, re, sys
args = [a for a in sys.argv[1:] if a != '-v']
root = args[0] if args else '.'
mods = {}
for dp, _, fs in os.walk(os.path.join(root, 'src')):
    for f in fs:
        if not f.endswith('.rs'): continue
        p = os.path.join(dp, f); rel = os.path.relpath(p, os.path.join(root, 'src'))
        top = rel.split('/')[0].removesuffix('.rs')
        if top in ('lib', 'main'): continue
        text = open(p).read()
        text = re.split(r'#\[cfg\(test\)\]\s*mod tests', text)[0]
        text = '\n'.join(l for l in text.splitlines() if not l.strip().startswith('//'))
        deps = set(re.findall(r'crate::([a-z_]+)', text))
        # `use crate::{a, b::c}` groups
        for grp in re.findall(r'crate::\{([^}]*)\}', text):
            deps |= set(re.findall(r'(?:^|[,{\s])([a-z_]+)(?=::|\s*[,}]|$)', grp))
        mods.setdefault(top, set()).update(d for d in deps if d != top)
names = set(mods)
graph = {m: {d for d in ds if d in names} for m, ds in mods.items()}
# Tarjan SCC
idx = {}; low = {}; st = []; on = set(); out = []; c = [0]
def sc(v):
    idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in graph[v]:
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: out.append(comp)
sys.setrecursionlimit(10000)
for v in graph:
    if v not in idx: sc(v)
if '-v' in sys.argv:
    for m in sorted(graph): print(m, '->', ' '.join(sorted(graph[m])))
if out:
    print('modules importing each other in a circle:', '; '.join(' '.join(sorted(c)) for c in out), file=sys.stderr)
    sys.exit(1)
print('layering: no import cycle among', len(graph), 'modules')
