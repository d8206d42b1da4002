"""Datasets and input pipelines: offline tfds builders, grain batches, grids.

jaxsal never imports TensorFlow: datasets are stored as array_record and read
through tfds random-access sources and grain.
"""

from jaxsal.data._fewshot import FewShotSource as FewShotSource
from jaxsal.data._integrity import DatasetError as DatasetError
from jaxsal.data._render import RenderedDigits as RenderedDigits
from jaxsal.data._render import render_cluttered_digit as render_cluttered_digit
from jaxsal.data._render import render_cluttered_digits as render_cluttered_digits
from jaxsal.data._render import tight_boxes as tight_boxes
from jaxsal.data.cluttered_digits import ClutteredDigits as ClutteredDigits
from jaxsal.data.cluttered_digits import ClutteredDigitsConfig as ClutteredDigitsConfig
from jaxsal.data.cluttered_digits import partition_sources as partition_sources
from jaxsal.data.cluttered_digits import source_digits as source_digits
from jaxsal.data.grids import cell_boxes as cell_boxes
from jaxsal.data.grids import compose_grids as compose_grids
from jaxsal.data.imagenet import EvalTransform as EvalTransform
from jaxsal.data.imagenet import TrainTransform as TrainTransform
from jaxsal.data.pipeline import DATASETS as DATASETS
from jaxsal.data.pipeline import DEFAULT_DATA_DIR as DEFAULT_DATA_DIR
from jaxsal.data.pipeline import cluttered_digits_builder as cluttered_digits_builder
from jaxsal.data.pipeline import dataset_info as dataset_info
from jaxsal.data.pipeline import eval_batches as eval_batches
from jaxsal.data.pipeline import load_source as load_source
from jaxsal.data.pipeline import make_batches as make_batches

__all__ = [
  "DATASETS",
  "DEFAULT_DATA_DIR",
  "ClutteredDigits",
  "ClutteredDigitsConfig",
  "DatasetError",
  "EvalTransform",
  "FewShotSource",
  "RenderedDigits",
  "TrainTransform",
  "cell_boxes",
  "cluttered_digits_builder",
  "compose_grids",
  "dataset_info",
  "eval_batches",
  "load_source",
  "make_batches",
  "partition_sources",
  "render_cluttered_digit",
  "render_cluttered_digits",
  "source_digits",
  "tight_boxes",
]
