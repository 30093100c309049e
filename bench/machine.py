"What the benchmarks record about the machine they ran on, and how they write their results"
import platform
from pathlib import Path

def cpu_model() -> str:
    "The CPU's model name from /proc/cpuinfo (else what `platform` knows)"
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or 'unknown'

def write_results(out, stem: str, R: dict, md: str):
    "`out/stem.json` (`R`) and `out/stem.md` (`md`), each written atomically; nothing when `out` is None"
    if out is None: return
    from multifit_fastai.core import atomic_write_json, atomic_write_text
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out/f'{stem}.json', R); atomic_write_text(out/f'{stem}.md', md)
