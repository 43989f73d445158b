"""``bbcu train``: train a registered model from a YAML recipe; resumable, one process or under torchrun."""

from __future__ import annotations

import argparse
import os

from bbcu.data.root import data_root


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bbcu train``."""
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML recipe (configs/), resumable; DDP under torchrun",
        description="Train from a recipe. Re-running the same CONFIG continues its run directory when it "
        "holds a checkpoint; --resume RUN_DIR continues a run with its stored recipe.",
    )
    parser.add_argument("config", nargs="?", help="recipe file, e.g. configs/sr/bbcu-l_x4.yml")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest checkpoint"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key, e.g. --set train.batch_size=8 --set model.scale=2 (repeatable)",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), help="shortcut for --set runtime.device="
    )
    parser.add_argument("--data-root", help="folder the recipe's image folders are relative to")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start CONFIG's run over from iteration 0, moving its old checkpoints aside (never deleted)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the run, train it, and say where the weights are."""
    from bbcu.train.loop import train
    from bbcu.train.run import plan_run

    overrides = list(args.overrides)
    if args.device is not None:
        overrides.append(f"runtime.device={args.device}")
    plan = plan_run(args.config, args.resume, overrides, fresh=args.fresh)
    root = data_root(args.data_root)
    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 speaks
    if plan.checkpoint is not None and is_main:
        print(f"bbcu train: resuming {plan.run_dir} from iteration {plan.checkpoint['iteration']}")
    state = train(plan.config, plan.run_dir, root, plan.checkpoint, progress=True)
    if is_main:
        if state.best_score is not None:
            print(f"bbcu train: best {state.best_score:.2f} dB at iteration {state.best_iteration}")
        print(f"bbcu train: done; weights in {plan.run_dir / 'weights'}")
    return 0
