"""Language models from a transformers config, without weights: a config.json, a folder, hf:ORG/NAME."""

import json

import pytest
from fixtures import EXAMPLES, WORKED

pytest.importorskip("transformers")
CONFIGS = EXAMPLES / "configs"


def test_config_folder_and_file_build_the_architecture(stats_json):
    folder = stats_json(str(CONFIGS / "tiny-llama"), "--input", "input_ids=32:int64:1000")
    file = stats_json(str(CONFIGS / "tiny-llama" / "config.json"), "--input", "input_ids=32:int64:1000")
    assert folder["total"]["type"] == file["total"]["type"] == "LlamaForCausalLM"
    # tiny-llama by hand: embed 1000*64 = 64,000; per layer q 64*64 + k, v 64*32 each + o 64*64 = 12,288,
    # mlp 3*64*172 = 33,024, two norms 128: 45,440; 2 layers = 90,880; final norm 64; lm_head 64,000
    assert folder["total"]["params"] == 64_000 + 2 * 45_440 + 64 + 64_000 == 218_944
    assert folder["unsupported"] == {}


def test_task_picks_the_head(stats_json, run):
    bare = stats_json(str(CONFIGS / "tiny-llama"), "--task", "encoder", "--input", "input_ids=32:int64:1000")
    assert bare["total"]["type"] == "LlamaModel" and bare["total"]["params"] == 218_944 - 64_000  # no lm_head
    code, out, err = run("stats", WORKED, "--shape", "3,8,8", "--task", "causal-lm")
    assert code == 2 and "not one" in err


def test_seventy_billion_config_on_meta(stats_json):
    data = stats_json(str(CONFIGS / "llama-2-70b"), "--device", "meta", "--input", "input_ids=128:int64:32000",
                      "--depth", "0")
    # Llama-2-70B by hand: embed 32000*8192 = 262,144,000; per layer q, o 8192^2 each, k, v 8192*1024 each,
    # mlp 3*8192*28672, norms 2*8192 = 855,654,400; 80 layers, final norm 8192, lm_head 262,144,000
    assert data["total"]["params"] == 2 * 262_144_000 + 80 * 855_654_400 + 8192 == 68_976_648_192


def test_config_errors_are_one_line(run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never wait on the network here
    code, out, err = run("stats", "hf:no-such-org/no-such-model", "--input", "input_ids=8:int64")
    assert code == 2 and out == "" and "not in the local Hugging Face cache" in err
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"hidden_size": 8}))
    code, _, err = run("stats", str(bad), "--input", "input_ids=8:int64")
    assert code == 2 and "no 'model_type'" in err
    # a config transformers' own validation refuses: the line that says why, after the one that introduces it
    # ("Class validation error for validator 'validate_architecture':"), is kept
    folder = tmp_path / "qwen4"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen4_exp_text", "hc_count": 1}))
    code, _, err = run("stats", str(folder), "--input", "input_ids=8:int64")
    if "transformers cannot read it" in err:  # (a transformers release that has Qwen4-Exp)
        assert code == 2 and "validate_architecture': ValueError: Qwen4-Exp requires hc_count > 1" in err, err
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)  # as if not installed
    code, _, err = run("stats", str(CONFIGS / "tiny-llama"), "--input", "input_ids=8:int64")
    assert code == 2 and "pip install 'modelprof[hf]'" in err


def test_cli_task_choices_match_the_library():
    from modelprof.cli import TASKS
    from modelprof.loading.hf import Task

    assert TASKS == [t.value for t in Task]
