"""What the two LibriSpeech workloads share: facts, CTC loss, batches and the eval.

``librispeech_conformer`` and ``librispeech_deepspeech`` (and their variants)
differ only in the model; this base holds the rest, as the reference's
``LibriSpeechConformerWorkload`` (which DeepSpeech's subclasses) does: CTC
loss over 1024 SentencePiece ids (blank 0) summed over utterances and
divided by the number of target tokens, ``wer`` as the target metric
(greedy CTC decoding, SentencePiece detokenisation, word edit distance) and
``ctc_loss``, the reference's example counts and batch format (``inputs``
and ``targets`` are ``(values, paddings)`` pairs, see
``workloads/librispeech_conformer/data.py``).

Data: the reference's prepared folder (``algoperf datasets librispeech
--data_dir DIR``), read by ``workloads/librispeech_conformer/data.py``:
training batches are a pure function of the data seed and the batch index,
so a resume starts at its batch without replaying the ones before. Without
the tokenizer a real-data run stops at ``check_data`` (the reference would
report a word error rate of 0). ``synthetic=True`` streams batches of the
real shapes and dtypes instead (noise of random lengths, random ids),
seeded the same way, with small eval splits a CPU can run, scored with a
stand-in tokenizer (each id one word).
"""

from __future__ import annotations

import abc
import math
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from algoperf import jax_sharding_utils
from algoperf import spec
from workloads import evaluation
from workloads import metrics
from workloads.batching import checked_batch_size, local_positions, placed, seed_words
from workloads.classification import param_types_from_params
from workloads.facts import VersionFacts
from workloads.librispeech_conformer import ctc
from workloads.librispeech_conformer import data
from workloads.librispeech_conformer import frontend
from workloads.librispeech_conformer import tokenizer as tokenizers
from workloads.librispeech_conformer import wer

NUM_OUTPUTS = 1024
AUDIO_LENGTH = data.AUDIO_LENGTH
TARGET_LENGTH = data.TARGET_LENGTH
EVAL_SPLITS = ('eval_train', 'validation', 'test')
DROPOUT_RATE = 0.1  # Both models' default.
# Synthetic utterances: int16-scale noise about as loud as speech.
_SYNTHETIC_AUDIO_SCALE = 3000.0
_FIRST_WORD_ID = 3  # 0-2: blank/unknown, begin and end of sentence.


def synthetic_rows(seed: Tuple[int, ...], index: int, rows: np.ndarray,
                   audio_length: int = AUDIO_LENGTH) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """Rows ``rows`` of synthetic batch ``index``: the same on every process.

  Each row is drawn from its own generator (seed, batch index, row), so a
  process reading some rows gets exactly those rows of the whole batch.
  An utterance fills a quarter to all of ``audio_length``; its target is
  random word ids ending in the end-of-sentence id, short enough for CTC to
  align (about a third of the model's output frames).
  """
  utterances = []
  for row in rows:
    generator = np.random.default_rng([*seed, int(index), int(row)])
    length = int(generator.integers(audio_length // 4, audio_length + 1))
    audio = np.rint(generator.standard_normal(length) * _SYNTHETIC_AUDIO_SCALE)
    output_frames = math.ceil(math.ceil(frontend.num_frames(length) / 2) / 2)
    most = max(1, min(TARGET_LENGTH, output_frames // 3))
    words = generator.integers(_FIRST_WORD_ID, NUM_OUTPUTS,
                               int(generator.integers(0, most)))
    utterances.append((audio, np.append(words, tokenizers.SyntheticTokenizer.eos_id)))
  return data.batch_of(utterances, audio_length)


class LibriSpeechWorkload(VersionFacts, spec.Workload):
  """Speech recognition on LibriSpeech; subclasses make the model."""

  workload_name = ''
  # The reference's counts (after its length filters); eval_train is
  # validation rounded up to whole eval batches, as the reference does.
  real_num_train_examples = data.PREPARED_EXAMPLES['train']
  real_num_validation_examples = data.PREPARED_EXAMPLES['validation']
  real_num_test_examples = data.PREPARED_EXAMPLES['test']
  # Synthetic eval splits stay small enough for a CPU eval.
  synthetic_num_eval_examples = 4
  default_eval_batch_size = 256
  output_layer_name = 'Dense_0'

  def __init__(self, benchmark: Optional[str] = None,
               data_dir: Optional[str] = None, synthetic: bool = False,
               tokenizer_vocab_path: Optional[str] = None, use_specaug: bool = True,
               audio_length: int = AUDIO_LENGTH,
               model_options: Optional[Dict[str, Any]] = None) -> None:
    """``tokenizer_vocab_path`` and ``use_specaug`` as the reference's.

    ``tokenizer_vocab_path`` defaults to ``DIR/spm_model.vocab``.
    ``audio_length`` other than 320,000 and ``model_options`` (model sizes
    such as ``encoder_dim``) are for quick tests of the same code.
    """
    super().__init__()
    self._load_facts(benchmark)
    self._data_dir = str(data_dir) if data_dir else None
    self._synthetic = bool(synthetic)
    self._tokenizer_vocab_path = tokenizer_vocab_path
    self.use_specaug = bool(use_specaug)
    self.audio_length = int(audio_length)
    self._model = self._make_model({'use_specaug': self.use_specaug,
                                    **(model_options or {})})
    self._tokenizer: Any = None
    self._eval_step = None
    self._eval_sources: Dict[Tuple[Any, ...], Iterable[Dict[str, Any]]] = {}

  # --- subclass hooks ----------------------------------------------------------

  @abc.abstractmethod
  def _make_model(self, options: Dict[str, Any]) -> nn.Module:
    """The flax module of this workload (and variant), with ``options`` on top."""

  # --- facts -------------------------------------------------------------------

  @property
  def synthetic(self) -> bool:
    return self._synthetic

  @property
  def loss_type(self) -> spec.LossType:
    return spec.LossType.CTC_LOSS

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
  def train_mean(self) -> Any:
    raise NotImplementedError('LibriSpeech normalises inside the model (log-mel).')

  @property
  def train_stddev(self) -> Any:
    raise NotImplementedError('LibriSpeech normalises inside the model (log-mel).')

  def is_output_params(self, param_key: spec.ParameterKey) -> bool:
    return param_key == self.output_layer_name

  # --- model -------------------------------------------------------------------

  def init_model_fn(self, rng: spec.RandomState) -> spec.ModelInitState:
    """Initial ``(params, model_state)``, replicated; also sets shapes and types.

    As the reference: the parameters come from the first half of a split
    of ``rng``, so the same key gives the reference's initial values.
    """
    params_rng, _ = jax.random.split(rng)
    dummy = jnp.zeros((2, self.audio_length), jnp.float32)
    init = jax.jit(lambda key: self._model.init({'params': key}, dummy, dummy,
                                                train=False))
    variables = dict(init(params_rng))
    params = variables.pop('params')
    model_state = variables  # {'batch_stats': ...}, or {} without batch norm.
    self._param_shapes = jax.tree.map(lambda x: spec.ShapeTuple(x.shape), params)
    self._param_types = librispeech_param_types(params)
    return (jax_sharding_utils.replicate(params),
            jax_sharding_utils.replicate(model_state))

  def model_fn(
      self,
      params: spec.ParameterContainer,
      augmented_and_preprocessed_input_batch: Dict[str, spec.Tensor],
      model_state: spec.ModelAuxiliaryState,
      mode: spec.ForwardPassMode,
      rng: spec.RandomState,
      update_batch_norm: bool,
      use_running_average_bn: Optional[bool] = None,
      dropout_rate: Optional[float] = DROPOUT_RATE,
  ) -> Tuple[Tuple[spec.Tensor, spec.Tensor], spec.ModelAuxiliaryState]:
    """``((logits, logit_paddings), new_model_state)``.

    As the reference: in TRAIN mode, or with ``update_batch_norm``, the
    model runs in training mode (dropout, SpecAugment, batch norms on the
    batch's statistics, running statistics updated and returned) and
    needs ``rng``; otherwise it normalises with the running statistics and
    ``model_state`` comes back unchanged. ``use_running_average_bn``, when
    given, decides which statistics normalise. ``dropout_rate`` may be
    traced; None means the default 0.1.
    """
    variables = {'params': params, **model_state}
    audio, audio_paddings = augmented_and_preprocessed_input_batch['inputs']
    if dropout_rate is None:
      dropout_rate = DROPOUT_RATE
    if update_batch_norm or mode == spec.ForwardPassMode.TRAIN:
      if rng is None:
        raise ValueError('model_fn in training mode needs an rng: dropout and '
                         'SpecAugment draw from it.')
      outputs, new_model_state = self._model.apply(
          variables, audio, audio_paddings, train=True, rngs={'dropout': rng},
          mutable=['batch_stats'], use_running_average_bn=use_running_average_bn,
          dropout_rate=dropout_rate)
      return outputs, dict(new_model_state)
    outputs = self._model.apply(variables, audio, audio_paddings, train=False,
                                mutable=False,
                                use_running_average_bn=use_running_average_bn)
    return outputs, model_state

  def loss_fn(
      self,
      label_batch: Tuple[spec.Tensor, spec.Tensor],
      logits_batch: Tuple[spec.Tensor, spec.Tensor],
      mask_batch: Optional[spec.Tensor] = None,
      label_smoothing: float = 0.0,
  ) -> Dict[str, spec.Tensor]:
    """CTC loss as the reference: per utterance, summed; counted in target tokens.

    ``label_batch`` = (ids, paddings), ``logits_batch`` = (logits, paddings).
    ``per_example`` is each utterance's CTC loss (0 where ``mask_batch``, of
    shape ``(batch,)``, is 0); ``n_valid_examples`` is the number of
    unpadded target tokens of the unmasked utterances (at least 1), so
    ``summed / n_valid_examples`` is the reference's training loss. Label
    smoothing does not apply to CTC (ignored, as in the reference).
    """
    del label_smoothing
    logits, logit_paddings = logits_batch
    targets, target_paddings = label_batch
    per_example = ctc.ctc_losses(logits, logit_paddings, targets, target_paddings)
    tokens = 1.0 - jnp.asarray(target_paddings, jnp.float32)
    if mask_batch is not None:
      mask = jnp.asarray(mask_batch, jnp.float32)
      # where(): a masked utterance never leaks a NaN or inf into the sum.
      per_example = jnp.where(mask > 0, per_example * mask, 0.0)
      tokens = tokens * (mask[:, None] > 0)
    return {'summed': jnp.sum(per_example),
            'n_valid_examples': jnp.maximum(jnp.sum(tokens), 1.0),
            'per_example': per_example}

  # --- data --------------------------------------------------------------------

  def check_data(self) -> None:
    """Raises ``ConfigError`` (one line) if the data or the tokenizer is missing."""
    if not self._synthetic:
      for split in ('train', 'validation', 'test'):
        data.split_ids(self._data_dir, split)
    # Real data always needs the tokenizer (the reference would score a WER
    # of 0 without it); synthetic data only if one was named.
    self._get_tokenizer()

  def _get_tokenizer(self) -> Any:
    """The tokenizer the word error rate detokenises with (loaded once)."""
    if self._tokenizer is None:
      if self._synthetic and not self._tokenizer_vocab_path:
        self._tokenizer = tokenizers.SyntheticTokenizer()
      else:
        self._tokenizer = data.load_tokenizer(self._data_dir, self._tokenizer_vocab_path)
    return self._tokenizer

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
    """Endless shuffled training batches from global batch ``start_position`` on.

    The batches are a function of ``data_rng`` and their index only: a
    resume passes the checkpoint's input position as ``start_position``.
    """
    del cache, repeat_final_dataset
    if split != 'train':
      raise ValueError(f'The input queue is for the train split, not {split!r}.')
    global_batch_size = checked_batch_size(global_batch_size)
    seed = seed_words(data_rng)
    if self._synthetic:
      batches = self._synthetic_batches(seed, global_batch_size, start_position)
    else:
      batches = data.train_batches(data_dir or self._data_dir, seed, global_batch_size,
                                   start_position, self.audio_length)
    return placed(batches, global_batch_size, num_batches)

  def _synthetic_batches(self, seed: Tuple[int, ...], global_batch_size: int,
                         first: int) -> Iterator[Dict[str, Any]]:
    rows = local_positions(global_batch_size)
    index = first
    while True:
      yield synthetic_rows(seed, index, rows, self.audio_length)
      index += 1

  # --- evaluation ----------------------------------------------------------------

  def eval_model(self, global_batch_size: int, params: spec.ParameterContainer,
                 model_state: spec.ModelAuxiliaryState, rng: spec.RandomState,
                 data_dir: str, imagenet_v2_data_dir: Optional[str],
                 global_step: int) -> Dict[str, float]:
    """``spec.Workload.eval_model``; every split is read from ``data_dir``."""
    del imagenet_v2_data_dir  # ImageNet's; LibriSpeech's test split is test-clean.
    return super().eval_model(global_batch_size, params, model_state, rng,
                              data_dir, None, global_step)

  def _eval_arrays(self, params: spec.ParameterContainer,
                   model_state: spec.ModelAuxiliaryState,
                   batch: Dict[str, Any]) -> Dict[str, jax.Array]:
    """One padded batch's loss sums and decoded ids (inside the jitted step)."""
    (logits, logit_paddings), _ = self.model_fn(
        params, batch, model_state, spec.ForwardPassMode.EVAL, None,
        update_batch_norm=False)
    weights = batch['weights']
    losses = self.loss_fn(batch['targets'], (logits, logit_paddings), weights)
    targets, target_paddings = batch['targets']
    tokens = jnp.sum(weights[:, None] * (1.0 - target_paddings))
    decoded, decoded_paddings = ctc.greedy_decode(logits, logit_paddings)
    return {'loss_sum': losses['summed'], 'tokens': tokens, 'weights': weights,
            'decoded': decoded, 'decoded_paddings': decoded_paddings,
            'targets': targets, 'target_paddings': target_paddings}

  def _make_eval_step(self):
    """The eval step: jitted arrays, then metric states on the host side.

    Sums are replicated; per-utterance arrays stay split along the batch so
    each process collects its own rows (``metrics.Collected``).
    """
    replicated = jax_sharding_utils.get_replicate_sharding()
    sharded = jax_sharding_utils.get_batch_dim_sharding()
    shardings = {'loss_sum': replicated, 'tokens': replicated, 'weights': sharded,
                 'decoded': sharded, 'decoded_paddings': sharded, 'targets': sharded,
                 'target_paddings': sharded}
    arrays_step = jax.jit(self._eval_arrays, out_shardings=shardings)
    tokenizer = self._get_tokenizer()

    def word_error_rate(**arrays: np.ndarray) -> float:
      return wer.wer(tokenizer=tokenizer, **arrays)

    def step(params, model_state, batch) -> Dict[str, Any]:
      out = arrays_step(params, model_state, batch)
      return {
          'ctc_loss': metrics.Average.from_sum(out['loss_sum'], out['tokens']),
          'wer': metrics.Collected(word_error_rate).add(
              out['weights'], decoded=out['decoded'],
              decoded_paddings=out['decoded_paddings'], targets=out['targets'],
              target_paddings=out['target_paddings']),
      }

    return step

  def _synthetic_eval_batches(self, split: str, num_examples: int,
                              batch_size: int) -> Iterator[Dict[str, Any]]:
    """This process's rows of each padded synthetic eval batch of ``split``."""
    # Each split has its own fixed seed, and utterance k is drawn from (seed,
    # k): the same utterances at every eval, whatever the batch size.
    seed = (EVAL_SPLITS.index(split) + 1, 0)
    rows = local_positions(batch_size)
    for index in range(math.ceil(num_examples / batch_size)):
      examples = index * batch_size + rows
      batch = synthetic_rows(seed, 0, examples, self.audio_length)
      batch['weights'] = (examples < num_examples).astype(np.float32)
      yield batch

  def _real_eval_batches(self, split: str, num_examples: int, batch_size: int,
                         data_dir: Optional[str]) -> Iterable[Dict[str, Any]]:
    """The split's eval batches (re-iterable), built at its first eval."""
    data_dir = data_dir or self._data_dir
    key = (split, num_examples, batch_size, data_dir)
    if key not in self._eval_sources:
      self._eval_sources[key] = data.EvalBatches(data_dir, split, num_examples,
                                                 batch_size, self.audio_length)
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
    """``ctc_loss`` and ``wer`` over ``num_examples`` utterances of ``split``."""
    del rng, global_step
    if split not in EVAL_SPLITS:
      raise ValueError(f'Cannot evaluate on split {split!r}; use {EVAL_SPLITS}.')
    num_devices = jax.device_count()
    batch_size = int(global_batch_size or self.eval_batch_size)
    # No more rows than the split needs, in whole device multiples: one shape.
    batch_size = min(batch_size, num_examples)
    batch_size = -(-batch_size // num_devices) * num_devices
    if self._eval_step is None:
      self._eval_step = self._make_eval_step()
    if self._synthetic:
      batches = self._synthetic_eval_batches(split, num_examples, batch_size)
    else:
      batches = self._real_eval_batches(split, num_examples, batch_size, data_dir)
    return evaluation.evaluate(self._eval_step, params, model_state,
                               placed(iter(batches), batch_size))


def librispeech_param_types(params: Any) -> Any:
  """``param_types_from_params``, with the reference's types where they differ.

  The reference types every kernel under a module whose path mentions
  "conv" as ``CONV_WEIGHT`` (so the Conformer convolution block's dense
  kernels too), and inside the attention module the query, key, value and
  output kernels as ``ATTENTION_Q/K/V/OUT``, its biases as
  ``ATTENTION_BIAS`` and the query scaler as a plain ``WEIGHT``.
  """
  attention_kernels = {
      'query': spec.ParameterType.ATTENTION_Q, 'key': spec.ParameterType.ATTENTION_K,
      'value': spec.ParameterType.ATTENTION_V, 'out': spec.ParameterType.ATTENTION_OUT}

  def reference_type(path: Tuple[Any, ...], kind: spec.ParameterType) -> spec.ParameterType:
    names = [str(getattr(k, 'key', k)) for k in path]
    modules, leaf = [n.lower() for n in names[:-1]], names[-1]
    if any('norm' in m for m in modules):
      return kind  # Batch and layer norms: the same either way.
    if any(m.startswith('multiheaddotproductattention') for m in modules):
      if leaf == 'bias':
        return spec.ParameterType.ATTENTION_BIAS
      if leaf == 'kernel' and modules[-1] in attention_kernels:
        return attention_kernels[modules[-1]]
      if leaf == 'scale':
        return spec.ParameterType.WEIGHT
    if leaf == 'kernel' and any('conv' in m for m in modules):
      return spec.ParameterType.CONV_WEIGHT
    return kind

  return jax.tree_util.tree_map_with_path(reference_type, param_types_from_params(params))
