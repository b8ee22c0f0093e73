"""interp.data: text sources, and packing checked against a naive one-document-at-a-time packer."""

import itertools
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoTokenizer

from interp.data import (
    batched,
    check_source,
    context_batches,
    iter_contexts,
    iter_texts,
    pack_contexts,
    prefetch,
)
from interp.errors import DataError, OfflineError

DOCS = ["The cat sat.", "Mary and John went to the park.\nThen they left.", "Review: good."]


@pytest.fixture(scope="module")
def tokenizer(tiny_dirs):
    return AutoTokenizer.from_pretrained(tiny_dirs["llama"])


def naive_pack(docs, tokenizer, ctx_len):
    """Reference: encode each document alone, add EOS, concatenate, cut, prepend BOS."""
    stream = []
    for doc in docs:
        stream += tokenizer.encode(doc, add_special_tokens=False) + [tokenizer.eos_token_id]
    body = ctx_len - 1
    n = len(stream) // body
    return [[tokenizer.bos_token_id] + stream[i * body : (i + 1) * body] for i in range(n)]


def test_txt_is_split_on_blank_lines(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("\n\n".join(DOCS) + "\n\n\n")
    assert list(iter_texts(str(path))) == DOCS


def test_jsonl_and_parquet_read_the_text_field(tmp_path):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": d, "id": i}) for i, d in enumerate(DOCS)))
    assert list(iter_texts(str(jsonl))) == DOCS
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"body": DOCS}), parquet)
    assert list(iter_texts(str(parquet), text_field="body")) == DOCS


def test_bad_files_say_what_is_wrong(tmp_path):
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(json.dumps({"content": "x"}) + "\n")
    with pytest.raises(
        DataError, match=r"docs.jsonl:1 has no 'text' field \(it has \['content'\]\)"
    ):
        list(iter_texts(str(jsonl)))
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"body": DOCS}), parquet)
    with pytest.raises(DataError, match=r"no column 'text' \(columns: \['body'\]\)"):
        list(iter_texts(str(parquet)))
    with pytest.raises(DataError, match="does not exist"):
        iter_texts(str(tmp_path / "missing.txt"))
    (tmp_path / "docs.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"unknown dataset file type '.csv'.*valid: .txt, .jsonl"):
        iter_texts(str(tmp_path / "docs.csv"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="holds no documents"):
        check_source(str(tmp_path / "empty.txt"))
    with pytest.raises(DataError, match="no splits"):
        iter_texts(str(jsonl), split="validation")


def test_undecodable_lines_name_the_file_and_line(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_bytes(b"The cat sat.\r\n\r\nMary \xff and\r\nJohn.\r\n\r\nEnd \xe2\x82.\n")
    with pytest.raises(
        DataError, match=r"docs.txt:3 is not valid UTF-8 \(byte 0xff at character 6\)"
    ):
        list(iter_texts(str(path)))
    assert list(iter_texts(str(path), decode_errors="replace")) == [
        "The cat sat.",
        "Mary \ufffd and\nJohn.",
        "End \ufffd.",
    ]
    assert list(iter_texts(str(path), decode_errors="skip")) == ["The cat sat.", "John."]
    with pytest.raises(DataError, match="decode_errors must be one of"):
        iter_texts(str(path), decode_errors="ignore")


def test_jsonl_rows_must_hold_strings(tmp_path):
    path = tmp_path / "docs.jsonl"
    rows = [b'{"text": "ok"}', b'{"text": "caf\xc3"}', b'{"text": "\\udc80"}', b'{"text": 5}']
    path.write_bytes(b"\n".join(rows))
    with pytest.raises(DataError, match="docs.jsonl:2 is not valid UTF-8.*--decode-errors"):
        list(iter_texts(str(path)))
    for choice in ("replace", "skip"):
        with pytest.raises(DataError, match=r"docs.jsonl:4 field 'text' is a JSON number, not a"):
            list(iter_texts(str(path), decode_errors=choice))
    path.write_bytes(b"\n".join([rows[0], rows[2]]))
    with pytest.raises(DataError, match=r"docs.jsonl:2 holds a lone surrogate"):
        list(iter_texts(str(path)))
    path.write_bytes(b"\n".join(rows[:3]))
    assert list(iter_texts(str(path), decode_errors="replace")) == ["ok", "caf\ufffd", "\ufffd"]
    assert list(iter_texts(str(path), decode_errors="skip")) == ["ok"]


def test_parquet_faults_name_the_file(tmp_path):
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), parquet)
    with pytest.raises(DataError, match="docs.parquet column 'text' holds int64, not strings"):
        list(iter_texts(str(parquet)))
    parquet.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="docs.parquet is not a readable parquet file"):
        list(iter_texts(str(parquet)))


def test_embedded_corpus_is_deterministic_per_seed():
    first = list(itertools.islice(iter_texts("default", seed=3), 20))
    assert first == list(itertools.islice(iter_texts("default", seed=3), 20))
    assert first != list(itertools.islice(iter_texts("default", seed=4), 20))
    with pytest.raises(DataError, match="'train' and 'heldout'"):
        iter_texts("default", split="test")


def test_hub_dataset_offline_is_a_clear_error(monkeypatch):
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(OfflineError, match="could not load dataset 'interp-test/none'.*local"):
        check_source("interp-test/none")


def test_packing_matches_the_naive_packer(tokenizer):
    docs = list(itertools.islice(iter_texts("default"), 300))
    for ctx_len in (2, 17, 64):
        packed = torch.cat(list(pack_contexts(docs, tokenizer, ctx_len, docs_per_call=7)))
        assert packed.dtype == torch.int64 and packed.shape[1] == ctx_len
        assert packed.tolist() == naive_pack(docs, tokenizer, ctx_len)


def test_every_context_starts_with_bos(tokenizer):
    contexts = list(itertools.islice(iter_contexts(iter_texts("default"), tokenizer, 32), 50))
    assert all(c[0] == tokenizer.bos_token_id for c in contexts)
    assert all((c[1:] != tokenizer.bos_token_id).all() for c in contexts)


def test_tokenizer_without_bos_packs_text_only(tokenizer):
    no_bos = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    no_bos.bos_token = None
    packed = torch.cat(list(pack_contexts(DOCS * 10, no_bos, 8)))
    stream = []
    for doc in DOCS * 10:
        stream += tokenizer.encode(doc, add_special_tokens=False) + [tokenizer.eos_token_id]
    assert packed.flatten().tolist() == stream[: packed.numel()]
    assert len(stream) - packed.numel() < 8


def test_batches(tokenizer):
    batches = list(itertools.islice(context_batches(tokenizer, "default", 16, 5), 3))
    assert [tuple(b.shape) for b in batches] == [(5, 16)] * 3
    assert [tuple(b.shape) for b in batched(iter(torch.zeros(7, 4)), 3)] == [(3, 4), (3, 4), (1, 4)]


def test_prefetch_keeps_order_and_ends():
    assert list(prefetch(iter(range(1000)), depth=3)) == list(range(1000))
    assert list(prefetch([])) == []


def test_prefetch_raises_the_producers_error_at_its_item():
    def items():
        yield from range(5)
        raise DataError("bad document 5")

    it = prefetch(items(), depth=2)
    assert list(itertools.islice(it, 5)) == [0, 1, 2, 3, 4]
    with pytest.raises(DataError, match="bad document 5"):
        next(it)


def test_prefetch_stops_its_thread_when_closed():
    import threading

    produced = []

    def endless():
        for i in itertools.count():
            produced.append(i)
            yield i

    it = prefetch(endless(), depth=2)
    assert next(it) == 0
    it.close()
    assert not any(t.name == "interp-prefetch" for t in threading.enumerate())
    n = len(produced)  # at most depth + 2 ahead of the consumer, and no longer growing
    assert n <= 4 and len(produced) == n
