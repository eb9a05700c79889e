"""A tiny WMT in the prepared tfds format, for the wmt data tests.

Builders with the real datasets' names, version, config and features
(``wmt14_translate/de-en`` and ``wmt17_translate/de-en`` 1.0.0, a
``Translation`` of ``de`` and ``en``, supervised keys ``('de', 'en')``),
unregistered, prepared by tfds itself with ``download_and_prepare``; then a
small SentencePiece model trained by the workload's own ``prepare_tokenizer``.

Every pair's English side starts with its split and index ("train 17 ..."),
so a test can tell which pairs a batch holds from the decoded targets. One
train and one validation pair are too long for the workload (more than 256
tokens), as the reference's length filter must drop them.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Dict, Tuple

GERMAN = ('der die das ein eine Haus Katze Hund Stadt Zeit Jahr Mensch Welt '
          'sieht geht kommt macht hat ist war gross klein schnell alt neu gut '
          'und oder aber nicht sehr heute morgen hier dort Wasser Brot').split()
ENGLISH = ('the a an house cat dog city time year person world sees goes comes '
           'makes has is was big small fast old new good and or but not very '
           'today tomorrow here there water bread').split()
COUNTS = {'train': 300, 'validation': 30, 'test': 33}
TRAIN_SHARDS = 3
# Indices of the pairs longer than the workload's 256 tokens.
TOO_LONG = {'train': 7, 'validation': 5}


def pair(split: str, index: int) -> Tuple[str, str]:
  """The (German, English) sentences of pair ``index`` of ``split``."""
  rng = random.Random(f'{split}-{index}')
  words = rng.randint(3, 18) if TOO_LONG.get(split) != index else 400
  de = ' '.join(rng.choice(GERMAN) for _ in range(words))
  en = ' '.join(rng.choice(ENGLISH) for _ in range(words))
  return f'{split.capitalize()} {index}: {de}.', f'{split} {index} {en}.'


def english(split: str, index: int) -> str:
  return pair(split, index)[1]


def _builder(name: str, splits: Dict[str, int]) -> type:
  """A generator builder named like the real ``name``, writing ``splits`` pairs."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds.features.Translation(languages=('de', 'en')),
        supervised_keys=('de', 'en'))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split, count)
            for split, count in splits.items()}

  def _generate_examples(self, split, count):
    for i in range(count):
      de, en = pair(split, i)
      yield f'{split}-{i:05d}', {'de': de, 'en': en}

  attributes = {
      '__module__': __name__,
      'code_path': None,  # No checksums file to look for.
      'VERSION': tfds.core.Version('1.0.0'),
      'BUILDER_CONFIGS': [tfds.core.BuilderConfig(name='de-en')],
      '_info': _info,
      '_split_generators': _split_generators,
      '_generate_examples': _generate_examples,
  }
  # tfds derives the dataset name from the class name.
  class_name = ''.join(part.capitalize() for part in name.split('_'))
  cls = type(class_name, (tfds.core.GeneratorBasedBuilder,), attributes,
             skip_registration=True)
  assert cls.name == name, (cls.name, name)
  return cls


def write_tiny_wmt(root: Path, vocab_size: int = 96) -> None:
  """Prepares both tiny datasets and trains the tokenizer under ``root``."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  from workloads.wmt import data  # pylint: disable=import-outside-toplevel

  tfds.disable_progress_bar()
  skip_stats = tfds.core.download.ComputeStatsMode.SKIP
  wmt14 = _builder('wmt14_translate', {'validation': COUNTS['validation'],
                                       'test': COUNTS['test']})
  wmt17 = _builder('wmt17_translate', {'train': COUNTS['train']})
  wmt14(data_dir=str(root), config='de-en').download_and_prepare(
      download_config=tfds.download.DownloadConfig(compute_stats=skip_stats))
  wmt17(data_dir=str(root), config='de-en').download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          num_shards=TRAIN_SHARDS, compute_stats=skip_stats))
  data.prepare_tokenizer(str(root), vocab_size=vocab_size)
