"""self_correct_rl's reward and its rollout: the formula on given numbers, each turn's KL over the right tokens."""

from __future__ import annotations

import math
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch

from promis_repro.agent.self_correct_rl import (
    SelfCorrectRLSettings,
    TwoTurnRollout,
    episode_kls,
    formula,
    make_reward,
    self_correction_reward,
    turn_kls,
)
from promis_repro.data.registry import load_benchmark
from promis_repro.generation.registry import get_model
from promis_repro.io import sha256_of
from promis_repro.rewards import RewardConfig
from promis_repro.strategies.actions import Tools
from promis_repro.strategies.baselines import SELF_CORRECT_INSTRUCTION
from promis_repro.strategies.config import StrategyConfig

TINY = "smollm2-135m-instruct"


def test_the_reward_decomposes_into_turn_2_score_minus_both_kls_plus_the_improvement_bonus():
    # s1 = 0.25, s2 = 0.75, KL1 = 3, KL2 = 5, beta1 = 0.1, beta2 = 0.01, alpha = 0.5:
    # 0.75 - 0.01*5 - 0.1*3 + 0.5*(0.75 - 0.25) = 0.75 - 0.05 - 0.3 + 0.25 = 0.65
    reward = self_correction_reward(0.25, 0.75, 3.0, 5.0, beta1=0.1, beta2=0.01, alpha=0.5)
    assert reward == pytest.approx(0.65, abs=1e-12)
    # each term alone
    assert self_correction_reward(0.25, 0.75, 0.0, 0.0, beta1=0.1, beta2=0.01, alpha=0.0) == 0.75
    assert self_correction_reward(0.0, 0.0, 3.0, 0.0, beta1=0.1, beta2=0.01, alpha=0.0) == pytest.approx(-0.3)
    assert self_correction_reward(0.0, 0.0, 0.0, 5.0, beta1=0.1, beta2=0.01, alpha=0.0) == pytest.approx(-0.05)
    assert self_correction_reward(0.25, 0.75, 0.0, 0.0, beta1=0.1, beta2=0.01, alpha=0.5) == pytest.approx(1.0)
    # the reward function TRL calls: the same per episode, from the fields the rollout returned
    settings = SelfCorrectRLSettings(beta1=0.1, beta2=0.01, alpha=0.5)
    rewards = make_reward(settings)(
        prompts=["p", "p"], completions=["a", "b"], score1=[0.25, 1.0], score2=[0.75, 0.0], kl1=[3.0, 0.0],
        kl2=[5.0, 2.0], task_id=["601", "601"],
    )  # fmt: skip
    assert rewards == pytest.approx([0.65, -0.02 - 0.5])
    text = formula(settings)
    assert text.startswith("R = s(y2) - 0.01*KL2 - 0.1*KL1 + 0.5*(s(y2) - s(y1)); s(y) = SoftPass")
    assert "held-out tests" in text and "mean of R over the task's 4 episodes" in text
    assert "every test of the task" in formula(settings, train_feedback="all")


def test_a_turns_kl_sums_the_log_ratios_of_its_own_tokens_only():
    # completion = turn 1 (2 tokens), instruction (3 tokens), turn 2 (2 tokens)
    policy = [-1.0, -2.0, -0.5, -0.5, -0.5, -3.0, -0.25]
    reference = [-1.5, -1.0, -9.0, -9.0, -9.0, -2.0, -0.75]
    kl1, kl2 = turn_kls(policy, reference, (2, 3, 2))
    assert kl1 == pytest.approx(0.5 - 1.0) and kl2 == pytest.approx(-1.0 + 0.5)
    with pytest.raises(ValueError, match="laid out"):
        turn_kls(policy, reference, (2, 2, 2))


class _Bigram(torch.nn.Module):
    """A peft-like toy: logits at t depend on token t; the 'adapter' adds its own table; disable_adapter() drops it."""

    def __init__(self, vocab: int = 7) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.base = torch.nn.Parameter(torch.randn(vocab, vocab, generator=generator))
        self.delta = torch.nn.Parameter(torch.randn(vocab, vocab, generator=generator))
        self.adapter = True

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        logits = self.base[input_ids] + (self.delta[input_ids] if self.adapter else 0.0)
        return SimpleNamespace(logits=logits)

    @contextmanager
    def disable_adapter(self):
        self.adapter = False
        try:
            yield
        finally:
            self.adapter = True


def _logprob(table: torch.Tensor, previous: int, token: int, temperature: float) -> float:
    return float(torch.log_softmax(table[previous] / temperature, dim=-1)[token])


def test_the_rollouts_kl_is_the_policy_minus_reference_log_ratio_summed_over_each_turn():
    model, temperature = _Bigram(), 0.7
    # prompt | turn 1 | instruction | turn 2; two episodes of different lengths in one (right-padded) batch
    episodes = [([1, 2, 3], [4, 5], [6, 6, 0], [2, 1]), ([5], [0, 3, 3], [6], [4])]
    sequences = [p + a + i + b for p, a, i, b in episodes]
    starts = [len(p) for p, *_ in episodes]
    layouts = [(len(a), len(i), len(b)) for _, a, i, b in episodes]
    policy, kls = episode_kls(model, sequences, starts, layouts, temperature, batch_size=2)
    with torch.no_grad():
        full = model.base + model.delta
        for (prompt, first, instruction, second), logps, (kl1, kl2) in zip(episodes, policy, kls, strict=True):
            sequence = prompt + first + instruction + second
            ratios, expected_policy = [], []
            for t in range(len(prompt), len(sequence)):
                p = _logprob(full, sequence[t - 1], sequence[t], temperature)
                ratios.append(p - _logprob(model.base, sequence[t - 1], sequence[t], temperature))
                expected_policy.append(p)
            assert logps == pytest.approx(expected_policy, abs=1e-5)
            assert kl1 == pytest.approx(sum(ratios[: len(first)]), abs=1e-5)
            assert kl2 == pytest.approx(sum(ratios[len(first) + len(instruction) :]), abs=1e-5)
            # the instruction's tokens have log-ratios of their own, left out of both
            assert abs(sum(ratios[len(first) : len(first) + len(instruction)])) > 1e-3


def test_the_two_turn_rollout_on_the_tiny_model(data_dir):
    """Both turns with the real model and chat template: layout, masks, instruction tokens, and KLs equal to an
    unbatched recomputation over the env mask's 1s (the adapter is perturbed so that pi_theta != pi_ref)."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promis_repro.agent.trl_agent import lora_config
    from promis_repro.generation.weights import weights_location

    torch.manual_seed(0)
    spec = get_model(TINY)
    location, _ = weights_location(spec)
    tokenizer = AutoTokenizer.from_pretrained(location, padding_side="left")
    settings = SelfCorrectRLSettings(num_generations=2, per_device_train_batch_size=2, temperature=0.9)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(location), lora_config(settings)).train()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.02)
    tasks = [t for t in load_benchmark("mbpp", data_dir) if t.task_id == "601"]  # a train-split task
    tools = Tools(spec, None, StrategyConfig(max_new_tokens=24), RewardConfig(), seed=1)
    rollout = TwoTurnRollout(tools, tokenizer, tasks, settings, "visible")
    (prompt,) = rollout.tasks
    assert prompt.endswith("<|im_start|>assistant\n") and "Your code should pass this test" in prompt
    out = rollout.episodes(model, [prompt, prompt])
    assert model.training is True  # restored after sampling in eval mode
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    assert out["prompt_ids"] == [prompt_ids, prompt_ids]
    for index, (completion, mask) in enumerate(zip(out["completion_ids"], out["env_mask"], strict=True)):
        assert len(completion) == len(mask) == len(out["logprobs"][index])
        first = mask.index(0)
        second = first + mask[first:].index(1)
        assert set(mask[first:second]) == {0} and set(mask[second:]) == {1} and first > 0
        instruction = tokenizer.decode(completion[first:second])
        assert SELF_CORRECT_INSTRUCTION in instruction and instruction.rstrip().endswith("<|im_start|>assistant")
        sequence = torch.tensor([prompt_ids + completion])
        with torch.no_grad():
            logits = model.eval()(input_ids=sequence).logits[0, :-1] / settings.temperature
            with model.disable_adapter():
                reference = model(input_ids=sequence).logits[0, :-1] / settings.temperature
        model.train()
        tokens = sequence[0, 1:]
        ratio = (torch.log_softmax(logits, -1) - torch.log_softmax(reference, -1)).gather(-1, tokens[:, None])[:, 0]
        ratio = ratio[len(prompt_ids) - 1 :].tolist()
        assert out["kl1"][index] == pytest.approx(sum(ratio[:first]), abs=1e-3)
        assert out["kl2"][index] == pytest.approx(sum(ratio[second:]), abs=1e-3)
        assert out["kl1"][index] != 0.0 and math.isfinite(out["kl2"][index])
        assert 0.0 <= out["score1"][index] <= 1.0 and 0.0 <= out["score2"][index] <= 1.0


def _checkpoint(directory, seed: int):
    """A stand-in for a Trainer checkpoint: an adapter (one LoRA A and B) beside the Trainer's own files."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    weights = {name: torch.randn(2, 3, generator=generator) for name in ("m.q.lora_A.weight", "m.q.lora_B.weight")}
    save_file(weights, directory / "adapter_model.safetensors", metadata={"format": "pt"})
    (directory / "adapter_config.json").write_text("{}")
    (directory / "optimizer.pt").write_text("not an adapter's")
    return directory


class _Killed(Exception):
    pass


def _selecting_run(out, scores: dict[int | None, float], scored: list, fail_at: int | None = None, ids=("511",)):
    from promis_repro.agent.trl_agent import Selection, TRLRun, TRLSettings

    def score(adapter):
        step = 0 if adapter is None else int(adapter.name.split("-")[1])
        if step == fail_at:
            raise _Killed(f"killed while scoring step {step}")
        scored.append(step)
        return {"soft_pass": scores[step], "pass_rate": 0.0}

    selection = Selection(score, list(ids), "a test's metric")
    return TRLRun("self_correct_rl", "training steps", out, "id", TRLSettings(), "history.json", selection=selection)


def test_selection_keeps_the_best_candidate_the_earliest_on_ties_and_resumes_after_a_kill(tmp_path):
    from safetensors.torch import load_file

    from promis_repro.agent.trl_agent import Candidates, select_adapter

    out = tmp_path / "out"
    candidates = Candidates(out)
    for step in (1, 2, 3):
        candidates.add(step, _checkpoint(tmp_path / f"checkpoint-{step}", step))
    assert candidates.steps() == [1, 2, 3] and not (candidates.path(1) / "optimizer.pt").exists()
    scores, scored = {0: 0.25, 1: 0.5, 2: 0.75, 3: 0.75}, []
    # killed while scoring step 2: the scores so far are kept, a rerun scores only the rest
    with pytest.raises(_Killed):
        select_adapter(_selecting_run(out, scores, scored, fail_at=2), 3)
    assert scored == [0, 1] and not (out / "adapter").exists()
    result = select_adapter(_selecting_run(out, scores, scored), 3)
    assert scored == [0, 1, 2, 3]
    assert [(c["step"], c["soft_pass"]) for c in result["candidates"]] == [(0, 0.25), (1, 0.5), (2, 0.75), (3, 0.75)]
    assert result["selected_step"] == 2 and not result["base_model_selected"]  # the tie goes to the earlier step
    assert result["selection_soft_pass"] == 0.75 and result["n_tasks"] == 1
    assert load_file(out / "adapter" / "adapter_model.safetensors").keys() == {"m.q.lora_A.weight", "m.q.lora_B.weight"}
    assert (out / "adapter" / "adapter_model.safetensors").read_bytes() == (
        candidates.path(2) / "adapter_model.safetensors"
    ).read_bytes()
    assert (out / "final_adapter" / "adapter_model.safetensors").read_bytes() == (
        candidates.path(3) / "adapter_model.safetensors"
    ).read_bytes()
    assert result["candidates"][2]["adapter_sha256"] == sha256_of(candidates.path(2) / "adapter_model.safetensors")
    # all scored: a rerun (killed before training.json) scores nothing again
    select_adapter(_selecting_run(out, scores, scored), 3)
    assert scored == [0, 1, 2, 3]
    # other selection tasks, or a candidate trained again into other weights: scored again
    select_adapter(_selecting_run(out, scores, scored, ids=("512",)), 3)
    assert scored == [0, 1, 2, 3] * 2
    candidates.add(3, _checkpoint(tmp_path / "checkpoint-3-again", 33))
    select_adapter(_selecting_run(out, scores, scored, ids=("512",)), 3)
    assert scored == [0, 1, 2, 3] * 2 + [3]
    # the base generator wins: a no-op adapter (the last step's, its B zero) and the base model's selection recorded
    scored.clear()
    result = select_adapter(_selecting_run(out, {0: 0.5, 1: 0.5, 2: 0.5, 3: 0.5}, scored, ids=("513",)), 3)
    assert result["selected_step"] == 0 and result["base_model_selected"]
    chosen, final = (load_file(out / name / "adapter_model.safetensors") for name in ("adapter", "final_adapter"))
    assert torch.equal(chosen["m.q.lora_A.weight"], final["m.q.lora_A.weight"])
    assert not chosen["m.q.lora_B.weight"].any() and final["m.q.lora_B.weight"].any()
    # a resumed run drops the candidates after its checkpoint (trained again); a fresh start drops all and the scores
    candidates.keep_until(1)
    assert candidates.steps() == [1] and candidates.scores_file.exists()
    candidates.keep_until(0)
    assert candidates.steps() == [] and not candidates.scores_file.exists()
    with pytest.raises(RuntimeError, match="last candidate"):
        select_adapter(_selecting_run(out, scores, scored), 3)
