"""The training stage: simple models in Ray tasks, transformers with Ray Train.

Import the submodules (`mlsd_ray.train.stage`, `mlsd_ray.train.transformer`); nothing here
imports Ray or torch, so ``import mlsd_ray.train`` stays cheap.
"""
