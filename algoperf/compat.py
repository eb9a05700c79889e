"""What lets a submission written for an older reference run unchanged.

Two things changed under the v0.5-era submissions:

- the reference's package was called ``algorithmic_efficiency`` (now
  ``algoperf``): ``from algorithmic_efficiency import spec``;
- JAX 0.6 removed the ``jax.tree_map``-style aliases of ``jax.tree_util``,
  and later releases the ``a_min``/``a_max`` keywords of ``jnp.clip`` (now
  ``min``/``max``).

``shims_for(files)`` finds which of these a submission's source needs, and
``Shims`` installs exactly those (and takes them away again), so nothing
changes for a submission that does not need them. Finding whether a
submission uses the ``jax.pmap`` contract (``uses_pmap``) is also a reading
of its source.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.util
import logging
import re
import sys
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

OLD_PACKAGE = 'algorithmic_efficiency'
NEW_PACKAGE = 'algoperf'
# The aliases JAX removed, and the jax.tree_util function each stood for.
REMOVED_TREE_ALIASES = {
    'tree_map': 'tree_map',
    'tree_multimap': 'tree_map',
    'tree_flatten': 'tree_flatten',
    'tree_unflatten': 'tree_unflatten',
    'tree_leaves': 'tree_leaves',
    'tree_structure': 'tree_structure',
    'tree_transpose': 'tree_transpose',
}
CLIP_SHIM = 'jax.numpy.clip(a_min=, a_max=)'
_OLD_IMPORT = re.compile(r'^\s*(from|import)\s+' + OLD_PACKAGE + r'\b', re.M)
_TREE_CALL = re.compile(r'\bjax\.(' + '|'.join(REMOVED_TREE_ALIASES) + r')\b')


def _python_files(files: Iterable[Path]) -> List[Path]:
  out = []
  for f in files:
    f = Path(f)
    if f.is_dir():
      out.extend(sorted(p for p in f.rglob('*.py') if p.is_file()))
    elif f.suffix == '.py' and f.is_file():
      out.append(f)
  return out


def shims_for(files: Iterable[Path]) -> List[str]:
  """The shims the given source files (or folders of them) need, by name.

  ``'algorithmic_efficiency'`` if one imports the old package name, and
  ``'jax.<alias>'`` for each removed ``jax.tree_*`` alias one calls.
  """
  needed: List[str] = []
  for path in _python_files(files):
    try:
      text = path.read_text(errors='replace')
    except OSError:
      continue
    if _OLD_IMPORT.search(text) and OLD_PACKAGE not in needed:
      needed.append(OLD_PACKAGE)
    for name in _TREE_CALL.findall(text):
      if f'jax.{name}' not in needed:
        needed.append(f'jax.{name}')
    if CLIP_SHIM not in needed and _calls_clip_with_old_keywords(text):
      needed.append(CLIP_SHIM)
  return needed


def _calls_clip_with_old_keywords(text: str) -> bool:
  """Whether the source calls ``<x>.clip(..., a_min=..., a_max=...)``."""
  if 'a_min' not in text and 'a_max' not in text:
    return False
  try:
    tree = ast.parse(text)
  except SyntaxError:
    return False
  return any(
      isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
      and node.func.attr == 'clip'
      and any(k.arg in ('a_min', 'a_max') for k in node.keywords)
      for node in ast.walk(tree))


def _clip_accepting_old_keywords(clip):
  """``clip`` that also takes the removed ``a_min``/``a_max`` keywords."""

  def shimmed(*args, a_min=None, a_max=None, **kwargs):
    if a_min is not None:
      kwargs.setdefault('min', a_min)
    if a_max is not None:
      kwargs.setdefault('max', a_max)
    return clip(*args, **kwargs)

  shimmed.__wrapped__ = clip
  return shimmed


def uses_pmap(source: str) -> bool:
  """Whether a submission's source calls ``jax.pmap`` (the v0.5 contract).

  Read from the syntax tree, so a comment or a string that mentions pmap
  does not count.
  """
  try:
    tree = ast.parse(source)
  except SyntaxError:
    return False
  for node in ast.walk(tree):
    if isinstance(node, ast.Attribute) and node.attr == 'pmap':
      return True
    if isinstance(node, ast.ImportFrom) and node.module == 'jax' and any(
        alias.name == 'pmap' for alias in node.names):
      return True
  return False


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Imports ``algorithmic_efficiency[.x]`` as the module ``algoperf[.x]``."""

  def find_spec(self, fullname, path=None, target=None):  # noqa: D102
    if fullname != OLD_PACKAGE and not fullname.startswith(OLD_PACKAGE + '.'):
      return None
    new_name = NEW_PACKAGE + fullname[len(OLD_PACKAGE):]
    if importlib.util.find_spec(new_name) is None:
      return None  # ModuleNotFoundError names the old module, as it should.
    return importlib.util.spec_from_loader(fullname, self)

  def create_module(self, spec):  # noqa: D102
    return importlib.import_module(NEW_PACKAGE + spec.name[len(OLD_PACKAGE):])

  def exec_module(self, module):  # noqa: D102
    pass  # The module is the already-imported algoperf one.


def _describe(name: str) -> str:
  if name == OLD_PACKAGE:
    return f'{OLD_PACKAGE} -> {NEW_PACKAGE}'
  if name == CLIP_SHIM:
    return 'jnp.clip(a_min=, a_max=) -> jnp.clip(min=, max=)'
  return f'{name} -> jax.tree_util.{REMOVED_TREE_ALIASES[name[4:]]}'


class Shims:
  """Installs the named shims; ``remove()`` (or leaving a ``with``) undoes them."""

  def __init__(self, names: Sequence[str]):
    self.names = list(names)
    self._finder: Optional[_AliasFinder] = None
    self._added: List[str] = []
    self._clip = None  # The original jnp.clip while the shim is in place.

  def install(self) -> 'Shims':
    """Installs the shims (idempotent for names already there)."""
    import jax  # pylint: disable=import-outside-toplevel

    for name in self.names:
      if name == OLD_PACKAGE and self._finder is None:
        self._finder = _AliasFinder()
        sys.meta_path.insert(0, self._finder)
      elif name == CLIP_SHIM and self._clip is None:
        self._clip = jax.numpy.clip
        jax.numpy.clip = _clip_accepting_old_keywords(self._clip)
      elif name.startswith('jax.'):
        attr = name[len('jax.'):]
        if attr in REMOVED_TREE_ALIASES and not hasattr(jax, attr):
          setattr(jax, attr,
                  getattr(jax.tree_util, REMOVED_TREE_ALIASES[attr]))
          self._added.append(attr)
    if self.names:
      logging.warning(
          'This submission was written for an older reference or JAX: '
          'shimmed %s (for this run only).', ', '.join(
              _describe(n) for n in self.names))
    return self

  def remove(self) -> None:
    """Takes the shims away again."""
    import jax  # pylint: disable=import-outside-toplevel

    if self._finder is not None:
      sys.meta_path.remove(self._finder)
      self._finder = None
      for name in [m for m in sys.modules if m == OLD_PACKAGE
                   or m.startswith(OLD_PACKAGE + '.')]:
        del sys.modules[name]
    for attr in self._added:
      if hasattr(jax, attr):
        delattr(jax, attr)
    self._added = []
    if self._clip is not None:
      jax.numpy.clip = self._clip
      self._clip = None

  def __enter__(self) -> 'Shims':
    return self.install()

  def __exit__(self, *exc) -> None:
    self.remove()
