"""The data layer: stories → parsed descriptions → windows → cached tensors → batches.

Public API (see ``docs/architecture.md`` for the data flow)::

    prepared = prepare_data(config.data)          # PreparedData: train / val / test WindowSplits
    for batch in iterate_batches(prepared.train, batch_size=16, shuffle=True, seed=0, epoch=0):
        ...

Sources: ``auto`` | ``storyreasoning`` | ``synthetic`` | a folder of hub-layout parquet files.
CLI: ``python -m storylib.data prepare --data SOURCE [--json]``.
"""

from storylib.data.cache import CACHE_VERSION, cache_root
from storylib.data.dataset import PreparedData, WindowSplit, iterate_batches, make_batch
from storylib.data.parsing import (
    parse_chain_of_thought,
    parse_entities,
    parse_frame_descriptions,
)
from storylib.data.prepare import decode_frame, prepare_data
from storylib.data.sources import DataSourceError, load_stories, resolve_source, source_label
from storylib.data.tokenizer import TextTokenizer, build_tokenizer
from storylib.data.windows import SKIP_REASONS, split_by_story

__all__ = [
    "CACHE_VERSION",
    "DataSourceError",
    "PreparedData",
    "SKIP_REASONS",
    "TextTokenizer",
    "WindowSplit",
    "build_tokenizer",
    "cache_root",
    "decode_frame",
    "iterate_batches",
    "load_stories",
    "make_batch",
    "parse_chain_of_thought",
    "parse_entities",
    "parse_frame_descriptions",
    "prepare_data",
    "resolve_source",
    "source_label",
    "split_by_story",
]
