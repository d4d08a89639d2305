"""Smoke-run every chapter script, each in its own process, and report.

``python -m dlnotes.check`` (what ``nox -s check`` calls) runs each ``*.py`` in
math_notes/, grus/ and raschka/ with ``DLNOTES_SMOKE=1`` and a non-interactive
matplotlib backend, from the script's own folder (as the VS Code interactive
window does), prints one line per script and a summary, and exits non-zero if
any script failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dlnotes.env import device, repo_root

FOLDERS = ("math_notes", "grus", "raschka")


@dataclass
class Result:
    script: Path
    seconds: float
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def discover(root: Path) -> list[Path]:
    """All chapter scripts, folder by folder, in name order."""
    return [p for folder in FOLDERS for p in sorted((root / folder).glob("*.py"))]


def run_one(script: Path, threads: int, timeout: float) -> Result:
    """Run `script` in smoke mode in a fresh interpreter from its own folder."""
    env = dict(os.environ)
    env.update(
        DLNOTES_SMOKE="1",
        MPLBACKEND="Agg",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS=str(threads),
        # tqdm bars from parallel scripts would interleave; the runner reports instead.
        TQDM_DISABLE="1",
    )
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, script.name],
            cwd=script.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout or ""
        partial = partial.decode() if isinstance(partial, bytes) else partial
        code, output = -1, partial + f"\n(stopped after the {timeout:.0f} s time limit)"
    return Result(script, time.perf_counter() - start, code, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="*", type=Path, help="default: every chapter script")
    parser.add_argument("-j", "--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per script")
    parser.add_argument("--device", help="cpu, cuda or mps (default: $DLNOTES_DEVICE or auto)")
    args = parser.parse_args(argv)

    if args.device:
        os.environ["DLNOTES_DEVICE"] = args.device
    chosen = device()  # an unknown or unavailable device stops here, in one line
    import torch

    print(f"device: {chosen} | torch {torch.__version__}", flush=True)

    root = repo_root()
    scripts = [p.resolve() for p in args.scripts] or discover(root)
    if not scripts:
        print(f"no scripts found under {root}", file=sys.stderr)
        return 1
    jobs = max(1, args.jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    width = max(len(str(p.relative_to(root))) for p in scripts)
    print(f"smoke-running {len(scripts)} scripts, {jobs} at a time", flush=True)

    start = time.perf_counter()
    failed: list[Result] = []
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(run_one, s, threads, args.timeout) for s in scripts]
        for future in futures:
            result = future.result()
            name = str(result.script.relative_to(root))
            status = "ok" if result.ok else "FAILED"
            print(f"  {name:<{width}}  {result.seconds:6.1f} s  {status}", flush=True)
            if not result.ok:
                failed.append(result)

    for result in failed:
        tail = "\n".join(result.output.rstrip().splitlines()[-25:])
        print(f"\n--- {result.script.relative_to(root)} (exit {result.returncode}) ---\n{tail}")
    total = time.perf_counter() - start
    passed = len(scripts) - len(failed)
    print(f"\nsmoke check took {total:.1f} s")
    print(f"scripts: {passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
