"""docs/flags.md is generated from the configs: it must equal the generator's output, and the
generator must list what fairseq-train would accept."""

from pathlib import Path

from fairseq_vqw2v.cli.flags_doc import COMMAND, render

DOC = Path(__file__).resolve().parent.parent / "docs" / "flags.md"


def test_flags_doc_is_up_to_date():
    assert DOC.read_text() == render(), f"docs/flags.md is out of date: run `{COMMAND}`"


def test_flags_doc_lists_every_task_model_and_criterion():
    doc = render()
    for name in ("vqw2v_pretraining", "unit_mlm", "vqw2v_asr", "vq_wav2vec", "unit_bert",
                 "w2l_ctc", "vqw2v_contrastive", "span_mlm", "ctc_asr"):
        assert f"`{name}`" in doc
    # a field of each task, with its default as the dataclass declares it
    assert "| `--mask-length` | `10` |" in doc
    assert "| `--labels` | `ltr` |" in doc
    assert "| `--max-sample-size` | - |" in doc
    assert "`--arch`: `unit_bert`, `unit_bert_base`" in doc
    # the decoders' typed config, nested in vqw2v_asr's, gives flat flags
    assert "| `--beam-threshold` | `25.0` |" in doc
    # fields that only mirror a fairseq option (II interpolations) are not flags of ours
    assert "--save-dir" not in doc
