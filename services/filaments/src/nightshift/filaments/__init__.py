__all__ = ["config", "simulate", "preprocess", "model", "train", "infer", "evaluate", "baseline", "realdata", "servicer", "cli"]
