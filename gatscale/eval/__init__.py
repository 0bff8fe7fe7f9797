"""Evaluation: FID/IS/precision-recall (fid.py), per-block LPIPS contribution and feature PCA (Fig. 4b)."""
