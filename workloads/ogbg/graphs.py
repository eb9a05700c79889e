"""Molecules in host memory and the reference's padded graph batches made from them.

The reference batches ogbg-molpcba with ``jraph.dynamically_batch``: each
device's part of a batch (a *shard*) takes graphs in stream order for as
long as they fit a budget of ``26 g`` nodes, ``56 g`` directed edges and
``g`` graphs (``g`` = graphs per device, the global batch size over the
device count), then is padded with ``jraph.pad_with_graphs`` to exactly
``26 g + 1`` nodes, ``56 g`` edges and ``g + 1`` graphs; the shards are
concatenated with ``jraph.batch_np``. Every edge of a molecule appears twice,
forwards then backwards. ``targets`` and ``weights`` have a row per graph
slot: labels with NaN (unmeasured) replaced by 0, and weight 1 exactly where
a real graph has a measured label.

This module builds the same arrays with vectorised numpy (no per-graph
``GraphsTuple`` objects) from a :class:`GraphStore`, and computes the
greedy packing from graph sizes alone (:func:`pack_counts`), so a pipeline
can find where any batch starts without assembling the ones before it.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import jax
import jraph
import numpy as np

from workloads.batching import local_positions

# The reference's budget per graph of the batch size (molpcba's means).
AVG_NODES_PER_GRAPH = 26
AVG_EDGES_PER_GRAPH = 56
NUM_TASKS = 128
NUM_NODE_FEATURES = 9
NUM_EDGE_FEATURES = 3

Batch = Dict[str, object]


@dataclasses.dataclass(frozen=True)
class Budget:
  """What one device's shard holds: at most ``graphs`` real graphs, ``nodes``
  real nodes and ``edges`` directed edges, padded to ``n_graph``, ``n_node``
  and ``n_edge`` slots (one padding graph and node at least, as jraph needs).
  """

  graphs: int
  nodes: int
  edges: int

  @classmethod
  def for_graphs(cls, graphs_per_device: int) -> 'Budget':
    """The reference's budget for ``graphs_per_device`` average graphs."""
    g = int(graphs_per_device)
    if g < 1:
      raise ValueError(f'A shard needs room for at least one graph, not {g}.')
    return cls(g, AVG_NODES_PER_GRAPH * g, AVG_EDGES_PER_GRAPH * g)

  @property
  def n_graph(self) -> int:
    return self.graphs + 1

  @property
  def n_node(self) -> int:
    return self.nodes + 1

  @property
  def n_edge(self) -> int:
    return self.edges

  def fits(self, n_node: np.ndarray, n_edge: np.ndarray) -> np.ndarray:
    """Which graphs (nodes, directed edges) fit an empty shard."""
    return (np.asarray(n_node) <= self.nodes) & (np.asarray(n_edge) <= self.edges)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
  """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])``, vectorised."""
  counts = np.asarray(counts, np.int64)
  total = int(counts.sum())
  if total == 0:
    return np.zeros((0,), np.int64)
  first = np.cumsum(counts) - counts  # Where each range begins in the output.
  return (np.repeat(np.asarray(starts, np.int64) - first, counts)
          + np.arange(total, dtype=np.int64))


@dataclasses.dataclass(frozen=True)
class GraphStore:
  """Graphs as flat arrays, one row block per graph (as the tfds records hold them).

  ``edge_index`` holds each record's edges once, as node indices within its
  graph; batches add the reverse edges. ``labels`` are NaN where a task was
  not measured.
  """

  n_node: np.ndarray  # int64 (G,)
  n_edge: np.ndarray  # int64 (G,): undirected edges, rows of edge_index.
  nodes: np.ndarray  # float32 (sum n_node, 9)
  edge_feat: np.ndarray  # float32 (sum n_edge, 3)
  edge_index: np.ndarray  # int32 (sum n_edge, 2)
  labels: np.ndarray  # float32 (G, 128)
  node_start: np.ndarray = dataclasses.field(init=False, repr=False)
  edge_start: np.ndarray = dataclasses.field(init=False, repr=False)

  def __post_init__(self) -> None:
    set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
    set_('n_node', np.asarray(self.n_node, np.int64))
    set_('n_edge', np.asarray(self.n_edge, np.int64))
    set_('node_start', np.cumsum(self.n_node) - self.n_node)
    set_('edge_start', np.cumsum(self.n_edge) - self.n_edge)
    if (len(self.nodes) != self.n_node.sum() or len(self.edge_feat) != self.n_edge.sum()
        or len(self.edge_index) != self.n_edge.sum()
        or len(self.labels) != len(self.n_node)):
      raise ValueError('GraphStore arrays disagree with n_node and n_edge.')

  def __len__(self) -> int:
    return len(self.n_node)

  @property
  def n_directed_edge(self) -> np.ndarray:
    """Edges of each graph in a batch: both directions."""
    return 2 * self.n_edge

  @classmethod
  def empty(cls) -> 'GraphStore':
    return cls(np.zeros((0,), np.int64), np.zeros((0,), np.int64),
               np.zeros((0, NUM_NODE_FEATURES), np.float32),
               np.zeros((0, NUM_EDGE_FEATURES), np.float32),
               np.zeros((0, 2), np.int32), np.zeros((0, NUM_TASKS), np.float32))

  @classmethod
  def concatenate(cls, stores: Sequence['GraphStore']) -> 'GraphStore':
    """The graphs of ``stores``, in order."""
    if not stores:
      return cls.empty()
    cat = lambda name: np.concatenate([getattr(s, name) for s in stores])  # noqa: E731
    return cls(cat('n_node'), cat('n_edge'), cat('nodes'), cat('edge_feat'),
               cat('edge_index'), cat('labels'))

  def take(self, graphs: np.ndarray) -> 'GraphStore':
    """A store of graphs ``graphs`` (indices into this one), in that order."""
    graphs = np.asarray(graphs, np.int64)
    nodes = _ranges(self.node_start[graphs], self.n_node[graphs])
    edges = _ranges(self.edge_start[graphs], self.n_edge[graphs])
    return GraphStore(self.n_node[graphs], self.n_edge[graphs], self.nodes[nodes],
                      self.edge_feat[edges], self.edge_index[edges],
                      self.labels[graphs])


# Value ranges of OGB's atom and bond features (categorical, stored as floats).
ATOM_FEATURE_SIZES = (119, 5, 12, 12, 10, 6, 6, 2, 2)
BOND_FEATURE_SIZES = (5, 6, 2)


def random_graphs(generator: np.random.Generator, count: int,
                  measured: float = 0.6, positive: float = 0.05) -> GraphStore:
  """``count`` random molecule-like graphs of the real feature shapes and dtypes.

  Each has 1 to 26 nodes and at most 28 edges (56 directed), so any ``g`` of
  them fit the reference's shard budget for ``g`` graphs. A label is
  measured with probability ``measured`` (else NaN) and, if measured, 1 with
  probability ``positive``.
  """
  n_node = generator.integers(1, AVG_NODES_PER_GRAPH + 1, count)
  # A chain through the atoms plus a few rings' worth of extra bonds.
  n_edge = np.minimum(n_node - 1 + generator.integers(0, 4, count),
                      AVG_EDGES_PER_GRAPH // 2)
  nodes = np.stack([generator.integers(0, k, n_node.sum())
                    for k in ATOM_FEATURE_SIZES], axis=1).astype(np.float32)
  edge_feat = np.stack([generator.integers(0, k, n_edge.sum())
                        for k in BOND_FEATURE_SIZES], axis=1).astype(np.float32)
  owner_nodes = np.repeat(n_node, n_edge)
  edge_index = (generator.random((n_edge.sum(), 2))
                * owner_nodes[:, None]).astype(np.int32)
  labels = (generator.random((count, NUM_TASKS)) < positive).astype(np.float32)
  labels[generator.random((count, NUM_TASKS)) >= measured] = np.nan
  return GraphStore(n_node, n_edge, nodes, edge_feat, edge_index, labels)


def pack_counts(n_node: np.ndarray, n_edge: np.ndarray, budget: Budget) -> np.ndarray:
  """How many graphs a shard starting at each position takes, greedily.

  ``n_node`` and ``n_edge`` (directed) are the sizes along a stream; entry
  ``q`` of the result is the longest run of graphs from ``q`` that fits
  ``budget``, which is what ``jraph.dynamically_batch`` takes: it adds graphs
  until the next would overflow. (A graph too big for an empty shard gives
  0; pipelines leave such graphs out beforehand.)
  """
  node_sums = np.concatenate([[0], np.cumsum(n_node, dtype=np.int64)])
  edge_sums = np.concatenate([[0], np.cumsum(n_edge, dtype=np.int64)])
  start = np.arange(len(n_node))
  by_nodes = np.searchsorted(node_sums, node_sums[:-1] + budget.nodes, 'right') - 1
  by_edges = np.searchsorted(edge_sums, edge_sums[:-1] + budget.edges, 'right') - 1
  return np.minimum(np.minimum(by_nodes, by_edges) - start, budget.graphs)


def pack_starts(counts: Sequence[int], start: int, stop: int) -> List[int]:
  """Positions where consecutive shards start, from ``start`` while below ``stop``.

  ``counts`` is :func:`pack_counts` (a list: indexing it is the loop's cost).
  """
  starts = []
  position = start
  while position < stop:
    starts.append(position)
    step = counts[position]
    if step <= 0:
      raise ValueError(f'The graph at stream position {position} fits no shard.')
    position += step
  return starts


def shard_arrays(store: GraphStore, graphs: np.ndarray, budget: Budget) -> Dict[str, np.ndarray]:
  """One padded shard of graphs ``graphs`` of ``store``, as the reference builds it.

  Returns the ``GraphsTuple`` fields (node indices within the shard) and
  ``targets``/``weights`` of shape ``(budget.n_graph, 128)``.
  """
  graphs = np.asarray(graphs, np.int64)
  count = len(graphs)
  n_node = store.n_node[graphs]
  n_edge = store.n_edge[graphs]
  num_nodes, num_edges = int(n_node.sum()), int(2 * n_edge.sum())
  if count > budget.graphs or num_nodes > budget.nodes or num_edges > budget.edges:
    raise ValueError(f'{count} graphs of {num_nodes} nodes and {num_edges} edges '
                     f'overflow the shard budget {budget}.')

  nodes = np.zeros((budget.n_node, NUM_NODE_FEATURES), np.float32)
  nodes[:num_nodes] = store.nodes[_ranges(store.node_start[graphs], n_node)]

  # Each graph's edges forwards, then the same edges reversed.
  owner = np.repeat(np.arange(count), 2 * n_edge)
  within = (np.arange(num_edges)
            - np.repeat(np.cumsum(2 * n_edge) - 2 * n_edge, 2 * n_edge))
  backwards = within >= n_edge[owner]
  rows = store.edge_start[graphs][owner] + np.where(backwards, within - n_edge[owner],
                                                    within)
  ends = store.edge_index[rows].astype(np.int32)
  first_node = (np.cumsum(n_node) - n_node).astype(np.int32)[owner]
  # Padding edges join the first padding node to itself, as jraph pads.
  senders = np.full((budget.n_edge,), num_nodes, np.int32)
  receivers = np.full((budget.n_edge,), num_nodes, np.int32)
  senders[:num_edges] = np.where(backwards, ends[:, 1], ends[:, 0]) + first_node
  receivers[:num_edges] = np.where(backwards, ends[:, 0], ends[:, 1]) + first_node
  edges = np.zeros((budget.n_edge, NUM_EDGE_FEATURES), np.float32)
  edges[:num_edges] = store.edge_feat[rows]

  # One padding graph holds the padding nodes and edges; empty ones follow.
  graph_nodes = np.zeros((budget.n_graph,), np.int32)
  graph_edges = np.zeros((budget.n_graph,), np.int32)
  graph_nodes[:count] = n_node
  graph_edges[:count] = 2 * n_edge
  graph_nodes[count] = budget.n_node - num_nodes
  graph_edges[count] = budget.n_edge - num_edges

  labels = store.labels[graphs]
  measured = ~np.isnan(labels)
  targets = np.zeros((budget.n_graph, NUM_TASKS), np.float32)
  weights = np.zeros((budget.n_graph, NUM_TASKS), np.float32)
  targets[:count] = np.where(measured, labels, 0.0)
  weights[:count] = measured
  return {'n_node': graph_nodes, 'n_edge': graph_edges, 'nodes': nodes,
          'edges': edges, 'senders': senders, 'receivers': receivers,
          'targets': targets, 'weights': weights}


def empty_shard(budget: Budget) -> Dict[str, np.ndarray]:
  """A shard of padding only (weights all 0): fills a short last eval batch."""
  return shard_arrays(GraphStore.empty(), np.zeros((0,), np.int64), budget)


def combine_shards(shards: Sequence[Dict[str, np.ndarray]], shard_ids: Sequence[int],
                   budget: Budget) -> Batch:
  """The batch dict of consecutive shards; ``shard_ids`` are their global positions.

  Node indices are offset by ``shard_id * budget.n_node``, as ``jraph.batch_np``
  offsets them when it concatenates every shard of the global batch: a
  process holding some of the shards gives its rows of that global batch.
  """
  cat = lambda key: np.concatenate([s[key] for s in shards])  # noqa: E731
  offsets = [np.int32(i * budget.n_node) for i in shard_ids]
  senders = np.concatenate([s['senders'] + o for s, o in zip(shards, offsets)])
  receivers = np.concatenate([s['receivers'] + o for s, o in zip(shards, offsets)])
  graph = jraph.GraphsTuple(
    n_node=cat('n_node'), n_edge=cat('n_edge'), nodes=cat('nodes'),
    edges=cat('edges'), globals={}, senders=senders, receivers=receivers)
  return {'inputs': graph, 'targets': cat('targets'), 'weights': cat('weights')}


def local_shard_ids() -> np.ndarray:
  """Global positions of the shards this process's devices hold, ascending."""
  return local_positions(jax.device_count())


def placed(batches: Iterable[Batch], num_batches: Optional[int] = None) -> Iterator[Batch]:
  """Global arrays split along the leading axis, from each process's shards.

  Every leaf (graph fields, targets, weights) has ``n`` rows per shard, so the
  global leaf has ``process_count`` times the rows of the local one, and an
  even split over the devices gives each device its own shard.
  """
  from algoperf import jax_sharding_utils  # pylint: disable=import-outside-toplevel

  sharding = jax_sharding_utils.get_batch_dim_sharding()
  processes = jax.process_count()

  def place(local: np.ndarray) -> jax.Array:
    return jax.make_array_from_process_local_data(
        sharding, local, (local.shape[0] * processes, *local.shape[1:]))

  for i, batch in enumerate(batches):
    if num_batches is not None and i >= num_batches:
      return
    yield jax.tree.map(place, batch)
