"""wmt and its variants: German to English translation, BLEU as the target metric.

As the reference's ``WmtWorkload``: the Transformer of ``model.py``; the loss
is token-level softmax cross-entropy summed over target tokens of weight 1
(``n_valid_examples`` counts those tokens), with no label smoothing unless
the caller asks (the reference's 0.1 default sits on a helper its loss_fn
does not use); ``model_state`` is None. Batches are dicts of int32 token ids
``(batch, 256)``: packed train batches carry ``inputs``, ``targets``,
``inputs_position``, ``inputs_segmentation``, ``targets_position``,
``targets_segmentation`` and ``weights`` (float32, 1 on real target tokens);
eval batches ``inputs``, ``targets`` and ``weights``.

Eval metrics over each whole split: ``loss`` (no label smoothing) and
``accuracy``, both per target token, and ``bleu``: beam search (4 beams,
alpha 0.6, up to 256 tokens; 64 on synthetic data), the best beam and the target detokenized by
the SentencePiece model, corpus BLEU of the split (bleu.py). One jitted
step per batch gives the token metrics and the translations; the
translations go to the host (``metrics.Collected``), where BLEU is computed
once the split is done.

Data: ``data.py`` (``algoperf datasets wmt --data_dir DIR`` prepares it);
``synthetic=True`` streams random pairs of the real shapes instead, with
eval splits of a few pairs a CPU can decode.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from algoperf import jax_sharding_utils
from algoperf import spec
from workloads import evaluation, metrics
from workloads.batching import checked_batch_size, local_positions, placed, seed_words
from workloads.classification import param_types_from_params
from workloads.facts import VersionFacts
from workloads.wmt import bleu, data, decode, synthetic
from workloads.wmt.model import DROPOUT_RATE, Transformer, variant_options

EVAL_SPLITS = ('eval_train', 'validation', 'test')


class WmtWorkload(VersionFacts, spec.Workload):
  """WMT17 de-en training, WMT14 de-en evaluation, pre-LN Transformer-big-ish."""

  workload_name = 'wmt'
  real_num_train_examples = data.NUM_TRAIN_EXAMPLES
  real_num_validation_examples = data.NUM_VALIDATION_EXAMPLES
  real_num_test_examples = data.NUM_TEST_EXAMPLES
  # Synthetic eval splits: a few pairs, so that decoding stays cheap.
  synthetic_num_eval_examples = 4
  default_eval_batch_size = 128
  # The reference's decoding settings.
  beam_size = decode.BEAM_SIZE
  real_max_predict_length = data.MAX_LENGTH
  # Synthetic sentences have at most 48 tokens: decoding stops at 64, a
  # quarter of the real length, so synthetic evals (algoperf check) stay
  # affordable at full size on a CPU.
  synthetic_max_predict_length = 64

  def __init__(self, benchmark: Optional[str] = None,
               data_dir: Optional[str] = None, synthetic: bool = False,
               model_options: Optional[Dict[str, Any]] = None) -> None:
    """``model_options`` override ``Transformer`` fields (a small model for tests).

    With real data the tokenizer's size must then equal ``vocab_size``.
    """
    super().__init__()
    self._load_facts(benchmark)
    self._data_dir = data_dir
    self._synthetic = bool(synthetic)
    self._model_options = {**variant_options(self.workload_name),
                           **(model_options or {})}
    self._model = Transformer(**self._model_options)
    self._decoder = Transformer(**self._model_options, decoding=True)
    self._eval_step = None
    self._eval_data_dir: Optional[str] = None  # Of the latest real-data eval.
    # Real-data eval batches, built at the first eval of each split.
    self._eval_sources: Dict[Tuple[Any, ...], Iterable[Dict[str, np.ndarray]]] = {}

  # --- facts -------------------------------------------------------------------

  @property
  def synthetic(self) -> bool:
    return self._synthetic

  @property
  def vocab_size(self) -> int:
    return int(self._model.vocab_size)

  @property
  def loss_type(self) -> spec.LossType:
    return spec.LossType.SOFTMAX_CROSS_ENTROPY

  @property
  def num_train_examples(self) -> int:
    return self.real_num_train_examples

  @property
  def num_validation_examples(self) -> int:
    return (self.synthetic_num_eval_examples if self._synthetic
            else self.real_num_validation_examples)

  @property
  def num_eval_train_examples(self) -> int:
    if self._synthetic:
      return self.synthetic_num_eval_examples
    # As the reference: validation's size rounded up to whole eval batches.
    batches = math.ceil(self.num_validation_examples / self.eval_batch_size)
    return batches * self.eval_batch_size

  @property
  def num_test_examples(self) -> int:
    return (self.synthetic_num_eval_examples if self._synthetic
            else self.real_num_test_examples)

  @property
  def eval_batch_size(self) -> int:
    return self.default_eval_batch_size

  @property
  def max_predict_length(self) -> int:
    """Length of the decoded sequences, the start token included."""
    return (self.synthetic_max_predict_length if self._synthetic
            else self.real_max_predict_length)

  @property
  def train_mean(self) -> Any:
    raise NotImplementedError('wmt inputs are token ids: there is no input mean.')

  @property
  def train_stddev(self) -> Any:
    raise NotImplementedError('wmt inputs are token ids: there is no input stddev.')

  def is_output_params(self, param_key: spec.ParameterKey) -> bool:
    # The shared embedding is also the output layer.
    return param_key == 'shared_embedding'

  # --- model -------------------------------------------------------------------

  def init_model_fn(self, rng: spec.RandomState) -> spec.ModelInitState:
    """Initial ``(params, None)``, replicated; also sets shapes and types.

    The key is split as the reference splits it, and the parameter paths are
    the reference's, so the same key gives the reference's initial values.
    """
    params_rng, dropout_rng = jax.random.split(rng)
    dummy = jnp.ones((1, self._model.max_len), jnp.int32)
    variables = jax.jit(self._model.init)(
        {'params': params_rng, 'dropout': dropout_rng}, dummy, dummy)
    params = variables['params']
    self._param_shapes = jax.tree.map(lambda x: spec.ShapeTuple(x.shape), params)
    self._param_types = param_types_from_params(params)
    return jax_sharding_utils.replicate(params), None

  def model_fn(
      self,
      params: spec.ParameterContainer,
      augmented_and_preprocessed_input_batch: Dict[str, spec.Tensor],
      model_state: spec.ModelAuxiliaryState,
      mode: spec.ForwardPassMode,
      rng: spec.RandomState,
      update_batch_norm: bool,
      use_running_average_bn: Optional[bool] = None,
      dropout_rate: Optional[float] = None,
  ) -> Tuple[spec.Tensor, spec.ModelAuxiliaryState]:
    """Logits ``(batch, length, vocab)``; dropout only in TRAIN mode.

    ``dropout_rate`` may be traced; None means the reference's default 0.1.
    Packed batches' positions and segmentations are used when present. No
    batch norm: those flags are ignored and ``None`` is the new state.
    """
    del model_state, update_batch_norm, use_running_average_bn
    batch = augmented_and_preprocessed_input_batch
    train = mode == spec.ForwardPassMode.TRAIN
    rate = DROPOUT_RATE if dropout_rate is None else dropout_rate
    logits = self._model.apply(
        {'params': params}, batch['inputs'], batch['targets'],
        inputs_positions=batch.get('inputs_position'),
        targets_positions=batch.get('targets_position'),
        inputs_segmentation=batch.get('inputs_segmentation'),
        targets_segmentation=batch.get('targets_segmentation'),
        train=train, dropout_rate=rate if train else 0.0,
        rngs={'dropout': rng} if (train and rng is not None) else {})
    return logits, None

  def loss_fn(
      self,
      label_batch: spec.Tensor,
      logits_batch: spec.Tensor,
      mask_batch: Optional[spec.Tensor] = None,
      label_smoothing: float = 0.0,
  ) -> Dict[str, spec.Tensor]:
    """Cross-entropy per target token with label smoothing, summed over weight-1 tokens.

    ``label_batch``: ids ``(batch, length)`` (or one-hot rows). Returns
    ``summed``, ``n_valid_examples`` (the mask's sum: tokens, or every
    position without a mask) and ``per_example`` ``(batch, length)`` (zero
    where masked). ``label_smoothing`` may be traced.
    """
    if jnp.ndim(label_batch) == jnp.ndim(logits_batch):
      one_hot = jnp.asarray(label_batch, jnp.float32)
    else:
      if jnp.ndim(logits_batch) != jnp.ndim(label_batch) + 1:
        raise ValueError(f'Incorrect shapes: logits {logits_batch.shape}, '
                         f'targets {label_batch.shape}.')
      one_hot = jax.nn.one_hot(label_batch, logits_batch.shape[-1])
    targets = optax.smooth_labels(one_hot, label_smoothing)
    per_token = optax.softmax_cross_entropy(logits_batch, targets)
    if mask_batch is None:
      mask_batch = jnp.ones(per_token.shape, jnp.float32)
    # where(): a masked position never leaks a NaN into the sum.
    per_token = jnp.where(mask_batch > 0, per_token, 0.0)
    return {'summed': per_token.sum(), 'n_valid_examples': mask_batch.sum(),
            'per_example': per_token}

  # --- data --------------------------------------------------------------------

  def check_data(self) -> None:
    """Raises ``ConfigError`` (one line) if the data or tokenizer is missing or wrong."""
    if self._synthetic:
      return
    data.split_counts(self._data_dir)
    self._check_vocabulary(self._data_dir)

  def _check_vocabulary(self, data_dir: Optional[str]) -> data.Tokenizer:
    tokenizer = data.load_tokenizer(data_dir)
    if tokenizer.vocab_size != self.vocab_size:
      raise data.DatasetMissingError(
          f'{tokenizer.path} has {tokenizer.vocab_size} pieces; the model '
          f'expects {self.vocab_size}. Prepare the data again with '
          '`algoperf datasets wmt --data_dir DIR`.')
    return tokenizer

  def _synthetic_batches(self, seed: Tuple[int, ...], global_batch_size: int,
                         first: int) -> Iterator[Dict[str, np.ndarray]]:
    rows = local_positions(global_batch_size)
    index = first
    while True:
      yield synthetic.train_rows(seed, index, rows, self.vocab_size)
      index += 1

  def _build_input_queue(
      self,
      data_rng: spec.RandomState,
      split: str,
      data_dir: Optional[str],
      global_batch_size: int,
      cache: Optional[bool] = None,
      repeat_final_dataset: Optional[bool] = None,
      num_batches: Optional[int] = None,
      start_position: int = 0,
  ) -> Iterator[Dict[str, Any]]:
    """Endless packed training batches from global batch ``start_position`` on.

    A function of ``data_rng`` and the batch index only: a resume passes the
    checkpoint's input position as ``start_position``.
    """
    del cache, repeat_final_dataset
    if split != 'train':
      raise ValueError(f'The input queue is for the train split, not {split!r}.')
    global_batch_size = checked_batch_size(global_batch_size)
    seed = seed_words(data_rng)
    if self._synthetic:
      batches = self._synthetic_batches(seed, global_batch_size, start_position)
    else:
      data_dir = data_dir or self._data_dir
      self._check_vocabulary(data_dir)
      batches = data.train_batches(data_dir, seed, global_batch_size, start_position)
    return placed(batches, global_batch_size, num_batches)

  # --- evaluation ----------------------------------------------------------------

  def _detokenizer(self) -> Any:
    if self._synthetic:
      return synthetic.IdTokenizer()
    return data.load_tokenizer(self._eval_data_dir or self._data_dir)

  def _bleu(self, predictions: np.ndarray, targets: np.ndarray) -> float:
    """Corpus BLEU of the split's translations (host side, every process's rows)."""
    tokenizer = self._detokenizer()
    return bleu.corpus_bleu([tokenizer.decode(row) for row in predictions],
                            [tokenizer.decode(row) for row in targets])

  def translate(self, params: spec.ParameterContainer, inputs: jax.Array) -> jax.Array:
    """The best beam's tokens ``(batch, max_predict_length - 1)`` for each row of ``inputs``."""
    encoded = self._model.apply({'params': params}, inputs, method='encode')
    beams = self.beam_size
    encoded = decode.expand_to_beams(encoded, beams)
    source = decode.expand_to_beams(inputs, beams)
    # The cache's initial values are zeros; only its structure is computed.
    targets = jnp.ones((inputs.shape[0], self.max_predict_length), jnp.int32)
    shapes = jax.eval_shape(self._decoder.init, jax.random.PRNGKey(0), inputs, targets)
    cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes['cache'])

    def tokens_to_logits(ids: jax.Array, cache: Any) -> Tuple[jax.Array, Any]:
      logits, updated = self._decoder.apply(
          {'params': params, 'cache': cache}, encoded, source, ids,
          mutable=['cache'], method='decode')
      return logits[:, 0], updated['cache']

    sequences, _ = decode.beam_search(
        inputs, cache, tokens_to_logits, beam_size=beams, alpha=decode.ALPHA,
        eos_id=data.EOS_ID, max_decode_len=self.max_predict_length)
    return sequences[:, 0, 1:]  # The best beam, without the start token.

  def _eval_arrays(self, params: spec.ParameterContainer,
                   batch: Dict[str, jax.Array]) -> Dict[str, Any]:
    """Token metrics and translations of one padded eval batch (jitted)."""
    logits, _ = self.model_fn(params, batch, None, spec.ForwardPassMode.EVAL,
                              None, update_batch_norm=False)
    weights = batch['weights']
    losses = self.loss_fn(batch['targets'], logits, weights)
    return {
        'accuracy': metrics.Accuracy.from_logits(logits, batch['targets'], weights),
        'loss': metrics.Average.from_sum(losses['summed'], jnp.sum(weights)),
        'predictions': self.translate(params, batch['inputs']),
        # A pair is real where its first target token is (padding rows are 0).
        'pairs': weights[:, 0],
    }

  def _get_eval_step(self):
    """``evaluation.evaluate``'s step: the jitted arrays, then BLEU's host state."""
    if self._eval_step is None:
      replicated = jax_sharding_utils.get_replicate_sharding()
      split = jax_sharding_utils.get_batch_dim_sharding()
      jitted = jax.jit(self._eval_arrays, out_shardings={
          'accuracy': replicated, 'loss': replicated, 'predictions': split,
          'pairs': split})

      def step(params, model_state, batch) -> Dict[str, Any]:
        del model_state
        out = jitted(params, batch)
        translations = metrics.Collected(self._bleu).add(
            out['pairs'], predictions=out['predictions'], targets=batch['targets'])
        return {'accuracy': out['accuracy'], 'loss': out['loss'],
                'bleu': translations}

      self._eval_step = step
    return self._eval_step

  def _synthetic_eval_batches(self, split: str, num_examples: int,
                              batch_size: int) -> Iterator[Dict[str, np.ndarray]]:
    """This process's rows of each padded synthetic eval batch of ``split``."""
    pairs = synthetic.eval_pairs(EVAL_SPLITS.index(split) + 1, num_examples,
                                 self.vocab_size)
    rows = local_positions(batch_size)
    for index in range(math.ceil(num_examples / batch_size)):
      chosen = index * batch_size + rows
      batch = data.pad_pairs([pairs[i] for i in chosen if i < num_examples],
                             len(rows))
      yield batch

  def _real_eval_batches(self, split: str, num_examples: int, batch_size: int,
                         data_dir: Optional[str]) -> Iterable[Dict[str, np.ndarray]]:
    """The split's eval batches, built at its first eval and reused after."""
    data_dir = data_dir or self._data_dir
    self._eval_data_dir = data_dir
    key = (split, num_examples, batch_size, data_dir)
    if key not in self._eval_sources:
      self._check_vocabulary(data_dir)
      self._eval_sources[key] = data.eval_batches(data_dir, split, num_examples,
                                                  batch_size)
    return self._eval_sources[key]

  def _eval_model_on_split(
      self,
      split: str,
      num_examples: int,
      global_batch_size: int,
      params: spec.ParameterContainer,
      model_state: spec.ModelAuxiliaryState,
      rng: spec.RandomState,
      data_dir: Optional[str],
      global_step: int = 0,
  ) -> Dict[str, float]:
    """``accuracy``, ``loss`` and ``bleu`` over ``num_examples`` pairs of ``split``."""
    del rng, global_step
    if split not in EVAL_SPLITS:
      raise ValueError(f'Cannot evaluate on split {split!r}; use {EVAL_SPLITS}.')
    num_devices = jax.device_count()
    batch_size = int(global_batch_size or self.eval_batch_size)
    # No more rows than the split needs, in whole device multiples: one shape.
    batch_size = min(batch_size, num_examples)
    batch_size = -(-batch_size // num_devices) * num_devices
    if self._synthetic:
      batches = self._synthetic_eval_batches(split, num_examples, batch_size)
    else:
      batches = iter(self._real_eval_batches(split, num_examples, batch_size,
                                             data_dir))
    return evaluation.evaluate(self._get_eval_step(), params, model_state,
                               placed(batches, batch_size))


class WmtWorkloadPostLN(WmtWorkload):
  """Post-LN blocks (no final LayerNorms): 133,517,312 parameters."""

  workload_name = 'wmt_post_ln'


class WmtWorkloadAttentionTemp(WmtWorkload):
  """Queries scaled by 4 before attention; the base model's parameters."""

  workload_name = 'wmt_attention_temp'


class WmtWorkloadGLUTanH(WmtWorkload):
  """A tanh MLP with a multiplicative gate: 146,116,608 parameters."""

  workload_name = 'wmt_glu_tanh'
