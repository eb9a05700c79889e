"""Workloads: one package per workload, found by name through ``registry``."""

from __future__ import annotations

import inspect
from typing import Any, List, Optional

from algoperf import spec
from workloads import registry


_DATASET_OPTIONS = ('imagenet_v2_data_dir', 'tokenizer_vocab_path')


def list_workloads() -> List[str]:
  """Names :func:`get_workload` accepts, sorted."""
  return registry.names()


def get_workload(name: str, **options: Any) -> spec.Workload:
  """A new instance of workload ``name``.

  ``options`` go to the workload's constructor, e.g. ``benchmark='v0.6'``,
  ``data_dir=None``, ``synthetic=False``; ``imagenet_v2_data_dir`` and
  ``tokenizer_vocab_path`` reach only the workloads that take them. Unknown names raise ``ValueError`` listing
  the known ones.
  """
  cls = registry.get_workload_class(name)
  # Options of one dataset (ImageNet-v2's folder, LibriSpeech's tokenizer)
  # reach only the workloads that take them.
  accepted = inspect.signature(cls).parameters
  for option in _DATASET_OPTIONS:
    if option in options and option not in accepted:
      options.pop(option)
  return cls(**options)


def get_base_workload_name(name: str, benchmark: Optional[str] = None) -> str:
  """The base workload of ``name`` (itself for base workloads).

  Variants such as ``imagenet_resnet_silu`` map to their base through the
  benchmark version's facts; a registered workload the version does not list
  is its own base.
  """
  from algoperf import benchmarks  # pylint: disable=import-outside-toplevel

  versions = [benchmark] if benchmark else [None, *benchmarks.available_versions()]
  for version in versions:
    facts = benchmarks.load(version).workloads.get(name)
    if facts is not None:
      return facts.base_workload
  if name in registry.WORKLOADS:
    return name
  known = sorted(set(registry.names()).union(benchmarks.load(benchmark).workloads))
  raise ValueError(f'Unknown workload {name!r}. Known workloads: {", ".join(known)}.')


__all__ = ['get_base_workload_name', 'get_workload', 'list_workloads']
