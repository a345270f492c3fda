"""Tune the decoder's LM weight and word score on a dev split, then decode test with the best.

    python -m fairseq_vqw2v.cli.tune --path am.pt --data DATA --subset valid --decoder kenlm \\
        --lexicon lexicon.txt --decoder-lm lm.bin [--beam 50] [--lm-weights=0,0.5,1,2,3 \\
        --word-scores=-2,-1,0,1 | --random 30] --out best.json

computes the acoustic model's emissions of the split once, decodes them at every point (a grid,
or ``--random N`` points drawn from the grid's ranges), prints the table (best first) and writes
the best setting to ``--out``; ``fairseq-generate ... --decoder-settings best.json`` applies it.
"""

import argparse
import json
import os

from tqdm import tqdm

from . import run
from ..checkpoint import load_model
from ..decoding import tuning
from ..models.w2l_ctc import W2lCtcModel
from ..decoding.config import CHARLM_TYPES, DECODERS, BeamSearchConfig, DecoderConfig
from ..decoding.factory import build_decoder
from ..tasks.asr import utterance_emissions


def floats(text: str):
    return [float(v) for v in text.split(",") if v.strip()]


def tune(args) -> str:
    model, cfg, task = load_model(args.path, (W2lCtcModel,), task_overrides={"data": args.data})
    model.eval()
    task.load_dataset(args.subset)
    dataset, dictionary = task.dataset(args.subset), task.target_dictionary
    emissions, refs = [], []
    for i in tqdm(range(len(dataset)), desc=f"emissions of {args.subset}", unit="utt"):
        item = dataset[i]
        emissions.append(utterance_emissions(model, item["source"], len(item["source"])))
        refs.append(dictionary.string(item["target"]))
    audio_frames = sum(len(e) for e in emissions)

    def decode(lm_weight, word_score):
        search = BeamSearchConfig(
            beam=args.beam, beam_threshold=args.beam_threshold,
            beam_size_token=args.beam_size_token, lm_weight=lm_weight, word_score=word_score,
            unk_weight=args.unk_weight, sil_weight=args.sil_weight, nbest=1,
        )
        decoder = build_decoder(DecoderConfig(decoder=args.decoder, decoder_lm=args.decoder_lm,
                                              lexicon=args.lexicon, charlm_type=args.charlm_type,
                                              search=search), dictionary)
        return [dictionary.string(decoder.decode(e[None], e.new_tensor([len(e)]).long())[0][0]["tokens"])
                for e in emissions]

    lm_weights, word_scores = floats(args.lm_weights), floats(args.word_scores)
    if args.random:
        points = tuning.random_points(args.random, (min(lm_weights), max(lm_weights)),
                                      (min(word_scores), max(word_scores)), args.seed)
    else:
        points = tuning.grid(lm_weights, word_scores)
    rows = tuning.search(decode, refs, cfg.task.labels, points)
    print(tuning.format_table(rows))
    best = {**rows[0], "decoder": args.decoder, "beam": args.beam, "subset": args.subset,
            "checkpoint": os.path.abspath(args.path), "points": len(points)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(best, f, indent=2)
    metric = "WER" if rows[0]["wer"] is not None else "UER"
    value = rows[0]["wer"] if rows[0]["wer"] is not None else rows[0]["uer"]
    return (f"tuned {len(points)} points on {len(refs)} utterances of {args.subset} "
            f"({audio_frames} frames): best lm_weight {rows[0]['lm_weight']:g}, word_score "
            f"{rows[0]['word_score']:g}, {metric} {value:.2f} -> {args.out}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m fairseq_vqw2v.cli.tune",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", required=True, help="acoustic model checkpoint (w2l_ctc)")
    parser.add_argument("--data", required=True, help="folder of the manifests and labels")
    parser.add_argument("--subset", default="valid", help="split to tune on")
    parser.add_argument("--decoder", choices=[d for d in DECODERS if d != "viterbi"], default="kenlm")
    parser.add_argument("--decoder-lm", required=True, help="KenLM file or fconv_lm checkpoint")
    parser.add_argument("--lexicon", help="word -> letters lexicon")
    parser.add_argument("--charlm-type", choices=CHARLM_TYPES, default="fconv")
    # the beam search options and their defaults are BeamSearchConfig's
    for name, kind in (("beam", int), ("beam_threshold", float), ("beam_size_token", int),
                       ("unk_weight", float), ("sil_weight", float)):
        parser.add_argument("--" + name.replace("_", "-"), type=kind,
                            default=getattr(BeamSearchConfig, name),
                            help=BeamSearchConfig.__dataclass_fields__[name].metadata["help"])
    parser.add_argument("--lm-weights", default="0,0.5,1,1.5,2,3,4", help="grid of LM weights")
    parser.add_argument("--word-scores", default="-2,-1,0,1", help="grid of word scores (write --word-scores=-2,-1: the values start with -)")
    parser.add_argument("--random", type=int, default=0,
                        help="draw this many random points within the grids' ranges instead")
    parser.add_argument("--seed", type=int, default=1, help="seed of --random")
    parser.add_argument("--out", required=True, help="JSON file for the best setting")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run(lambda: tune(args))


if __name__ == "__main__":
    raise SystemExit(main())
