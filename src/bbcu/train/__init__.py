"""``bbcu train``: YAML recipes in, resumable (DDP-capable) training runs out.

Read in this order: ``schema`` (every recipe key), ``config`` (YAML + ``inherit:`` + ``--set`` into a
validated ``TrainConfig``), ``run`` (fresh run, auto-resume or ``--resume``), ``loop`` (the trainer),
and its helpers ``data`` (training set), ``sampler`` (resumable, sharded batch order), ``validation``
(``bbcu eval``'s scoring), ``ema``, ``checkpoint`` (atomic, complete state), ``logs`` (CSV,
TensorBoard, curves), ``distributed`` (torchrun / DDP) and ``faults`` (crash injection for tests).
"""
