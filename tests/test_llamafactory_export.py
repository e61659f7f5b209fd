"""The LLaMA-Factory export: every key is one LLaMA-Factory knows, every value is the course's.

LLaMA-Factory itself is not installed here: it pins transformers <= 5.6, peft <= 0.18.1,
datasets <= 4.0 and accelerate <= 1.11, below the course's pins. So the keys are checked against a
snapshot of its argument dataclasses' field names (at the end of this file), taken from
llamafactory 0.9.5 in a separate environment where its own parser (`get_train_args`,
`get_infer_args`), its data loading (`get_dataset_list`, `get_dataset` with SmolLM2's tokenizer)
and a 3-step `run_exp` + `export_model` on a tiny stand-in model accepted the exported files. The
transformers part is parsed here, live, by transformers' own `HfArgumentParser`.
"""

import ast
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from llmcourse import lora
from llmcourse.gpt import GPT
from llmcourse.recipes import chat_pipeline, peft_compare
from llmcourse.recipes import llamafactory_export as lfx
from llmcourse.tasks import instructions
from llmcourse.train import TrainConfig, lr_at

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "12_peft.ipynb"


@pytest.fixture
def cfg():
    return chat_pipeline.ChatPipelineConfig.for_size("smoke")


@pytest.fixture
def examples():
    return instructions.make_instructions(40, "train", ("count", "add"))


def load(folder: Path) -> dict:
    """The exported folder, parsed: run.yaml, merge.yaml, dataset_info.json and the records."""
    info = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))
    (entry,) = info.values()
    return {
        "run": yaml.safe_load((folder / "run.yaml").read_text(encoding="utf-8")),
        "merge": yaml.safe_load((folder / "merge.yaml").read_text(encoding="utf-8")),
        "info": info,
        "records": json.loads((folder / entry["file_name"]).read_text(encoding="utf-8")),
    }


def unknown_keys(config: dict, known: frozenset) -> list[str]:
    return sorted(set(config) - known)


def test_every_key_is_a_llamafactory_field(cfg, examples, tmp_path):
    """`llamafactory-cli train` parses run.yaml into (Model, Data, Training, Finetuning, Generating)
    arguments and refuses any other key; `export` parses merge.yaml without TrainingArguments."""
    out = load(lfx.export_run(cfg, examples, tmp_path))
    train_fields = TRAIN_FIELDS
    assert unknown_keys(out["run"], train_fields) == []
    assert unknown_keys(out["merge"], INFER_FIELDS) == []
    # the check can fail: a misspelt key and a training key in an export file are both caught
    assert unknown_keys({**out["run"], "lora_rnak": 8}, train_fields) == ["lora_rnak"]
    assert unknown_keys({**out["merge"], "learning_rate": 1e-4}, INFER_FIELDS) == ["learning_rate"]


def test_transformers_keys_parse_with_the_installed_transformers(cfg, examples, tmp_path):
    """The keys LLaMA-Factory hands on to transformers are fields of the installed version too, and
    transformers' own parser turns them into the values we meant (a YAML float that came back as
    a string would fail here)."""
    from transformers import HfArgumentParser, Seq2SeqTrainingArguments

    run = load(lfx.export_run(cfg, examples, tmp_path))["run"]
    live = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
    own = MODEL_FIELDS | DATA_FIELDS | FINETUNING_FIELDS | GENERATING_FIELDS | LF_TRAINING_FIELDS
    hf_keys = {k: v for k, v in run.items() if k not in own}
    assert set(hf_keys) <= live, sorted(set(hf_keys) - live)
    assert set(hf_keys) <= HF_TRAINING_FIELDS  # and fields of the transformers LLaMA-Factory pins
    (args,) = HfArgumentParser(Seq2SeqTrainingArguments).parse_dict(hf_keys)
    train = lfx.lora_train_config(cfg)
    assert args.learning_rate == pytest.approx(train.lr) and isinstance(args.learning_rate, float)
    assert (args.adam_beta1, args.adam_beta2) == train.betas
    assert args.lr_scheduler_type.value == "cosine_with_min_lr"
    assert args.lr_scheduler_kwargs == {"min_lr_rate": train.min_lr_ratio}


def test_hyperparameters_are_notebook_12s_lora_run(cfg, examples, tmp_path):
    run = load(lfx.export_run(cfg, examples, tmp_path))["run"]
    train = cfg.train_config("peft", lr=cfg.sft_lr * lfx.LORA_LR_MULT)
    assert run["max_steps"] == cfg.peft_steps == train.max_steps
    assert run["learning_rate"] == pytest.approx(train.lr)
    assert run["per_device_train_batch_size"] == cfg.batch_size
    assert run["gradient_accumulation_steps"] == train.grad_accum_steps
    assert run["warmup_steps"] == train.warmup_steps
    assert (run["weight_decay"], run["max_grad_norm"], run["seed"]) == (
        train.weight_decay,
        train.grad_clip,
        train.seed,
    )
    assert run["cutoff_len"] == cfg.block_size
    assert run["train_on_prompt"] is False  # the loss mask
    assert run["disable_gradient_checkpointing"] is True  # fit never recomputes activations
    assert (run["stage"], run["finetuning_type"], run["template"]) == ("sft", "lora", "smollm2")
    # rank, alpha and dropout: read off the LoRA layers notebook 12's make_variant builds
    torch.manual_seed(0)
    base = GPT(cfg.gpt_config(300))
    layers = lora.lora_layers(peft_compare.make_variant(base, "lora", r=run["lora_rank"]))
    assert {(m.r, m.alpha) for m in layers} == {(run["lora_rank"], run["lora_alpha"])}
    assert all(isinstance(m.dropout, torch.nn.Identity) for m in layers)
    assert run["lora_dropout"] == 0.0 and isinstance(run["lora_alpha"], int)


def test_learning_rate_multiplier_is_the_notebooks():
    """LORA_LR_MULT is the multiplier in notebook 12's `variants` table for its LoRA rows."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    tables = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "variants":
                tables.append(ast.literal_eval(node.value))
    assert len(tables) == 1, "notebook 12 should define `variants` once"
    mults = {row[3] for row in tables[0] if row[1] == "lora"}
    assert mults == {lfx.LORA_LR_MULT}, mults


def test_schedule_matches_lr_at_after_warmup(cfg):
    """transformers' "cosine_with_min_lr" with min_lr_rate = min_lr_ratio is our cosine to the
    floor, step for step after the warmup; during the warmup it is one step behind ours (it starts
    at 0, we start at lr / W)."""
    from transformers import get_scheduler

    train = TrainConfig(max_steps=40, lr=1e-3, warmup_steps=5, min_lr_ratio=0.1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=train.lr)
    sections = lfx.training_config(cfg, train=train)["train"]
    sched = get_scheduler(
        sections["lr_scheduler_type"],
        opt,
        num_warmup_steps=sections["warmup_steps"],
        num_training_steps=sections["max_steps"],
        scheduler_specific_kwargs=sections["lr_scheduler_kwargs"],
    )
    theirs = []
    for _ in range(train.max_steps):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = [lr_at(s, train) for s in range(train.max_steps)]
    W = train.warmup_steps
    assert theirs[W:] == pytest.approx(ours[W:], rel=1e-9)
    assert theirs[1:W] == pytest.approx(ours[: W - 1], rel=1e-9) and theirs[0] == 0.0


def test_lora_targets_are_every_linear_of_a_llama_layer():
    """The mapped names adapt exactly the Linears of every decoder layer of a Hugging Face Llama
    (not lm_head): all of them, as notebook 12's LoRA adapts every Linear of a GPT block."""
    from peft import LoraConfig, get_peft_model
    from tiny import tiny_hf_chat_tokenizer, tiny_hf_llama

    targets = lfx.llama_targets(peft_compare.LORA_TARGETS)
    model = tiny_hf_llama(tiny_hf_chat_tokenizer())
    linears = {
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n
    }
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    adapted = {
        n.removeprefix("base_model.model.")
        for n, m in peft_model.named_modules()
        if hasattr(m, "lora_A") and isinstance(getattr(m, "base_layer", None), torch.nn.Linear)
    }
    assert adapted == linears and len(linears) == 7 * model.config.num_hidden_layers
    # and the course GPT side: those targets wrap all four Linears of each block
    gpt = GPT(chat_pipeline.ChatPipelineConfig.for_size("smoke").gpt_config(300))
    wrapped = lora.apply_lora(gpt, peft_compare.LORA_TARGETS, r=2)
    assert {w.split(".", 2)[2] for w in wrapped} == set(lfx.GPT_TO_LLAMA)


def test_llama_targets_by_hand():
    assert lfx.llama_targets(["qkv"]) == ["q_proj", "k_proj", "v_proj"]
    assert lfx.llama_targets(["mlp.proj"]) == ["down_proj"]
    assert lfx.llama_targets(["proj"]) == ["o_proj", "down_proj"]  # both, as peft matches "proj"
    with pytest.raises(ValueError, match="c_attn"):
        lfx.llama_targets(["c_attn"])


@pytest.mark.parametrize("formatting", lfx.FORMATTINGS)
@pytest.mark.parametrize("system", [None, "You answer in one line."])
def test_dataset_files_follow_dataset_info(examples, tmp_path, formatting, system):
    """dataset_info.json uses only keys LLaMA-Factory's DatasetAttr reads; every column it names
    is in every record; the records give back the examples."""
    out = load(
        lfx.export_run(
            chat_pipeline.ChatPipelineConfig.for_size("smoke"),
            examples,
            tmp_path,
            formatting=formatting,
            system=system,
        )
    )
    entry = out["info"]["llmcourse_sft"]
    assert set(entry) <= DATASET_ENTRY_KEYS and entry["formatting"] == formatting
    assert set(entry["columns"]) <= DATASET_COLUMNS and set(entry.get("tags", {})) <= DATASET_TAGS
    assert (tmp_path / entry["file_name"]).is_file()
    records = out["records"]
    for rec in records:
        assert set(rec) == set(entry["columns"].values())
    if formatting == "alpaca":
        got = [(r["instruction"], r["output"]) for r in records]
        assert all(r["input"] == "" for r in records)
    else:
        tags = entry["tags"]
        for r in records:
            turns = r[entry["columns"]["messages"]]
            assert [t[tags["role_tag"]] for t in turns] == [tags["user_tag"], tags["assistant_tag"]]
        got = [tuple(t["value"] for t in r["conversations"]) for r in records]
    assert got == [(e.prompt, e.answer) for e in examples]
    assert all(r.get("system") == system for r in records)


def test_yaml_floats_stay_numbers(cfg):
    """A learning rate like 1e-5 must load as a float: YAML 1.1 loaders (PyYAML, OmegaConf) read
    a bare "1e-05" as a string, and transformers would then be handed a string."""
    text = lfx.to_yaml(lfx.training_config(cfg, train=TrainConfig(lr=1e-5, max_steps=10)))
    assert yaml.safe_load(text)["learning_rate"] == 1e-5
    assert yaml.safe_load("learning_rate: 1e-05")["learning_rate"] == "1e-05"  # the trap


def test_doctests():
    import doctest

    result = doctest.testmod(lfx)
    assert result.attempted >= 3 and result.failed == 0


def test_bad_input_says_what_to_do(cfg, examples, tmp_path):
    with pytest.raises(ValueError, match="formatting"):
        lfx.export_run(cfg, examples, tmp_path, formatting="openai")
    with pytest.raises(ValueError, match="precision"):
        lfx.export_run(cfg, examples, tmp_path, precision="int8")
    with pytest.raises(ValueError, match="rank"):
        lfx.export_run(cfg, examples, tmp_path, rank=0)
    with pytest.raises(ValueError, match="train_examples"):
        lfx.export_run(cfg, [], tmp_path)
    bf16 = load(lfx.export_run(cfg, examples, tmp_path, precision="bf16"))["run"]
    assert bf16["bf16"] is True and "fp16" not in bf16


# --------------------------------------------------------------------------------------------
# Snapshot: field names of llamafactory 0.9.5's argument dataclasses (pip `llamafactory==0.9.5`,
# with transformers 5.6.0), printed with dataclasses.fields() from the installed package.
# fmt: off
# ModelArguments: llamafactory/hparams/model_args.py (80, its mixins included)
MODEL_FIELDS = frozenset("""
    adapter_folder adapter_name_or_path add_special_tokens add_tokens audio_sampling_rate
    block_diag_attn cache_dir compute_dtype crop_to_patches device_map
    disable_gradient_checkpointing double_quantization enable_liger_kernel export_device
    export_dir export_hub_model_id export_legacy_format export_quantization_bit
    export_quantization_dataset export_quantization_maxlen export_quantization_nsamples
    export_size flash_attn hf_hub_token image_do_pan_and_scan image_max_pixels
    image_min_pixels infer_backend infer_dtype init_special_tokens kt_expert_checkpoint_path
    kt_lora_expert_intermediate_size kt_lora_expert_num kt_use_lora_experts kt_weight_path
    low_cpu_mem_usage mixture_of_depths model_max_length model_name_or_path model_revision
    moe_aux_loss_coef ms_hub_token new_special_tokens_config offload_folder om_hub_token
    print_param_status quantization_bit quantization_device_map quantization_method
    quantization_type resize_vocab rope_scaling sglang_config sglang_lora_backend
    sglang_maxlen sglang_mem_fraction sglang_tp_size shift_attn split_special_tokens
    train_from_scratch trust_remote_code upcast_layernorm upcast_lmhead_output
    use_audio_in_video use_fast_tokenizer use_kt use_kv_cache use_reentrant_gc use_unsloth
    use_unsloth_gc use_v1_kernels video_fps video_max_pixels video_maxlen video_min_pixels
    vllm_config vllm_enforce_eager vllm_gpu_util vllm_max_lora_rank vllm_maxlen
""".split())
# DataArguments: llamafactory/hparams/data_args.py (28)
DATA_FIELDS = frozenset("""
    buffer_size cutoff_len data_shared_file_system dataset dataset_dir default_system
    enable_thinking eval_dataset eval_num_beams eval_on_each_dataset
    ignore_pad_token_for_loss interleave_probs mask_history max_samples media_dir
    mix_strategy neat_packing overwrite_cache packing preprocessing_batch_size
    preprocessing_num_workers preserve_thinking streaming template tokenized_path
    tool_format train_on_prompt val_size
""".split())
# FinetuningArguments: llamafactory/hparams/finetuning_args.py (97, its mixins included)
FINETUNING_FIELDS = frozenset("""
    additional_target apollo_layerwise apollo_proj apollo_proj_type apollo_rank apollo_scale
    apollo_scale_front apollo_scale_type apollo_target apollo_update_interval asft_alpha
    badam_mask_mode badam_mode badam_start_block badam_switch_interval badam_switch_mode
    badam_update_ratio badam_verbose compute_accuracy create_new_adapter disable_shuffling
    dpo_label_smoothing eaft_alpha early_stopping_steps finetuning_type freeze_extra_modules
    freeze_language_model freeze_multi_modal_projector freeze_trainable_layers
    freeze_trainable_modules freeze_vision_tower galore_layerwise galore_proj_type
    galore_rank galore_scale galore_target galore_update_interval hyper_parallel_args
    include_effective_tokens_per_second kto_chosen_weight kto_rejected_weight ld_alpha
    lora_alpha lora_dropout lora_rank lora_target loraplus_lr_embedding loraplus_lr_ratio
    module_dropout oft_block_size oft_rank oft_target pissa_convert pissa_init pissa_iter
    plot_loss ppo_buffer_size ppo_epochs ppo_score_norm ppo_target ppo_whiten_rewards
    pref_bco_weight pref_beta pref_ftx pref_loss pure_bf16 ref_model ref_model_adapters
    ref_model_quantization_bit reward_model reward_model_adapters
    reward_model_quantization_bit reward_model_type simpo_gamma stage swanlab_api_key
    swanlab_lark_secret swanlab_lark_webhook_url swanlab_logdir swanlab_mode swanlab_project
    swanlab_run_name swanlab_workspace use_adam_mini use_apollo use_asft_loss use_badam
    use_dft_loss use_dora use_eaft_loss use_galore use_hyper_parallel use_llama_pro use_mca
    use_muon use_rslora use_swanlab
""".split())
# GeneratingArguments: llamafactory/hparams/generating_args.py (10)
GENERATING_FIELDS = frozenset("""
    do_sample length_penalty max_length max_new_tokens num_beams repetition_penalty
    skip_special_tokens temperature top_k top_p
""".split())
# TrainingArguments' own fields: llamafactory/hparams/training_args.py (18)
LF_TRAINING_FIELDS = frozenset("""
    enable_torch_profiler fp8 fp8_backend fp8_enable_fsdp_float8_all_gather master_addr
    master_port overwrite_output_dir profile_modules profiler_active_steps
    profiler_output_dir profiler_profile_memory profiler_record_shapes profiler_repeat
    profiler_wait_steps profiler_warmup_steps profiler_with_stack ray_init_kwargs
    ray_num_workers
""".split())
# the rest of TrainingArguments: transformers 5.6.0's Seq2SeqTrainingArguments (117)
HF_TRAINING_FIELDS = frozenset("""
    accelerator_config adam_beta1 adam_beta2 adam_epsilon auto_find_batch_size
    average_tokens_across_devices batch_eval_metrics bf16 bf16_full_eval data_seed
    dataloader_drop_last dataloader_num_workers dataloader_persistent_workers
    dataloader_pin_memory dataloader_prefetch_factor ddp_backend ddp_broadcast_buffers
    ddp_bucket_cap_mb ddp_find_unused_parameters ddp_static_graph ddp_timeout debug
    deepspeed disable_tqdm do_eval do_predict do_train enable_jit_checkpoint
    eval_accumulation_steps eval_delay eval_do_concat_batches eval_on_start eval_steps
    eval_strategy eval_use_gather_object fp16 fp16_full_eval fsdp fsdp_config
    full_determinism generation_config generation_max_length generation_num_beams
    gradient_accumulation_steps gradient_checkpointing gradient_checkpointing_kwargs
    greater_is_better hub_always_push hub_model_id hub_private_repo hub_revision
    hub_strategy hub_token ignore_data_skip include_for_metrics
    include_num_input_tokens_seen label_names label_smoothing_factor learning_rate
    length_column_name liger_kernel_config load_best_model_at_end local_rank log_level
    log_level_replica log_on_each_node logging_dir logging_first_step logging_nan_inf_filter
    logging_steps logging_strategy lr_scheduler_kwargs lr_scheduler_type max_grad_norm
    max_steps metric_for_best_model neftune_noise_alpha num_train_epochs optim optim_args
    optim_target_modules output_dir parallelism_config per_device_eval_batch_size
    per_device_train_batch_size predict_with_generate prediction_loss_only project
    push_to_hub remove_unused_columns report_to restore_callback_states_from_checkpoint
    resume_from_checkpoint run_name save_on_each_node save_only_model save_steps
    save_strategy save_total_limit seed skip_memory_metrics sortish_sampler tf32
    torch_compile torch_compile_backend torch_compile_mode torch_empty_cache_steps
    trackio_bucket_id trackio_space_id trackio_static_space_id train_sampling_strategy
    use_cache use_cpu use_liger_kernel warmup_ratio warmup_steps weight_decay
""".split())
# a dataset_info.json entry: llamafactory/data/parser.py, get_dataset_list and DatasetAttr.join
DATASET_ENTRY_KEYS = frozenset("""
    file_name hf_hub_url ms_hub_url om_hub_url script_url cloud_file_name formatting ranking
    subset split folder num_samples columns tags
""".split())
DATASET_COLUMNS = frozenset("""
    prompt query response history messages system tools images videos audios chosen rejected
    kto_tag
""".split())
DATASET_TAGS = frozenset("""
    role_tag content_tag user_tag assistant_tag observation_tag function_tag system_tag
""".split())
# fmt: on
# `llamafactory-cli train` (hparams/parser.py, _TRAIN_ARGS) and `export` (_INFER_ARGS)
TRAIN_FIELDS = (
    MODEL_FIELDS
    | DATA_FIELDS
    | FINETUNING_FIELDS
    | GENERATING_FIELDS
    | LF_TRAINING_FIELDS
    | HF_TRAINING_FIELDS
)
INFER_FIELDS = MODEL_FIELDS | DATA_FIELDS | FINETUNING_FIELDS | GENERATING_FIELDS
