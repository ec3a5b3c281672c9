"""Recommendation: retrieval then ranking (issue 14).

``data`` (interactions, side tables, time split), ``metrics`` (per-user ranking metrics,
bootstrap over users, activity slices), ``baselines`` (popular, recently popular, matrix
factorisation, item-to-item), ``two_tower`` (the retrieval net, no Ray), ``train`` (its Ray
Train driver), ``index`` (FAISS nearest neighbours), ``ranker`` (LightGBM lambdarank),
``features`` (feature views, point-in-time joins, the Redis online store), ``serving`` (the Ray
Serve graph), ``ab`` (sticky assignment and the A/B report), ``stage`` (the ``ranking`` task of a
card). Nothing here imports Ray at module import time.
"""
