"""`python -m canary build --out DIR [--seed 0]`: build the trained canary from nothing.

Writes DIR/model (Qwen2 weights + tokenizer, loadable offline with transformers), DIR/data/train.jsonl and
DIR/data/test.jsonl (GSM8K schema), and DIR/manifest.json (hashes, accuracies, versions, timings).

`python -m canary vlm --out DIR [--seed 0] [--image-model DIR]` builds the VLM canary (canary.vlm):
an image run (or the one in --image-model), then a video stage; DIR/model (a tiny Qwen3-VL with its processor
files), DIR/mmmu and DIR/videomme (its held-out sets in MMMU's and Video-MME's schemas), manifest.json.

`python -m canary eagle3 --out DIR [--seed 0]` trains the canary's EAGLE3 draft (canary.eagle3) on
the canary's own hidden states and answers; `eagle3-scramble --draft DIR --out DIR2` writes the never-accepted copy.

`python -m canary sharegpt` writes the canary's GSM8K test questions and answers as a ShareGPT-format file
(assets/perf/canary-gsm8k-sharegpt.json): texts that serving_perf and sglang.bench_serving both send as they are.
"""

from __future__ import annotations

import argparse
import sys

from canary.build import BuildOptions, build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m canary", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build tokenizer, data and trained model, evaluate, write manifest.json")
    b.add_argument("--out", required=True, help="output directory (created; existing files are overwritten)")
    b.add_argument("--seed", type=int, default=0, help="one seed for data, init and batch order (default 0)")
    b.add_argument(
        "--skip-eval",
        action="store_true",
        help="train and write files but do not measure accuracy (for the hash-only rebuild check)",
    )
    v = sub.add_parser("vlm", help="build the VLM canary: tiny Qwen3-VL, MMMU-schema held-out set, manifest.json")
    v.add_argument("--out", required=True, help="output directory (created; existing files are overwritten)")
    v.add_argument("--seed", type=int, default=0, help="one seed for held-out set, init and training stream")
    v.add_argument("--skip-eval", action="store_true", help="train and write files but do not measure accuracy")
    v.add_argument(
        "--image-model",
        default=None,
        help="start the video stage from this image run's model directory instead of training one "
        "(its weights' sha256 and manifest go into the new manifest; default: train it)",
    )
    e = sub.add_parser("eagle3", help="train the canary's EAGLE3 draft (SGLang's LlamaForCausalLMEagle3 format)")
    e.add_argument("--out", default="assets/canary-eagle3", help="output directory (default: assets/canary-eagle3)")
    e.add_argument("--seed", type=int, default=0, help="seed for the sequences, init and batch order (default 0)")
    e.add_argument("--steps", type=int, default=None, help="training steps (default: Eagle3Options.steps)")
    s = sub.add_parser("eagle3-scramble", help="a copy of a draft whose proposals are never accepted (d2t permuted)")
    s.add_argument("--draft", default="assets/canary-eagle3", help="the trained draft (default: assets/canary-eagle3)")
    s.add_argument("--out", required=True, help="output directory")
    g = sub.add_parser(
        "sharegpt", help="the canary's GSM8K test set as a ShareGPT-format file (serving_perf's text workloads)"
    )
    g.add_argument("--data", default="assets/canary/data/test.jsonl", help="GSM8K-schema JSONL (default: %(default)s)")
    g.add_argument("--out", default="assets/perf/canary-gsm8k-sharegpt.json", help="output file (default: %(default)s)")
    g.add_argument("--count", type=int, default=240, help="conversations, the first of the file (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "sharegpt":
        import json
        from pathlib import Path

        rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()[: args.count]]
        conversations = [
            {
                "id": f"canary-gsm8k-{i}",
                "conversations": [{"from": "human", "value": row["question"]}, {"from": "gpt", "value": row["answer"]}],
            }
            for i, row in enumerate(rows)
        ]
        Path(args.out).write_text(json.dumps(conversations, indent=0) + "\n")
        print(f"wrote {args.out} ({len(conversations)} conversations)")
        return 0
    if args.command == "eagle3":
        from dataclasses import replace

        from canary.eagle3 import Eagle3Options, train_draft

        opts = Eagle3Options(out=args.out, seed=args.seed)
        manifest = train_draft(
            replace(opts, steps=args.steps) if args.steps else opts,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
        print(f"wrote {args.out}/manifest.json ({manifest['seconds']} s)")
        return 0
    if args.command == "eagle3-scramble":
        from canary.eagle3 import scramble

        print(f"wrote {scramble(args.draft, args.out)}")
        return 0
    command = "python -m canary " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.command == "vlm":
        from canary.vlm.build import VlmBuildOptions
        from canary.vlm.build import build as build_vlm

        manifest = build_vlm(
            VlmBuildOptions(
                out=args.out, seed=args.seed, evaluate=not args.skip_eval, command=command, image_model=args.image_model
            )
        )
    else:
        manifest = build(BuildOptions(out=args.out, seed=args.seed, evaluate=not args.skip_eval, command=command))
    for mode, result in manifest.get("accuracy", {}).items():
        print(f"{mode}: {result['accuracy']:.4f} ({result['correct']}/{result['n']})")
    print(f"wrote {args.out}/manifest.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
