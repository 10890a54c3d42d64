"""IFEval scoring with the reference implementation's verdicts, deterministic and fast.

IFEval (Zhou et al. 2023, arXiv 2311.07911) is how FastDeploy reports that a refactor kept accuracy;
users compare our figures with OpenCompass and lm-evaluation-harness, which copy google-research's
``instruction_following_eval``. This package re-implements those 25 checks with the same verdicts,
fixes the reference's run-to-run randomness, and scores the 541 prompts an order of magnitude faster.
"""
