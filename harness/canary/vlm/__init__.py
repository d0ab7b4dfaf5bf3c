"""The VLM canary: a tiny trained Qwen3-VL that answers questions about synthetic drawings, and its MMMU-schema set.

Build: `python -m harness.canary vlm --out assets/canary-vlm --seed 0` (harness.canary.vlm.build). Modules:
draw (Pillow scenes), tasks (task families, `generate_questions`), mmmu_set (the held-out set as MMMU validation
parquet), prompts (MMMU prompt through the chat template and processor), curriculum (what each step trains on),
hints (training-only attention supervision), model (config and processor files), train, evaluate.
"""
