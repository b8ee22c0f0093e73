"""Text sources, tokenisation and packing into fixed-length contexts.

Sources (`iter_texts(source)`):
- ``"default"``: the embedded corpus, `interp.organism.corpus.iter_documents(split, seed)`, an
  endless deterministic stream of short documents.
- a local ``.txt`` file: one document per paragraph, paragraphs separated by blank lines (a
  file without blank lines is one document; line breaks inside a paragraph are kept).
- a local ``.jsonl`` file: one JSON object per line, the document in its `text_field`.
- a local ``.parquet`` file: the document in column `text_field`.
- anything else: a HuggingFace dataset name, streamed with `datasets.load_dataset`.

.txt and .jsonl files are read as UTF-8; a line that is not is an error naming the file and
line, unless `decode_errors` is "replace" (U+FFFD for the bad bytes) or "skip" (drop the line).

Packing (`pack_contexts`): documents are tokenised in batches with the fast tokenizer, without
special tokens, joined with EOS after every document, and cut into contexts of `ctx_len` tokens;
when the tokenizer has a BOS token, every context is BOS followed by `ctx_len - 1` text tokens
(so position 0 is always BOS). The incomplete tail is dropped. Everything is deterministic: the
same source, seed and tokenizer give the same contexts.
"""

import itertools
import json
import queue
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar, get_args

import torch
from jaxtyping import Int
from torch import Tensor

from interp.config import DecodeErrors
from interp.errors import DataError, OfflineError
from sae.fsutil import json_kind

FILE_SUFFIXES = (".txt", ".jsonl", ".parquet")
DOCS_PER_CALL = 512
"""Documents per batched tokenizer call; large enough to amortise the call, small enough to
keep the first context quick."""


DECODE_ERRORS: tuple[str, ...] = get_args(DecodeErrors)
_ESCAPED = re.compile("[\udc80-\udcff]")
"""Undecodable bytes, as the "surrogateescape" error handler leaves them in a decoded line."""
_SURROGATE = re.compile("[\ud800-\udfff]")
"""Lone surrogates, which no tokenizer accepts (a JSON string can spell one as an escape)."""


def _decode_hint(path: Path, number: int, what: str) -> str:
    return (
        f"{path}:{number} {what}; fix the file, or pass decode_errors (--decode-errors) 'replace' "
        "to read the bad bytes as U+FFFD or 'skip' to drop such lines (a capture stopped here "
        "continues with --resume and that flag)"
    )


def _lines(path: Path, decode_errors: DecodeErrors) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file, handling undecodable lines as `decode_errors`
    says: 'strict' raises `DataError` naming the file and line, 'replace' puts U+FFFD for the
    bad bytes (as `bytes.decode(errors="replace")` would), 'skip' drops the line.

    Lines are split with universal newlines, as a plain text-mode `open` does. The bytes are
    decoded with "surrogateescape", so each undecodable byte stays in the line as one escape
    and the line can be encoded back to its exact bytes.
    """
    with path.open(encoding="utf-8", errors="surrogateescape") as f:
        for number, line in enumerate(f, start=1):
            bad = _ESCAPED.search(line)
            if bad is None:
                yield number, line
            elif decode_errors == "replace":
                raw = line.encode("utf-8", errors="surrogateescape")
                yield number, raw.decode("utf-8", errors="replace")
            elif decode_errors == "strict":
                byte = ord(bad.group()) - 0xDC00
                what = f"is not valid UTF-8 (byte 0x{byte:02x} at character {bad.start() + 1})"
                raise DataError(_decode_hint(path, number, what))


def _txt_documents(path: Path, decode_errors: DecodeErrors = "strict") -> Iterator[str]:
    paragraph: list[str] = []
    for _, line in _lines(path, decode_errors):
        if line.strip():
            paragraph.append(line.rstrip("\n"))
        elif paragraph:
            yield "\n".join(paragraph)
            paragraph = []
    if paragraph:
        yield "\n".join(paragraph)


def _json_text(path: Path, number: int, row: Any, text_field: str, decode_errors: str) -> Any:
    if not isinstance(row, dict) or text_field not in row:
        keys = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise DataError(
            f"{path}:{number} has no {text_field!r} field (it has {keys}); "
            "pass the right field name as text_field (--text-field)"
        )
    text = row[text_field]
    if not isinstance(text, str):
        raise DataError(
            f"{path}:{number} field {text_field!r} is {json_kind(text)}, not a string; fix the "
            "file or pass the field that holds the text as text_field (--text-field)"
        )
    if _SURROGATE.search(text) is None:
        return text
    if decode_errors == "strict":
        raise DataError(_decode_hint(path, number, "holds a lone surrogate escape (not text)"))
    return None if decode_errors == "skip" else _SURROGATE.sub("\ufffd", text)


def _jsonl_documents(
    path: Path, text_field: str, decode_errors: DecodeErrors = "strict"
) -> Iterator[str]:
    for number, line in _lines(path, decode_errors):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number} is not valid JSON ({err.msg})") from err
        text = _json_text(path, number, row, text_field, decode_errors)
        if text is not None:
            yield text


def _parquet_documents(path: Path, text_field: str) -> Iterator[str]:
    """The column's strings; null entries are read as empty documents, which packing drops."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
        schema = file.schema_arrow
        if text_field not in schema.names:
            raise DataError(
                f"{path} has no column {text_field!r} (columns: {schema.names}); pass the right "
                "column name as text_field (--text-field)"
            )
        kind = schema.field(text_field).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise DataError(
                f"{path} column {text_field!r} holds {kind}, not strings; pass the column that "
                "holds the text as text_field (--text-field)"
            )
        for batch in file.iter_batches(columns=[text_field], batch_size=1024):
            yield from batch.column(0).to_pylist()
    except pa.ArrowException as err:
        raise DataError(f"{path} is not a readable parquet file ({err})") from err


def _hub_documents(name: str, split: str, text_field: str) -> Iterator[str]:
    import datasets

    hint = (
        f"could not load dataset {name!r} from the hub; no network, or no such dataset — pass "
        f"a local {', '.join(FILE_SUFFIXES)} file or 'default' (the embedded corpus)"
    )
    from huggingface_hub import constants

    from interp.models import check_hub_name, hub_reachable

    check_hub_name(name, "dataset", DataError)
    if not constants.HF_HUB_OFFLINE and not hub_reachable():
        raise OfflineError(f"{hint} (the hub's host does not answer)")
    try:
        rows = iter(datasets.load_dataset(name, split=split, streaming=True))
        first = next(rows)
    except (OSError, ConnectionError) as err:  # datasets raises ConnectionError when offline
        raise OfflineError(f"{hint} ({err})") from err
    except StopIteration:
        return
    for row in itertools.chain([first], rows):
        if text_field not in row:
            raise DataError(f"dataset {name!r} rows have no field {text_field!r} ({sorted(row)})")
        if not isinstance(row[text_field], str | None):
            raise DataError(
                f"dataset {name!r} has a {type(row[text_field]).__name__} in field "
                f"{text_field!r}, not a string; pass the field that holds the text as --text-field"
            )
        yield row[text_field]


def _embedded_documents(split: str, seed: int) -> Iterator[str]:
    from interp.organism.corpus import iter_documents

    if split not in ("train", "heldout"):
        raise DataError(f"the embedded corpus has splits 'train' and 'heldout', not {split!r}")
    return iter_documents(split=split, seed=seed)


def _file_documents(
    path: Path, split: str, text_field: str, decode_errors: DecodeErrors
) -> Iterator[str]:
    if split != "train":
        raise DataError(f"a local file has no splits; split={split!r} applies only to datasets")
    if not path.is_file():
        raise DataError(f"dataset file {str(path)!r} does not exist")
    if path.suffix == ".txt":
        return _txt_documents(path, decode_errors)
    if path.suffix == ".jsonl":
        return _jsonl_documents(path, text_field, decode_errors)
    return _parquet_documents(path, text_field)


def is_local_source(source: str) -> bool:
    """True when `source` names a local file (by suffix or because it exists)."""
    return source.endswith(FILE_SUFFIXES) or Path(source).exists()


def iter_texts(
    source: str = "default",
    *,
    split: str = "train",
    seed: int = 0,
    text_field: str = "text",
    decode_errors: DecodeErrors = "strict",
) -> Iterator[str]:
    """Documents from `source` (see the module docstring), in a deterministic order.

    `seed` picks the embedded corpus's stream; files and hub datasets are read in their order.
    `decode_errors` says what to do with a line of a .txt or .jsonl file that is not UTF-8 (see
    `_lines`); other sources hold decoded text already.
    """
    if decode_errors not in DECODE_ERRORS:
        raise DataError(f"decode_errors must be one of {DECODE_ERRORS}, got {decode_errors!r}")
    if source == "default":
        return _embedded_documents(split, seed)
    if is_local_source(source):
        path = Path(source).expanduser()
        if path.suffix not in FILE_SUFFIXES:
            raise DataError(
                f"unknown dataset file type {path.suffix!r} for {source!r}; "
                f"valid: {', '.join(FILE_SUFFIXES)}"
            )
        return _file_documents(path, split, text_field, decode_errors)
    return _hub_documents(source, split, text_field)


def check_source(
    source: str,
    *,
    split: str = "train",
    text_field: str = "text",
    decode_errors: DecodeErrors = "strict",
) -> None:
    """Read the first document of `source`, so that a bad source fails before any work."""
    texts = iter_texts(source, split=split, text_field=text_field, decode_errors=decode_errors)
    if next(texts, None) is None:
        raise DataError(f"dataset {source!r} holds no documents")


def special_ids(tokenizer: Any) -> tuple[int | None, int | None]:
    """(BOS id, EOS id) of a tokenizer; None where it has no such token."""
    return tokenizer.bos_token_id, tokenizer.eos_token_id


def pack_contexts(
    texts: Iterable[str], tokenizer: Any, ctx_len: int, docs_per_call: int = DOCS_PER_CALL
) -> Iterator[Int[Tensor, "n ctx_len"]]:
    """Pack documents into contexts, yielded as `[n, ctx_len]` int64 chunks (n varies)."""
    bos, eos = special_ids(tokenizer)
    body = ctx_len - (bos is not None)
    if body < 1:
        raise DataError(f"ctx_len={ctx_len} leaves no room for text after BOS; use ctx_len >= 2")
    carry: list[int] = []
    texts = iter(texts)
    while docs := [t for t in itertools.islice(texts, docs_per_call) if t]:
        encoded = tokenizer(
            docs, add_special_tokens=False, return_attention_mask=False, verbose=False
        )["input_ids"]
        for ids in encoded:
            carry.extend(ids)
            if eos is not None:
                carry.append(eos)
        n = len(carry) // body
        if n == 0:
            continue
        chunk = torch.tensor(carry[: n * body], dtype=torch.long).view(n, body)
        carry = carry[n * body :]
        if bos is not None:
            chunk = torch.cat([torch.full((n, 1), bos, dtype=torch.long), chunk], dim=1)
        yield chunk


def iter_contexts(
    texts: Iterable[str], tokenizer: Any, ctx_len: int
) -> Iterator[Int[Tensor, " ctx_len"]]:
    """The packed contexts one by one."""
    for chunk in pack_contexts(texts, tokenizer, ctx_len):
        yield from chunk


def batched(
    contexts: Iterable[Int[Tensor, " ctx_len"]], batch_size: int
) -> Iterator[Int[Tensor, "batch ctx_len"]]:
    """Stack contexts into batches of `batch_size`; the last batch may be smaller."""
    contexts = iter(contexts)
    while batch := list(itertools.islice(contexts, batch_size)):
        yield torch.stack(batch)


T = TypeVar("T")


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """The items of `items`, produced up to `depth` ahead by a background thread.

    For a GPU run, where tokenising the next batches on the CPU can overlap the GPU's work
    instead of stalling it (the tokenizers library releases the GIL while it encodes). An
    exception in the producer is raised here, at the item where it happened; closing this
    generator (or dropping it) stops the producer at its next item.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, end))
        except BaseException as e:  # handed to the consumer, raised there
            put((False, e))

    thread = threading.Thread(target=produce, name="interp-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)


def context_batches(
    tokenizer: Any,
    source: str = "default",
    ctx_len: int = 128,
    batch_size: int = 32,
    *,
    split: str = "train",
    seed: int = 0,
    text_field: str = "text",
) -> Iterator[Int[Tensor, "batch ctx_len"]]:
    """Batches of packed contexts from a source: the usual input of `interp.capture`."""
    texts = iter_texts(source, split=split, seed=seed, text_field=text_field)
    return batched(iter_contexts(texts, tokenizer, ctx_len), batch_size)
