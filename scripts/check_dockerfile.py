#!/usr/bin/env python3
"""Checks a Dockerfile without a Docker engine (CI runs it on ./Dockerfile).

  python scripts/check_dockerfile.py [Dockerfile] [--context DIR]

Parses the file with the ``dockerfile`` package (Python bindings of Docker's
own Go parser, BuildKit's instruction set) and checks, for the final stage:

* every instruction is one Docker knows, FROM comes first (after ARGs), and
  the ARGs that FROM uses are declared before it with a default;
* every COPY/ADD source exists in the build context and is not excluded by
  ``.dockerignore``; so are the files the image needs from the context: the
  scripts RUN runs, ``pyproject.toml`` and its package data;
* a RUN runs the install script (default ``scripts/install.sh``) and CI runs
  the same script (followed from ``.ci/run`` through the scripts it calls),
  so every install step of the image also runs in CI;
* ENTRYPOINT is in exec (JSON) form, so ``docker run IMAGE ARGS`` reaches the
  program, and resolves to a console script of ``pyproject.toml`` in the venv
  the install script creates (``<repo>/.venv/bin``) or to a file COPY brings
  in; CMD is in exec form too.

Exit status 0 when all checks pass, 1 otherwise (one ``FILE:LINE: problem``
line each).
"""

from __future__ import annotations

import argparse
import dataclasses
import posixpath
import re
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Dict, List, Optional, Sequence, Set, Tuple

import dockerfile

REPO = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = 'scripts/install.sh'
CI_ENTRY = '.ci/run'
# The PATH of Docker's default environment (and of the usual base images).
DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
KNOWN_INSTRUCTIONS = frozenset(c.upper() for c in dockerfile.all_cmds())

# A shell-script path in a command line: `bash scripts/x.sh`, `./x.sh`, `. a/b.sh`.
_SCRIPT_RE = re.compile(r'(?:^|[\s;&|(`"\'])((?:\.{0,2}/)?[\w.-]+(?:/[\w.-]+)*\.sh)'
                        r'(?=$|[\s;&|)`"\'])')
_VAR_RE = re.compile(r'\$(?:\{(\w+)(?::?[-+][^}]*)?\}|(\w+))')


@dataclasses.dataclass
class Report:
  """What the check found: problems (each fails it) and facts for the summary."""

  problems: List[str] = dataclasses.field(default_factory=list)
  facts: List[str] = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    return not self.problems


@dataclasses.dataclass(frozen=True)
class _Copy:
  """A COPY/ADD that put context path ``source`` (a file or folder) at ``target``."""

  target: PurePosixPath
  source: str  # relative to the context, '' for the context itself
  folder: bool


# --- .dockerignore ----------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern:
  """Docker's .dockerignore pattern (Go filepath.Match plus ``**``) as a regex."""
  out, i = [], 0
  while i < len(pattern):
    if pattern.startswith('**', i):
      i += 2
      if pattern.startswith('/', i):
        i += 1
        out.append('(?:.*/)?')
      else:
        out.append('.*')
      continue
    ch = pattern[i]
    if ch == '*':
      out.append('[^/]*')
    elif ch == '?':
      out.append('[^/]')
    elif ch == '[' and ']' in pattern[i + 1:]:
      j = pattern.index(']', i + 1)
      body = pattern[i + 1:j]
      if body[:1] in ('^', '!'):
        body = '^' + body[1:]
      out.append(f'[{body}]')
      i = j + 1
      continue
    elif ch == '\\' and i + 1 < len(pattern):
      out.append(re.escape(pattern[i + 1]))
      i += 2
      continue
    else:
      out.append(re.escape(ch))
    i += 1
  return re.compile(''.join(out) + r'\Z')


def read_dockerignore(context: Path) -> List[Tuple[bool, re.Pattern]]:
  """(is an exception ``!``, pattern) per rule of ``context/.dockerignore``."""
  path = context / '.dockerignore'
  if not path.is_file():
    return []
  rules = []
  for line in path.read_text(encoding='utf-8').splitlines():
    line = line.strip()
    if not line or line.startswith('#'):
      continue
    negate = line.startswith('!')
    pattern = posixpath.normpath(line.lstrip('!').strip().lstrip('/'))
    rules.append((negate, _pattern_regex(pattern)))
  return rules


def is_ignored(rel: str, rules: Sequence[Tuple[bool, re.Pattern]]) -> bool:
  """Whether context path ``rel`` stays out of the build context.

  A rule matching a folder excludes what is inside; later rules win.
  """
  if not rel or not rules:
    return False
  parts = rel.split('/')
  prefixes = ['/'.join(parts[:k]) for k in range(1, len(parts) + 1)]
  ignored = False
  for negate, regex in rules:
    if any(regex.match(p) for p in prefixes):
      ignored = not negate
  return ignored


# --- CI ----------------------------------------------------------------------


def scripts_in(text: str) -> List[str]:
  """Shell-script paths a command line runs, in order (comments skipped)."""
  found = []
  for line in text.splitlines():
    if line.lstrip().startswith('#'):
      continue
    found += _SCRIPT_RE.findall(line)
  return found


def ci_scripts(context: Path, entry: str = CI_ENTRY) -> Optional[Set[str]]:
  """Context paths of every script CI runs, from ``entry`` on; None if no entry.

  A script's relative paths are taken from the repository root (ours ``cd``
  there first), else from the script's own folder.
  """
  if not (context / entry).is_file():
    return None
  seen: Set[str] = set()
  todo = [entry]
  while todo:
    rel = todo.pop()
    if rel in seen:
      continue
    seen.add(rel)
    text = (context / rel).read_text(encoding='utf-8', errors='replace')
    for script in scripts_in(text):
      for base in ('', posixpath.dirname(rel)):
        candidate = posixpath.normpath(posixpath.join(base, script))
        if (context / candidate).is_file():
          todo.append(candidate)
          break
  return seen


# --- The Dockerfile ----------------------------------------------------------


def _expand(text: str, variables: Dict[str, Optional[str]]) -> Tuple[str, List[str]]:
  """``$X``/``${X}`` replaced by their values; also the names with no value."""
  missing = []

  def value(m: re.Match) -> str:
    name = m.group(1) or m.group(2)
    if variables.get(name) is None:
      missing.append(name)
      return ''
    return variables[name]

  return _VAR_RE.sub(value, text), missing


def _image_path(path: str, workdir: PurePosixPath) -> PurePosixPath:
  return PurePosixPath(posixpath.normpath(str(workdir / path)))


def _context_path(image_path: PurePosixPath, copies: Sequence[_Copy]) -> Optional[str]:
  """The context path a COPY put at ``image_path`` (the latest COPY wins)."""
  for c in reversed(copies):
    if c.folder:
      try:
        rel = image_path.relative_to(c.target)
      except ValueError:
        continue
      if str(rel) == '.':
        return c.source
      return posixpath.normpath(posixpath.join(c.source, str(rel)))
    if image_path == c.target:
      return c.source
  return None


def _pyproject(context: Path) -> dict:
  path = context / 'pyproject.toml'
  if not path.is_file():
    return {}
  with open(path, 'rb') as f:
    return tomllib.load(f)


def _package_data(context: Path, project: dict) -> List[str]:
  """Context paths of the package data ``pyproject.toml`` declares."""
  declared = project.get('tool', {}).get('setuptools', {}).get('package-data', {})
  files = []
  for package, patterns in declared.items():
    folder = context / package.replace('.', '/')
    for pattern in patterns:
      files += [p.relative_to(context).as_posix() for p in sorted(folder.glob(pattern))
                if p.is_file()]
  return files


def check(path: Path, context: Optional[Path] = None,
          install_script: str = INSTALL_SCRIPT, ci_entry: str = CI_ENTRY) -> Report:
  """Checks the Dockerfile at ``path`` with build context ``context``.

  Args:
    path: the Dockerfile.
    context: the build context (default: the Dockerfile's folder, as
      ``docker build FOLDER`` has it).
    install_script: context path of the script that installs the project.
    ci_entry: context path of CI's entry script.
  """
  context = (context or path.parent).resolve()
  report = Report()

  def problem(line: Optional[int], message: str) -> None:
    report.problems.append(f'{path}:{line}: {message}' if line else f'{path}: {message}')

  try:
    commands = dockerfile.parse_file(str(path))
  except (dockerfile.GoIOError, dockerfile.GoParseError) as e:
    problem(None, f'cannot parse: {e}')
    return report
  ignore = read_dockerignore(context)
  global_args: Dict[str, Optional[str]] = {}
  stage_args: Dict[str, Optional[str]] = {}
  env: Dict[str, Optional[str]] = {}
  workdir = PurePosixPath('/')
  copies: List[_Copy] = []
  # RUN scripts: line, as written, path in the image, context path (None: not COPY'd)
  runs: List[Tuple[int, str, PurePosixPath, Optional[str]]] = []
  entrypoint = cmd = None
  base = None

  for c in commands:
    line, name = c.start_line, c.cmd.upper()
    if name not in KNOWN_INSTRUCTIONS:
      problem(line, f'unknown instruction {c.cmd!r} (known: '
              f'{", ".join(sorted(KNOWN_INSTRUCTIONS))}).')
      continue
    if base is None and name not in ('ARG', 'FROM'):
      problem(line, f'{name} before the first FROM (only ARG may come first).')
      continue
    variables = {**global_args, **stage_args, **env}
    if name == 'ARG':
      for item in c.value:
        key, eq, default = item.partition('=')
        (global_args if base is None else stage_args)[key] = default if eq else None
    elif name == 'FROM':
      image, missing = _expand(c.value[0], global_args)
      for var in missing:
        problem(line, f'FROM uses ${{{var}}}, but no ARG before the first FROM '
                'declares it with a default.')
      base = image or c.value[0]
      # A new stage: nothing of the previous one carries over.
      stage_args, env, workdir, copies, runs = {}, {}, PurePosixPath('/'), [], []
      entrypoint = cmd = None
    elif name == 'WORKDIR':
      workdir = _image_path(_expand(c.value[0], variables)[0], workdir)
    elif name == 'ENV':
      pairs = list(c.value)
      for key, value in zip(pairs[::2], pairs[1::2]):
        current = {**variables, 'PATH': env.get('PATH') or DEFAULT_PATH}
        env[key] = _expand(value, current)[0]
    elif name in ('COPY', 'ADD'):
      if any(f.startswith('--from') for f in c.flags):
        continue  # from another stage or image: not the build context
      *sources, dest = c.value
      dest = _expand(dest, variables)[0]
      target = _image_path(dest, workdir)
      into_folder = dest.endswith('/') or len(sources) > 1
      for source in sources:
        if name == 'ADD' and re.match(r'(https?|git)://|git@', source):
          continue
        rel = posixpath.normpath(source.lstrip('/'))
        rel = '' if rel == '.' else rel
        if rel.startswith('..'):
          problem(line, f'{name} {source}: outside the build context {context}.')
          continue
        matches = sorted(context.glob(rel)) if rel else [context]
        if any(ch in rel for ch in '*?['):
          into_folder = True
        if not matches:
          problem(line, f'{name} {source}: no such file or folder in the build '
                  f'context {context}.')
          continue
        kept = [m for m in matches if not is_ignored(
            m.relative_to(context).as_posix() if m != context else '', ignore)]
        if not kept:
          problem(line, f'{name} {source}: excluded from the build context by '
                  '.dockerignore.')
          continue
        for m in kept:
          m_rel = m.relative_to(context).as_posix() if m != context else ''
          if m.is_dir():
            copies.append(_Copy(target, m_rel, True))
          else:
            copies.append(_Copy(target / m.name if into_folder else target,
                                m_rel, False))
    elif name == 'RUN':
      for script in scripts_in(' '.join(c.value)):
        image = _image_path(_expand(script, variables)[0], workdir)
        runs.append((line, script, image, _context_path(image, copies)))
    elif name == 'ENTRYPOINT':
      entrypoint = c
    elif name == 'CMD':
      cmd = c

  if base is None:
    problem(None, 'no FROM instruction.')
    return report
  report.facts.append(f'base image {base}')

  # Scripts RUN runs must come from the context.
  installs: List[PurePosixPath] = []  # where the install script is in the image
  for line, script, image, rel in runs:
    if rel is None:
      problem(line, f'RUN runs {script}, which no COPY/ADD puts in the image.')
    elif not (context / rel).is_file():
      problem(line, f'RUN runs {script} ({rel}), which is not in the build '
              f'context {context}.')
    elif is_ignored(rel, ignore):
      problem(line, f'RUN runs {script} ({rel}), which .dockerignore excludes.')
    elif rel == install_script:
      installs.append(image)

  # The install script: the image's and CI's must be the same.
  ci = ci_scripts(context, ci_entry)
  if ci is None:
    problem(None, f'{ci_entry} is not in {context}: cannot tell which install '
            'script CI runs.')
  elif install_script not in ci:
    problem(None, f'CI ({ci_entry}) never runs {install_script} (it runs '
            f'{", ".join(sorted(ci - {ci_entry})) or "no script"}).')
  if not installs:
    problem(None, f'no RUN runs {install_script}, the install script CI runs; '
            'install with it so CI exercises every install step of the image.')
  else:
    report.facts.append(f'installs with {install_script} (as CI: '
                        f'{ci_entry} -> ... -> {install_script})')

  # Where the install puts the venv, and the console scripts it provides.
  project = _pyproject(context)
  console = sorted(project.get('project', {}).get('scripts', {}))
  # The install script cds to its folder's parent (the repository root) and
  # creates .venv there.
  venv_bins = [image.parent.parent / '.venv' / 'bin' for image in installs]
  if installs:
    for needed in ['pyproject.toml'] + _package_data(context, project):
      if is_ignored(needed, ignore):
        problem(None, f'{needed} is needed by the install (pyproject.toml, '
                'package data) but .dockerignore excludes it.')

  # ENTRYPOINT and CMD.
  if entrypoint is None:
    problem(None, 'no ENTRYPOINT: `docker run IMAGE ARGS` would not forward to '
            'the program.')
  elif not entrypoint.json:
    problem(entrypoint.start_line, 'ENTRYPOINT in shell form: `docker run IMAGE '
            'ARGS` would not reach the program; use the exec form ["/path/prog"].')
  else:
    program = entrypoint.value[0]
    search = env.get('PATH') or DEFAULT_PATH
    candidates = ([PurePosixPath(program)] if program.startswith('/') else
                  [PurePosixPath(d) / program for d in search.split(':')
                   if d.startswith('/')])
    how = None
    for candidate in candidates:
      if candidate.parent in venv_bins and candidate.name in console:
        how = (f'console script {candidate.name!r} of pyproject.toml in the venv '
               f'{install_script} creates ({candidate.parent})')
        break
      rel = _context_path(candidate, copies)
      if rel and (context / rel).is_file() and not is_ignored(rel, ignore):
        how = f'{rel} from the build context'
        break
    if how is None:
      venvs = ', '.join(str(v) for v in venv_bins) or 'none'
      problem(entrypoint.start_line,
              f'ENTRYPOINT {program}: no such program in the image: neither a '
              f'console script of pyproject.toml ({", ".join(console) or "none"}) '
              f'in the install\'s venv ({venvs}) nor a file COPY puts there.')
    else:
      report.facts.append(f'ENTRYPOINT {program}: {how}')
    if cmd is not None and not cmd.json:
      problem(cmd.start_line, 'CMD in shell form would pass "/bin/sh -c ..." to '
              'the ENTRYPOINT; use the exec form ["--help"].')
  return report


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('dockerfile', nargs='?', type=Path, default=REPO / 'Dockerfile')
  parser.add_argument('--context', type=Path, default=None,
                      help='build context (default: the Dockerfile\'s folder)')
  parser.add_argument('--install_script', default=INSTALL_SCRIPT)
  parser.add_argument('--ci_entry', default=CI_ENTRY)
  args = parser.parse_args(argv)
  report = check(args.dockerfile, args.context, args.install_script, args.ci_entry)
  for line in report.problems:
    print(line, file=sys.stderr)
  if not report.ok:
    print(f'{args.dockerfile}: {len(report.problems)} problem(s).', file=sys.stderr)
    return 1
  print(f'{args.dockerfile}: OK (' + '; '.join(report.facts) + ').')
  return 0


if __name__ == '__main__':
  sys.exit(main())
