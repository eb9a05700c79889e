"""`algoperf datasets NAME`: instructions, verification against split counts, prepare."""

import pathlib

import pytest

from algoperf import cli
from workloads import datasets

FASHION_DIR = pathlib.Path('/usr/share/datasets/fashion-mnist')


def _run(capsys, *argv):
  code = cli.main(['datasets', *argv])
  out = capsys.readouterr()
  return code, out.out + out.err


def test_without_a_name_it_lists_the_datasets(capsys):
  code, text = _run(capsys)
  assert code == 0
  for name in ('fashion_mnist', 'mnist1d', 'imagenet'):
    assert name in text


def test_a_workload_name_finds_its_dataset():
  assert datasets.recipe_for('imagenet_vit_map').name == 'imagenet'
  assert datasets.recipe_for('mnist1d').name == 'mnist1d'
  with pytest.raises(datasets.DatasetError, match="Unknown dataset 'cifar10'. Known: "):
    datasets.recipe_for('cifar10')


def test_mnist1d_verifies_with_its_counts(capsys):
  code, text = _run(capsys, 'mnist1d')
  assert code == 0, text
  assert ' '.join(text.split()).count('examples (expected') == 3
  assert '8,000 examples (expected 8,000) ok' in ' '.join(text.split())
  assert 'mnist1d is ready.' in text


@pytest.mark.skipif(not (FASHION_DIR / 't10k-labels-idx1-ubyte.gz').exists(),
                    reason='needs apt-get install dataset-fashion-mnist')
def test_fashion_mnist_verifies_the_installed_files(capsys):
  code, text = _run(capsys, 'fashion_mnist')
  assert code == 0, text
  assert '50,000 examples (expected 50,000) ok' in text


def test_a_folder_without_the_dataset_is_not_ready(capsys, tmp_path):
  code, text = _run(capsys, 'fashion_mnist', '--data_dir', str(tmp_path))
  assert code == 1
  assert f'Not ready in {tmp_path}' in text


def test_wrong_counts_are_named_split_by_split(tmp_path):
  recipe = datasets.RECIPES['mnist1d']
  checks = recipe.verify(str(tmp_path), counts={'train': 8_000, 'validation': 999})
  assert [(c.split, c.ok) for c in checks] == [('train', True), ('validation', False)]
  assert checks[1].found == 1_000


def test_imagenet_needs_a_data_dir(capsys):
  code, text = _run(capsys, 'imagenet')
  assert code == 2
  assert 'Pass --data_dir DIR' in text
