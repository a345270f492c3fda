"""CTC decoders on synthetic emissions: greedy, KenLM lexicon beam search, char-LM beam search.

The LMs are real: n-grams estimated by KenLM's lmplz (built by `make setup`) on a small corpus, a
tiny fairseq fconv_lm trained for a few steps in-process.
"""

import math
import os
import string
from pathlib import Path

import pytest
import torch

from fairseq.data import Dictionary

from fairseq_vqw2v.checkpoint import fairseq_envelope
from fairseq_vqw2v.data.text_norm import words_to_letters
from fairseq_vqw2v.decoding import lm_build
from fairseq_vqw2v.decoding.config import BeamSearchConfig
from fairseq_vqw2v.errors import InputError, MissingInputError
from fairseq_vqw2v.decoding.lexicon import write_lexicon
from fairseq_vqw2v.decoding.viterbi import ViterbiDecoder, ctc_greedy

CORPUS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat ran to the dog",
    "the dog ran to a cat",
    "the cat sat on a log",
    "a dog sat on the mat",
]
SENTENCE = "the cat sat on the mat"


def tools_or_skip():
    missing = lm_build.kenlm_tools_missing()
    if missing:
        pytest.skip(missing)


@pytest.fixture(scope="module")
def letters():
    d = Dictionary()
    for symbol in "|" + string.ascii_lowercase + "'":
        d.add_symbol(symbol)
    return d


@pytest.fixture(scope="module")
def word_lm(tmp_path_factory):
    """(lexicon, KenLM binary) of CORPUS."""
    tools_or_skip()
    out = tmp_path_factory.mktemp("word_lm")
    lm_build.build_arpa(CORPUS, str(out / "lm.arpa"), order=3, discount_fallback=True,
                        progress=False)
    lm_build.build_binary(str(out / "lm.arpa"), str(out / "lm.bin"), progress=False)
    write_lexicon(str(out / "lexicon.txt"), sorted({w for s in CORPUS for w in s.split()}))
    return str(out / "lexicon.txt"), str(out / "lm.bin")


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    """Char 6-gram KenLM of CORPUS written as letters."""
    tools_or_skip()
    out = tmp_path_factory.mktemp("char_lm")
    lm_build.build_arpa([words_to_letters(s) for s in CORPUS], str(out / "char.arpa"), order=6,
                        discount_fallback=True, progress=False)
    return str(out / "char.arpa")


def emissions_for(d: Dictionary, letters: str, confusions=(), seed=0) -> torch.Tensor:
    """T x V log-probabilities spelling ``letters`` (2 frames per token, a blank between tokens),
    with noise; ``confusions`` = (position in the token sequence, wrong letter) pairs where the
    wrong letter gets the higher probability."""
    g = torch.Generator().manual_seed(seed)
    tokens = letters.split()
    wrong = dict(confusions)
    frames = []
    for i, token in enumerate(tokens):
        for _ in range(2):
            logits = 0.5 * torch.randn(len(d), generator=g)
            logits[d.index(token)] += 6.0
            if i in wrong:
                logits[d.index(wrong[i])] += 7.5
            frames.append(logits)
        blank = 0.5 * torch.randn(len(d), generator=g)
        blank[d.bos()] += 6.0
        frames.append(blank)
    return torch.log_softmax(torch.stack(frames), dim=-1)


def noisy_sentence(d):
    # "the cat sat on the mat" with c -> k and m -> n preferred by the acoustics
    letters = words_to_letters(SENTENCE).split()
    return emissions_for(d, words_to_letters(SENTENCE), [(4, "k"), (len(letters) - 4, "n")])


def text(d, hypo):
    return d.string(hypo["tokens"])


def test_ctc_greedy_collapses_repeats_and_drops_blanks(letters):
    a, b = letters.index("a"), letters.bos()
    path = torch.tensor([a, a, b, a, b, b, letters.index("|")])
    emissions = torch.nn.functional.one_hot(path, len(letters)).float().log()
    assert ctc_greedy(emissions, b).tolist() == [a, a, letters.index("|")]


def test_viterbi_decoder_batch(letters):
    first = emissions_for(letters, "h i |")
    second = emissions_for(letters, "y o u |", seed=1)
    batch = torch.full((2, second.size(0) + 3, len(letters)), -10.0)
    batch[:, :, letters.eos()] = 0.0  # padding frames that would decode to </s>
    batch[0, : first.size(0)] = first
    batch[1, : second.size(0)] = second
    lengths = torch.tensor([first.size(0), second.size(0)])
    hypos = ViterbiDecoder(letters).decode(batch, lengths)
    assert [h[0]["words"] for h in hypos] == [["hi"], ["you"]]
    assert text(letters, hypos[1][0]) == "y o u |"
    assert hypos[0][0]["score"] == pytest.approx(first.max(dim=-1).values.sum().item(), rel=1e-5)
    # untrained models emit specials: they are dropped, and phone dictionaries have no words
    phones = Dictionary()
    for p in ("sil", "aa", "b"):
        phones.add_symbol(p)
    path = torch.tensor([phones.index("aa"), phones.unk(), phones.index("b"), phones.bos()])
    emissions = torch.nn.functional.one_hot(path, len(phones)).float().log().unsqueeze(0)
    (hypo,), = ViterbiDecoder(phones).decode(emissions, torch.tensor([4]))
    assert phones.string(hypo["tokens"]) == "aa b" and hypo["words"] == []
    with pytest.raises(ValueError, match="emissions must be B x T x 7"):
        ViterbiDecoder(phones).decode(batch, lengths)


def test_kenlm_decoder_recovers_what_greedy_gets_wrong(letters, word_lm):
    from fairseq_vqw2v.decoding.kenlm_decoder import KenLMLexiconDecoder

    emissions = noisy_sentence(letters).unsqueeze(0)
    lengths = torch.tensor([emissions.size(1)])
    (greedy,), = ViterbiDecoder(letters).decode(emissions, lengths)
    assert greedy["words"] == "the kat sat on the nat".split()
    lexicon, lm = word_lm
    decoder = KenLMLexiconDecoder(letters, lexicon, lm, BeamSearchConfig(nbest=3))
    (hypos,) = decoder.decode(emissions, lengths)
    assert hypos[0]["words"] == SENTENCE.split()
    assert letters.string(hypos[0]["tokens"]).replace("|", "").split() == list(SENTENCE.replace(" ", ""))
    assert len(hypos) == 3 and hypos[0]["score"] >= hypos[1]["score"] >= hypos[2]["score"]


def test_kenlm_decoder_hypotheses_do_not_depend_on_the_batch(letters, word_lm):
    from fairseq_vqw2v.decoding.kenlm_decoder import KenLMLexiconDecoder

    utterances = [noisy_sentence(letters)] + [
        emissions_for(letters, words_to_letters(s), [(1, "q")], seed=i)
        for i, s in enumerate(CORPUS[1:4], start=1)
    ]
    decoder = KenLMLexiconDecoder(letters, *word_lm)
    alone = [decoder.decode(u.unsqueeze(0), torch.tensor([u.size(0)]))[0] for u in utterances]
    longest = max(u.size(0) for u in utterances)
    batch = torch.randn(len(utterances), longest, len(letters)).log_softmax(-1)
    for i, u in enumerate(utterances):
        batch[i, : u.size(0)] = u
    together = decoder.decode(batch, torch.tensor([u.size(0) for u in utterances]))
    assert [h[0]["words"] for h in together] == [h[0]["words"] for h in alone]
    assert [h[0]["score"] for h in together] == [h[0]["score"] for h in alone]
    assert [h[0]["words"] for h in alone][1:] == [s.split() for s in CORPUS[1:4]]


def test_kenlm_decoder_input_errors(letters, word_lm, tmp_path):
    from fairseq_vqw2v.decoding.kenlm_decoder import KenLMLexiconDecoder

    lexicon, lm = word_lm
    with pytest.raises(FileNotFoundError, match="nowhere.bin: KenLM model not found"):
        KenLMLexiconDecoder(letters, lexicon, str(tmp_path / "nowhere.bin"))
    with pytest.raises(FileNotFoundError, match="none.txt: lexicon not found"):
        KenLMLexiconDecoder(letters, str(tmp_path / "none.txt"), lm)
    bad = tmp_path / "bad_lexicon.txt"
    bad.write_text("cat\tc a t |\ncafé\tc a f é |\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad_lexicon.txt:2: word 'café' is spelled with \['é'\]"):
        KenLMLexiconDecoder(letters, str(bad), lm)


def _corrupt_lms(folder, lm_bin):
    """(file, the end of its error) for files given as a KenLM model that are none."""
    binary = Path(lm_bin).read_bytes()
    arpa = Path(lm_bin.replace(".bin", ".arpa")).read_bytes()
    files = {
        "random.bin": (bytes(range(256)) * 4, r"not a KenLM model: neither a KenLM binary "
                       r"\(build_binary\) nor an ARPA file \(it starts with b'\\x00\\x01"),
        "notes.txt": (b"the cat sat\n", r"not a KenLM model: neither .* \(it starts with b'the cat"),
        "truncated.bin": (binary[: len(binary) // 2], r"not a usable KenLM model \(truncated or "
                          r"corrupt\?\): Binary file has size \d+ but the headers say it should"),
        "truncated.arpa": (arpa[: len(arpa) // 2], r"not a usable KenLM model \(truncated or "
                           r"corrupt\?\): .*"),
    }
    for name, (data, message) in files.items():
        (folder / name).write_bytes(data)
        yield str(folder / name), message


def test_corrupt_kenlm_models_are_named_before_decoding(letters, word_lm, tmp_path):
    from fairseq_vqw2v.decoding.charlm import CharLMDecoder
    from fairseq_vqw2v.decoding.kenlm_decoder import KenLMLexiconDecoder
    from fairseq_vqw2v.errors import InputError

    lexicon, lm = word_lm
    for path, message in _corrupt_lms(tmp_path, lm):
        with pytest.raises(InputError, match=f"^{path}: {message}"):
            KenLMLexiconDecoder(letters, lexicon, path)
    with pytest.raises(InputError, match=r"random\.bin: not a char KenLM model"):
        CharLMDecoder(letters, str(tmp_path / "random.bin"), "kenlm")


def test_char_kenlm_decoding_with_and_without_lexicon(letters, char_lm, word_lm):
    from fairseq_vqw2v.decoding.charlm import CharLMDecoder

    emissions = noisy_sentence(letters).unsqueeze(0)
    lengths = torch.tensor([emissions.size(1)])
    free = CharLMDecoder(letters, char_lm, "kenlm", search=BeamSearchConfig(lm_weight=1.0))
    (hypos,) = free.decode(emissions, lengths)
    assert hypos[0]["words"] == SENTENCE.split()
    lexicon, _ = word_lm
    constrained = CharLMDecoder(letters, char_lm, "kenlm", lexicon, BeamSearchConfig(lm_weight=1.0))
    (hypos,) = constrained.decode(emissions, lengths)
    assert hypos[0]["words"] == SENTENCE.split()
    # without the LM's help the acoustics win: the LM is what corrects the letters
    (hypos,) = CharLMDecoder(letters, char_lm, "kenlm", search=BeamSearchConfig(lm_weight=0.0)).decode(emissions, lengths)
    assert hypos[0]["words"] == "the kat sat on the nat".split()
    with pytest.raises(ValueError, match="lm_type must be one of"):
        CharLMDecoder(letters, char_lm, "transformer")


def test_factory_builds_the_configured_decoder_from_fairseqs_config_node(letters, word_lm,
                                                                        tmp_path):
    """build_decoder takes the DecoderConfig as fairseq hands it over (an omegaconf node inside
    the task's config), applies a tune result, and names the flag a decoder lacks and a tune
    result that is missing, undecodable or not one."""
    import json

    from omegaconf import OmegaConf

    from fairseq_vqw2v.decoding.config import DecoderConfig
    from fairseq_vqw2v.decoding.factory import build_decoder
    from fairseq_vqw2v.decoding.kenlm_decoder import KenLMLexiconDecoder
    from fairseq_vqw2v.tasks.asr import AsrConfig

    lexicon, lm = word_lm
    settings = tmp_path / "best.json"
    settings.write_text(json.dumps({"lm_weight": 0.5, "word_score": 1.5}))
    cfg = OmegaConf.structured(AsrConfig(data="x"))
    cfg.decoding.decoder, cfg.decoding.lexicon, cfg.decoding.decoder_lm = "kenlm", lexicon, lm
    cfg.decoding.search.beam = 7
    decoder = build_decoder(cfg.decoding, letters)
    assert isinstance(decoder, KenLMLexiconDecoder)
    assert (decoder.cfg.beam, decoder.cfg.lm_weight, decoder.cfg.word_score) == (7, 2.0, -1.0)
    cfg.decoding.decoder_settings = str(settings)
    decoder = build_decoder(cfg.decoding, letters)
    assert (decoder.cfg.beam, decoder.cfg.lm_weight, decoder.cfg.word_score) == (7, 0.5, 1.5)
    assert isinstance(build_decoder(DecoderConfig(), letters), ViterbiDecoder)
    with pytest.raises(ValueError, match="--decoder kenlm needs --lexicon PATH"):
        build_decoder(DecoderConfig(decoder="kenlm", decoder_lm=lm), letters)
    with pytest.raises(ValueError, match="--decoder charlm needs --decoder-lm PATH"):
        build_decoder(DecoderConfig(decoder="charlm"), letters)
    settings.write_text("{}")
    with pytest.raises(ValueError, match="best.json: not a tune CLI result"):
        build_decoder(cfg.decoding, letters)
    settings.write_bytes(b'{"lm_weight": 0.5,\n"word_score": \xff}')
    with pytest.raises(InputError, match=r"best.json:2: not UTF-8 text \(byte 0xff at column 15\)"):
        build_decoder(cfg.decoding, letters)
    cfg.decoding.decoder_settings = str(tmp_path / "missing.json")
    with pytest.raises(MissingInputError, match=r"missing.json: --decoder-settings file \(the tune "
                       r"CLI's result\) not found"):
        build_decoder(cfg.decoding, letters)


def train_fconv_char_lm(tmp_path, steps=150):
    """A tiny fconv_lm of fairseq's language_modeling task, trained on CORPUS as letters and
    saved as fairseq's trainer saves checkpoints (dict.txt next to it)."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(CORPUS) + "\n")
    corpus = lm_build.read_corpus(str(corpus_file))
    counts = lm_build.write_char_corpus(corpus, str(tmp_path / "train.txt"))
    lm_build.write_char_dictionary(counts, str(tmp_path / "dict.txt"))
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(tmp_path), "--task", "language_modeling", "--arch", "fconv_lm",
        "--decoder-layers", "[(64, 3)] * 2 + [(64, 2)]", "--decoder-embed-dim", "32",
        "--dropout", "0", "--tokens-per-sample", "64",
    ])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    d = task.target_dictionary
    lines = [[d.eos()] + [d.index(t) for t in words_to_letters(s).split()] + [d.eos()]
             for s in CORPUS]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        line = torch.tensor([lines[step % len(lines)]])
        log_probs = model.get_normalized_probs(model(line[:, :-1]), log_probs=True)
        loss = -log_probs.gather(-1, line[:, 1:].unsqueeze(-1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path / "checkpoint_best.pt"
    torch.save(fairseq_envelope(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
                                model.state_dict(), criterion_name="CrossEntropyCriterion",
                                num_updates=steps), path)
    return str(path), model.eval(), d, loss.item()


def test_fconv_char_lm_decoding(letters, tmp_path):
    from fairseq_vqw2v.decoding.charlm import CharLMDecoder, FConvCharLM, load_fconv_lm

    path, trained, lm_dict, loss = train_fconv_char_lm(tmp_path)
    assert loss < 0.5  # the LM has learnt the corpus
    model, loaded_dict = load_fconv_lm(path)
    assert loaded_dict.symbols == lm_dict.symbols
    # incremental, cached scores equal a full forward over the whole prefix
    lm = FConvCharLM(model, loaded_dict, letters)
    tokens = [letters.index(t) for t in words_to_letters("the cat").split()]
    state, scores = lm.start(False), []
    for t in tokens:
        state, s = lm.score(state, t)
        scores.append(s)
    prefix = torch.tensor([[lm_dict.eos()] + [lm_dict.index(letters[t]) for t in tokens]])
    with torch.no_grad():
        full = trained.get_normalized_probs(trained(prefix[:, :-1]), log_probs=True)[0]
    expected = full.gather(-1, prefix[0, 1:].unsqueeze(-1)).squeeze(-1)
    assert scores == pytest.approx(expected.tolist(), abs=1e-4)
    assert lm.score(state, letters.index("'"))[1] == -math.inf  # not in the LM's dictionary
    again = lm.score(lm.start(False), tokens[0])[1]  # a new utterance: cache rebuilt, same score
    assert again == pytest.approx(scores[0], abs=1e-6) and len(lm.states) == 2

    emissions = noisy_sentence(letters).unsqueeze(0)
    lengths = torch.tensor([emissions.size(1)])
    decoder = CharLMDecoder(letters, path, "fconv", search=BeamSearchConfig(lm_weight=1.0, beam=10))
    (hypos,) = decoder.decode(emissions, lengths)
    assert hypos[0]["words"] == SENTENCE.split()

    # reproduce's layout, lm/charlm/{dict.txt,ckpt/}, moved away from the data folder the
    # checkpoint records: the dictionary above the checkpoint's folder is found
    moved = tmp_path / "moved" / "charlm"
    (moved / "ckpt").mkdir(parents=True)
    os.replace(path, moved / "ckpt" / "checkpoint_best.pt")
    os.replace(tmp_path / "dict.txt", moved / "dict.txt")
    assert load_fconv_lm(str(moved / "ckpt" / "checkpoint_best.pt"))[1].symbols == lm_dict.symbols
    os.remove(moved / "dict.txt")
    with pytest.raises(FileNotFoundError, match="dict.txt is in none of"):
        load_fconv_lm(str(moved / "ckpt" / "checkpoint_best.pt"))


def test_fconv_checkpoint_with_code_or_another_model_is_rejected(letters, tmp_path):
    from fairseq_vqw2v.checkpoint import fairseq_safe_globals
    from fairseq_vqw2v.decoding.charlm import CharLMDecoder
    path, *_ = train_fconv_char_lm(tmp_path, steps=1)
    with fairseq_safe_globals():
        state = torch.load(path)
    state["cfg"]["model"].decoder_layers = "[(64, 3)] * len(open('/etc/passwd').read())"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"checkpoint_best.pt: cfg.model.decoder_layers is not a "
                                         r"literal: .* \(Call .* is not allowed\)"):
        CharLMDecoder(letters, path, "fconv")
    state["cfg"]["model"].decoder_layers = "[(64, 3)] * 2"
    state["cfg"]["model"].arch = state["cfg"]["model"]._name = "transformer_lm"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"checkpoint_best.pt: not a fconv_lm checkpoint"):
        CharLMDecoder(letters, path, "fconv")
