"""python -m fairseq_vqw2v.reproduce: the commands, when stages rerun, tables.md, one tiny run."""

import json
import math
import os
import re
import subprocess
import sys

import pytest

from _asr_util import write_letter_corpus
from fairseq_vqw2v.decoding.results import collect
from fairseq_vqw2v.reproduce.__main__ import main
from fairseq_vqw2v.reproduce.pipeline import (EMBEDDED, SYSTEMS, Layout, am_restart, build_seed_stages,
                                              build_stages, demo_stages)
from fairseq_vqw2v.reproduce.stages import Command, Runner, Stage, log_records, select, stage_hashes, write_commands
from fairseq_vqw2v.reproduce.tables import ROW_NAMES, write_tables

TINY = ["--set", "pretrain_updates=3", "--set", "bert_updates=3", "--set", "am_updates=4",
        "--set", "charlm_updates=3", "--set", "log_interval=1", "--set", "save_interval_updates=2",
        "--set", "beam=5", "--set", "charlm_beam=4", "--set", "lm_weights=1",
        "--set", "word_scores=0", "--set", "charlm_lm_weights=0.5",
        "--set", "lm_flags=['--discount-fallback']"]


def _layout(out, corpus="corpus"):
    return Layout(out=str(out), corpus=str(corpus), lm_text=f"{corpus}/lm/lm.txt", user_dir="fairseq_vqw2v")


def test_dry_run_writes_every_row(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "res"), "--dry-run"]) == 0
    script = (tmp_path / "res" / "commands.sh").read_text()
    assert script == capsys.readouterr().out.rsplit("dry run:", 1)[0]
    assert subprocess.run(["bash", "-n", str(tmp_path / "res" / "commands.sh")]).returncode == 0
    stages = re.findall(r"^# == (\S+)$", script, re.M)
    expected = ["corpus", "pretrain/wav2vec", "pretrain/gumbel", "pretrain/kmeans", "units/gumbel",
                "units/kmeans", "units/logmel_kmeans", "bert/gumbel", "bert/kmeans",
                "bert/logmel_kmeans", "features/wav2vec", "features/gumbel", "features/kmeans",
                "features/logmel_kmeans", "lm/4gram", "lm/charlm",
                "decode/ltr/gumbel_bert_charlm"]
    expected += [f"{kind}/{labels}/{system}" for kind in ("am", "decode") for labels in ("ltr", "phn")
                 for system in SYSTEMS]
    assert sorted(stages) == sorted(expected)
    for vq_type in ("none", "gumbel", "kmeans"):
        assert f"--vq-type {vq_type} " in script
    rows = len(SYSTEMS)
    assert script.count("fairseq-train ") == 3 + 3 + 2 * rows + 1
    assert script.count("--task vqw2v_asr --labels ltr") == rows == script.count("--task vqw2v_asr --labels phn")
    assert script.count("fairseq_vqw2v.cli.quantize") == 2 and script.count("--report") == 2
    # letters: greedy + 4-gram on valid and test for every system; phones greedy; char LM on one
    assert script.count("--decoder viterbi") == 2 * 2 * rows
    assert script.count("--decoder kenlm --results-path") == 2 * rows
    assert script.count("fairseq_vqw2v.cli.tune") == rows + 1
    assert script.count("--decoder charlm --results-path") == 2
    assert "--task language_modeling --arch fconv_lm" in script
    assert "fairseq_vqw2v.reproduce.logmel_units" in script
    # every continuous or BERT input is featurized once and read from files by its models
    assert script.count("fairseq_vqw2v.cli.featurize") == 4 * 3
    assert script.count("--input wav2vec --features") == 2 == script.count("--input bert --features") / 3
    assert "--input bert --units-dir" not in script and "--upstream" not in script
    # every BERT row has its units as a row of their own, the log-mel k-means units included
    for units in ("gumbel", "kmeans", "logmel_kmeans"):
        assert script.count(f"--input units --units-dir {tmp_path}/res/units/{units} ") == 2


def test_demo_is_the_letters_table_and_a_subset_of_the_full_run(tmp_path):
    assert main(["--out", str(tmp_path), "--dry-run", "--demo"]) == 0
    demo = re.findall(r"^# == (\S+)$", (tmp_path / "commands.sh").read_text(), re.M)
    assert sorted(demo) == sorted(
        ["corpus", "pretrain/wav2vec", "pretrain/gumbel", "units/gumbel", "bert/gumbel",
         "features/wav2vec", "features/gumbel", "lm/4gram"]
        + [f"{k}/ltr/{s}" for k in ("am", "decode") for s in ("logmel", "wav2vec", "gumbel", "gumbel_bert")])
    # the same stages (same hashes) as the full run: a later run without --demo reuses them
    every = build_stages(_layout(tmp_path, tmp_path / "corpus"), EMBEDDED)
    full = stage_hashes(every, str(tmp_path))
    selected = stage_hashes(select(every, demo_stages()), str(tmp_path))
    assert sorted(selected) == sorted(demo) and all(selected[n] == full[n] for n in demo)
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--demo", "--stages", "am/*"])


def test_paper_preset_uses_the_paper_archs(tmp_path):
    assert main(["--out", str(tmp_path), "--preset", "paper", "--dry-run"]) == 0
    script = (tmp_path / "commands.sh").read_text()
    for arch in ("vq_wav2vec_gumbel", "vq_wav2vec_kmeans", "unit_bert_base", "unit_bert_small",
                 "w2l_ctc_wsj", "w2l_ctc_timit"):
        assert f"--arch {arch} " in script
    assert "--cpu" not in script and "--device cuda" in script


def test_each_acoustic_model_trains_at_its_learning_rate(tmp_path, capsys):
    """am_lr gives each row its --lr; --set with a dict changes the entries it names and refuses
    an entry the preset lacks; a single value sets every row's."""
    def learning_rates(*sets):
        assert main(["--out", str(tmp_path), "--dry-run", *sets]) == 0
        capsys.readouterr()
        script = (tmp_path / "commands.sh").read_text()
        return {f"{labels}/{system}": lr for labels, lr, system in re.findall(
            r"--labels (\w+) .* --lr (\S+) .* --save-dir \S*/am/\w+/(\w+) ", script)}

    assert learning_rates() == EMBEDDED.am_lr and len(EMBEDDED.am_lr) == 2 * len(SYSTEMS)
    changed = learning_rates("--set", "am_lr={'ltr/gumbel': '1e-2', 'phn/kmeans': 3e-3}")
    assert changed == {**EMBEDDED.am_lr, "ltr/gumbel": "1e-2", "phn/kmeans": "0.003"}
    assert set(learning_rates("--set", "am_lr=4e-3").values()) == {"4e-3"}
    assert main(["--out", str(tmp_path), "--dry-run", "--set", "am_lr={'ltr/mfcc': '1e-3'}"]) == 2
    assert "am_lr has no entry 'ltr/mfcc' (it has ltr/logmel," in capsys.readouterr().err


def test_acoustic_models_save_at_every_validation(tmp_path, capsys):
    """fairseq moves checkpoint_best.pt only at a save: each acoustic model saves whenever it
    validates, so the decoded checkpoint is the best of every validation; pretraining and BERT
    keep the preset's save interval (their hashes, and finished runs, stay valid)."""
    assert main(["--out", str(tmp_path), "--dry-run"]) == 0
    capsys.readouterr()
    intervals = {name: (int(validate), int(save)) for validate, name, save in re.findall(
        r"--validate-interval-updates (\d+) .*--save-dir \S+?/((?:am|pretrain|bert)/\S+) "
        r".*--save-interval-updates (\d+) ", (tmp_path / "commands.sh").read_text())}
    ams = {n: v for n, v in intervals.items() if n.startswith("am/")}
    assert len(ams) == 2 * len(SYSTEMS)
    every = EMBEDDED.am_updates // EMBEDDED.am_validations
    assert set(ams.values()) == {(every, every)} and every < EMBEDDED.save_interval_updates
    others = {save for n, (_, save) in intervals.items() if not n.startswith("am/")}
    assert len(intervals) > len(ams) and others == {EMBEDDED.save_interval_updates}


def test_unlabeled_hours_feed_only_the_self_supervised_stages(tmp_path, capsys):
    """With unlabeled audio, pretraining, the units' k-means fit and the BERTs train on the
    corpus's pretrain split and every unit inventory covers it; the acoustic models' commands are
    those of the run without it. Without it no command names the split (hashes unchanged)."""
    def commands(*sets):
        assert main(["--out", str(tmp_path), "--dry-run", *sets]) == 0
        capsys.readouterr()
        script = (tmp_path / "commands.sh").read_text()
        return dict(re.findall(r"^# == (\S+)\n(.*?)(?=^# == |\Z)", script, re.M | re.S))

    plain, more = commands(), commands("--set", "unlabeled_hours=3")
    assert not re.search(r"--train-subset|--unlabeled-hours|pretrain,|--fit-split", " ".join(plain.values()))
    assert "--unlabeled-hours 3" in more["corpus"]
    ssl = [k for k in more if k.split("/")[0] in ("pretrain", "bert")]
    assert len(ssl) == 6 and all(more[k].count("--train-subset pretrain") == 1 for k in ssl)
    for units in ("units/gumbel", "units/kmeans", "units/logmel_kmeans"):
        assert "--splits pretrain,train,valid,test" in more[units]
    assert "--fit-split pretrain" in more["units/logmel_kmeans"]
    changed = {k for k in plain if plain[k] != more[k]}
    assert changed == {"corpus"} | set(ssl) | {f"units/{u}" for u in ("gumbel", "kmeans", "logmel_kmeans")}
    # a prepared corpus brings its own splits: the option that builds one is refused there
    data = tmp_path / "data"
    write_letter_corpus(str(data))
    assert main(["--out", str(tmp_path / "o"), "--manifest-dir", str(data), "--dry-run",
                 "--set", "unlabeled_hours=3"]) == 2
    assert "unlabeled_hours adds audio to the embedded corpus" in capsys.readouterr().err


def test_stages_selects_with_what_they_need(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--dry-run", "--stages", "bert/kmeans"]) == 0
    stages = re.findall(r"^# == (\S+)$", (tmp_path / "commands.sh").read_text(), re.M)
    assert stages == ["corpus", "pretrain/kmeans", "units/kmeans", "bert/kmeans"]
    assert main(["--out", str(tmp_path), "--dry-run", "--stages", "nothing/*"]) == 2
    assert "matches no stage" in capsys.readouterr().err


def test_a_changed_setting_invalidates_the_stage_and_its_downstream(tmp_path):
    import dataclasses

    before = stage_hashes(build_stages(_layout(tmp_path), EMBEDDED), str(tmp_path))
    changed = dataclasses.replace(EMBEDDED, bert_updates=EMBEDDED.bert_updates + 1)
    after = stage_hashes(build_stages(_layout(tmp_path), changed), str(tmp_path))
    rerun = sorted(n for n in before if before[n] != after[n])
    bert_rows = ("gumbel_bert", "kmeans_bert", "logmel_kmeans_bert")
    assert rerun == sorted(
        [f"bert/{u}" for u in ("gumbel", "kmeans", "logmel_kmeans")]
        + [f"features/{u}" for u in ("gumbel", "kmeans", "logmel_kmeans")]
        + [f"{k}/{l}/{s}" for k in ("am", "decode") for l in ("ltr", "phn") for s in bert_rows]
        + ["decode/ltr/gumbel_bert_charlm"])
    # how many runs an acoustic model on CTC's all-blank plateau gets: those models and decodes
    once = stage_hashes(build_stages(_layout(tmp_path), dataclasses.replace(EMBEDDED, am_runs=1)),
                        str(tmp_path))
    assert sorted(n for n in before if before[n] != once[n]) == sorted(
        n for n in before if n.startswith(("am/", "decode/")))
    # the output folder may move: hashes see it as {out}
    moved = stage_hashes(build_stages(_layout(tmp_path / "elsewhere"), EMBEDDED), str(tmp_path / "elsewhere"))
    assert moved == before
    # so may the plugin, and the folder a run starts from (which decides how --user-dir is shown)
    for user_dir in ("/opt/venv/site-packages/fairseq_vqw2v", "../repo/fairseq_vqw2v/"):
        layout = dataclasses.replace(_layout(tmp_path), user_dir=user_dir)
        assert stage_hashes(build_stages(layout, EMBEDDED), str(tmp_path)) == before


def _counting_stage(out, name, inputs, text, reads=None):
    """A stage whose command appends to ``out/runs.txt`` (how often it ran) and writes its output."""
    workdir = os.path.join(out, name)
    target = os.path.join(workdir, "out.txt")
    code = (f"import sys; open(sys.argv[1], 'a').write({name!r} + '\\n'); "
            f"src = open(sys.argv[3]).read() if len(sys.argv) > 3 else ''; "
            f"open(sys.argv[2], 'w').write(src + {text!r})")
    argv = [sys.executable, "-c", code, os.path.join(out, "runs.txt"), target]
    if reads:
        argv.append(os.path.join(out, reads, "out.txt"))
    return Stage(name, workdir, [Command(argv, creates=target)], [target], inputs=inputs)


def _run(out, text_a, text_b):
    stages = [_counting_stage(out, "a", [], text_a),
              _counting_stage(out, "b", ["a"], text_b, reads="a")]
    assert Runner(out, stages, {}, print_fn=lambda s: None).run()
    runs_path = os.path.join(out, "runs.txt")
    runs = []
    if os.path.exists(runs_path):
        runs = open(runs_path).read().split()
        os.remove(runs_path)
    return runs, open(os.path.join(out, "b", "out.txt")).read()


def test_rerun_skips_complete_stages_and_reruns_changed_ones(tmp_path):
    out = str(tmp_path)
    assert _run(out, "A1", "B1") == (["a", "b"], "A1B1")
    assert _run(out, "A1", "B1") == ([], "A1B1")  # unchanged: skipped
    assert _run(out, "A1", "B2") == (["b"], "A1B2")  # downstream change only
    (tmp_path / "a" / "stale.txt").write_text("from the old settings")
    assert _run(out, "A2", "B2") == (["a", "b"], "A2B2")  # upstream change: both, folder renewed
    assert not (tmp_path / "a" / "stale.txt").exists()
    os.remove(tmp_path / "b" / "out.txt")  # an output lost: that stage alone reruns
    assert _run(out, "A2", "B2") == (["b"], "A2B2")


def test_an_interrupted_stage_resumes_after_its_finished_commands(tmp_path):
    out = str(tmp_path)
    first, log, fail = (os.path.join(out, name) for name in ("s/first.txt", "ran.txt", "fail"))
    write = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n'); open(sys.argv[3], 'w')"
    then_fail = ("import os, sys; open(sys.argv[1], 'a').write('second\\n'); "
                 "sys.exit(os.path.exists(sys.argv[2]))")
    stage = Stage("s", os.path.join(out, "s"), [
        Command([sys.executable, "-c", write, log, "first", first], creates=first),
        Command([sys.executable, "-c", then_fail, log, fail]),
    ], [first])
    open(fail, "w").close()  # the second command dies, as if interrupted
    assert not Runner(out, [stage], {}, print_fn=lambda s: None).run()
    os.remove(fail)
    assert Runner(out, [stage], {}, print_fn=lambda s: None).run()
    assert open(log).read().split() == ["first", "second", "second"]
    record = json.load(open(os.path.join(out, ".stages", "s.json")))
    assert record["complete"] and record["seconds"] > 0


def _seeded_stage(out, stalled_seeds):
    """A stage whose command stands in for an acoustic model's training, restarted as the
    pipeline restarts them: it appends its ``--seed`` to ``out/seeds.txt`` and logs a json
    ``valid`` record as fairseq-train does, ``valid_output_ratio`` "0.1" for the seeds in
    ``stalled_seeds`` and "0.9" otherwise; after a first run it exits 1 while the file
    ``out/fail`` exists."""
    workdir = os.path.join(out, "am")
    code = ("import json, os, sys; seed = int(sys.argv[sys.argv.index('--seed') + 1]); "
            "open(sys.argv[1], 'a').write(f'{seed}\\n'); "
            "ratio = '0.1' if str(seed) in sys.argv[2].split(',') else '0.9'; "
            "print('2026-01-01 00:00:00 | INFO | valid | ' + json.dumps({'valid_output_ratio': ratio})); "
            "open(sys.argv[3], 'w').write(str(seed)); "
            "sys.exit(seed != 1 and os.path.exists(sys.argv[4]))")
    model = os.path.join(workdir, "checkpoint_last.pt")
    argv = [sys.executable, "-c", code, os.path.join(out, "seeds.txt"), ",".join(map(str, stalled_seeds)),
            model, os.path.join(out, "fail"), "--seed", "1"]
    restart = am_restart(EMBEDDED)
    assert (restart.tries, restart.seed_step) == (3, 100)
    # the same bound as the tables' plateau flag: the bound itself is not on the plateau
    assert restart.stalled({"valid_output_ratio": "0.49"})
    assert not restart.stalled({"valid_output_ratio": "0.5"}) and not restart.stalled({})
    # trains: a checkpoint fairseq never wrote, so the command always runs
    return Stage("am", workdir, [Command(argv, trains=(model, 1), restart=restart)], [model])


def _seeds_run(out):
    path = os.path.join(out, "seeds.txt")
    seeds = open(path).read().split()
    os.remove(path)
    return seeds


def test_a_stalled_training_runs_again_from_scratch_with_the_next_seed(tmp_path):
    out = str(tmp_path)
    runner = Runner(out, [_seeded_stage(out, stalled_seeds=[1])], {}, print_fn=lambda s: None)
    (tmp_path / "am").mkdir()
    (tmp_path / "am" / "checkpoint_best.pt").write_text("the stalled run's")
    assert runner.run()
    assert _seeds_run(out) == ["1", "101"]  # the second run left the plateau: no third
    assert not (tmp_path / "am" / "checkpoint_best.pt").exists()  # the stalled run's are gone
    assert (tmp_path / "am" / "checkpoint_last.pt").read_text() == "101"
    assert runner.restarted() == {"am": (2, "101")}
    # a complete stage is not run again
    assert Runner(out, [_seeded_stage(out, stalled_seeds=[1])], {}, print_fn=lambda s: None).run()
    assert not os.path.exists(os.path.join(out, "seeds.txt"))

    # every run stalls: the last is kept, after as many runs as the restart allows
    out = str(tmp_path / "always")
    runner = Runner(out, [_seeded_stage(out, stalled_seeds=[1, 101, 201])], {}, print_fn=lambda s: None)
    assert runner.run() and _seeds_run(out) == ["1", "101", "201"]
    assert runner.restarted() == {"am": (3, "201")}

    # a training that never stalls runs once and is no restart
    out = str(tmp_path / "never")
    runner = Runner(out, [_seeded_stage(out, stalled_seeds=[])], {}, print_fn=lambda s: None)
    assert runner.run() and _seeds_run(out) == ["1"] and runner.restarted() == {}


def test_a_stage_interrupted_in_a_later_run_resumes_with_that_runs_seed(tmp_path):
    out = str(tmp_path)
    stage = _seeded_stage(out, stalled_seeds=[1])
    (tmp_path / "fail").write_text("")
    assert not Runner(out, [stage], {}, print_fn=lambda s: None).run()  # run 2 dies
    assert _seeds_run(out) == ["1", "101"]
    os.remove(tmp_path / "fail")
    runner = Runner(out, [stage], {}, print_fn=lambda s: None)
    assert runner.run()
    assert _seeds_run(out) == ["101"] and runner.restarted() == {"am": (2, "101")}
    script = tmp_path / "commands.sh"
    write_commands(str(script), [stage], {}, "test")
    assert "all-blank plateau at the last validation (greedy output below 0.5 units per reference " \
           "unit): the same again from scratch with --seed 101, then 201" in script.read_text()


def _write_generate(path, pairs):
    """A fairseq-generate output as our task writes it: S-/T-/H-/D- lines per utterance."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for i, (ref, hyp) in enumerate(pairs):
            f.write(f"T-{i}\t{ref}\nH-{i}\t-1.5\t{hyp}\nD-{i}\t-1.5\t{hyp}\n")
        f.write("Generate test with beam=5: WER 0\n")


def test_tables_from_scored_generate_outputs(tmp_path):
    out = tmp_path
    ref = "h e l l o | w o r l d |"
    letters = {  # system -> decoder -> hypothesis (same for both splits)
        "logmel": {"viterbi": "h e l o | w o r l d |", "kenlm": ref},
        "gumbel_bert": {"viterbi": "h a l l o | w o r d |", "kenlm": "h e l l o | w o r d |"},
        "gumbel_bert_charlm": {"charlm": ref},
    }
    for system, by_decoder in letters.items():
        for decoder, hyp in by_decoder.items():
            for split in ("valid", "test"):
                _write_generate(out / "decode" / "ltr" / system / decoder / f"generate-{split}.txt", [(ref, hyp)])
    for split in ("valid", "test"):
        _write_generate(out / "decode" / "phn" / "kmeans" / "viterbi" / f"generate-{split}.txt",
                        [("aa b k", "aa b"), ("d eh", "d eh")])
        # a model still on CTC's all-blank plateau: one phone out for five
        _write_generate(out / "decode" / "phn" / "kmeans_bert" / "viterbi" / f"generate-{split}.txt",
                        [("aa b k", "aa"), ("d eh", "")])
    os.makedirs(out / "units" / "gumbel")
    (out / "units" / "gumbel" / "train.usage.json").write_text(json.dumps({
        "distinct_tokens": 212, "possible_tokens": 102400, "code_perplexity": 19.5, "bitrate": 1664.0,
        "phones": {"units": {"pnmi": 0.31, "phone_purity": 0.42}, "logmel_kmeans": {"pnmi": 0.25}}}))
    log = out / "am.log"
    log.write_text("".join(f'x | INFO | train_inner | {{"loss": "{5 - u}", "num_updates": "{u}"}}\n'
                           f'x | INFO | valid | {{"valid_ler": "{50 - u}", "valid_num_updates": "{u}"}}\n'
                           for u in (1, 2, 3)))
    path, results = write_tables(str(out), {"preset": "test"}, {"folder": "corpus"},
                                 {"pretrain/gumbel": 12.0, "am/ltr/logmel": 30.0}, {"am/ltr/logmel": str(log)},
                                 am_updates=3, restarted={"am/phn/kmeans_bert": (3, "201")})
    text = open(path).read()
    assert "same budget (3 updates" in text and "One training chain" in text
    rates = collect(str(out / "decode" / "ltr"), "ltr")
    viterbi = rates["logmel"]["viterbi"]["test"]
    assert (viterbi.uer, viterbi.wer) == (100 / 12, 50.0)  # one letter of 12, one word of 2
    row = next(line for line in text.splitlines() if line.startswith("| log-mel baseline |"))
    assert row.split(" | ")[1:3] == ["8.33 / 50.00 (6.28 / 19.46)", "8.33 / 50.00 (4.14 / 13.93)"]
    assert row.split(" | ")[3] == "0.00 / 0.00 (3.32 / 8.57)"
    charlm = next(line for line in text.splitlines() if "char ConvLM |" in line)
    assert charlm.endswith("0.00 / 0.00 (1.79 / 4.46) | 0.00 / 0.00 (0.93 / 2.34) |")
    timit = next(line for line in text.split("## Table 2")[1].splitlines() if line.startswith("| vq-wav2vec k-means"))
    assert timit == "| vq-wav2vec k-means | 20.00 (15.65) | 20.00 (18.73) |"  # 1 deletion in 5 phones
    wav2vec = next(line for line in text.split("## Table 2")[1].splitlines() if line.startswith("| wav2vec"))
    assert wav2vec == "| wav2vec (continuous) | - (12.90) | - (14.70) |"
    assert "| gumbel | 212 | 102400 | 19.5 | 1664 | 0.31 | 0.42 | 0.25 |" in text
    ablation = text.split("## BERT ablation")[1].split("\n## ")[0]
    assert [line.split(" | ")[0][2:] for line in ablation.splitlines() if line.startswith("| ")][1:] == [
        ROW_NAMES[s] for s in ("gumbel", "gumbel_bert", "kmeans", "kmeans_bert", "logmel_kmeans",
                               "logmel_kmeans_bert")]  # each BERT below the units it reads
    assert "| **total** | 42 |" in text
    # the plateau's row is named with its output; the k-means row (4 phones out for 5) is not
    plateau = text.split("## Acoustic models still on CTC's all-blank plateau")[1].split("\n## ")[0]
    assert [line for line in plateau.splitlines() if line.startswith("- ")] == [
        "- k-means + BERT, first chain: test PER 80.00, its greedy output 0.20 phones per reference phone"]
    again = text.split("## Acoustic models trained again")[1].split("\n## ")[0]
    assert [line for line in again.splitlines() if line.startswith("- ")] == [
        "- am/phn/kmeans_bert: run 3, `--seed 201`"]
    assert text.index("trained again") < text.index("still on CTC's all-blank plateau")
    for png in ("curves.png", "units.png", "error_rates_ltr.png", "error_rates_phn.png", "valid_curves.png"):
        assert (out / png).stat().st_size > 0
    assert results["gumbel_bert"]["kenlm"]["test"].wer == 50.0


def test_logmel_units_match_the_baseline_kmeans(tmp_path):
    from fairseq_vqw2v.reproduce.logmel_units import main as units_main
    from fairseq_vqw2v.logmel_kmeans import fit_utterances, kmeans_units, logmel_frames

    data = tmp_path / "data"
    write_letter_corpus(str(data), splits=(("train", 8), ("valid", 3), ("test", 3)))
    usage = tmp_path / "usage.json"
    usage.write_text(json.dumps({"distinct_tokens": 12}))
    dest = tmp_path / "units"
    assert units_main(["--manifest-dir", str(data), "--dest", str(dest), "--clusters-like", str(usage),
                       "--max-fit-frames", "500"]) == 0
    train_tsv = str(data / "train.tsv")
    fit = logmel_frames(train_tsv, fit_utterances(train_tsv, 500, 1))
    expected = kmeans_units(fit, logmel_frames(str(data / "valid.tsv")), 12, seed=1, max_fit_frames=500)
    lines = (dest / "valid.src").read_text().splitlines()
    assert [[int(t) for t in line.split()] for line in lines] == expected
    stats = json.loads((dest / "train.usage.json").read_text())
    assert stats["possible_tokens"] == 12 and stats["distinct_tokens"] <= 12
    assert "phones" not in stats  # the letter corpus has no alignments
    dictionary = (dest / "dict.txt").read_text().split()
    assert all(t.isdigit() for t in dictionary[::2])
    assert units_main(["--manifest-dir", str(data), "--dest", str(dest), "--clusters-like",
                       str(tmp_path / "missing.json")]) == 1


@pytest.mark.slow
def test_tiny_reproduction_end_to_end_and_rerun(tmp_path, capsys):
    data = tmp_path / "data"
    write_letter_corpus(str(data))
    out = tmp_path / "results"
    argv = ["--out", str(out), "--manifest-dir", str(data), "--jobs", "1", *TINY]
    assert main(argv) == 0
    text = (out / "tables.md").read_text()
    table1 = text.split("## Table 1")[1].split("## Table 2")[0]
    for system in list(SYSTEMS):
        row = next(line for line in table1.splitlines() if line.startswith(f"| {ROW_NAMES[system]} |"))
        assert "-" not in row.split(" | ")[1].split(" (")[0], row  # every row scored
    assert re.search(r"char ConvLM \| - \| - \| \d+\.\d\d / \d+\.\d\d", table1)
    for png in ("curves.png", "units.png", "error_rates_ltr.png", "error_rates_phn.png", "valid_curves.png"):
        assert (out / png).stat().st_size > 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("reproduce done in") and "48 stages run, 0 skipped" in summary
    # 4 updates leave some acoustic models on CTC's all-blank plateau: each ran again, as its
    # fairseq-train log says, and tables.md names those that did, with the seed each kept
    again = []
    for log in sorted((out / "logs").glob("am_*.log")):
        valid = log_records(str(log), "valid")
        assert valid and all("valid_output_ratio" in record for record in valid)
        seeds = re.findall(r"^\$ fairseq-train .* --seed (\d+) ", log.read_text(), re.M)
        assert seeds == [str(1 + 100 * run) for run in range(len(seeds))] and len(seeds) <= 3
        assert len(seeds) == 3 or float(valid[-1]["valid_output_ratio"]) >= 0.5
        if len(seeds) > 1:
            stage = log.stem.replace("_", "/", 2)
            again.append(f"- {stage}: run {len(seeds)}, `--seed {seeds[-1]}`")
    listed = text.split("## Acoustic models trained again")[1].split("\n## ")[0] if again else ""
    assert sorted(line for line in listed.splitlines() if line.startswith("- ")) == again

    # unchanged rerun: nothing runs; a changed AM setting reruns that AM and its decoding only
    assert main(argv + ["--stages", "decode/phn/logmel"]) == 0
    assert "0 stages run, 2 skipped" in capsys.readouterr().out.splitlines()[-1]
    assert main(argv + ["--set", "am_updates=5", "--stages", "decode/phn/logmel"]) == 0
    assert "2 stages run, 0 skipped" in capsys.readouterr().out.splitlines()[-1]


def test_seeds_add_one_chain_per_seed_sharing_the_corpus_and_the_lms(tmp_path):
    out = tmp_path / "res"
    assert main(["--out", str(out), "--dry-run", "--demo", "--seeds", "3"]) == 0
    script = (out / "commands.sh").read_text()
    stages = re.findall(r"^# == (\S+)$", script, re.M)
    single = ["corpus", "pretrain/wav2vec", "pretrain/gumbel", "units/gumbel", "bert/gumbel",
              "features/wav2vec", "features/gumbel"] + \
             [f"{k}/ltr/{s}" for k in ("am", "decode") for s in ("logmel", "wav2vec", "gumbel", "gumbel_bert")]
    shared = ["corpus", "lm/4gram"]
    expected = single + ["lm/4gram"] + [f"seed{s}/{n}" for s in (2, 3) for n in single if n not in shared]
    assert sorted(stages) == sorted(expected)
    # each chain trains with its own seed into its own folder, on the one corpus, with the one LM
    chain = script.split("# == seed2/pretrain/gumbel\n")[1].split("\n")[0]
    assert "--seed 2 " in chain and f"--save-dir {out}/seed2/pretrain/gumbel " in chain
    assert f"fairseq-train {out}/corpus " in chain
    decode = script.split("# == seed3/decode/ltr/gumbel_bert\n")[1].split("# ==")[0]
    assert f"{out}/lm/4gram/lm.bin" in decode and f"{out}/seed3/am/ltr/gumbel_bert/checkpoint_best.pt" in decode
    assert script.count("manifests.synth") == 1 and script.count("cli.lm ngram") == 1
    # an acoustic model on CTC's all-blank plateau trains again with seeds of its chain's own
    am = script.split("# == seed3/am/ltr/gumbel_bert\n")[1].split("# ==")[0]
    assert "--seed 3 " in am and am.rstrip().endswith("from scratch with --seed 103, then 203")
    assert script.count("from scratch with --seed") == 3 * 4  # acoustic models only
    # the first chain is the single-seed run itself: a demo run before is reused as it is
    every = stage_hashes(build_seed_stages(_layout(out, out / "corpus"), EMBEDDED, [1, 2, 3]), str(out))
    alone = stage_hashes(build_stages(_layout(out, out / "corpus"), EMBEDDED), str(out))
    assert all(every[name] == alone[name] for name in alone)
    assert every["seed2/pretrain/gumbel"] != every["pretrain/gumbel"]
    # --stages globs reach every chain
    assert main(["--out", str(out), "--dry-run", "--seeds", "2", "--stages", "bert/gumbel"]) == 0
    stages = re.findall(r"^# == (\S+)$", (out / "commands.sh").read_text(), re.M)
    assert stages == ["corpus", "pretrain/gumbel", "units/gumbel", "bert/gumbel",
                      "seed2/pretrain/gumbel", "seed2/units/gumbel", "seed2/bert/gumbel"]
    # a glob naming one chain selects in that chain alone
    assert main(["--out", str(out), "--dry-run", "--seeds", "3", "--stages", "seed3/bert/gumbel"]) == 0
    stages = re.findall(r"^# == (\S+)$", (out / "commands.sh").read_text(), re.M)
    assert stages == ["corpus", "seed3/pretrain/gumbel", "seed3/units/gumbel", "seed3/bert/gumbel"]


def test_plateau_notes_name_the_chain_and_only_models_below_the_ratio(tmp_path):
    from fairseq_vqw2v.reproduce.tables import chain_results, plateau_notes

    ref = "aa b k d"
    for chain, hyp in (("", "aa b"), ("seed2", "aa")):  # 0.5 and 0.25 phones per reference phone
        _write_generate(tmp_path / chain / "decode" / "phn" / "gumbel_bert" / "viterbi" / "generate-test.txt",
                        [(ref, hyp)])
    # the first chain is at the bound (0.5), not below it
    assert plateau_notes(chain_results(str(tmp_path), ["", "seed2"]), ["", "seed2"]) == [
        "- Gumbel + BERT, seed2: test PER 75.00, its greedy output 0.25 phones per reference phone"]
    assert plateau_notes(chain_results(str(tmp_path), [""]), [""]) == []


def test_seed_table_curves_and_unigram_perplexity(tmp_path):
    from fairseq_vqw2v.decoding.scoring import ErrorRates
    from fairseq_vqw2v.reproduce.tables import seed_table, training_curves, unigram_perplexity, valid_curve

    def rates(ler):
        return ErrorRates(unit_errors=int(ler * 10), units=1000)

    chains = [{"logmel": {"viterbi": {"valid": rates(30.0), "test": rates(32.0)}}},
              {"logmel": {"viterbi": {"valid": rates(34.0), "test": rates(36.0)}}},
              {}]
    table = "\n".join(seed_table(chains, "ltr"))
    assert "| log-mel baseline | 32.00 ± 2.83 (n=2) | 34.00 ± 2.83 (n=2) | - | - |" in table
    assert "wav2vec" not in table  # rows without any cell are left out

    log = tmp_path / "am.log"
    line = '2026-01-01 00:00:00 | INFO | {} | {}\n'
    log.write_text(line.format("train_inner", json.dumps({"num_updates": "50", "loss": "9"}))
                   + line.format("valid", json.dumps({"valid_ler": "80.5", "valid_num_updates": "50"}))
                   + "garbage | valid | {not json\n"
                   + line.format("valid", json.dumps({"valid_ler": "60", "valid_num_updates": "100"}))
                   # a resumed run validates update 100 again: its last value counts
                   + line.format("valid", json.dumps({"valid_ler": "59", "valid_num_updates": "100"})))
    assert valid_curve(str(log), "ler") == [(50, 80.5), (100, 59.0)]
    assert valid_curve(str(tmp_path / "missing.log"), "ler") == []
    # a restarted run logs update 50 again: its loss counts
    with open(log, "a") as f:
        f.write(line.format("train_inner", json.dumps({"num_updates": "50", "loss": "7"})))
    assert training_curves(str(log)) == [(50, 7.0)]

    units = tmp_path / "units"
    units.mkdir()
    (units / "train.src").write_text("a a a b\nb b a\n")  # a: 4, b: 3
    (units / "valid.src").write_text("a a b\n")
    # add-one over {a, b}: p(a) = 5/9, p(b) = 4/9
    expected = math.exp(-(2 * math.log(5 / 9) + math.log(4 / 9)) / 3)
    assert unigram_perplexity(str(units), dedup_units=False) == pytest.approx(expected)
    # de-duplicated: train a b / b a (a: 2, b: 2), valid a b: p = 3/6 each
    assert unigram_perplexity(str(units), dedup_units=True) == pytest.approx(2.0)
    assert unigram_perplexity(str(tmp_path / "nowhere"), dedup_units=False) is None
