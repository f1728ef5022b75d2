"""The data layer: stories → parsed descriptions → windows → cached tensors → batches.

Public API (see ``docs/architecture.md`` for the data flow)::

    prepared = prepare_data(config.data)          # PreparedData: train / val / test WindowSplits
    for batch in iterate_batches(prepared.train, batch_size=16, shuffle=True, seed=0, epoch=0):
        ...

Sources: ``auto`` | ``storyreasoning`` | ``synthetic`` | a folder of hub-layout parquet files.
CLI: ``python -m storylib.data prepare --data SOURCE [--json]``.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# name -> the submodule that defines it; imported on first use (PEP 562), so that
# ``storylib.data.sources`` (a source's name, folder labels) loads without torch: the report
# and run_all.py's checks need only that.
_EXPORTS = {
    "CACHE_VERSION": "cache", "cache_root": "cache",
    "PreparedData": "dataset", "WindowSplit": "dataset", "iterate_batches": "dataset", "make_batch": "dataset",
    "parse_chain_of_thought": "parsing", "parse_entities": "parsing", "parse_frame_descriptions": "parsing",
    "decode_frame": "prepare", "prepare_data": "prepare",
    "DataSourceError": "sources", "load_stories": "sources", "resolve_source": "sources", "source_label": "sources",
    "TextTokenizer": "tokenizer", "build_tokenizer": "tokenizer",
    "SKIP_REASONS": "windows", "split_by_story": "windows",
}  # fmt: skip

if TYPE_CHECKING:  # pragma: no cover - for type checkers and editors
    from storylib.data.cache import CACHE_VERSION, cache_root
    from storylib.data.dataset import PreparedData, WindowSplit, iterate_batches, make_batch
    from storylib.data.parsing import parse_chain_of_thought, parse_entities, parse_frame_descriptions
    from storylib.data.prepare import decode_frame, prepare_data
    from storylib.data.sources import DataSourceError, load_stories, resolve_source, source_label
    from storylib.data.tokenizer import TextTokenizer, build_tokenizer
    from storylib.data.windows import SKIP_REASONS, split_by_story


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f"storylib.data.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'storylib.data' has no attribute {name!r}")


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
