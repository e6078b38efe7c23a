"""NeVe as framework callbacks: ``neve.integrations.lightning`` (Lightning 2.x) and ``neve.integrations.hf``
(the Hugging Face Trainer). Each imports its framework when imported itself; ``import neve`` imports neither."""
