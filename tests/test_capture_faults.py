"""Faults around `interp capture`: damaged caches, bad text files and a hostile environment.

Caches: hypothesis writes corrupt, truncated and wrong-shaped manifest.json and shard files into a
copy of a small cache. Each is refused with a `CacheError` that names the file (or its folder), or
read back with every tensor of the right shape; no other exception may escape. Bytes changed
inside a shard's data, with its sha256 in the manifest changed to match, cannot be detected.

Text files: hypothesis writes .txt and .jsonl files with undecodable lines; each decode_errors
choice is checked against a reference decoder (`bytes.decode` line by line), and every error is
a `DataError` naming the file and line.

Environment: an unwritable or full disk, a second capture into a folder being written, a context
longer than the model takes, a model folder whose config.json is garbage.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_damage import damaged_json
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from typer.testing import CliRunner

from interp.capture import run as capture_run
from interp.capture.cache import iter_cache, iter_shard_contexts, open_cache, read_manifest
from interp.capture.config import CaptureConfig
from interp.capture.run import capture_to_disk, locked
from interp.cli import app
from interp.data import DECODE_ERRORS, iter_texts
from interp.errors import CacheError, DataError, InterpError

OUTCOMES: Counter = Counter()
"""(test, kind of damage, outcome) counts of the cases generated here, for reporting."""
SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def cfg(tiny_dirs, tmp_path_factory) -> CaptureConfig:
    """12 contexts of 16 tokens in 3 shards, two hooks."""
    return CaptureConfig(
        model=str(tiny_dirs["llama"]),
        layer=(1,),
        hook=("blocks.0.hook_mlp_out",),
        ctx_len=16,
        tokens=16 * 12,
        batch_size=4,
        shard_tokens=16 * 4,
        device="cpu",
        out=str(tmp_path_factory.mktemp("faults") / "acts"),
    )


@pytest.fixture(scope="module")
def reference(cfg) -> Path:
    capture_to_disk(cfg)
    return Path(cfg.out)


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard_*.safetensors"))}


def leftovers(folder: Path) -> list[str]:
    """Hidden files a capture must not leave: temporaries, probes and its lock."""
    return sorted(p.name for p in folder.glob(".*"))


# ---------------------------------------------------------------- damaged manifests


def _read_all(folder: Path) -> str:
    """'refused' (a CacheError naming a file of the folder) or 'read' (every tensor checked)."""
    try:
        info = open_cache(folder)
        for tokens, acts in iter_shard_contexts(info):
            assert tokens.shape[1] == info.ctx_len
            assert all(a.shape[:2] == tokens.shape for a in acts.values())
        list(iter_cache(info, batch_tokens=7, shuffle=True))
    except CacheError as err:
        assert str(folder) in str(err), str(err)
        return "refused"
    return "read"


class ChecksPassed(Exception):
    """Raised in place of loading the model: every check of the folder passed."""


def _resume_checks(cfg: CaptureConfig, folder: Path) -> str:
    """Resume into the folder up to the model load: 'refused' or 'accepted'."""
    resumed = dataclasses.replace(cfg, out=str(folder), resume=True)
    with mock.patch.object(capture_run, "_load", side_effect=ChecksPassed):
        try:
            capture_to_disk(resumed)
        except CacheError as err:
            assert str(folder) in str(err), str(err)
            return "refused"
        except ChecksPassed:
            return "accepted"
    raise AssertionError("the resume went past the model load")


@SETTINGS
@given(data=st.data())
def test_damaged_manifest_is_refused_naming_the_file(reference, cfg, data):
    original = (reference / "manifest.json").read_bytes()
    kind, text = data.draw(damaged_json(original))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(reference, Path(tmp) / "acts"))
        (folder / "manifest.json").write_bytes(text)
        outcome = _read_all(folder)
        resumed = _resume_checks(cfg, folder)
        assert leftovers(folder) == []
    OUTCOMES["manifest", kind.split(" ")[0], outcome] += 1
    if kind in ("bytes", "json", "truncate"):
        assert outcome == "refused" and resumed == "refused"


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ([1, 2, 3], "it holds a JSON array, not an object"),
        ({"format": "interp-activations", "version": 1}, "it has no 'model' field"),
        ({"shards": None}, "'shards' should be a list, not null"),
        ({"n_tokens": "192"}, "'n_tokens' should be an integer >= 0"),
        ({"n_tokens": 191}, "n_tokens is 191, not n_contexts * ctx_len"),
        ({"shards": [{"file": "shard_00000.safetensors", "n_contexts": 4}]}, "sha256 None"),
        ({"shards": [{"file": "../x", "n_contexts": 4, "sha256": "0" * 64}]}, "names file"),
        ({"complete": "yes"}, "'complete' should be true or false"),
        ({"shapes": {"blocks.1.hook_resid_post": [32]}}, "its shapes are for"),
    ],
)
def test_wrong_shaped_manifest_is_named(reference, cfg, tmp_path, manifest, problem):
    folder = Path(shutil.copytree(reference, tmp_path / "acts"))
    path = folder / "manifest.json"
    if isinstance(manifest, dict) and "format" not in manifest:
        manifest = json.loads(path.read_text()) | manifest
    path.write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="corrupt") as info:
        read_manifest(folder)
    assert str(info.value).startswith(f"{path} is corrupt: ") and problem in str(info.value)
    assert _resume_checks(cfg, folder) == "refused"


def test_a_manifest_from_before_source_was_recorded_is_read(reference, tmp_path):
    folder = Path(shutil.copytree(reference, tmp_path / "acts"))
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["source"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert open_cache(folder).source.dataset == "default"  # from its config


# ---------------------------------------------------------------- damaged shards


@st.composite
def damaged_shards(draw, data: bytes) -> tuple[str, bytes]:
    """(kind of damage, shard bytes), never the original bytes."""
    kind = draw(st.sampled_from(["truncate", "flip", "bytes", "tensors"]))
    if kind == "truncate":
        return kind, data[: draw(st.integers(0, len(data) - 1))]
    if kind == "flip":
        at, mask = draw(st.integers(0, len(data) - 1)), draw(st.integers(1, 255))
        header_end = 8 + int.from_bytes(data[:8], "little")
        where = "header" if at < header_end else "data"
        return f"flip {where}", data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :]
    if kind == "bytes":
        return kind, draw(st.binary(max_size=64))
    tensors = load_bytes(data)
    name = draw(st.sampled_from(sorted(tensors)))
    change = draw(st.sampled_from(["drop", "shape", "dtype"]))
    if change == "drop":
        del tensors[name]
    elif change == "shape":
        tensors[name] = torch.zeros(draw(st.lists(st.integers(0, 17), max_size=4)))
    else:
        dtype = draw(st.sampled_from([torch.int32, torch.float16, torch.float64, torch.bool]))
        tensors[name] = tensors[name].to(dtype)
    return f"tensor {change}", save_bytes(tensors)


@SETTINGS
@given(data=st.data(), index=st.integers(0, 2), fix_sha=st.booleans())
def test_damaged_shard_is_refused_naming_the_file(reference, data, index, fix_sha):
    """With `fix_sha` the manifest lists the damaged file's sha256, as if it had been written so:
    then only what the file holds can tell."""
    name = f"shard_{index:05d}.safetensors"
    kind, damaged = data.draw(damaged_shards((reference / name).read_bytes()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(reference, Path(tmp) / "acts"))
        (folder / name).write_bytes(damaged)
        if fix_sha:
            manifest = json.loads((folder / "manifest.json").read_text())
            manifest["shards"][index]["sha256"] = hashlib.sha256(damaged).hexdigest()
            (folder / "manifest.json").write_text(json.dumps(manifest))
        outcome = _read_all(folder)
    OUTCOMES["shard", kind.split(" ")[0] + (" sha fixed" if fix_sha else ""), outcome] += 1
    if not fix_sha or kind in ("truncate", "bytes") or kind.startswith("tensor"):
        assert outcome == "refused", kind


def test_damaged_shard_is_written_again_by_resume(reference, cfg, tmp_path):
    folder = Path(shutil.copytree(reference, tmp_path / "acts"))
    (folder / "shard_00001.safetensors").write_bytes(b"\0" * 10)
    (folder / "shard_00002.safetensors").unlink()
    with pytest.raises(CacheError, match="lacks shard files"):
        open_cache(folder)
    result = capture_to_disk(dataclasses.replace(cfg, out=str(folder), resume=True))
    assert (result.shards_skipped, result.shards_written) == (1, 2)
    assert shard_bytes(folder) == shard_bytes(reference) and leftovers(folder) == []
    OUTCOMES["shard", "deleted or garbage", "recovered"] += 1


# ---------------------------------------------------------------- bad text files


def _paragraphs(lines: list[str]) -> list[str]:
    """The .txt format's documents, from lines that still end in their newline."""
    docs, paragraph = [], []
    for line in lines:
        if line.strip():
            paragraph.append(line.rstrip("\n"))
        elif paragraph:
            docs.append("\n".join(paragraph))
            paragraph = []
    return docs + (["\n".join(paragraph)] if paragraph else [])


def reference_lines(data: bytes, decode_errors: str) -> tuple[list[str], int | None]:
    """(lines, first undecodable line number) by plain `bytes.decode`, one line at a time.

    Lines end as a text-mode `open` gives them: '\\r\\n' and '\\r' become '\\n'."""
    lines, first_bad = [], None
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        body, ending = raw.rstrip(b"\r\n"), b"\n" if raw.endswith((b"\r", b"\n")) else b""
        try:
            lines.append((body + ending).decode("utf-8"))
        except UnicodeDecodeError:
            first_bad = first_bad or number
            if decode_errors == "replace":
                lines.append((body + ending).decode("utf-8", errors="replace"))
    return lines, first_bad


text_lines = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12),
        st.binary(max_size=8),
        st.sampled_from([b"\xff", b"caf\xc3", b"\xe2\x82", b"\xed\xa0\x80", b""]),
    ),
    max_size=12,
)


def _file_bytes(parts: list, endings: list[bytes]) -> bytes:
    encoded = [p.encode() if isinstance(p, str) else p for p in parts]
    return b"".join(p + endings[i % len(endings)] for i, p in enumerate(encoded))


@SETTINGS
@given(
    parts=text_lines,
    endings=st.lists(st.sampled_from([b"\n", b"\r\n", b"\r", b"\n\n"]), min_size=1, max_size=3),
    decode_errors=st.sampled_from(DECODE_ERRORS),
)
def test_txt_decode_errors_match_a_reference_decoder(parts, endings, decode_errors):
    data = _file_bytes(parts, endings)
    lines, first_bad = reference_lines(data, decode_errors)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.txt"
        path.write_bytes(data)
        if decode_errors == "strict" and first_bad is not None:
            with pytest.raises(DataError, match="--decode-errors") as info:
                list(iter_texts(str(path)))
            assert str(info.value).startswith(f"{path}:{first_bad} is not valid UTF-8")
            OUTCOMES["txt", decode_errors, "refused"] += 1
            return
        docs = list(iter_texts(str(path), decode_errors=decode_errors))
    assert docs == _paragraphs(lines)
    assert all(isinstance(d.encode("utf-8"), bytes) for d in docs)  # no lone surrogates
    OUTCOMES["txt", decode_errors, "read" if first_bad is None else "recovered"] += 1


jsonl_rows = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=8).map(
            lambda t: json.dumps({"text": t}).encode()
        ),
        st.sampled_from(
            [
                b'{"text": "caf\xc3"}',
                b'{"text": "\\udc80 lone"}',
                b'{"text": 5}',
                b'{"text": null}',
                b'{"text": ["a"]}',
                b'{"body": "x"}',
                b"[1]",
                b'{"text": "unterminated',
                b"\xff\xfe",
                b"",
            ]
        ),
    ),
    max_size=8,
)


@SETTINGS
@given(rows=jsonl_rows, decode_errors=st.sampled_from(DECODE_ERRORS))
def test_jsonl_faults_are_data_errors_naming_the_line(rows, decode_errors):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.jsonl"
        path.write_bytes(b"\n".join(rows) + b"\n")
        try:
            docs = list(iter_texts(str(path), decode_errors=decode_errors))
        except DataError as err:
            number = int(str(err).removeprefix(f"{path}:").split(" ")[0])
            assert rows[number - 1].strip(), str(err)
            OUTCOMES["jsonl", decode_errors, "refused"] += 1
            return
    assert all(isinstance(d, str) and isinstance(d.encode("utf-8"), bytes) for d in docs)
    OUTCOMES["jsonl", decode_errors, "read"] += 1


def test_capture_stopped_by_a_bad_line_resumes_with_decode_errors(cfg, tmp_path):
    """The issue's cache that could never be finished: a bad byte after the first shards."""
    # Past the first 512 documents, which packing tokenises in one call before any shard.
    docs = [f"Mary met John {i} times in the park." for i in range(1200)]
    head = "\n\n".join(docs[:520]) + "\n\n"
    text = tmp_path / "late.txt"
    text.write_bytes(head.encode() + b"bad \xff\n\n" + "\n\n".join(docs[520:]).encode())
    bad = dataclasses.replace(
        cfg,
        dataset=str(text),
        tokens=16 * 64 * 25,
        shard_tokens=16 * 64,
        batch_size=16,
        out=str(tmp_path / "a"),
    )
    line = head.count("\n") + 1
    with pytest.raises(DataError, match=rf"late.txt:{line} is not valid UTF-8 \(byte 0xff"):
        capture_to_disk(bad)
    assert 0 < len(shard_bytes(tmp_path / "a")) < 25
    with pytest.raises(DataError, match="--decode-errors"):
        capture_to_disk(dataclasses.replace(bad, resume=True))
    fixed = dataclasses.replace(bad, resume=True, decode_errors="replace")
    result = capture_to_disk(fixed)
    assert result.shards_skipped > 0 and result.n_tokens == bad.tokens
    fresh = capture_to_disk(dataclasses.replace(fixed, resume=False, out=str(tmp_path / "b")))
    assert shard_bytes(tmp_path / "a") == shard_bytes(fresh.out)
    with pytest.raises(CacheError, match="decode_errors: 'replace' -> 'skip'"):
        capture_to_disk(dataclasses.replace(fixed, decode_errors="skip"))
    OUTCOMES["txt", "late bad byte", "recovered"] += 1


def test_decode_errors_choices_are_the_readers():
    import typing

    kind = {f.name: f.type for f in dataclasses.fields(CaptureConfig)}["decode_errors"]
    assert typing.get_args(kind) == DECODE_ERRORS
    with pytest.raises(InterpError, match="decode_errors must be one of"):
        CaptureConfig(decode_errors="ignore")


# ---------------------------------------------------------------- the environment


runner = CliRunner()


def cli(cfg: CaptureConfig, out: Path, *extra: str):
    args = ["capture", "--model", cfg.model, "--layer", "1", "--hook", "blocks.0.hook_mlp_out"]
    args += ["--ctx-len", str(cfg.ctx_len), "--tokens", str(cfg.tokens), "--device", "cpu"]
    args += ["--batch-size", str(cfg.batch_size), "--shard-tokens", str(cfg.shard_tokens)]
    return runner.invoke(app, [*args, "--out", str(out), *extra], catch_exceptions=False)


def one_error_line(result, *parts: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    text = " ".join(result.output[result.output.index("error:") :].split())
    assert all(p in text for p in parts), text
    return text


def test_unwritable_out_is_one_line_and_nothing_loads(cfg, monkeypatch):
    monkeypatch.setattr(capture_run, "_load", mock.Mock(side_effect=AssertionError("loaded")))
    one_error_line(cli(cfg, Path("/proc/x")), "cannot write --out '/proc/x'")
    OUTCOMES["environment", "unwritable out", "refused"] += 1


@pytest.mark.parametrize("arch", ["gpt2", "llama"])  # learned positions, and rotary ones
def test_context_longer_than_the_model_takes_is_refused(cfg, tiny_dirs, tmp_path, arch):
    long = dataclasses.replace(cfg, model=str(tiny_dirs[arch]), ctx_len=65, out=str(tmp_path / "a"))
    with pytest.raises(
        InterpError, match=r"ctx_len=65 is longer than model .* \(at most 64 positions\)"
    ):
        capture_to_disk(long)
    assert not (tmp_path / "a").exists()
    OUTCOMES["environment", "ctx_len > n_ctx", "refused"] += 1


def test_a_folder_being_written_is_refused(reference, cfg, tmp_path):
    out = tmp_path / "acts"
    out.mkdir()
    with locked(out):
        with pytest.raises(
            CacheError, match=rf"being written by another capture \(pid {os.getpid()}\)"
        ):
            capture_to_disk(dataclasses.replace(cfg, out=str(out)))
        shutil.copytree(reference, out, dirs_exist_ok=True)
        with pytest.raises(CacheError, match="being written by another capture"):
            capture_to_disk(dataclasses.replace(cfg, out=str(out), resume=True))
    assert leftovers(out) == []
    OUTCOMES["environment", "second capture", "refused"] += 1


def test_a_lock_left_by_a_killed_capture_blocks_nobody(reference, cfg, tmp_path):
    out = Path(shutil.copytree(reference, tmp_path / "acts"))
    holder = "from interp.capture.run import locked; import os, sys\nwith locked(sys.argv[1]):\n"
    holder += "    print('locked', flush=True); os.kill(os.getpid(), 9)\n"
    proc = subprocess.run([sys.executable, "-c", holder, str(out)], capture_output=True, text=True)
    assert proc.stdout == "locked\n" and proc.returncode == -9
    assert (out / ".capture.lock").read_text().strip().isdigit()  # left behind, with its pid
    result = capture_to_disk(dataclasses.replace(cfg, out=str(out), resume=True))
    assert result.shards_skipped == 3 and leftovers(out) == []
    OUTCOMES["environment", "stale lock", "recovered"] += 1


@pytest.fixture
def small_disk(tmp_path):
    """A factory of tmpfs folders of a given size (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = []

    def mount(size: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)])
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (mount exited {done.returncode})")
        mounted.append(where)
        return where

    try:
        yield mount
    finally:
        for where in mounted:
            subprocess.run(["umount", str(where)], check=True)


@pytest.mark.parametrize("size", ["8k", "40k"])  # full at the first shard, or at a later one
def test_full_disk_is_one_line_and_leaves_no_temporaries(
    reference, cfg, small_disk, tmp_path, size
):
    out = small_disk(size) / "acts"
    text = one_error_line(cli(cfg, out), "No space left on device", f"could not write {out}/")
    assert "--resume" in text and leftovers(out) == []
    assert len(shard_bytes(out)) < 3
    moved = Path(shutil.copytree(out, tmp_path / "moved"))  # to a disk with room
    result = capture_to_disk(dataclasses.replace(cfg, out=str(moved), resume=True))
    assert shard_bytes(moved) == shard_bytes(reference)
    OUTCOMES["environment", f"full disk {size}", "recovered"] += 1
    assert result.n_tokens == cfg.tokens


def _garbage_configs() -> list:
    return [
        pytest.param(b"{garbage", id="not-json"),
        pytest.param(b"[1, 2]", id="a-list"),
        pytest.param(b"{}", id="no-model-type"),
        pytest.param(b'{"model_type": "nonsense"}', id="unknown-type"),
    ]


@pytest.mark.parametrize("config", _garbage_configs())
def test_garbage_model_config_is_one_line_naming_it(tiny_dirs, tmp_path, config):
    model = Path(shutil.copytree(tiny_dirs["gpt2"], tmp_path / "model"))
    (model / "config.json").write_bytes(config)
    args = ["capture", "--model", str(model), "--layer", "1", "--out", str(tmp_path / "a")]
    result = runner.invoke(app, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: what the xfail cases still get
    one_error_line(result, str(model / "config.json"))
    assert not (tmp_path / "a").exists()


def test_report_outcomes():
    """Prints the counts of the cases above (run with -s to see them)."""
    for key, n in sorted(OUTCOMES.items()):
        print(" / ".join(key), n)
    assert all(outcome in ("refused", "read", "recovered") for _, _, outcome in OUTCOMES)
