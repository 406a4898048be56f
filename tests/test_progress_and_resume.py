"""Long jobs say where they are (progress lines in the log, bounded rate, --quiet), and the TRL agents resume after
SIGKILL."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from strategy_fakes import FakeModels

from promis_repro.data.registry import load_benchmark
from promis_repro.io import sha256_of
from promis_repro.progress import INTERVAL_ENV, LOGGER_NAME, Progress
from promis_repro.strategies.config import StrategyConfig
from promis_repro.strategies.runner import run_strategy

TINY = "smollm2-135m-instruct"
STAMPED = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO promis_repro\.progress: "


HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "promis_repro.cli"]
#: the CLI with the TRL agents' code score a non-zero fake, so that training moves the adapter
NONZERO_REWARD_CLI = [sys.executable, str(HERE / "trl_nonzero_reward_cli.py")]


def _cli(*args: str, interval: float, command: list[str] = CLI, **streams) -> subprocess.CompletedProcess[str]:
    """``promis-repro ARGS`` with progress lines due every ``interval`` seconds; output captured unless redirected."""
    env = {**os.environ, INTERVAL_ENV: str(interval)}
    streams = streams or {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    return subprocess.run([*command, *args], text=True, env=env, timeout=600, **streams)


def _progress_lines(text: str, what: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(STAMPED + re.escape(what) + ": ", line)]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_logs_the_first_and_last_update_and_at_most_one_line_per_interval(caplog):
    clock = _Clock()
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    report = Progress("job", 1000, "steps", interval=10, clock=clock)
    for done in range(1, 1001):  # one update every 0.1 s for 100 s
        clock.now = done / 10
        report.update(done, reward=done / 1000)
    report.finish()
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER_NAME]
    assert len(lines) == report.lines <= 100 / 10 + 2
    assert lines[0].startswith("job: 1/1000 steps (0.1%), reward 0.001, elapsed 0:00:00")
    assert lines[-1] == "job: 1000/1000 steps (100.0%), reward 1, elapsed 0:01:40"
    assert lines[5] == "job: 501/1000 steps (50.1%), reward 0.501, elapsed 0:00:50, ETA 0:00:50"
    done = [int(line.split()[1].split("/")[0]) for line in lines]
    assert all(b - a >= 100 for a, b in itertools.pairwise(done[:-1]))  # 10 updates a second: >= 10 s apart
    # a resumed job counts its ETA from where it resumed
    clock.now = 0.0
    resumed = Progress("job", 100, "steps", done=50, interval=10, clock=clock)
    clock.now = 10.0
    resumed.update(60)
    assert caplog.records[-1].getMessage().endswith("elapsed 0:00:10, ETA 0:00:40")


def test_a_strategy_run_reports_tasks_calls_and_tokens(data_dir, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    tasks = load_benchmark("mbppplus", data_dir)[:3]
    models = FakeModels(["def f():\n    return 0"])
    config = StrategyConfig(max_generator_calls=2, max_steps=2)
    run_strategy("ga_only", tasks, models, seed=0, feedback="visible", config=config, progress=False)
    records = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert all(r.terminal is False for r in records)  # progress=False: the log file's, not the terminal's
    lines = [r.getMessage() for r in records]
    assert lines[0] == "ga_only: 0/3 tasks (0.0%), elapsed 0:00:00"
    calls = len(models.calls)
    assert re.fullmatch(
        rf"ga_only: 3/3 tasks \(100\.0%\), model_calls {calls}, tokens {20 * calls}, elapsed .*", lines[-1]
    )


def test_quiet_silences_the_terminal_not_the_log_file(data_dir, tmp_path):
    args = ["run", "--strategy", "direct", "--model", TINY, "--benchmark", "mbppplus", "--limit", "2",
            "--out", str(tmp_path / "cell"), "--data-dir", str(data_dir)]  # fmt: skip
    log = tmp_path / "logs" / "run.log"
    quiet = _cli("--log-file", str(log), "--quiet", *args, interval=0)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stderr == ""
    lines = _progress_lines(log.read_text(), "direct")
    assert lines[0].endswith("direct: 0/2 tasks (0.0%), elapsed 0:00:00")
    assert re.search(r"direct: 2/2 tasks \(100\.0%\), model_calls 2, tokens \d+, elapsed", lines[-1])
    # without --quiet the terminal shows them too (the same run again, now from the generation cache)
    loud = _cli(*args, interval=0)
    assert loud.returncode == 0, loud.stderr[-3000:]
    shown = _progress_lines(loud.stderr, "direct")
    assert shown[-1].split(": ", 1)[1].split(", elapsed")[0] == lines[-1].split(": ", 1)[1].split(", elapsed")[0]
    # the pipeline's rules: --log-file and --quiet, stdout and stderr appended to the same file
    rule_log = tmp_path / "logs" / "rule.log"
    with open(rule_log, "a") as handle:
        ruled = _cli("--log-file", str(rule_log), "--quiet", *args, interval=0, stdout=handle, stderr=subprocess.STDOUT)
    assert ruled.returncode == 0
    text = rule_log.read_text()
    assert len(_progress_lines(text, "direct")) == len(lines) and "direct / smollm2-135m-instruct on mbppplus" in text


# both TRL agents' sections (each reads its own): tiny groups, a checkpoint every step
TRL_CONFIG = (
    "max_new_tokens: 32\nrewriter_max_new_tokens: 24\nmax_generator_calls: 2\n"
    "grpo:\n  num_generations: 2\n  per_device_train_batch_size: 2\n  max_completion_length: 16\n"
    "  checkpoint_every: 1\n"
    "self_correct_rl:\n  num_generations: 2\n  per_device_train_batch_size: 2\n  checkpoint_every: 1\n"
)
#: agent -> (its progress lines' unit, its history file, where its last step's adapter ends up)
TRL_AGENTS = {
    "rl_rewriter": ("GRPO steps", "grpo_history.json", "adapter"),
    "self_correct_rl": ("training steps", "self_correct_rl_history.json", "final_adapter"),
}


def _train_args(agent: str, config: Path, out: Path, data_dir: Path) -> list[str]:
    # --rewriter as the pipeline's rule passes it (self_correct_rl records it as unused)
    return ["train", "--agent", agent, "--model", TINY, "--rewriter", TINY, "--out", str(out),
            "--timesteps", "2", "--limit", "2", "--selection-limit", "1", "--config", str(config),
            "--data-dir", str(data_dir)]  # fmt: skip


def _comparable(out: Path, history_file: str) -> list[dict]:
    timing = {"step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second"}
    # and the closing row's train_loss: the Trainer's mean of the losses of the steps this process trained (a
    # resumed one: those after its checkpoint); each step's own loss is compared
    per_process = {"train_loss"}
    history = json.loads((out / history_file).read_text())["log_history"]
    return [{k: v for k, v in row.items() if k not in timing | per_process} for row in history]


def _lora(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(adapter / "adapter_model.safetensors")


@pytest.mark.parametrize("agent", list(TRL_AGENTS))
def test_sigkilled_trl_agent_training_resumes_from_its_checkpoint(data_dir, tmp_path, agent):
    """Resumed vs uninterrupted: the Trainer's log history (loss, grad norm, learning rate, rewards, entropy,
    token counts; self_correct_rl's turn scores and KLs: functions of the sampled completions, so of the restored
    random states, data order and reward seeds) is identical, and so are the last step's adapter (which moved:
    restoring the adapter and the optimizer counts) and self_correct_rl's selection. The real scores are 0 on
    this tiny setting (and self_correct_rl's KLs start at 0: its adapter starts as the identity), so the gradient
    would be 0; the runs score code with a non-zero fake instead (``trl_nonzero_reward_cli.py``; selection keeps
    the real tests). The wall-clock fields (step_time, train_runtime, ...) and the closing row's per-process
    train_loss differ and are not compared. A run killed after its final checkpoint takes the adapter and the
    steps' history from it, without the Trainer's closing row."""
    unit, history_file, last_adapter = TRL_AGENTS[agent]
    config = tmp_path / "trl.yaml"
    config.write_text(TRL_CONFIG)
    # uninterrupted, with progress lines at most once an hour: only the first and the last
    whole = tmp_path / "whole"
    whole_log = tmp_path / "whole.log"
    train_whole = _train_args(agent, config, whole, data_dir)
    done = _cli("--log-file", str(whole_log), "--quiet", *train_whole, interval=3600, command=NONZERO_REWARD_CLI)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = _progress_lines(whole_log.read_text(), agent)
    assert [line.split(": ", 2)[2].split(",")[0] for line in lines] == [f"0/2 {unit} (0.0%)", f"2/2 {unit} (100.0%)"]
    # killed once its first checkpoint is complete, then rerun with the same arguments
    killed = tmp_path / "killed"
    log = tmp_path / "killed.log"
    command = [*NONZERO_REWARD_CLI, "--log-file", str(log), "--quiet", *_train_args(agent, config, killed, data_dir)]
    env = {**os.environ, INTERVAL_ENV: "0"}
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env
    )
    pointer = killed / "checkpoint.json"
    deadline = time.monotonic() + 300
    while not pointer.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert json.loads(pointer.read_text())["step"] == 1
    assert not (killed / "adapter").exists(), "the run finished before it could be killed"
    train_killed = _train_args(agent, config, killed, data_dir)
    resumed = _cli("--log-file", str(log), "--quiet", *train_killed, interval=0, command=NONZERO_REWARD_CLI)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stderr == ""  # --quiet: everything went to the log file
    text = log.read_text()
    match = re.search(rf"INFO promis_repro\.agent\.trl_agent: {agent}: resuming from step (\d+)", text)
    assert match and int(match.group(1)) == 1, text[-3000:]
    after = _progress_lines(text[match.end() :], agent)
    assert after[0].split(": ", 2)[2].startswith(f"1/2 {unit}") and f"2/2 {unit}" in after[-1]
    assert json.loads((killed / "training.json").read_text())["steps"] == 2
    # finished: its checkpoints are discarded, so training it again trains (only an interrupted run resumes)
    assert not pointer.exists() and not (killed / "trainer").exists()
    assert _comparable(killed, history_file) == _comparable(whole, history_file)
    a, b = _lora(killed / last_adapter), _lora(whole / last_adapter)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7) for k in a)
    # trained: LoRA starts with B = 0 (the update B·A is 0); both runs moved it
    lora_b = [k for k in a if ".lora_B." in k]
    assert lora_b and all(a[k].abs().max() > 0 for k in lora_b)
    if agent == "self_correct_rl":  # the selection, too: every candidate's adapter and score, the chosen step
        selection = json.loads((killed / "training.json").read_text())["selection"]
        assert selection == json.loads((whole / "training.json").read_text())["selection"]
        assert [c["step"] for c in selection["candidates"]] == [0, 1, 2]
        best = max(selection["candidates"], key=lambda c: (c["soft_pass"], -c["step"]))
        assert selection["selected_step"] == best["step"]
        chosen = _lora(killed / "adapter")
        if best["step"] == 0:  # the base generator won: a no-op adapter (B = 0), the last step's A
            assert all((chosen[k] == 0).all() if k in lora_b else torch.equal(chosen[k], a[k]) for k in a)
        else:
            assert sha256_of(killed / "adapter" / "adapter_model.safetensors") == best["adapter_sha256"]


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    from promis_repro.agent.trl_agent import CHECKPOINT_STATE, resume_point
    from promis_repro.errors import UserError

    checkpoint = tmp_path / "trainer" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / CHECKPOINT_STATE).write_text(json.dumps({"identity": "a", "reward_calls": 7, "step": 3}))
    (tmp_path / "checkpoint.json").write_text(json.dumps({"directory": "trainer/checkpoint-3", "step": 3}))
    (tmp_path / "trainer" / "checkpoint-4").mkdir()  # a checkpoint a kill interrupted
    calls = [0]
    assert resume_point(tmp_path, "a", calls, "rl_rewriter") == (checkpoint, 3) and calls == [7]
    assert not (tmp_path / "trainer" / "checkpoint-4").exists()
    with pytest.raises(UserError, match="different training configuration"):
        resume_point(tmp_path, "b", calls, "rl_rewriter")
