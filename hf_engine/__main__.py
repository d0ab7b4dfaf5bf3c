"""`python -m hf_engine --model-path DIR --host 127.0.0.1 --port P`: serve a checkpoint (hf_engine.server)."""

from hf_engine.server import main

main()
