"""Unit quality against phones (unit_quality, data/alignments, logmel_kmeans): purity and PNMI
by hand and as fairseq's measure_teacher_quality computes them, frame-phone alignment on real flite audio, the
seeded k-means, the log-mel baseline and quantize --report."""

import json
import math
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from fairseq.examples.hubert.measure_teacher_quality import comp_joint_prob

from fairseq_vqw2v import logmel_kmeans
from fairseq_vqw2v import unit_quality as uq
from fairseq_vqw2v.cli import quantize
from fairseq_vqw2v.constants import SAMPLE_RATE
from fairseq_vqw2v.data import alignments as align
from fairseq_vqw2v.data.manifest import read_manifest
from fairseq_vqw2v.models.vq_wav2vec import VqWav2VecModel, arch_config
from fairseq_vqw2v.modules.logmel import LogMelFilterbank
from fairseq_vqw2v.modules.perplexity import perplexity
from manifests import synth

from _checkpoint_util import save_vq_checkpoint


def test_usage_stats_and_plot(tmp_path):
    # group 0 uses codes 0 and 1 equally, group 1 always code 5
    counts = Counter({"0-5": 50, "1-5": 50})
    stats = uq.usage_stats(counts, num_vars=320, groups=2)
    assert stats["tokens"] == 100 and stats["distinct_tokens"] == 2
    assert stats["distinct_codes_per_group"] == [2, 1]
    assert stats["code_perplexity"] == pytest.approx(2.0 + 1.0)
    assert stats["token_perplexity"] == pytest.approx(2.0)
    assert stats["bitrate"] == pytest.approx(100 * 2 * math.log2(320))
    assert stats["possible_tokens"] == 102400 and stats["max_code_perplexity"] == 640
    uq.plot_code_frequencies(counts, str(tmp_path / "freq.png"))
    assert (tmp_path / "freq.png").read_bytes()[:4] == b"\x89PNG"


def test_usage_perplexity_is_the_quantizers_perplexity():
    # 3:1 in group 0, uniform over 4 in group 1: exp(H) = 4 / 3^0.75 and 4
    counts = Counter({"0-0": 3, "0-1": 3, "0-2": 3, "1-3": 3})
    probs = torch.tensor([[9, 3, 0, 0], [3, 3, 3, 3]], dtype=torch.float64) / 12
    expected = 4 / 3 ** 0.75 + 4
    assert perplexity(probs).item() == pytest.approx(expected, rel=1e-6)
    assert uq.usage_stats(counts, num_vars=4, groups=2)["code_perplexity"] == pytest.approx(
        expected, rel=1e-12)


def table(rows, phones=None, units=None):
    counts = np.array(rows, dtype=np.int64)
    phones = phones or [f"p{i}" for i in range(counts.shape[0])]
    units = units or [f"u{j}" for j in range(counts.shape[1])]
    return uq.Cooccurrence(counts, phones, units)


def test_measures_by_hand():
    # P = [[.5, 0], [.25, .25]]: unit u0 is mostly p0, u1 always p1
    m = uq.phone_measures(table([[2, 0], [1, 1]]))
    assert m["phone_purity"] == pytest.approx(0.75)  # .5 (u0 -> p0) + .25 (u1 -> p1)
    assert m["unit_purity"] == pytest.approx(0.75)  # .5 (p0 -> u0) + .25 (p1 -> either)
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert m["mutual_information"] == pytest.approx(mi, abs=1e-6)
    assert m["pnmi"] == pytest.approx(mi / math.log(2), abs=1e-6)
    assert (m["frames"], m["phones"], m["units"]) == (4, 2, 2)


def test_measures_extremes():
    perfect = uq.phone_measures(table(np.diag([3, 5, 2])))
    assert perfect["phone_purity"] == perfect["unit_purity"] == pytest.approx(1.0)
    assert perfect["pnmi"] == pytest.approx(1.0, abs=1e-6)
    independent = uq.phone_measures(table(np.outer([1, 3], [2, 2, 4])))
    assert independent["pnmi"] == pytest.approx(0.0, abs=1e-6)
    assert independent["phone_purity"] == pytest.approx(0.75)  # every unit says p1
    # splitting a unit into two that follow the same phones changes no measure but H(unit)
    split = uq.phone_measures(table([[2, 2, 0], [1, 1, 4]]))
    merged = uq.phone_measures(table([[4, 0], [2, 4]]))
    for key in ("phone_purity", "pnmi", "mutual_information"):
        assert split[key] == pytest.approx(merged[key], abs=1e-6)
    assert split["unit_purity"] < merged["unit_purity"]
    with pytest.raises(ValueError, match="no frames"):
        uq.phone_measures(table([[0]]))


def plain_pnmi(phone_lines, unit_lines):
    """I(phone; unit) / H(phone) of the frames, counted without the module's table."""
    pairs = Counter((p, u) for ps, us in zip(phone_lines, unit_lines) for p, u in zip(ps, us))
    total = sum(pairs.values())
    p_phone, p_unit = Counter(), Counter()
    for (phone, unit), n in pairs.items():
        p_phone[phone] += n / total
        p_unit[unit] += n / total
    mi = sum(n / total * math.log(n / total / (p_phone[phone] * p_unit[unit]))
             for (phone, unit), n in pairs.items())
    return mi / -sum(p * math.log(p) for p in p_phone.values())


def test_cooccurrence_agrees_with_fairseq_and_plain_formulas(tmp_path):
    rng = np.random.RandomState(0)
    phone_lines = [[f"p{v}" for v in rng.randint(0, 5, n)] for n in (30, 17, 40)]
    # units follow phones half of the time
    unit_lines = [[p[1] if rng.rand() < 0.5 else str(rng.randint(0, 7)) for p in line]
                  for line in phone_lines]
    cooc = uq.cooccurrence(phone_lines, unit_lines)
    refs = {f"u{i}": line for i, line in enumerate(phone_lines)}
    hyps = {f"u{i}": line for i, line in enumerate(unit_lines)}
    p_xy, ref2pid, hyp2lid, total, _, _ = comp_joint_prob(refs, hyps)
    assert list(ref2pid) == cooc.phones and list(hyp2lid) == cooc.units
    np.testing.assert_allclose(cooc.counts / cooc.counts.sum(), p_xy)
    assert cooc.counts.sum() == total == 87

    p = cooc.counts / cooc.counts.sum()
    p_phone, p_unit = p.sum(1), p.sum(0)
    nz = p > 0
    mi = (p[nz] * np.log(p[nz] / np.outer(p_phone, p_unit)[nz])).sum()
    m = uq.phone_measures(cooc)
    assert m["pnmi"] == pytest.approx(mi / -(p_phone * np.log(p_phone)).sum(), abs=1e-6)
    assert m["phone_purity"] == pytest.approx(p.max(0).sum())
    assert m["unit_purity"] == pytest.approx(p.max(1).sum())

    uq.plot_cooccurrence(cooc, str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="where: utterance 2 has 17 phone frames and 3 unit"):
        uq.cooccurrence(phone_lines, [unit_lines[0], ["1"] * 3, unit_lines[2]], "where")


def test_frame_phones_pick_the_phone_at_the_frame_centre():
    segments = [("pau", 0.02), ("a", 0.05), ("b", 0.08)]
    # 25 ms frames every 10 ms: centres at 12.5, 22.5, ..., 72.5 ms
    assert align.frame_phones(segments, 7, 400) == ["pau", "a", "a", "a", "b", "b", "b"]
    # 20 ms frames: the centre of frame 1 (20 ms) is the end of pau, so it is a's
    assert align.frame_phones(segments, 2, 320) == ["pau", "a"]
    # centres just past the end (within the tolerance) take the last phone
    assert align.frame_phones(segments, 9, 400)[-1] == "b"
    with pytest.raises(ValueError, match=r"x.align:3: the alignment ends at 0.080 s"):
        align.frame_phones(segments, 20, 400, where="x.align:3")


def test_parse_alignment_errors():
    assert align.parse_alignment("pau:0.184 dh:0.233", "f:1") == [("pau", 0.184), ("dh", 0.233)]
    for line, reason in [("pau0.1", "expected 'phone:end_seconds'"), ("a:x", "expected"),
                         ("a:0.2 b:0.1", "segment .b:0.1. ends before"), ("", "empty alignment"),
                         (":0.1", "expected")]:
        with pytest.raises(ValueError, match=f"f:7: {reason}"):
            align.parse_alignment(line, "f:7")


def test_frame_windows_of_the_front_ends():
    model = VqWav2VecModel(arch_config("vq_wav2vec_tiny"))
    assert uq.frame_window(model.output_lengths) == 465
    assert uq.frame_window(LogMelFilterbank().output_lengths) == 400
    with pytest.raises(ValueError, match="not 160 samples apart"):
        uq.frame_window(lambda n: torch.div(n - 10, 80, rounding_mode="floor") + 1)


def test_kmeans_is_seeded_and_finds_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = torch.arange(3).repeat_interleave(50)
    x = centres[labels] + torch.randn(150, 2, generator=gen)
    a = logmel_kmeans.kmeans(x, 3, seed=3)
    assert torch.equal(a, logmel_kmeans.kmeans(x, 3, seed=3))
    found = logmel_kmeans.assign_clusters(x, a)
    # each true cluster maps to exactly one found cluster
    assert {(int(t), int(f)) for t, f in zip(labels, found)} == {(t, int(found[50 * t])) for t in range(3)}
    assert len(set(found.tolist())) == 3
    # duplicated frames and k = number of distinct points: still k distinct centroids
    dup = torch.cat([x[:4], x[:4]])
    assert len(torch.unique(logmel_kmeans.kmeans(dup, 4), dim=0)) == 4
    with pytest.raises(ValueError, match="1 <= k <= 8"):
        logmel_kmeans.kmeans(dup, 9)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synth.build(str(out), hours=0.003, seed=1, jobs=2, lm_words=1000)
    return out


def test_synth_alignments_match_phones_and_audio(corpus):
    for split in synth.SPLITS:
        manifest = read_manifest(str(corpus / f"{split}.tsv"))
        alignments = align.read_alignments(str(corpus / f"{split}.align"))
        with open(corpus / f"{split}.phn") as f:
            phones = f.read().splitlines()
        assert len(alignments) == len(manifest.entries) == len(phones)
        for i, (segments, (_, num_samples)) in enumerate(zip(alignments, manifest.entries)):
            assert [p for p, _ in segments if p != synth.SILENCE_PHONE] == phones[i].split()
            # audio ends at the last end time, or inside the final pau (kal16)
            assert segments[-1][0] == synth.SILENCE_PHONE
            assert segments[-2][1] < num_samples / SAMPLE_RATE <= segments[-1][1] + 0.01


def test_alignment_frames_follow_the_audio(corpus):
    """Frames labelled pau are quiet, speech frames loud, for the log-mel and encoder frames."""
    logmel = LogMelFilterbank(normalize=False)
    model = VqWav2VecModel(arch_config("vq_wav2vec_tiny"))
    manifest = str(corpus / "train.tsv")
    alignments = align.read_alignments(str(corpus / "train.align"))
    quiet, loud = [], []
    for i, frames in enumerate(logmel_kmeans.logmel_frames(manifest, logmel=logmel)):
        energy = frames.exp().sum(1).log()
        labels = align.frame_phones(alignments[i], len(frames), logmel.window_size)
        silent = torch.tensor([p == synth.SILENCE_PHONE for p in labels])
        quiet.append(energy[silent].mean())
        loud.append(energy[~silent].mean())
        # the encoder's frames (window 465) see the same phones, shifted by at most one frame
        num_samples = read_manifest(manifest).entries[i][1]
        enc = align.frame_phones(alignments[i], int(model.output_lengths(torch.tensor(num_samples))),
                              uq.frame_window(model.output_lengths))
        assert len(enc) in (len(labels), len(labels) - 1)
        assert sum(a != b for a, b in zip(enc, labels)) <= 0.15 * len(enc)
    assert all(q + 3 < s for q, s in zip(quiet, loud)), (quiet, loud)


def test_logmel_baseline_is_seeded_and_beats_chance(corpus):
    indices = list(range(len(read_manifest(str(corpus / "test.tsv")).entries)))
    cache = {}
    first = uq.logmel_kmeans_baseline(str(corpus), "test", 8, indices, cache=cache)
    assert list(cache) == ["train"]
    assert first == uq.logmel_kmeans_baseline(str(corpus), "test", 8, indices, cache=cache)
    assert first["fit_split"] == "train" and first["units"] == 8
    # chance: 8 random labels per frame
    alignments = align.read_alignments(str(corpus / "test.align"))
    frames = logmel_kmeans.logmel_frames(str(corpus / "test.tsv"))
    phones = align.frame_phone_lines(alignments, indices, [len(f) for f in frames], 400, "test.align")
    rng = np.random.RandomState(0)
    chance = uq.phone_measures(uq.cooccurrence(phones, [rng.randint(0, 8, len(p)) for p in phones]))
    assert first["pnmi"] > chance["pnmi"] + 0.1


def test_quantize_report_measures_units_against_phones(corpus, tmp_path, capsys):
    torch.manual_seed(0)
    cfg = arch_config("vq_wav2vec_tiny", vq_vars=8)
    model = VqWav2VecModel(cfg)
    checkpoint = save_vq_checkpoint(tmp_path / "vq.pt", model, corpus)
    window = uq.frame_window(model.output_lengths)
    dest = tmp_path / "units"
    assert quantize.main(["--checkpoint", checkpoint, "--manifest-dir", str(corpus),
                          "--splits", "valid,test", "--dest", str(dest), "--report"]) in (0, None)
    out = capsys.readouterr().out
    for split in ("valid", "test"):
        with open(dest / f"{split}.usage.json") as f:
            report = json.load(f)
        phones = report["phones"]
        with open(dest / f"{split}.src") as f:
            tokens = Counter(f.read().split())
        assert phones["units"]["frames"] == sum(tokens.values())
        assert phones["units"]["units"] == len(tokens) == phones["logmel_kmeans"]["k"]
        assert phones["logmel_kmeans"]["fit_split"] == "train"
        assert phones["beats_baseline"] == (phones["units"]["pnmi"] > phones["logmel_kmeans"]["pnmi"])
        units = [line.split() for line in (dest / f"{split}.src").read_text().splitlines()]
        alignments = align.read_alignments(str(corpus / f"{split}.{align.ALIGN_EXT}"))
        labels = [align.frame_phones(a, len(u), window) for a, u in zip(alignments, units)]
        assert phones["units"]["pnmi"] == pytest.approx(plain_pnmi(labels, units), abs=1e-6)
        assert (dest / f"{split}.phones.png").stat().st_size > 1000
        assert f"{split}: units PNMI {phones['units']['pnmi']:.3f}" in out
    # a split without an alignment gets the usage report only
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(corpus / "valid.tsv", bare / "valid.tsv")
    quantize.main(["--checkpoint", checkpoint, "--manifest-dir", str(bare), "--splits", "valid",
                   "--dest", str(tmp_path / "bare_units"), "--report"])
    with open(tmp_path / "bare_units" / "valid.usage.json") as f:
        assert "phones" not in json.load(f)
