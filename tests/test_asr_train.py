"""The acoustic model end to end through fairseq-train and fairseq-generate (subprocesses)."""

import os
import re

import pytest

from _asr_util import train_args, write_letter_corpus, write_upstreams
from _pretraining_util import train_losses
from fairseq_vqw2v.checkpoint import load_fairseq_checkpoint


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("asr_train")
    write_letter_corpus(str(root / "data"))
    vq, bert = write_upstreams(str(root))
    return root, vq, bert


@pytest.fixture(scope="module")
def logmel_am(corpus, fairseq_cli):
    """A log-mel letter AM trained for 60 updates (shared by the decoding tests)."""
    root, _, _ = corpus
    out = fairseq_cli("train", *train_args(root / "data", root / "am_logmel", 60, "--input", "logmel"))
    assert out.returncode == 0, out.stderr[-3000:]
    return root / "am_logmel" / "checkpoint_last.pt", train_losses(out.stdout)


def hypotheses(stdout):
    """{id: (score, text)} of fairseq-generate's H- lines, and the decoded summary line."""
    hyps = {int(m[1]): (float(m[2]), m[3]) for m in re.finditer(r"^H-(\d+)\t(\S+)\t(.*)$", stdout, re.M)}
    return hyps


def summary(stdout):
    m = re.search(r"decoded (\d+) utterances: (.*)$", stdout, re.M)
    assert m, stdout[-2000:]
    return int(m[1]), m[2]


def test_logmel_am_learns(logmel_am):
    _, stats = logmel_am
    first = sum(float(stats[u]["loss"]) for u in (1, 2, 3)) / 3
    last = sum(float(stats[u]["loss"]) for u in (58, 59, 60)) / 3
    assert last < 0.5 * first, (first, last)


@pytest.mark.parametrize("kind, extra", [
    ("wav2vec", []),
    ("units", []),
    ("bert", []),
    ("bert", ["--finetune-upstream", "--freeze-upstream-updates", "5"]),
])
def test_upstream_input_kinds_train_and_record_their_upstream(corpus, kind, extra, fairseq_cli):
    root, vq, bert = corpus
    save = root / f"am_{kind}_{len(extra)}"
    out = fairseq_cli("train", *train_args(root / "data", save, 30, "--input", kind, "--upstream", vq,
                                           "--bert", bert, *extra))
    assert out.returncode == 0, out.stderr[-3000:]
    stats = train_losses(out.stdout)
    assert float(stats[30]["loss"]) < float(stats[1]["loss"])
    state = load_fairseq_checkpoint(str(save / "checkpoint_last.pt"))
    model_cfg = state["cfg"]["model"]
    assert model_cfg["input"] == kind and model_cfg["upstream"] == vq
    assert len(model_cfg["upstream_sha256"]) == 64
    assert not [k for k in state["model"] if k.startswith("frontend.upstreams.")]
    assert any(k.startswith("frontend.bert.") for k in state["model"]) == bool(extra)


def test_generate_viterbi_scores_and_is_batch_invariant(corpus, logmel_am, fairseq_cli):
    root, _, _ = corpus
    am, _ = logmel_am
    runs = []
    for batch in (1, 4):
        out = fairseq_cli("generate", root / "data", "--task", "vqw2v_asr", "--path", am,
                          "--gen-subset", "test", "--batch-size", batch, "--post-process", "letter",
                          "--results-path", root / f"res{batch}")
        assert out.returncode == 0, out.stderr[-3000:]
        text = (root / f"res{batch}" / "generate-test.txt").read_text()
        runs.append((hypotheses(text), summary(out.stdout + out.stderr)))
    (h1, s1), (h4, s4) = runs
    assert s1 == s4 and s1[0] == 6
    assert h1.keys() == h4.keys() == set(range(6))
    for i in h1:
        assert h1[i][1] == h4[i][1]
        assert h1[i][0] == pytest.approx(h4[i][0], rel=1e-5)


def test_decoding_refuses_a_different_upstream(corpus, fairseq_cli):
    root, vq, bert = corpus
    save = root / "am_wav2vec_0"
    if not (save / "checkpoint_last.pt").exists():
        pytest.skip("needs the wav2vec AM of test_upstream_input_kinds_train_and_record_their_upstream")
    other = root / "other_vq.pt"
    other.write_bytes(open(vq, "rb").read() + b"\0")
    out = fairseq_cli("generate", root / "data", "--task", "vqw2v_asr", "--path", save / "checkpoint_last.pt",
                      "--gen-subset", "test", "--batch-size", 4, "--upstream", other)
    assert out.returncode != 0
    assert f"--upstream {other}: this file" in out.stderr
    assert "is not the checkpoint the acoustic model was trained on" in out.stderr


def test_training_resumes_from_its_last_checkpoint(corpus, fairseq_cli):
    root, _, _ = corpus
    whole = fairseq_cli("train", *train_args(root / "data", root / "resume_whole", 12, "--input", "logmel"))
    first = fairseq_cli("train", *train_args(root / "data", root / "resume_parts", 7, "--input", "logmel"))
    rest = fairseq_cli("train", *train_args(root / "data", root / "resume_parts", 12, "--input", "logmel"))
    for out in (whole, first, rest):
        assert out.returncode == 0, out.stderr[-3000:]
    resumed = train_losses(rest.stdout)
    assert min(resumed) == 8  # continued after update 7, not from scratch
    assert float(resumed[12]["loss"]) == pytest.approx(float(train_losses(whole.stdout)[12]["loss"]), rel=1e-4)


@pytest.fixture(scope="module")
def lm(corpus):
    """Word 3-gram + lexicon and a char 5-gram from the train transcripts."""
    from fairseq_vqw2v.cli.lm import main as lm_main

    root, _, _ = corpus
    lm_dir, text = root / "lm", root / "data" / "train.wrd"
    letters = str(root / "data" / "dict.ltr.txt")  # written by the AM fixture's training
    assert lm_main(["ngram", str(text), str(lm_dir), "--order", "3", "--discount-fallback",
                    "--letter-dict", letters]) == 0
    assert lm_main(["charlm-data", str(text), str(lm_dir / "char"), "--char-order", "5",
                    "--discount-fallback"]) == 0
    return lm_dir


def generate(fairseq_cli, root, am, split, *flags):
    out = fairseq_cli("generate", root / "data", "--task", "vqw2v_asr", "--path", am, "--gen-subset", split,
                      "--batch-size", 4, *flags)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_generate_with_kenlm_and_char_lm(corpus, logmel_am, lm, fairseq_cli):
    root, _, _ = corpus
    am, _ = logmel_am
    lexicon_words = {line.split("\t")[0] for line in (lm / "lexicon.txt").read_text().splitlines()}
    decoders = {
        "kenlm": ["--decoder", "kenlm", "--lexicon", lm / "lexicon.txt", "--decoder-lm", lm / "lm.bin"],
        "charlm": ["--decoder", "charlm", "--charlm-type", "kenlm", "--decoder-lm", lm / "char" / "charlm.bin"],
    }
    for name, flags in decoders.items():
        out = generate(fairseq_cli, root, am, "test", "--post-process", "letter", "--beam", 20,
                       "--lm-weight", 1.0, *flags)
        n, rates = summary(out.stdout + out.stderr)
        assert n == 6 and rates.startswith("WER "), name
        if name == "kenlm":
            for _, hyp in hypotheses(out.stdout).values():
                assert set(hyp.split()) <= lexicon_words


def test_tune_finds_the_setting_that_generate_then_reproduces(corpus, logmel_am, lm, fairseq_cli):
    import json

    from fairseq_vqw2v.cli.tune import main as tune_main

    root, _, _ = corpus
    am, _ = logmel_am
    best = root / "tune" / "best.json"
    flags = ["--lexicon", lm / "lexicon.txt", "--decoder-lm", lm / "lm.bin"]
    assert tune_main(["--path", str(am), "--data", str(root / "data"), "--subset", "valid", "--beam", "20",
                      "--lm-weights=0,1,3", "--word-scores=-1,1", "--out", str(best), *map(str, flags)]) == 0
    setting = json.loads(best.read_text())
    assert setting["points"] == 6 and setting["lm_weight"] in (0, 1, 3) and setting["word_score"] in (-1, 1)
    out = generate(fairseq_cli, root, am, "valid", "--decoder", "kenlm", "--beam", 20,
                   "--decoder-settings", best, *flags)
    _, rates = summary(out.stdout + out.stderr)
    assert rates.startswith(f"WER {setting['wer']:.2f} ")


def test_score_cli_tables_generate_outputs(corpus, logmel_am, lm, fairseq_cli):
    from fairseq_vqw2v.cli.score import main as score_main

    root, _, _ = corpus
    am, _ = logmel_am
    results = root / "results"
    summaries = {}
    for decoder, flags in (("viterbi", []), ("kenlm", ["--lexicon", lm / "lexicon.txt", "--decoder-lm", lm / "lm.bin"])):
        for split in ("valid", "test"):
            out = generate(fairseq_cli, root, am, split, "--decoder", decoder, "--lm-weight", 1,
                           "--beam", 20, "--results-path", results / "logmel" / decoder, *flags)
            summaries[decoder, split] = summary(out.stdout + out.stderr)[1]
    assert score_main([str(results)]) == 0
    table = (results / "table.md").read_text().splitlines()
    assert table[0].startswith("| system | valid no LM (LER / WER) | test no LM (LER / WER) | valid 4-gram LM")
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[0] == "logmel"
    for cell, key in zip(cells[1:], [("viterbi", "valid"), ("viterbi", "test"), ("kenlm", "valid"), ("kenlm", "test")]):
        wer, ler = re.match(r"WER ([\d.]+) \(\d+/\d+\), LER ([\d.]+)", summaries[key]).groups()
        assert cell == f"{ler} / {wer}"
    assert (results / "table.png").stat().st_size > 0


@pytest.mark.slow
def test_generate_with_a_char_convlm_trained_by_stock_fairseq(corpus, logmel_am, lm, fairseq_cli):
    """The paper's char ConvLM path as a user runs it: charlm-data, fairseq-preprocess, stock
    fairseq-train --task language_modeling --arch fconv_lm, then decoding with it."""
    root, _, _ = corpus
    am, _ = logmel_am
    char = lm / "char"
    prep = fairseq_cli("preprocess", "--only-source", "--trainpref", char / "train.txt", "--validpref",
                       char / "train.txt", "--srcdict", char / "dict.txt", "--destdir", char / "bin",
                       "--workers", "1", plugin=False)
    assert prep.returncode == 0, prep.stderr[-2000:]
    train = fairseq_cli("train", char / "bin", "--task", "language_modeling", "--arch", "fconv_lm",
                        "--decoder-layers", "[(64, 3)] * 3", "--decoder-embed-dim", "32",
                        "--decoder-out-embed-dim", "32", "--tokens-per-sample", "128",
                        "--sample-break-mode", "eos", "--max-tokens", "2048", "--optimizer", "adam",
                        "--lr", "1e-3", "--max-update", "30", "--save-dir", char / "ckpt",
                        "--no-epoch-checkpoints", "--num-workers", "0", plugin=False)
    assert train.returncode == 0, train.stderr[-2000:]
    for lexicon in ([], ["--lexicon", lm / "lexicon.txt"]):
        out = generate(fairseq_cli, root, am, "test", "--decoder", "charlm", "--charlm-type", "fconv",
                       "--decoder-lm", char / "ckpt" / "checkpoint_last.pt", "--beam", 10,
                       "--lm-weight", 0.5, *lexicon)
        n, rates = summary(out.stdout + out.stderr)
        assert n == 6 and rates.startswith("WER ")


def test_truncated_last_checkpoint_names_the_intact_one(corpus, fairseq_cli):
    """A run killed while saving leaves a cut-off checkpoint_last.pt: the restart names it and the
    newest intact checkpoint instead of failing deep in torch.load."""
    root, _, _ = corpus
    save = root / "truncated"
    out = fairseq_cli("train", *train_args(root / "data", save, 4, "--input", "logmel",
                                           "--save-interval-updates", "2"))
    assert out.returncode == 0, out.stderr[-3000:]
    last = save / "checkpoint_last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    out = fairseq_cli("train", *train_args(root / "data", save, 6, "--input", "logmel",
                                           "--save-interval-updates", "2"))
    assert out.returncode != 0
    assert f"{last}: truncated checkpoint" in out.stderr
    intact = re.search(r"--restore-file (\S+)", out.stderr)[1]
    assert os.path.dirname(intact) == str(save) and intact != str(last)
    assert load_fairseq_checkpoint(intact)["optimizer_history"][-1]["num_updates"] > 0


def test_decoding_with_other_labels_is_refused(corpus, logmel_am, fairseq_cli):
    root, _, _ = corpus
    am, _ = logmel_am
    out = fairseq_cli("generate", root / "data", "--task", "vqw2v_asr", "--path", am, "--gen-subset", "test",
                      "--batch-size", 4, "--labels", "phn")
    assert out.returncode != 0
    assert "the acoustic model was trained on --labels ltr: decode it with --labels ltr" in out.stderr
