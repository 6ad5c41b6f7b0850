"""A whole training run from a :class:`~irra.config.Config`: data, model, loop, test, report.

What the run folder holds is described in :mod:`irra.engine.run_files`.

The method (``model.method``, :mod:`irra.methods`) supplies the objective, its per-epoch hooks
and the module mode of the training epochs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from irra.config import Config, ConfigError, load_config, save_config
from irra.engine import run_files
from irra.engine.checkpoint import CheckpointError, load_checkpoint
from irra.engine.compilation import compile_towers
from irra.engine.cpu_threads import set_process_threads
from irra.engine.distributed import (
    DistContext,
    broadcast_object,
    distributed_session,
    env_world_size,
    wrap_ddp,
)
from irra.engine.evaluation import EncodedSet, encode_split, gather_encoded, split_metrics
from irra.engine.hooks import CheckpointHook, EvalHook, JsonlLogHook, TensorBoardHook
from irra.engine.optim import build_optimizer, build_scheduler
from irra.engine.report import grid_rows, write_report
from irra.engine.trainer import Hook, Trainer
from irra.fileio import atomic_write_text
from irra.metrics import METRIC_KEYS
from irra.runtime import resolve_device, resolve_precision

logger = logging.getLogger(__name__)

Progress = Callable[[Iterable, str, int], Iterable]


class RunError(RuntimeError):
    """A run cannot start or resume; the message names the folder and the fix."""


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    metrics: dict[str, float]  # test metrics of the selected model (percent)
    best_epoch: int | None
    model_dir: Path
    report: Path | None


def build_model_from_config(
    config: Config, num_classes: int, train_tokens: torch.Tensor | None = None
) -> torch.nn.Module:
    """The IRRA model described by ``config.model`` and ``config.loss``.

    ``model.arch: custom`` builds a randomly initialised CLIP from the explicit sizes (heads, when
    not given, width / 64 and at least 1); otherwise ``arch`` names a preset and ``pretrained``
    may point at OpenAI CLIP weights. With ``model.vocab: train`` the text tower keeps only the
    ids in ``train_tokens``, the (N, L) tokenised training captions.

    Raises:
        ConfigError: a setting that only ``custom`` uses (``stem_channels``, ``vision_heads``,
            ``text_heads``, ``vocab: train``) is set for a preset; an unknown ``vocab``; or
            ``vocab: train`` without ``train_tokens``.
    """
    from irra.model import CLIPConfig, TextConfig, VisionConfig, build_model
    from irra.tokenizer import token_vocabulary

    m, loss = config.model, config.loss
    arch: Any = m.arch
    if m.vocab not in ("full", "train"):
        raise ConfigError(f"model.vocab must be 'full' or 'train', got {m.vocab!r}")
    custom_only = {
        "stem_channels": m.stem_channels,
        "vision_heads": m.vision_heads,
        "text_heads": m.text_heads,
        "vocab": m.vocab if m.vocab != "full" else None,
    }
    for key, value in custom_only.items():
        if value and m.arch != "custom":
            raise ConfigError(
                f"model.{key}={value} needs model.arch=custom: the {m.arch} preset (and OpenAI's "
                "weights for it) has fixed sizes"
            )
    vocab_ids: tuple[int, ...] = ()
    if m.vocab == "train":
        if train_tokens is None or not train_tokens.numel():
            raise ConfigError("model.vocab=train needs the training captions for the vocabulary")
        vocab_ids = token_vocabulary(train_tokens)
    if m.arch == "custom":
        arch = CLIPConfig(
            embed_dim=m.embed_dim,
            vision=VisionConfig(
                image_size=m.image_size,
                patch_size=m.patch_size,
                stride_size=m.stride_size,
                width=m.vision_width,
                layers=m.vision_layers,
                heads=m.vision_heads or max(1, m.vision_width // 64),
                stem_channels=m.stem_channels,
            ),
            text=TextConfig(
                context_length=m.context_length,
                width=m.text_width,
                layers=m.text_layers,
                heads=m.text_heads or max(1, m.text_width // 64),
                vocab_ids=vocab_ids,
            ),
        )
    pretrained = m.pretrained
    if pretrained not in (None, "openai"):
        pretrained = os.path.expanduser(pretrained)
    return build_model(
        arch,
        pretrained=pretrained,
        image_size=None if m.arch == "custom" else m.image_size,
        stride_size=None if m.arch == "custom" else m.stride_size,
        num_classes=num_classes if "id" in loss.names else 0,
        cmt_depth=m.cmt_depth,
        loss_names=loss.names,
        temperature=loss.temperature,
        mlm_loss_weight=loss.mlm_weight,
        id_loss_weight=loss.id_weight,
        tse_dim=m.tse_dim,
        select_ratio=m.select_ratio,
    )


def prepare_run_dir(
    out: str | os.PathLike[str], config: Config | None, *, resume: bool
) -> tuple[Path, Config, bool]:
    """Create (or, with ``resume``, reopen) a run folder; returns it, its config and ``resume``.

    A new run refuses a folder that already holds a checkpoint, so nothing is overwritten; a
    resumed run reads ``config.yaml`` from the folder (``config`` may override it, e.g. to
    train for more epochs). A run to resume that was killed before its first checkpoint starts
    again from the beginning (the returned ``resume`` is then False).
    """
    run_dir = Path(out).expanduser()
    if resume:
        saved = run_dir / run_files.CONFIG
        if not saved.is_file():
            raise RunError(f"{run_dir}: nothing to resume (no {run_files.CONFIG}); start a new run")
        if os.environ.get("RANK", "0") == "0":  # the only writer of the folder
            _remove_partial_writes(run_dir)
        config = config if config is not None else load_config(saved)
        if not (run_dir / run_files.LAST).is_file():
            logger.warning(
                "%s: no %s yet (the run stopped before its first epoch ended); "
                "starting it again from the beginning with its %s",
                run_dir,
                run_files.LAST,
                run_files.CONFIG,
            )
            return run_dir, config, False
        return run_dir, config, True
    if config is None:
        raise ValueError("a new run needs a config")
    if (run_dir / run_files.LAST).exists():
        raise RunError(
            f"{run_dir} already holds a run ({run_files.LAST}). Continue it with "
            f"'irra train --resume {run_dir}', or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, config, False


def _remove_partial_writes(run_dir: Path) -> None:
    """Delete the temporary files of writes that a kill cut short (never read as valid)."""
    for tmp in run_dir.glob(".*.tmp"):
        if tmp.is_file():
            logger.info("removing %s, left by an interrupted write", tmp)
            tmp.unlink(missing_ok=True)


class _LogFile:
    """Appends the ``irra`` log records of this run to ``<run>/train.log`` while open."""

    def __init__(self, path: Path) -> None:
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        self.handler.setLevel(logging.INFO)
        self.logger = logging.getLogger("irra")

    def __enter__(self) -> _LogFile:
        self.logger.addHandler(self.handler)
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()


def train(
    config: Config | None,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    hooks: Sequence[Hook] = (),
    progress: Progress | None = None,
    check_progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Train, select, test and report; see the module docstring for what the folder holds.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), every process calls this: they join one process
    group (NCCL on CUDA, Gloo on CPU), ``data.batch_size`` is the global batch split evenly over
    the processes, evaluation is sharded over them, and only rank 0 writes the run folder (log,
    checkpoints, TensorBoard, model, metrics, report). The run folder must be on a file system
    that every process can read (resuming and the final test load the checkpoints in every
    process).

    Args:
        config: the experiment (None with ``resume``: the folder's ``config.yaml``).
        out: the run folder.
        resume: continue the run in ``out`` from its ``last.pt`` (with any number of processes).
        hooks: extra trainer hooks run first (e.g. a progress bar), in rank 0 only.
        progress: ``progress(iterable, desc, total)`` wrapper for the encoding loops (rank 0).
        check_progress: ``check_progress(done, total)`` while the dataset's images are checked.

    Returns:
        The test metrics of the selected model and where the outputs are (in every process).
    """
    run_dir, config, resume = prepare_run_dir(out, config, resume=resume)
    try:
        device = _process_device(config.train.device)
    except (RuntimeError, ValueError) as err:
        raise RunError(f"train.device={config.train.device!r}: {err}") from err
    with distributed_session(device.type) as ctx:
        if not ctx.is_main:
            return _train(
                config,
                run_dir,
                device,
                ctx,
                resume=resume,
                hooks=(),
                progress=None,
                check_progress=None,
            )
        with _LogFile(run_dir / run_files.TRAIN_LOG):
            return _train(
                config,
                run_dir,
                device,
                ctx,
                resume=resume,
                hooks=hooks,
                progress=progress,
                check_progress=check_progress,
            )


def _process_device(name: str) -> torch.device:
    """The configured device; with several CUDA processes, the one of this local rank."""
    device = resolve_device(name)
    if device.type == "cuda" and env_world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _train(
    config: Config,
    run_dir: Path,
    device: torch.device,
    ctx: DistContext,
    *,
    resume: bool,
    hooks: Sequence[Hook],
    progress: Progress | None,
    check_progress: Callable[[int, int], None] | None,
) -> RunResult:
    """The run's steps: settings, data, model and loader, trainer, fit, test and outputs."""
    from irra.methods import MethodSetup, get_method

    method = get_method(config.model.method)
    method.check_losses(config.loss.names)
    if ctx.is_main:
        save_config(config, run_dir / run_files.CONFIG)
    set_process_threads(config.train.threads, device.type, warn=ctx.local_rank == 0)
    try:
        precision = resolve_precision(config.train.precision, device)
    except ValueError as err:
        raise RunError(f"train.precision={config.train.precision!r}: {err}") from err
    _log_start(run_dir, device, precision, ctx, resume=resume)
    local_batch = _local_batch(config, ctx)
    data = _read_data(config, run_dir, ctx, check_progress)
    select_split = _selection_split(config.train.select_on, data.val is not None)

    torch.manual_seed(config.train.seed)
    parts = _build_training(config, data, device, ctx, run_dir, local_batch)
    model = parts.model
    encode = _split_encoder(config, data, model, device, precision, ctx, progress)
    setup = MethodSetup(
        config, ctx, device, precision, parts.dataset, local_batch, parts.clean_pairs
    )
    objective = method.build_objective(setup)
    eval_hook = EvalHook(
        lambda split: _metrics_everywhere(encode(split), ctx),
        [select_split] if select_split is not None else [],
        select_split,
        config.train.select_metric,
        every=config.train.eval_every,
    )
    batch_sampler: Any = parts.loader.batch_sampler

    def extra() -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "model_config": model.config.to_dict(),
            "sampler": batch_sampler.state_dict(),
        }

    all_hooks = [*method.build_hooks(setup, objective), eval_hook]
    if ctx.is_main:  # rank 0 alone logs, writes TensorBoard and checkpoints
        all_hooks = [*hooks, *_writer_hooks(config, run_dir, all_hooks, eval_hook, extra)]
    optimizer = build_optimizer(model, config.optim)
    trainer = Trainer(
        wrap_ddp(model, device) if ctx.distributed else model,
        objective,
        optimizer,
        build_scheduler(optimizer, config.train.epochs, config.optim),
        parts.loader,
        epochs=config.train.epochs,
        device=device,
        precision=precision,
        grad_clip=config.optim.grad_clip,
        hooks=all_hooks,
        dist_ctx=ctx,
        train_mode=method.train_mode(config),
    )
    if resume:
        state = _load(run_dir / run_files.LAST, device)
        trainer.load_state_dict(state)
        batch_sampler.load_state_dict(state["sampler"])
        logger.info("resumed after epoch %d of %d", trainer.state.epoch, config.train.epochs)
    trainer.fit()
    ctx.barrier()  # rank 0 has written best.pt
    return _test_and_save(config, run_dir, model, trainer, encode, data, select_split, ctx, device)


def _log_start(
    run_dir: Path, device: torch.device, precision: str, ctx: DistContext, *, resume: bool
) -> None:
    logger.info(
        "%s run in %s on %s (%s), torch %s, world size %d (%s), %d CPU threads per process",
        "resuming" if resume else "starting",
        run_dir,
        device,
        precision,
        torch.__version__,
        ctx.world_size,
        "one process" if not ctx.distributed else f"{torch.distributed.get_backend()} backend",
        torch.get_num_threads(),
    )


def _local_batch(config: Config, ctx: DistContext) -> int:
    """The batch of each process; raises :class:`RunError` for settings that do not fit."""
    cfg_d, cfg_m = config.data, config.model
    if cfg_d.batch_size % ctx.world_size:
        raise RunError(
            f"data.batch_size {cfg_d.batch_size} (the global batch) does not split evenly over "
            f"{ctx.world_size} processes; use a multiple of {ctx.world_size}"
        )
    local_batch = cfg_d.batch_size // ctx.world_size
    if cfg_d.sampler == "identity" and local_batch % cfg_d.num_instance:
        raise RunError(
            f"the identity sampler needs the batch of each process ({local_batch} = "
            f"{cfg_d.batch_size} / {ctx.world_size}) to be a multiple of data.num_instance "
            f"{cfg_d.num_instance}"
        )
    if cfg_d.text_length > cfg_m.context_length and cfg_m.arch == "custom":
        raise RunError(
            f"data.text_length {cfg_d.text_length} exceeds model.context_length "
            f"{cfg_m.context_length}; lower data.text_length or raise model.context_length"
        )
    return local_batch


def _read_data(
    config: Config,
    run_dir: Path,
    ctx: DistContext,
    check_progress: Callable[[int, int], None] | None,
) -> Any:
    """The dataset's annotations (:class:`irra.data.PedesData`), with train and test splits."""
    from irra.data import read_dataset

    cfg_d = config.data
    data = read_dataset(
        cfg_d.dataset,
        cfg_d.root,
        on_error=cfg_d.on_bad_entry,  # type: ignore[arg-type]
        check_images=cfg_d.check_images,
        num_workers=max(1, cfg_d.num_workers),
        progress=check_progress,
        run_dir=run_dir if ctx.is_main else None,
    )
    if data.train is None:
        raise RunError(f"{data.dataset_dir}: the annotations have no training split")
    if data.test is None:
        raise RunError(f"{data.dataset_dir}: the annotations have no test split")
    return data


@dataclass
class _TrainingParts:
    model: torch.nn.Module
    dataset: Any  # irra.data.datasets.TrainDataset
    loader: Any  # its DataLoader
    clean_pairs: np.ndarray | None  # (N,) bool with injected noise


def _build_training(
    config: Config,
    data: Any,
    device: torch.device,
    ctx: DistContext,
    run_dir: Path,
    local_batch: int,
) -> _TrainingParts:
    """Tokenised (and, with ``data.noise_*``, corrupted) training pairs, the model, the loader."""
    from irra.data import build_eval_transform, build_train_loader, build_train_transform
    from irra.data.datasets import TrainDataset
    from irra.data.noise import NOISE_FILE, NoiseError, resolve_noise, save_noise_index
    from irra.tokenizer import tokenize

    cfg_t, cfg_d = config.train, config.data
    # Tokenised once: for the dataset and, with model.vocab=train, the model's vocabulary.
    train_tokens = tokenize(data.train.captions, context_length=cfg_d.text_length)
    try:
        noise = resolve_noise(
            cfg_d.noise_rate, cfg_d.noise_index, train_tokens.shape[0], cfg_d.noise_seed
        )
    except NoiseError as err:
        raise RunError(str(err)) from err
    clean_pairs = None
    if noise is not None:
        train_tokens = train_tokens[torch.from_numpy(noise)]
        clean_pairs = noise == np.arange(noise.size)
        logger.info(
            "noisy correspondences: %d of %d training pairs carry another pair's caption (%s)",
            int((~clean_pairs).sum()),
            noise.size,
            NOISE_FILE,
        )
        if ctx.is_main:
            save_noise_index(noise, run_dir / NOISE_FILE)
    model = build_model_from_config(config, data.num_classes, train_tokens).to(device)
    if cfg_t.compile:
        compile_towers(model)
    image_size = model.config.clip.vision.image_size
    train_transform: Any = (
        build_train_transform(image_size) if cfg_d.augment else build_eval_transform(image_size)
    )
    dataset = TrainDataset(
        data.train,
        train_transform,
        seed=cfg_t.seed,
        text_length=cfg_d.text_length,
        mlm="mlm" in config.loss.names,
        masked_global_text=cfg_d.masked_global_text,
        mask_prob=cfg_d.mask_prob,
        tokens=train_tokens,
        cache_images=cfg_d.cache_images,
    )
    loader = build_train_loader(
        dataset,
        batch_size=local_batch,
        sampler=cfg_d.sampler,  # type: ignore[arg-type]
        num_instances=cfg_d.num_instance,
        num_workers=cfg_d.num_workers,
        seed=cfg_t.seed,
        world_size=ctx.world_size,
        rank=ctx.rank,
    )
    if len(loader) == 0:
        raise RunError(
            f"{len(dataset)} training captions make no full batch of {cfg_d.batch_size}; "
            "lower data.batch_size"
        )
    return _TrainingParts(model, dataset, loader, clean_pairs)


def _split_encoder(
    config: Config,
    data: Any,
    model: torch.nn.Module,
    device: torch.device,
    precision: str,
    ctx: DistContext,
    progress: Progress | None,
) -> Callable[[str], EncodedSet]:
    """``encode(split)``: the whole split encoded by ``model`` (sharded over the processes)."""
    from irra.data import build_eval_loaders, build_eval_transform

    cfg_d = config.data
    eval_transform = build_eval_transform(model.config.clip.vision.image_size)
    loaders: dict[str, Any] = {}

    def encode(split: str) -> EncodedSet:
        if split not in loaders:
            loaders[split] = build_eval_loaders(
                data.split(split),
                eval_transform,
                batch_size=cfg_d.eval_batch_size,
                num_workers=cfg_d.num_workers,
                text_length=cfg_d.text_length,
                shard=(ctx.rank, ctx.world_size) if ctx.distributed else None,
            )
        image_loader, text_loader = loaders[split]
        part = encode_split(model, image_loader, text_loader, device, precision, progress)
        return gather_encoded(part, ctx)  # every process takes part

    return encode


def _metrics_everywhere(encoded: EncodedSet, ctx: DistContext) -> dict[str, float]:
    """Metrics of an encoded split, computed by rank 0 and sent to every process."""
    return broadcast_object(split_metrics(encoded) if ctx.is_main else None, ctx)


def _writer_hooks(
    config: Config,
    run_dir: Path,
    hooks: list[Hook],
    eval_hook: EvalHook,
    extra: Callable[[], dict[str, Any]],
) -> list[Hook]:
    """``hooks`` followed by the hooks that write the run folder (log, TensorBoard, checkpoints)."""
    out = [*hooks, JsonlLogHook(run_dir / run_files.EPOCH_LOG)]
    if config.train.tensorboard:
        out.append(TensorBoardHook(run_dir / run_files.TENSORBOARD, every=config.train.log_every))
    out.append(CheckpointHook(run_dir, extra, eval_hook))
    return out


def _test_and_save(
    config: Config,
    run_dir: Path,
    model: torch.nn.Module,
    trainer: Trainer,
    encode: Callable[[str], EncodedSet],
    data: Any,
    select_split: str | None,
    ctx: DistContext,
    device: torch.device,
) -> RunResult:
    """Test the selected model; rank 0 writes the model, the report and ``metrics.json``."""
    best_epoch = trainer.state.best_epoch
    best_path = run_dir / run_files.BEST
    if best_path.is_file():
        model.load_state_dict(_load(best_path, device)["model"])
    logger.info("testing the model of epoch %s on the test split", best_epoch)
    encoded = encode("test")
    metrics = _metrics_everywhere(encoded, ctx)
    metrics = {k: round(metrics[k], 4) for k in METRIC_KEYS}
    model_dir = run_dir / run_files.MODEL
    if not ctx.is_main:
        return RunResult(run_dir, metrics, best_epoch, model_dir, None)
    logger.info("test: %s", "  ".join(f"{k} {v:.2f}" for k, v in metrics.items()))

    from irra.model import save_model

    model_dir = save_model(
        model.cpu(),
        model_dir,
        metadata={
            "dataset": config.data.dataset,
            "method": config.model.method,
            "epoch": best_epoch,
            "selected_on": select_split or "last epoch",
            "test_metrics": metrics,
        },
    )
    report = None
    if config.train.report:
        report = _write_report(run_dir, config, data.test, encoded, metrics, trainer, select_split)
    # Written last: a run folder with metrics.json is a finished run.
    atomic_write_text(run_dir / run_files.METRICS, json.dumps(metrics, indent=2) + "\n")
    return RunResult(run_dir, metrics, best_epoch, model_dir, report)


def _selection_split(select_on: str, has_val: bool) -> str | None:
    if select_on == "test":
        return "test"
    if select_on != "val":
        raise RunError(f"train.select_on must be 'val' or 'test', got {select_on!r}")
    if not has_val:
        logger.warning(
            "the dataset has no val split: the last epoch is selected "
            "(train.select_on=test reproduces the reference protocol of selecting on test)"
        )
        return None
    return "val"


def _load(path: Path, device: torch.device) -> dict[str, Any]:
    try:
        return load_checkpoint(path, map_location=device)
    except CheckpointError as err:
        raise RunError(str(err)) from err


def _write_report(
    run_dir: Path,
    config: Config,
    test_split: Any,
    encoded: EncodedSet,
    metrics: dict[str, float],
    trainer: Trainer,
    select_split: str | None,
) -> Path | None:
    from irra.metrics import cmc_curve

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        logger.warning("matplotlib is not installed: no report (pip install 'irra[train]')")
        return None
    similarity = encoded.similarity().cpu()
    text_pids, image_pids = encoded.text_pids.cpu(), encoded.image_pids.cpu()
    cmc = cmc_curve(similarity, text_pids, image_pids, max_rank=20)
    count = min(6, similarity.shape[0])
    queries = [round(i * (similarity.shape[0] - 1) / max(1, count - 1)) for i in range(count)]
    rows = grid_rows(
        similarity,
        test_split.captions,
        text_pids,
        test_split.image_paths,
        image_pids,
        queries,
        k=10,
    )
    height, width = config.model.image_size
    thumb = (128, max(16, round(128 * width / height)))
    notes = [
        f"dataset {config.data.dataset}, losses {'+'.join(config.loss.names)}, "
        f"{config.train.epochs} epochs, model selected on "
        f"{select_split or 'the last epoch'} (epoch {trainer.state.best_epoch})",
    ]
    report = write_report(
        run_dir / run_files.REPORT,
        title=f"irra run {run_dir.name}",
        metrics=metrics,
        history=trainer.state.history,
        cmc=cmc,
        rows=rows,
        thumb=thumb,
        notes=notes,
    )
    logger.info("report: %s", report)
    return report
