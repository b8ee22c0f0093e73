"""llama.cpp applies our exported control vector to the default model, with the same effect as
our hooks. Not part of CI: it builds llama.cpp from the `llama-cpp-python` sdist (about 8
minutes on 2 CPU cores).

Steps (each skipped when its output exists in --workdir):
1. `pip download llama-cpp-python --no-binary :all: --no-deps` and unpack it; llama.cpp's source
   is vendored at `vendor/llama.cpp` (with `convert_hf_to_gguf.py` and gguf-py).
2. Build the `llama-completion` tool with CMake (CPU only, no curl).
3. Convert the default model to GGUF (F32). The converter refuses a tokenizer whose
   pre-tokenizer hash it does not know, as the default model's is: we run it with
   `get_vocab_base_pre` returning "gpt-2" (byte-level BPE, which the default model's tokenizer
   is).
4. Export the steering vector (`interp steer export --format gguf`): direction.N is
   blocks.N.hook_resid_post (see interp/steering/gguf.py).
5. Greedy completions of held-out prompts by llama.cpp, without and with
   `--control-vector-scaled FILE SCALE`, beside our hooks' (`interp.generation.generate`, the
   vector at every position, which is what llama.cpp does), and the share that agree.

    python experiments/steering/llamacpp.py --vector refusal_add.safetensors --scale 1 \
        --concept refusal --workdir /tmp/llamacpp
"""

import argparse
import json
import subprocess
import sys
import tarfile
from pathlib import Path


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)


def fetch_source(work: Path) -> Path:
    found = sorted(work.glob("llama_cpp_python-*/vendor/llama.cpp"))
    if found:
        return found[-1]
    sh(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "llama-cpp-python",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--no-build-isolation",
            "-d",
            str(work),
        ]
    )
    sdist = sorted(work.glob("llama_cpp_python-*.tar.gz"))[-1]
    with tarfile.open(sdist) as tar:
        tar.extractall(work, filter="data")
    return sorted(work.glob("llama_cpp_python-*/vendor/llama.cpp"))[-1]


def build(src: Path, work: Path, jobs: int) -> Path:
    binary = work / "build" / "bin" / "llama-completion"
    if binary.exists():
        return binary
    sh(
        [
            "cmake",
            "-S",
            str(src),
            "-B",
            str(work / "build"),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_CURL=OFF",
            "-DGGML_NATIVE=ON",
            "-DLLAMA_BUILD_TESTS=OFF",
        ]
    )
    sh(["cmake", "--build", str(work / "build"), "--target", "llama-completion", "-j", str(jobs)])
    return binary


CONVERT = """
import sys
sys.path.insert(0, {gguf_py!r})
sys.path.insert(0, {src!r})
sys.argv = ["convert_hf_to_gguf.py", {model!r}, "--outfile", {out!r}, "--outtype", "f32"]
try:  # llama.cpp >= late 2025 keeps the model classes in conversion/
    from conversion.base import TextModel as Base
except ImportError:
    import convert_hf_to_gguf as old
    Base = getattr(old, "TextModel", None) or getattr(old, "Model")
Base.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
import convert_hf_to_gguf as c
c.main()
"""


def convert(src: Path, model_dir: Path, out: Path) -> Path:
    if out.exists():
        return out
    code = CONVERT.format(
        gguf_py=str(src / "gguf-py"), src=str(src), model=str(model_dir), out=str(out)
    )
    sh([sys.executable, "-c", code])
    return out


def llama_complete(
    binary: Path, model: Path, prompt: str, n: int, cvec: Path | None, scale: float
) -> str:
    cmd = [
        str(binary),
        "-m",
        str(model),
        "-p",
        prompt,
        "-n",
        str(n),
        "--temp",
        "0",
        "--seed",
        "0",
        "--no-display-prompt",
        "-no-cnv",
        "--no-warmup",
    ]
    if cvec is not None:
        # "FILE:SCALE" in llama.cpp's current argument parser (common/arg.cpp); older
        # versions took FILE and SCALE as two arguments
        cmd += ["--control-vector-scaled", f"{cvec}:{scale}"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return res.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vector", required=True, help="our steering vector (.safetensors)")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--concept", default="refusal", help="built-in held-out evaluation prompts")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--new-tokens", type=int, default=8)
    p.add_argument("--workdir", default="/tmp/llamacpp")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()

    from interp.generation import generate
    from interp.models import default_model_dir, load_model
    from interp.steering.evaluate import target
    from interp.steering.gguf import write_gguf
    from interp.steering.io import load_any

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    src = fetch_source(work)
    binary = build(src, work, args.jobs)
    model_gguf = convert(src, default_model_dir(), work / "default-f32.gguf")
    vector = load_any(args.vector)
    cvec = write_gguf(work / "vector.gguf", vector, 1.0, overwrite=True)

    model = load_model("default", device="cpu", dtype="float32")
    t = target(args.concept, args.n)
    rows, agree_plain, agree_steered = [], 0, 0
    for i, prompt in enumerate(t.prompts):
        ours_plain = generate(model, prompt, (), args.new_tokens).text[0]
        ours = generate(model, prompt, vector.interventions(args.scale), args.new_tokens).text[0]
        theirs_plain = llama_complete(binary, model_gguf, prompt, args.new_tokens, None, 1.0)
        theirs = llama_complete(binary, model_gguf, prompt, args.new_tokens, cvec, args.scale)
        same_plain = theirs_plain.strip().startswith(ours_plain.strip()[:20])
        same = theirs.strip().startswith(ours.strip()[:20])
        agree_plain += same_plain
        agree_steered += same
        rows.append(
            {
                "prompt": prompt,
                "ours": ours,
                "llama.cpp": theirs,
                "ours_unsteered": ours_plain,
                "llama.cpp_unsteered": theirs_plain,
                "judge_ours": t.judge(i, ours),
                "judge_llama.cpp": t.judge(i, theirs),
            }
        )
    summary = {
        "n": len(rows),
        "unsteered agree": agree_plain / len(rows),
        "steered agree": agree_steered / len(rows),
        "judged steered, ours": sum(r["judge_ours"] for r in rows) / len(rows),
        "judged steered, llama.cpp": sum(r["judge_llama.cpp"] for r in rows) / len(rows),
    }
    differ = [r for r in rows if not r["llama.cpp"].strip().startswith(r["ours"].strip()[:20])]
    print(json.dumps({"summary": summary, "disagreements": differ, "rows": rows[:3]}, indent=2))


if __name__ == "__main__":
    main()
