"""Launch padding, written once: how many rows a step launches, as FastDeploy decides it.

A step's slot and position buffers are read for every *launched* row, not only the real tokens, so
the launch size decides which stale rows a padded step reads. Two things pad (SPEC 4a):

- **CUDA-graph replay.** Only a decode-only step replays a graph (``step_use_cudagraph =
  only_decode_use_cudagraph and ids_remove_padding.shape[0] > 0``, ``gpu_model_runner.py@2d8338f9e4e6:1387,
  1400-1404``, unless ``cudagraph_only_prefill``); it replays the one captured for the smallest capture size
  that holds its token count. FastDeploy's default capture list is computed in ``fastdeploy/config.py``
  (read at 2d8338f9e4e6; the same lines at d2d633b05c2c, the same text at 7198b5883a0e, ``:1207`` and ``:2023``):
  ``GraphOptimizationConfig._set_cudagraph_sizes`` drafts ``[1, 2, 4] + 8*i (i=1..16) + 16*i (i=9..16)
  + 32*i (i=9..32)`` and appends the maximum (``:1203-1211``); ``FDConfig.__init__`` sets that maximum
  to ``min(512, max_num_seqs)`` (``:1917-1921``, 512 with ``cudagraph_only_prefill``);
  ``init_with_cudagrpah_size`` keeps the sizes ``<= max`` and deduplicates them (``:1133``,
  ``:1137-1144``) and maps each real size to the next capture size up (``:1155-1162``). With MTP's
  ``num_speculative_tokens = k`` every size is multiplied by ``k + 1`` (``:1124-1131``): a decode step of
  requests that each carry ``k`` drafts lands on a capture size. A step larger
  than the largest size runs eagerly, unpadded [inferred from the map having no larger key].
- **The overlap schedule.** With ``enable_overlap_schedule`` and no prefill, the runner launches the
  previous step's prediction instead of syncing for the real count
  (``gpu_model_runner.py@2d8338f9e4e6:315-338``); the prediction counts the requests that ran plus
  those in block step (``:340-356``). It exceeds the real count by the requests that stopped running
  in between; how many that is per step is not bounded by the source: ``MAX_OVERLAP`` is our
  bound [inferred].

The property strategies, the state machine's warm-up and the engine's ``--padding`` all use this module.
"""

from __future__ import annotations

from functools import cache

PADDINGS = ("none", "capture", "overlap")
# FDConfig.check() asserts max_num_seqs <= 512 (config.py@2d8338f9e4e6:2245): the widest capture list.
MAX_NUM_SEQS = 512
# How far an overlap prediction may exceed the real count in the fuzzing [inferred, see the docstring].
MAX_OVERLAP = 8


@cache
def capture_sizes(max_num_seqs: int = MAX_NUM_SEQS, *, only_prefill: bool = False,
                  num_speculative_tokens: int = 0) -> tuple[int, ...]:
    """FastDeploy's default CUDA-graph capture sizes (in tokens) for ``max_num_seqs``, ascending (config.py,
    see above), each times ``num_speculative_tokens + 1`` under MTP."""
    largest = 512 if only_prefill else min(512, max_num_seqs)
    draft = [1, 2, 4] + [8 * i for i in range(1, 17)] + [16 * i for i in range(9, 17)] + [32 * i for i in range(9, 33)]
    draft.append(largest)
    return tuple(sorted({size * (num_speculative_tokens + 1) for size in draft if size <= largest}))


def capture_launch(num_tokens: int, max_num_seqs: int = MAX_NUM_SEQS, *, decode_only: bool = True,
                   num_speculative_tokens: int = 0) -> int:
    """Rows a step of ``num_tokens`` launches under CUDA-graph replay: the next capture size up, or the real
    count when it is empty or prefills (no graph replays) or is above the largest capture size (eager)."""
    if num_tokens <= 0 or not decode_only:
        return num_tokens
    sizes = capture_sizes(max_num_seqs, num_speculative_tokens=num_speculative_tokens)
    return next((size for size in sizes if size >= num_tokens), num_tokens)


def overlap_launch(num_tokens: int, predicted: int) -> int:
    """Rows a step launches under the overlap schedule: the previous step's prediction when it has one
    (``predicted > 0``), never fewer than the real tokens [inferred: fewer would drop real rows]."""
    return max(num_tokens, predicted) if predicted > 0 and num_tokens > 0 else num_tokens


def launch_size(num_tokens: int, padding: str, *, decode_only: bool, max_num_seqs: int = MAX_NUM_SEQS,
                predicted: int = -1, num_speculative_tokens: int = 0) -> int:
    """How many rows a step of ``num_tokens`` real tokens launches under ``padding`` (one of ``PADDINGS``);
    a step that prefills launches its real count (no graph, and the overlap schedule syncs, ``:330``)."""
    if padding == "none":
        return num_tokens
    if padding == "capture":
        return capture_launch(num_tokens, max_num_seqs, decode_only=decode_only,
                              num_speculative_tokens=num_speculative_tokens)
    if padding == "overlap":
        return overlap_launch(num_tokens, predicted if decode_only else -1)
    raise ValueError(f"unknown padding {padding!r} (choose from: {', '.join(PADDINGS)})")
