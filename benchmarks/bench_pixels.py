"""Benchmark model-ready pixels: decode-to-size + torch normalize vs decode to PIL + the HF image processor, same run.

    .venv/bin/python -m benchmarks.bench_pixels            # about a minute on 2 cores
    .venv/bin/python -m benchmarks.bench_pixels --quick    # tiny smoke run, asserts exact counts
    .venv/bin/python -m benchmarks.bench_pixels --vlm      # the training loader with the tiny test VLMs

The video comes from the synthetic-episode generator (:mod:`owa.data.recordings.synthetic`): 1280x720 HEVC in
Matroska at a constant 20 fps, a keyframe every 2 s. Every frame is turned into model-ready ``pixel_values`` for
SmolVLM (512x512, Lanczos, mean/std 0.5) and InternVL (448x448, bicubic, ImageNet mean/std):

* **ours**: ``FrameEngine.decode(..., size=, resample=)`` (the resize inside the decoder's colour conversion) in
  chunks of ``--chunk`` frames, stacked and normalized in torch (:func:`owa.data.pixels.normalize`);
* **baseline**: the same engine decoding to full-size RGB, ``PIL.Image.fromarray``, then the model's Hugging Face
  image processor (the ``*Pil`` classes: no torchvision here) on the chunk.

Goal: ours ≥ 5x the baseline for both models. The pixel difference between the two is printed (mean and 99th
percentile in 0..255 units; ``docs/fsl.md`` states the tolerance).

Also measured: **row-by-row access** through the Event Dataset transform (``dataset[i]`` for each row in episode
order, every topic, frames decoded one call at a time) against a plain sequential PyAV decode of the same video
(defaults, each frame converted to RGB). Goal ≥ 0.8x. Wall time and CPU time (all threads) are printed; the machine
is shared, so each figure is the best of ``--repeat`` interleaved runs.

``--vlm`` measures the whole training input path instead, per preset (SmolVLM, InternVL, Qwen2-VL) with the tiny
random models of ``owa.data.testing.vlms`` (64x64 frames; Qwen2-VL 56x112): a 1280x720 HEVC episode → Event
Dataset → ``EpisodeTokenizer.from_processor`` → ``FSLDataset(image_size=...)`` → ``DataLoader`` (``--workers``
workers, ``FSLCollator.for_tokenizer``). Printed: images/s of the loader alone, and of the loader with the model's
forward (no grad) on every batch. The tiny models' forwards are cheap, so this is the loader's ceiling, not a
real model's training speed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np

from owa.data.frames import FrameEngine, set_engine
from owa.data.recordings.synthetic import SampleConfig, write_sample_episode
from owa.data.testing.vlms import checkpoint_image_processors

GOALS = {"pixels": 5.0, "rows": 0.8}


def ours(video: str, pts_ns: Sequence[int], spec, chunk: int, sink: Callable) -> None:
    import torch

    from owa.data.pixels import normalize

    engine = FrameEngine(backend="pyav")
    try:
        for start in range(0, len(pts_ns), chunk):
            frames = engine.decode(
                [(video, t) for t in pts_ns[start : start + chunk]], size=spec.image_size, resample=spec.resample
            )
            pixels = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
            sink(normalize(pixels, spec))
    finally:
        engine.close()


def baseline(video: str, pts_ns: Sequence[int], processor, chunk: int, sink: Callable) -> None:
    from PIL import Image

    engine = FrameEngine(backend="pyav")
    try:
        for start in range(0, len(pts_ns), chunk):
            frames = engine.decode([(video, t) for t in pts_ns[start : start + chunk]])
            sink(processor([Image.fromarray(f) for f in frames], return_tensors="pt")["pixel_values"])
    finally:
        engine.close()


def sequential_decode(video: str) -> int:
    count = 0
    with av.open(video) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")
            count += 1
    return count


def rows_one_at_a_time(dataset) -> int:
    set_engine(None)  # a fresh process engine: nothing open yet
    return sum(dataset[i]["image"] is not None for i in range(len(dataset)))


def _best(repeat: int, cases: dict[str, Callable[[], int]]) -> tuple[dict[str, float], dict[str, float], dict]:
    """Best wall and CPU seconds of each case over interleaved rounds, and each case's count (checked equal)."""
    wall = dict.fromkeys(cases, float("inf"))
    cpu = dict.fromkeys(cases, float("inf"))
    counts: dict[str, int] = {}
    for _ in range(repeat):
        for label, run in cases.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            count = run()
            wall[label] = min(wall[label], time.perf_counter() - start)
            cpu[label] = min(cpu[label], time.process_time() - start_cpu)
            assert counts.setdefault(label, count) == count
    return wall, cpu, counts


def _compare(name: str, processor, spec, video: str, pts_ns: Sequence[int], args) -> tuple[dict[str, float], float]:
    """Time ours and the HF baseline for one model, print the rates, the ratio and the pixel difference."""
    import torch

    n = len(pts_ns)
    got: dict[str, list] = {"ours": [], "hf": []}

    def run(label: str) -> int:
        got[label].clear()
        if label == "ours":
            ours(video, pts_ns, spec, args.chunk, got[label].append)
        else:
            baseline(video, pts_ns, processor, args.chunk, got[label].append)
        return sum(p.numel() for p in got[label]) // (3 * spec.image_size[0] * spec.image_size[1])

    wall, cpu, counts = _best(args.repeat, {"ours": lambda: run("ours"), "hf": lambda: run("hf")})
    assert counts == {"ours": n, "hf": n}, counts
    a = torch.cat([p.reshape(-1, 3, *spec.image_size) for p in got["ours"]])
    b = torch.cat([p.reshape(-1, 3, *spec.image_size) for p in got["hf"]])
    diff = ((a - b).abs() * torch.tensor(spec.image_std).view(3, 1, 1) * 255).flatten()
    rate = {k: n / v for k, v in wall.items()}
    for key, label in (("hf", "decode -> PIL -> HF image processor"), ("ours", "decode-to-size + normalize")):
        print(f"  {name} {spec.image_size[0]}px {label:34s} {rate[key]:9.1f} {1000 * cpu[key] / n:11.2f}")
    ratio = rate["ours"] / rate["hf"]
    verdict = "ok" if ratio >= GOALS["pixels"] else "BELOW GOAL"
    print(
        f"  {name}: ours / HF {ratio:.2f}x  goal >= {GOALS['pixels']:g}x  {verdict};  diff mean {diff.mean():.2f}/255, "
        f"p99 {torch.quantile(diff[::11], 0.99):.1f}/255, max {diff.max():.0f}/255"
    )
    return rate, ratio


def vlm_loader(episode, args) -> dict[str, float]:
    """Images/s of the training loader alone and with the tiny models' forward, per preset (see ``--vlm``)."""

    import torch
    from torch.utils.data import DataLoader

    from owa.data.episode_tokenizer import EpisodeTokenizer
    from owa.data.fsl_dataset import FSLDataset
    from owa.data.pixels import pixel_spec
    from owa.data.testing import event_dataset_from_mcap
    from owa.data.testing.vlms import VLM_PRESETS, tiny_vlm
    from owa.data.training import FSLCollator

    events = event_dataset_from_mcap(episode.mcap_path)
    lengths = {"smolvlm": 1024, "internvl": 2048, "qwen2_vl": 512}
    results: dict[str, float] = {}
    print(f"{'training loader (tiny VLMs)':28s} {'images':>7s} {'loader images/s':>16s} {'+ forward images/s':>19s}")
    for name in VLM_PRESETS:
        vlm = tiny_vlm(name, fresh=True)
        processor = vlm.processor
        tokenizer = EpisodeTokenizer.from_processor(
            processor, **({"image_size": (56, 112)} if name == "qwen2_vl" else {})
        )
        tokenizer.prepare_model(tokenizer=processor.tokenizer, model=vlm.model)
        fsl = FSLDataset(
            tokenizer.tokenize_event_dataset(events),
            pad_token_id=processor.tokenizer.pad_token_id,
            max_sequence_length=lengths[name],
            image_size=tokenizer.image_layout.image_size,
            image_resample=pixel_spec(processor).resample,
            log_every=None,
        ).prepare()
        rates = {}
        for label, forward in (("loader", False), ("forward", True)):
            best = float("inf")
            for _ in range(args.repeat):
                collator = FSLCollator.for_tokenizer(tokenizer, processor)
                loader = DataLoader(fsl, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collator)
                start = time.perf_counter()
                with torch.no_grad():
                    for batch in loader:
                        if forward:
                            assert torch.isfinite(vlm.model(**FSLCollator.model_inputs(batch)).loss)
                best = min(best, time.perf_counter() - start)
                images = collator.stats.images
            rates[label] = images / best
        print(f"  {name:26s} {images:7d} {rates['loader']:16.1f} {rates['forward']:19.1f}")
        results[f"{name}_loader_images_per_s"] = rates["loader"]
        results[f"{name}_loader_forward_images_per_s"] = rates["forward"]
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the benchmark, print images/s and ratios, and return them."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_pixels", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (1 s of video, 1 repeat)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=20.0)
    parser.add_argument("--chunk", type=int, default=32, help="frames per decode call / per processor call")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--vlm", action="store_true", help="the training loader with the tiny VLMs instead")
    parser.add_argument("--batch-size", type=int, default=4, help="--vlm: samples per batch")
    parser.add_argument("--workers", type=int, default=2, help="--vlm: DataLoader workers")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.fps, args.repeat = 1.0, 10.0, 1

    from owa.data import create_event_dataset_transform
    from owa.data.pixels import pixel_spec
    from owa.data.testing import event_dataset_from_mcap

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pixels-") as tmp:
        work_dir = args.work_dir or Path(tmp)
        config = SampleConfig(
            seconds=args.seconds, fps=args.fps, width=1280, height=720, variable_frame_rate=False, seed=0
        )
        episode = write_sample_episode(work_dir, "bench", config)
        video = str(episode.video_path)
        pts_ns = list(episode.frame_pts_ns)
        n = len(pts_ns)
        print(f"video: 1280x720 hevc, {args.seconds:g} s, {n} frames")
        if args.vlm:
            return vlm_loader(episode, args)

        print(f"{'model-ready pixel_values':44s} {'images/s':>9s} {'CPU ms/img':>11s}")
        for name, processor in checkpoint_image_processors().items():
            spec = pixel_spec(processor)
            rate, ratio = _compare(name, processor, spec, video, pts_ns, args)
            results[f"{name}_ours_images_per_s"] = rate["ours"]
            results[f"{name}_hf_images_per_s"] = rate["hf"]
            results[f"{name}_ratio"] = ratio

        events = event_dataset_from_mcap(episode.mcap_path)
        events.set_transform(create_event_dataset_transform())
        screens = sum(topic == "screen" for topic in events.with_format(None)["topic"])
        wall, cpu, counts = _best(
            args.repeat, {"sequential": lambda: sequential_decode(video), "rows": lambda: rows_one_at_a_time(events)}
        )
        assert counts == {"sequential": n, "rows": screens}, counts
        rate = {"sequential": n / wall["sequential"], "rows": screens / wall["rows"]}
        cpu_rate = {"sequential": n / cpu["sequential"], "rows": screens / cpu["rows"]}
        ratio, cpu_ratio = rate["rows"] / rate["sequential"], cpu_rate["rows"] / cpu_rate["sequential"]
        print(
            f"row-by-row ({len(events)} rows, {screens} frames): {rate['rows']:.1f} images/s; plain sequential "
            f"decode {rate['sequential']:.1f} images/s"
        )
        verdict = "ok" if ratio >= GOALS["rows"] else "BELOW GOAL"
        print(f"  rows / sequential: {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU   goal >= {GOALS['rows']:g}x  {verdict}")
        results.update(rows_ratio=ratio, rows_cpu_ratio=cpu_ratio, frames=n)
        set_engine(None)
    return results


if __name__ == "__main__":
    main()
