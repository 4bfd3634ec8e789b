"""Readers and writers for expression matrices (GCTX, D-GEX ``.npy``, AnnData, CSV)."""
