"""load_model, device/dtype choice, and hook-name validation (interp.models, interp.hooks)."""

import pytest
import torch

import interp.organism
from interp import generation, models
from interp.errors import HookNameError, InterpError, ModelLoadError, OfflineError
from interp.generation import route_kv_cache
from interp.hooks import check_hook_name, hook_layer, stop_at_layer
from interp.models import load_model, model_id, resolve_device, resolve_dtype, resolve_hook
from sae.errors import ConfigError


def test_local_folder_loads_on_cpu_in_float32(model, tiny_dirs, arch):
    assert type(model).__name__ == "TransformerBridge"
    assert not model.training
    param = next(model.parameters())
    assert param.device.type == "cpu" and param.dtype == torch.float32
    assert model.cfg.n_layers == 3
    assert "blocks.2.hook_resid_post" in model.hook_dict
    assert model.tokenizer.bos_token_id == 0 and model.tokenizer.eos_token_id == 1


def test_dtype_is_applied(tiny_dirs):
    bridge = load_model(str(tiny_dirs["llama"]), device="cpu", dtype="bfloat16")
    assert next(bridge.parameters()).dtype == torch.bfloat16


def test_default_is_the_embedded_folder(tiny_dirs, monkeypatch):
    monkeypatch.setattr(interp.organism, "WEIGHTS_DIR", tiny_dirs["gpt2"])
    bridge = load_model("default", device="cpu")
    assert bridge.cfg.d_model == 32 and model_id("default") == "default"


def test_missing_default_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(interp.organism, "WEIGHTS_DIR", tmp_path / "weights")
    with pytest.raises(ModelLoadError, match="embedded default model is not in the package"):
        load_model()


def test_bad_folders(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model("./no/such/folder")


def test_hub_name_offline_is_a_clear_error(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OfflineError, match="could not reach the hub for 'interp-test/no-such"):
        load_model("interp-test/no-such-model")


def test_hub_connection_error_is_a_clear_error(monkeypatch):
    # What transformers raises when the network is down (seen on this machine, unpatched).
    def refuse(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(models, "_boot", refuse)
    with pytest.raises(OfflineError, match="no network — pass a local folder"):
        load_model("gpt2")


def test_device_and_dtype_choice():
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("bf16") == torch.bfloat16
    with pytest.raises(ConfigError, match="unknown dtype 'float8'; valid: 'auto', float32"):
        resolve_dtype("float8")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu-ish")


def test_errors_are_value_errors():
    assert issubclass(HookNameError, InterpError) and issubclass(InterpError, ValueError)


def test_resolve_hook_forms(model):
    assert resolve_hook(model, 1, "resid_post") == "blocks.1.hook_resid_post"
    assert resolve_hook(model, 2, "hook_mlp_out") == "blocks.2.hook_mlp_out"
    assert resolve_hook(model, 0, "attn.hook_z") == "blocks.0.attn.hook_z"
    assert resolve_hook(model, 1) == "blocks.1.hook_resid_post"
    assert resolve_hook(model, hook_name="hook_embed") == "hook_embed"


def test_layer_out_of_range_lists_the_valid_range(model):
    with pytest.raises(HookNameError, match=r"layer 3 is out of range; valid layers are 0\.\.2"):
        resolve_hook(model, 3, "resid_post")
    with pytest.raises(HookNameError, match=r"valid layers are 0\.\.2"):
        resolve_hook(model, hook_name="blocks.12.hook_resid_post")
    with pytest.raises(HookNameError, match="out of range"):
        resolve_hook(model, -1, "resid_post")


def test_misspellings_suggest_the_closest_names(model):
    with pytest.raises(HookNameError, match="unknown site 'resid_pots'; did you mean 'resid_post'"):
        resolve_hook(model, 1, "resid_pots")
    with pytest.raises(HookNameError, match="did you mean 'blocks.1.hook_resid_post'"):
        resolve_hook(model, hook_name="blocks.1.hook_resid_pots")
    with pytest.raises(HookNameError, match="did you mean 'attn.hook_z'"):
        resolve_hook(model, 1, "attn.hook_zz")


def test_ambiguous_or_missing_hook_is_refused(model):
    with pytest.raises(HookNameError, match="not both"):
        resolve_hook(model, 1, hook_name="blocks.1.hook_resid_post")
    with pytest.raises(HookNameError, match="no hook given"):
        resolve_hook(model)


def test_gated_hook_names_the_switch(model):
    with pytest.raises(HookNameError, match=r"model.set_use_attn_result\(True\)"):
        check_hook_name(model, "blocks.0.attn.hook_result")


def test_stop_at_layer(model):
    assert hook_layer("blocks.11.hook_mlp_out") == 11 and hook_layer("hook_embed") is None
    assert stop_at_layer(model, ["blocks.0.hook_resid_post"]) == 1
    assert stop_at_layer(model, ["blocks.1.hook_mlp_out", "blocks.0.hook_resid_pre"]) == 2
    assert stop_at_layer(model, ["hook_embed"]) == 0
    assert stop_at_layer(model, ["blocks.2.hook_resid_post"]) is None  # last block: full run
    assert stop_at_layer(model, ["blocks.0.hook_resid_post", "ln_final.hook_normalized"]) is None


def test_load_model_routes_the_kv_cache_once(model):
    # transformers 5.24 passes the KV cache to attention as `cache=`; TransformerBridge's attention
    # reads `past_key_values`. load_model adds one pre-hook per attention module that passes it on.
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    def routed() -> list[int]:
        return [
            list(m._forward_pre_hooks.values()).count(generation._cache_as_past_key_values)
            for m in model.modules()
            if isinstance(m, AttentionBridge)
        ]

    assert routed() == [1] * model.cfg.n_layers
    route_kv_cache(model)
    assert routed() == [1] * model.cfg.n_layers


def test_unreachable_hub_fails_at_once_without_retries(monkeypatch):
    """No network and HF_HUB_OFFLINE unset: one TCP probe, then OfflineError (huggingface_hub's
    own retries would take 30-40 s to say the same). The loader itself is never called."""
    import socket
    import time

    from huggingface_hub import constants

    def refuse(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(models, "_boot", lambda *a: pytest.fail("the hub loader was called"))
    models.hub_reachable.cache_clear()
    start = time.perf_counter()
    try:
        with pytest.raises(OfflineError, match="the hub's host does not answer"):
            load_model("interp-test/not-a-model", device="cpu")
    finally:
        models.hub_reachable.cache_clear()
    assert time.perf_counter() - start < 5
