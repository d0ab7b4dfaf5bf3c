"""The VLM canary: a tiny trained Qwen3-VL that answers questions about synthetic drawings, and its MMMU- and
Video-MME-schema sets.

Build: `python -m canary vlm --out assets/canary-vlm --seed 0 --image-model assets/canary-vlm-image-run/model`
(canary.vlm.build; without --image-model the image run is trained too). Modules:
draw (Pillow scenes), tasks (task families, `generate_questions`), mmmu_set (the held-out set as MMMU validation
parquet), videomme_set (synthetic mp4 videos and questions in Video-MME's schema, trained on in the video stage),
prompts (MMMU and Video-MME prompts through the chat template and processor), curriculum (what each step trains on),
hints (training-only attention supervision), model (config and processor files), train, evaluate.
"""
