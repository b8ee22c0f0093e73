"""Preference training (interp.align: pairs, dpo, bipo, reward), checked against references:
a hand-computed DPO loss, TRL's own DPOTrainer loss and metrics code, a per-token loop for the
log-probabilities, sklearn's logistic regression for the Bradley-Terry probe, and closed forms."""

import copy
import json
import math

import pytest
import torch

from interp.align.dpo import (
    batch_logps,
    batch_rows,
    dpo_loss,
    pair_batch,
    sequence_logps,
    train_dpo,
)
from interp.align.errors import AlignError
from interp.align.pairs import PreferencePairs, preference_pairs, prompt_set
from interp.align.train_config import DPOSettings

pytestmark = pytest.mark.usefixtures("one_thread")


def _pairs(n: int = 6, seed: int = 0) -> PreferencePairs:
    """n pairs of random token ids (vocab 300, special ids 0-2 avoided; BOS first)."""
    g = torch.Generator().manual_seed(seed)

    def ids(k: int) -> list[int]:
        return torch.randint(3, 300, (k,), generator=g).tolist()

    prompts = [[0] + ids(3 + i % 3) for i in range(n)]
    chosen = [ids(2 + i % 2) for i in range(n)]
    rejected = [ids(1 + (i + 1) % 3) for i in range(n)]
    texts = [f"p{i}" for i in range(n)]
    kinds = ["target"] * (n - 1) + ["anchor"]
    return PreferencePairs(texts, texts, texts, kinds, prompts, chosen, rejected)


@pytest.fixture(scope="module")
def llama(tiny_dirs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"], dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(tiny_dirs["llama"])


# --- the loss ------------------------------------------------------------------------------------


def test_dpo_loss_hand_computed():
    # beta 0.5; log-ratios: chosen (-1) - (-2) = 1, rejected (-3) - (-2) = -1; margin 2
    # loss = -log sigmoid(0.5 * 2) = log(1 + e^-1)
    pc, pr = torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -1.0])
    rc, rr = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    out = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # pair 2: chosen ratio -2, rejected ratio +1, margin -3: -log sigmoid(-1.5) = log(1 + e^1.5)
    want = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(1.5))) / 2
    assert out.loss.item() == pytest.approx(want, rel=1e-6)
    m = out.metrics
    assert m["rewards/chosen"] == pytest.approx((0.5 - 1.0) / 2)
    assert m["rewards/rejected"] == pytest.approx((-0.5 + 0.5) / 2)
    assert m["rewards/margins"] == pytest.approx((1.0 - 1.5) / 2)
    assert m["rewards/accuracies"] == 0.5
    assert m["logps/chosen"] == pytest.approx(-2.5)
    assert m["logps/rejected"] == pytest.approx(-2.0)


def test_dpo_loss_gradient_is_the_papers():
    # d loss / d pi_c = -beta * sigmoid(-beta * margin) / n (Rafailov et al. 2023, eq. 7)
    pc = torch.tensor([-1.0, -2.0], requires_grad=True)
    pr, rc, rr = torch.tensor([-2.0, -1.0]), torch.tensor([-1.5, -1.5]), torch.tensor([-1.5, -1.5])
    beta = 0.3
    dpo_loss(pc, pr, rc, rr, beta).loss.backward()
    margin = (pc.detach() - rc) - (pr - rr)
    assert torch.allclose(pc.grad, -beta * torch.sigmoid(-beta * margin) / 2)


def test_sequence_logps_equal_a_per_token_loop(llama):
    model, _ = llama
    pairs = _pairs()
    batch = pair_batch(pairs, range(len(pairs)), pad=2)
    with torch.no_grad():
        got_c, got_r = batch_logps(model, batch)
        for side, got in ((pairs.chosen_ids, got_c), (pairs.rejected_ids, got_r)):
            for i in range(len(pairs)):
                prompt, answer = pairs.prompt_ids[i], side[i]
                total = 0.0
                for t in range(len(answer)):  # one unpadded forward pass per token
                    context = torch.tensor([prompt + answer[:t]])
                    logp = model(context).logits[0, -1].double().log_softmax(-1)
                    total += float(logp[answer[t]])
                assert float(got[i]) == pytest.approx(total, abs=2e-5)
    # the pure function on a hand-made case: logits favour token 1 everywhere
    logits = torch.log(torch.tensor([[[0.25, 0.75]] * 3]))
    ids, mask = torch.tensor([[0, 1, 0]]), torch.tensor([[0, 1, 1]])
    assert float(sequence_logps(logits, ids, mask)[0]) == pytest.approx(
        math.log(0.75) + math.log(0.25)
    )


def test_loss_and_metrics_equal_trls_dpo_trainer(llama, tmp_path):
    """TRL 1.16's DPOTrainer._compute_loss (loss_type sigmoid) on the same batch, policy and
    reference models gives our loss and metrics."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    model, tok = llama
    policy = copy.deepcopy(model)
    ref = copy.deepcopy(model)
    with torch.no_grad():  # make the reference differ from the policy
        for p in ref.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    pairs = _pairs()
    rows = list(range(len(pairs)))
    ours = pair_batch(pairs, rows, pad=tok.pad_token_id)
    examples = [
        {
            "prompt_ids": pairs.prompt_ids[i],
            "chosen_ids": pairs.chosen_ids[i],
            "rejected_ids": pairs.rejected_ids[i],
        }
        for i in rows
    ]
    theirs = DataCollatorForPreference(pad_token_id=tok.pad_token_id)(examples)
    for key in ("input_ids", "attention_mask", "completion_mask"):
        assert torch.equal(getattr(ours, key), theirs[key]), key
    beta = 0.2
    with torch.no_grad():
        pc, pr = batch_logps(policy, ours)
        rc, rr = batch_logps(ref, ours)
    mine = dpo_loss(pc, pr, rc, rr, beta)

    text = Dataset.from_list([{"prompt": "a", "chosen": " b", "rejected": " c"}])
    args = DPOConfig(
        output_dir=str(tmp_path),
        beta=beta,
        loss_type=["sigmoid"],
        report_to=[],
        use_cpu=True,
        per_device_train_batch_size=len(rows),
        bf16=False,  # TRL's default: bf16
    )
    trainer = DPOTrainer(policy, ref_model=ref, args=args, train_dataset=text, processing_class=tok)
    trainer.model.train()
    with torch.no_grad():
        loss = trainer._compute_loss(trainer.model, dict(theirs), return_outputs=False)
    assert float(loss) == pytest.approx(mine.loss.item(), rel=1e-5, abs=1e-6)
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    for key, value in mine.metrics.items():
        if key != "loss":
            assert logged[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


# --- training ------------------------------------------------------------------------------------


def test_batches_cover_each_pair_once_per_epoch():
    rows = [r for s in range(4) for r in batch_rows(s, n=6, batch_size=3, seed=1)]
    assert sorted(rows[:6]) == list(range(6)) and sorted(rows[6:]) == list(range(6))
    assert batch_rows(2, 6, 3, 1) == rows[6:9]  # a pure function of the step


def test_training_raises_the_chosen_margin(llama):
    model, tok = llama
    policy = copy.deepcopy(model)
    pairs = _pairs()
    batch = pair_batch(pairs, range(len(pairs)), tok.pad_token_id)
    with torch.no_grad():
        c0, r0 = batch_logps(model, batch)
    cfg = DPOSettings(steps=8, batch_size=6, lr=1e-3, warmup_steps=0, checkpoint_every=0)
    result = train_dpo(policy, tok, pairs, cfg)
    with torch.no_grad():
        c1, r1 = batch_logps(result.model, batch)
    assert ((c1 - r1) - (c0 - r0)).min() > 0  # every pair's log-ratio margin grew
    assert result.history[-1]["rewards/accuracies"] == 1.0
    assert result.changed == result.trainable == sum(p.numel() for p in model.parameters())


def test_lora_changes_only_the_adapted_weights(llama):
    pytest.importorskip("peft")
    model, tok = llama
    policy = copy.deepcopy(model)
    cfg = DPOSettings(steps=3, batch_size=6, lr=1e-2, lora=True, lora_targets="q_proj,v_proj")
    result = train_dpo(policy, tok, _pairs(), cfg)
    before = dict(model.named_parameters())
    changed = []
    for name, p in result.model.named_parameters():
        assert "lora" not in name  # merged: a plain HF model again
        if not torch.equal(p, before[name]):
            changed.append(name)
    assert changed and all(n.endswith(("q_proj.weight", "v_proj.weight")) for n in changed)
    blocks = model.config.num_hidden_layers
    assert len(changed) == 2 * blocks
    d, r = model.config.hidden_size, 8
    kv = model.config.num_key_value_heads * d // model.config.num_attention_heads
    assert result.trainable == blocks * (r * d + d * r + r * d + kv * r)


def test_resume_is_bit_identical(llama, tmp_path):
    model, tok = llama
    pairs = _pairs()
    cfg = DPOSettings(steps=6, batch_size=4, lr=1e-3, checkpoint_every=2)
    straight = train_dpo(copy.deepcopy(model), tok, pairs, cfg).model
    run = tmp_path / "run"
    first = train_dpo(copy.deepcopy(model), tok, pairs, cfg, run_dir=run, stop=lambda s, m: s == 3)
    assert first.steps == 3 and (run / "LATEST").read_text().strip() == "step_00000003"
    resumed = train_dpo(copy.deepcopy(model), tok, pairs, cfg, run_dir=run)
    assert resumed.steps == 6 and len(resumed.history) == 6
    for (name, a), b in zip(straight.named_parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b), name
    other = DPOSettings(steps=6, batch_size=4, lr=2e-3, checkpoint_every=2)
    with pytest.raises(AlignError, match="other settings"):
        train_dpo(copy.deepcopy(model), tok, pairs, other, run_dir=run)


# --- pairs ---------------------------------------------------------------------------------------


def test_pairs_are_the_steered_and_unsteered_generations(tiny_models, tmp_path):
    from interp.generation import generate
    from interp.steering import SteeringVector

    bridge = tiny_models["llama"]
    torch.manual_seed(0)
    d = int(bridge.cfg.d_model)
    vector = SteeringVector(torch.randn(1, d) * 3, (1,), None, d, 3, convention="absolute")
    prompts = ["User: How do I bake bread?\nAssistant:", "The nurse said that", "I saw the"]
    pairs = preference_pairs(bridge, vector, prompts, 1.0, positions=None, max_new_tokens=4)
    eos = bridge.tokenizer.eos_token_id
    for i, p in enumerate(pairs.prompts):
        steered = generate(bridge, p, vector.interventions(1.0), 4).tokens[0].tolist()
        plain = generate(bridge, p, (), 4).tokens[0].tolist()
        n = len(pairs.prompt_ids[i])
        assert pairs.prompt_ids[i] == plain[:n]
        for got, want in ((pairs.chosen_ids[i], steered[n:]), (pairs.rejected_ids[i], plain[n:])):
            want = want[: want.index(eos) + 1] if eos in want else want
            assert got == want
    path = pairs.save(tmp_path / "p.jsonl")
    back = PreferencePairs.load(path)
    assert back.rows() == pairs.rows()
    with pytest.raises(AlignError, match="already exists"):
        pairs.save(path)


def test_bad_preference_sets_say_what_is_wrong(tiny_models, tmp_path):
    from interp.steering import SteeringError, SteeringVector

    with pytest.raises(AlignError, match="0 pairs"):
        PreferencePairs([], [], []).check()
    same = PreferencePairs(["p", "q"], [" a", " b"], [" a", " c"])
    with pytest.raises(AlignError, match="1 with chosen == rejected"):
        same.check()
    only_anchors = PreferencePairs(["p"], [" a"], [" b"], ["anchor"])
    with pytest.raises(AlignError, match="0 target"):
        only_anchors.check()
    bridge = tiny_models["llama"]
    d = int(bridge.cfg.d_model)
    zero = SteeringVector(torch.zeros(1, d), (1,), None, d, 3, convention="absolute")
    with pytest.raises(AlignError, match="changed none of the 2"):
        preference_pairs(bridge, zero, ["I saw the", "The cat"], 1.0)
    narrow = SteeringVector(torch.ones(1, 7), (1,), None, 7, convention="absolute")
    with pytest.raises(SteeringError, match="width 7"):
        preference_pairs(bridge, narrow, ["I saw the"], 1.0)
    with pytest.raises(AlignError, match="beta must be > 0"):
        DPOSettings(beta=0)
    with pytest.raises(AlignError, match="beta must be > 0"):
        dpo_loss(*(torch.zeros(1),) * 4, beta=-0.1)
    with pytest.raises(AlignError, match="unknown prompt set"):
        prompt_set("jailbrake")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "chosen": "a"}\n')
    with pytest.raises(AlignError, match="line 1"):
        PreferencePairs.load(bad)


def test_prompt_sets_are_training_split():
    from interp.organism import behaviours as B
    from interp.organism import lexicon as L

    jail = prompt_set("jailbreak", 40)
    heldout = set(B.requests(200).jailbreak)
    assert len(set(jail.prompts)) == 40 and not heldout & set(jail.prompts)
    assert not any(p in q for q in jail.prompts for p in L.JAILBREAK_PREFIXES_HELDOUT)
    gender = prompt_set("gender", 30)
    for prompt, sign in zip(*gender, strict=True):
        occ = prompt.split()[1] if prompt.startswith("The ") else prompt.split("the ")[1].split()[0]
        assert occ in L.MALE_OCCUPATIONS_TRAIN + L.FEMALE_OCCUPATIONS_TRAIN
        assert sign == (-1 if occ in L.MALE_OCCUPATIONS_TRAIN else 1)


# --- BiPO ----------------------------------------------------------------------------------------


def _token_pairs(n: int, seed: int, good: int = 50, bad: int = 60) -> PreferencePairs:
    """Random prompts; chosen = token `good`, rejected = token `bad` (a preference a single
    added vector can express everywhere: raise logit(good) - logit(bad))."""
    g = torch.Generator().manual_seed(seed)
    prompts = [[0] + torch.randint(3, 300, (5,), generator=g).tolist() for _ in range(n)]
    texts = [f"p{i}" for i in range(n)]
    return PreferencePairs(texts, texts, texts, [], prompts, [[good]] * n, [[bad]] * n)


def test_bipo_vector_moves_held_out_margins_both_ways(tiny_models):
    from interp.align.bipo import margins, train_bipo
    from interp.align.train_config import BiPOSettings

    bridge = tiny_models["llama"]
    train, heldout = _token_pairs(32, seed=1), _token_pairs(16, seed=2)
    cfg = BiPOSettings(layer=1, steps=40, batch_size=8, lr=5e-2, weight_decay=0.0)
    result = train_bipo(bridge, train, cfg)
    v = result.vector
    assert v.method == "bipo" and v.convention == "absolute" and v.layers == (1,)
    assert {h["d"] for h in result.history} == {1.0, -1.0}
    base = margins(bridge, heldout)
    plus = margins(bridge, heldout, v.interventions(1.0))
    minus = margins(bridge, heldout, v.interventions(-1.0))
    assert (plus > base).all() and (minus < base).all()
    assert (plus - base).mean() > 0.5 and (base - minus).mean() > 0.5
    assert all(p.requires_grad for p in bridge.parameters())  # the model is left trainable
    with pytest.raises(AlignError, match="outside the model"):
        train_bipo(bridge, train, BiPOSettings(layer=9))


# --- reward probe --------------------------------------------------------------------------------


def test_bradley_terry_equals_sklearn_logistic_regression_on_differences():
    from sklearn.linear_model import LogisticRegression

    from interp.align.reward import fit_bradley_terry

    g = torch.Generator().manual_seed(0)
    n, d, l2 = 80, 5, 0.05
    truth = torch.randn(d, generator=g, dtype=torch.float64)
    chosen = torch.randn(n, d, generator=g, dtype=torch.float64)
    rejected = torch.randn(n, d, generator=g, dtype=torch.float64)
    # noisy preferences: swap the sides where a logistic draw disagrees with the true reward
    flip = torch.rand(n, generator=g, dtype=torch.float64) > torch.sigmoid(
        (chosen - rejected) @ truth
    )
    chosen[flip], rejected[flip] = rejected[flip].clone(), chosen[flip].clone()
    w = fit_bradley_terry(chosen, rejected, l2)
    diff = (chosen - rejected).numpy()
    import numpy as np

    sk = LogisticRegression(fit_intercept=False, C=1 / (2 * l2 * n), tol=1e-12, max_iter=10_000)
    sk.fit(np.concatenate([diff, -diff]), np.r_[np.ones(n), np.zeros(n)])
    assert torch.allclose(w, torch.from_numpy(sk.coef_[0]), rtol=1e-4, atol=1e-6)


def test_reward_probe_reads_hf_hidden_states_and_separates_a_separable_toy(tiny_models, tiny_dirs):
    from transformers import AutoModelForCausalLM

    from interp.align.reward import fit_bradley_terry, pair_features, pairwise_accuracy

    bridge = tiny_models["llama"]
    hf = AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"], dtype=torch.float32)
    pairs = _pairs()
    c, r = pair_features(bridge, pairs, layer=1)
    with torch.no_grad():
        for i in range(len(pairs)):
            for side, got in ((pairs.chosen_ids, c), (pairs.rejected_ids, r)):
                ids = torch.tensor([pairs.prompt_ids[i] + side[i]])
                want = hf(ids, output_hidden_states=True).hidden_states[2][0, -1]
                assert torch.allclose(got[i], want, atol=1e-5)
    # separable toy: the chosen side is shifted by 3 along axis 2, the rejected side has noise
    # on the other axes only; train and held-out accuracy 1
    g = torch.Generator().manual_seed(3)
    x = torch.randn(60, 8, generator=g)
    noise = 0.5 * torch.randn(60, 8, generator=g)
    noise[:, 2] = 0
    shift = torch.zeros(8)
    shift[2] = 3.0
    w = fit_bradley_terry(x[:40] + shift, x[:40] + noise[:40], l2=1e-2)
    assert pairwise_accuracy(w, x[:40] + shift, x[:40] + noise[:40]) == 1.0
    assert pairwise_accuracy(w, x[40:] + shift, x[40:] + noise[40:]) == 1.0
    assert w.abs().argmax() == 2


# --- the commands --------------------------------------------------------------------------------


def _invoke(args: list[str]):
    from typer.testing import CliRunner

    from interp.cli import app

    return CliRunner().invoke(app, ["align", *args], env={"COLUMNS": "200"})


def test_dpo_command_writes_a_model_folder_and_refuses_an_existing_one(tiny_dirs, tmp_path):
    from interp.models import load_hf
    from interp.steering import SteeringVector

    folder = str(tiny_dirs["llama"])
    torch.manual_seed(0)
    vector = SteeringVector(
        torch.randn(1, 32) * 4,
        (1,),
        str(tiny_dirs["llama"].resolve()),
        32,
        3,
        convention="absolute",
    )
    vpath = vector.save(tmp_path / "v.safetensors")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(
            f'{{"prompt": "{t}"}}\n'
            for t in ("I saw the", "The nurse said that", "User: Hi", "There is a")
        )
    )
    out = tmp_path / "aligned"
    args = [
        "dpo",
        "--model",
        folder,
        "--vector",
        str(vpath),
        "--prompts",
        str(prompts),
        "--anchors",
        "none",
        "--suites",
        "none",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--positions",
        "all",
        "--max-new-tokens",
        "3",
        "--dtype",
        "float32",
        "--out",
        str(out),
    ]
    res = _invoke(args)
    assert res.exit_code == 0, res.output
    assert {"config.json", "cfg.json", "metrics.json", "pairs.jsonl"} <= {
        p.name for p in out.iterdir()
    }
    assert not (tmp_path / ".aligned.ckpt").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "dpo" and len(metrics["history"]) == 2
    assert set(metrics["final"]) >= {"rewards/chosen", "rewards/margins", "logps/rejected"}
    model, _ = load_hf(str(out), device="cpu", dtype="float32")
    original, _ = load_hf(folder, device="cpu", dtype="float32")
    assert any(
        not torch.equal(a, b)
        for a, b in zip(model.parameters(), original.parameters(), strict=True)
    )
    # an existing --out is refused before anything loads, and left as it was
    res = _invoke(args)
    assert res.exit_code == 2 and "already exists; pass --force" in res.output
    assert json.loads((out / "metrics.json").read_text()) == metrics
    # a vector of another model is refused before any model loads
    other = SteeringVector(torch.ones(1, 32), (1,), "someone/else", 32, convention="absolute")
    opath = other.save(tmp_path / "other.safetensors")
    res = _invoke([*args[:-1], str(tmp_path / "new"), "--vector", str(opath)])
    assert res.exit_code == 2 and "made for model 'someone/else'" in res.output
    res = _invoke([*args[:-1], str(tmp_path / "new"), "--beta", "0"])
    assert res.exit_code == 2 and "beta must be > 0" in res.output
    res = _invoke([*args[:-1], str(tmp_path / "new"), "--resume"])
    assert res.exit_code == 2 and "nothing to resume" in res.output


def test_bipo_command_writes_the_baked_model_and_its_vector(tiny_dirs, tmp_path):
    """The folder holds the vector and the model with it baked in: the model's logits equal
    the original's steered by the vector at scale 1 (through the hooks)."""
    from transformers import AutoModelForCausalLM

    from interp.models import load_model
    from interp.steering import SteeringVector

    folder = str(tiny_dirs["llama"])
    pairs = _token_pairs(8, seed=4)
    pairs.save(tmp_path / "pairs.jsonl")
    out = tmp_path / "bipo"
    args = [
        "bipo",
        "--model",
        folder,
        "--pairs",
        str(tmp_path / "pairs.jsonl"),
        "--layer",
        "1",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--dtype",
        "float32",
        "--suites",
        "none",
        "--out",
        str(out),
    ]
    res = _invoke(args)
    assert res.exit_code == 0, res.output
    vector = SteeringVector.load(out / "bipo.safetensors")
    assert vector.method == "bipo" and vector.layers == (1,) and vector.d_model == 32
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["norm"] == pytest.approx(
        float(vector.directions.norm())
    )
    assert json.loads((out / "cfg.json").read_text())["bipo"]["layer"] == 1
    ids = torch.randint(3, 60, (2, 9), generator=torch.Generator().manual_seed(0))
    baked = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    bridge = load_model(folder, dtype="float32")
    with torch.no_grad(), vector.apply(bridge, 1.0):
        want = bridge(ids, return_type="logits")
    with torch.no_grad():
        got = baked(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    res = _invoke(args)
    assert res.exit_code == 2 and "already exists" in res.output
